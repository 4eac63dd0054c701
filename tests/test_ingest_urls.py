"""Web pages into a knowledge base (issue 38): ``ingest`` fetches http(s) URLs only under the load
allow-list (ai.allow_load_from), from a real HTTP server the test starts on loopback: what is
allowed, what is not (another path, a name for the same address, a redirect out, the metadata
address), and every way a page fails (404, too big as sent and as inflated, a type that is not
read, a server that never answers) counted and named with why.  The fetcher's rules are tested
without the database; one test runs pages through ``ingest`` into it."""
from __future__ import annotations

import gzip
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pdf_fixture import make_pdf
from pgmind.errors import InvalidRequestError, PermissionDeniedError, ProviderTimeoutError
from pgmind.ingest import ingest, page_suffix
from pgmind.urlfetch import AllowList, Fetcher, PageGoneError

HTML_GBK = ("<html><head><title>熊猫</title></head><body><h1>大熊猫</h1><p>大熊猫主要吃竹子。</p>"
            "<p>它们生活在四川。</p></body></html>")
MARKDOWN = "# HNSW\n\nCREATE INDEX ON items USING hnsw (embedding vector_cosine_ops);\n"


class Site:
    """A web server on 127.0.0.1: path -> (status, headers, body); '/hang' never answers."""

    def __init__(self):
        self.pages: dict[str, tuple[int, dict, bytes]] = {}
        self.release = threading.Event()
        self.requests: list[str] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                site.requests.append(self.path)
                if self.path == "/allowed/hang":
                    site.release.wait(10)
                    return
                status, headers, body = site.pages.get(self.path, (404, {"Content-Type": "text/plain"}, b"no"))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def site():
    s = Site()
    html = {"Content-Type": "text/html; charset=gbk"}
    s.pages.update({
        "/allowed/panda.html": (200, html, HTML_GBK.encode("gbk")),
        "/allowed/hnsw": (200, {"Content-Type": "text/markdown; charset=utf-8"}, MARKDOWN.encode()),
        "/allowed/manual.pdf": (200, {"Content-Type": "application/pdf"},
                                make_pdf(["VACUUM reclaims storage occupied by dead tuples."], title="VACUUM")),
        "/allowed/notes.txt": (200, {"Content-Type": "application/octet-stream"}, "纯文本笔记。".encode()),
        "/allowed/logo.png": (200, {"Content-Type": "image/png"}, b"\x89PNG\r\n\x1a\n"),
        "/allowed/big": (200, {"Content-Type": "text/plain"}, b"x" * 5000),
        "/allowed/bomb": (200, {"Content-Type": "text/plain", "Content-Encoding": "gzip"},
                          gzip.compress(b"a" * 200_000)),
        "/allowed/moved": (302, {"Location": "/allowed/hnsw"}, b""),
        "/allowed/out": (302, {"Location": "/private/secret.txt"}, b""),
        "/allowed/elsewhere": (301, {"Location": f"http://localhost:{s.port}/allowed/hnsw"}, b""),
        "/allowed/broken": (500, {"Content-Type": "text/plain"}, b"oops"),
        "/private/secret.txt": (200, {"Content-Type": "text/plain"}, b"secret"),
    })
    yield s
    s.close()


def fetcher(site, **kw) -> Fetcher:
    kw.setdefault("read_timeout", 1.0)
    return Fetcher(AllowList([site.base + "/allowed"]), **kw)


# -- the fetcher's rules, without the database -------------------------------------------------
def test_pages_under_the_allowed_prefix(site):
    f = fetcher(site)
    try:
        page = f.fetch(site.base + "/allowed/panda.html")
        assert (page.content_type, page.charset) == ("text/html", "gbk")
        assert page.data == HTML_GBK.encode("gbk")
        moved = f.fetch(site.base + "/allowed/./x/../moved")             # canonical, then redirected in the list
        assert (moved.url, moved.final_url) == (site.base + "/allowed/moved", site.base + "/allowed/hnsw")
    finally:
        f.close()


def test_what_is_not_allowed(site):
    f = fetcher(site)
    try:
        with pytest.raises(PermissionDeniedError, match="not under a location allowed") as e:
            f.fetch(site.base + "/private/secret.txt")
        assert "ai.allow_load_from" in e.value.hint
        with pytest.raises(PermissionDeniedError, match="not under a location allowed"):
            f.fetch(site.base + "/allowed/../private/secret.txt")          # .. resolved before the check
        with pytest.raises(PermissionDeniedError, match="not under a location allowed"):
            f.fetch(f"http://localhost:{site.port}/allowed/hnsw")          # another name for the address
        with pytest.raises(PermissionDeniedError, match="redirects to .*private/secret.txt.* not under"):
            f.fetch(site.base + "/allowed/out")
        with pytest.raises(PermissionDeniedError, match="redirects to http://localhost"):
            f.fetch(site.base + "/allowed/elsewhere")
        with pytest.raises(InvalidRequestError, match="not an http"):
            f.fetch("ftp://127.0.0.1/allowed/x")
    finally:
        f.close()
    assert "/private/secret.txt" not in site.requests                    # refused before it is asked for


def test_a_name_cannot_lead_to_a_private_address(site):
    """A host name on the list that resolves to loopback is refused unless the address is listed."""
    f = Fetcher(AllowList([f"http://localhost:{site.port}/allowed/"]))
    try:
        with pytest.raises(PermissionDeniedError, match="resolves to 127.0.0.1, a loopback or private") as e:
            f.fetch(f"http://localhost:{site.port}/allowed/hnsw")
        assert f"allow_load_from('http://127.0.0.1:{site.port}/')" in e.value.hint
    finally:
        f.close()
    f = Fetcher(AllowList([f"http://localhost:{site.port}/allowed/", f"http://127.0.0.1:{site.port}/"]))
    try:
        assert f.fetch(f"http://localhost:{site.port}/allowed/hnsw").data == MARKDOWN.encode()
    finally:
        f.close()
    for listed in ("http://169.254.169.254/", "http://0.0.0.0:1/"):      # listed or not: never
        f = Fetcher(AllowList([listed]), connect_timeout=1)
        try:
            with pytest.raises(PermissionDeniedError, match="metadata or unspecified"):
                f.fetch(listed + "latest/meta-data/")
        finally:
            f.close()


def test_failures_say_why(site):
    f = fetcher(site, max_bytes=4096)
    try:
        with pytest.raises(PageGoneError, match=r"no page at .*/allowed/nothing \(HTTP 404\)"):
            f.fetch(site.base + "/allowed/nothing")
        with pytest.raises(InvalidRequestError, match="larger than"):
            f.fetch(site.base + "/allowed/big")                            # by its Content-Length
        with pytest.raises(InvalidRequestError, match="larger than"):
            f.fetch(site.base + "/allowed/bomb")                           # 200 KB inflated from ~200 bytes
        with pytest.raises(Exception, match="answered HTTP 500"):
            f.fetch(site.base + "/allowed/broken")
        t = time.monotonic()
        with pytest.raises(ProviderTimeoutError, match="did not answer in time"):
            f.fetch(site.base + "/allowed/hang")
        assert time.monotonic() - t < 5
    finally:
        f.close()


def test_the_content_type_decides_the_reader():
    assert page_suffix("text/html", "https://h/a") == (".html", None)
    assert page_suffix("text/markdown", "https://h/a") == (".md", None)
    assert page_suffix("text/plain", "https://h/a.html") == (".txt", None)     # the type, not the name
    assert page_suffix("application/pdf", "https://h/x") == (".pdf", None)
    assert page_suffix("application/octet-stream", "https://h/r.md") == (".md", None)
    assert page_suffix("application/octet-stream", "https://h/r")[1].startswith("sent as application/octet-stream")
    assert page_suffix("image/png", "https://h/a.png") == (
        None, "unsupported content type image/png (read: HTML, markdown, plain text, PDF, CSV, .docx, .xlsx)")


# -- through ingest, into the database ---------------------------------------------------------
def test_ingest_pages(installed, conn, site, tmp_path):
    from pgmind.db import connect
    (tmp_path / "local.md").write_text("# 本地\n\n本地文件。\n", encoding="utf-8")
    b = site.base + "/allowed"
    urls = [f"{b}/panda.html", f"{b}/hnsw", f"{b}/manual.pdf", f"{b}/notes.txt", f"{b}/moved",
            f"{b}/logo.png", f"{site.base}/private/secret.txt", f"{b}/out", f"{b}/nothing", f"{b}/big",
            f"{b}/hang"]
    with connect(installed, autocommit=True) as c:
        c.execute("select ai.allow_load_from(%s)", (b,))
    try:
        with connect(installed) as c:
            # the allow-list as the database has it (read by the library, as the role)
            f = Fetcher(AllowList.read(c), read_timeout=1.0, max_bytes=4096)
            try:
                r = ingest(c, [tmp_path, *urls], "webkb", fetcher=f)
            finally:
                f.close()
        assert (r.files, r.urls, r.changed, r.unchanged, r.removed, r.not_allowed) == (1, 11, 6, 0, 0, 2)
        skipped = dict(r.skipped)
        assert set(skipped) == {f"{b}/logo.png", f"{site.base}/private/secret.txt", f"{b}/out"}
        assert skipped[f"{b}/logo.png"].startswith("unsupported content type image/png")
        assert "not under a location allowed for loading" in skipped[f"{site.base}/private/secret.txt"]
        assert "redirects to" in skipped[f"{b}/out"]
        failed = dict(r.failed)
        assert set(failed) == {f"{b}/nothing", f"{b}/big", f"{b}/hang"}
        assert "HTTP 404" in failed[f"{b}/nothing"] and "larger than" in failed[f"{b}/big"]
        assert "did not answer in time" in failed[f"{b}/hang"]
        assert r.encodings[f"{b}/panda.html"] == "gb18030"               # the server's charset=gbk
        rows = {p: (t, s, body) for p, t, s, body in conn.execute("select path, title, section, body from webkb")}
        assert rows[f"{b}/panda.html"] == ("熊猫", "127.0.0.1", "# 大熊猫\n\n大熊猫主要吃竹子。\n\n它们生活在四川。")
        assert rows[f"{b}/hnsw"] == ("HNSW", "127.0.0.1", MARKDOWN)
        assert rows[f"{b}/moved"][2] == MARKDOWN                          # a redirect's page under the URL asked
        assert rows[f"{b}/manual.pdf"][:2] == ("VACUUM", "127.0.0.1") and "dead tuples" in rows[f"{b}/manual.pdf"][2]
        assert rows[f"{b}/notes.txt"] == ("notes", "127.0.0.1", "纯文本笔记。")
        assert rows["local.md"][0] == "本地"
        # again: nothing changed; the folder alone keeps the pages' rows; a page now gone loses its row
        site.pages[f"/allowed/hnsw"] = (404, {}, b"")
        with connect(installed) as c:
            f = Fetcher(AllowList.read(c), read_timeout=1.0)
            try:
                r = ingest(c, [f"{b}/panda.html", f"{b}/hnsw"], "webkb", fetcher=f)
                assert (r.changed, r.unchanged, r.removed) == (0, 1, 1)
                assert ingest(c, tmp_path, "webkb").removed == 0
            finally:
                f.close()
        paths = {p for p, in conn.execute("select path from webkb")}
        assert paths == {"local.md", f"{b}/panda.html", f"{b}/manual.pdf", f"{b}/notes.txt", f"{b}/moved"}
    finally:
        with connect(installed, autocommit=True) as c:
            c.execute("select ai.disallow_load_from(%s)", (b,))
            c.execute("select ai.drop_vectorizer('webkb')")
            c.execute("drop table webkb")


def test_ingest_sources_are_checked(installed, tmp_path):
    from pgmind.db import connect
    with connect(installed) as c:
        with pytest.raises(InvalidRequestError, match="only folders and http"):
            ingest(c, "ftp://example.com/x", "kb3")
        with pytest.raises(InvalidRequestError, match="one folder at a time"):
            (tmp_path / "a").mkdir()
            (tmp_path / "b").mkdir()
            ingest(c, [tmp_path / "a", tmp_path / "b"], "kb3")


def test_the_cli_names_each_page_left_out(settings, installed, site):
    import subprocess
    import sys

    from pgmind.db import connect
    from pgmind.devserver import settings_env
    b = site.base + "/allowed"
    with connect(installed, autocommit=True) as c:
        c.execute("select ai.allow_load_from(%s)", (b,))
    try:
        proc = subprocess.run([sys.executable, "-m", "pgmind.cli", "ingest", f"{b}/hnsw", f"{b}/logo.png",
                               f"{site.base}/private/secret.txt", f"{b}/nothing", "--into", "cliweb", "--no-embed"],
                              env=settings_env(settings), capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "0 files, 4 URLs: 1 documents new or changed, 0 unchanged, 0 removed, 2 skipped (1 not documents, " \
               "0 without text, 1 not allowed), 1 unreadable" in proc.stdout
        err = " ".join(proc.stderr.split())
        assert f"skipped {b}/logo.png: unsupported content type image/png" in err
        assert f"skipped {site.base}/private/secret.txt: {site.base}/private/secret.txt is not under a location " \
               "allowed for loading (hint: an administrator allows a site with select ai.allow_load_from(" in err
        assert f"unreadable {b}/nothing: no page at {b}/nothing (HTTP 404)" in err
    finally:
        with connect(installed, autocommit=True) as c:
            c.execute("select ai.disallow_load_from(%s)", (b,))
            c.execute("select ai.drop_vectorizer('cliweb')")
            c.execute("drop table if exists cliweb")


def test_a_user_is_held_to_the_administrators_list(installed, owner, site):
    """A role that is not an administrator reads the list (ai.load_allow_list is public) and is held
    to it; it cannot add to it."""
    from pgmind.db import connect
    b = site.base + "/allowed"
    with connect(installed, autocommit=True) as c:
        c.execute("select ai.allow_load_from(%s)", (b,))
    try:
        with pytest.raises(Exception, match="pgmind_admin|permission|administrator"):
            owner.execute("select ai.allow_load_from(%s)", (site.base + "/private",))
        r = ingest(owner, [f"{b}/hnsw", f"{site.base}/private/secret.txt"], "userweb", schema="sec_app")
        assert (r.urls, r.changed) == (2, 1)
        assert [u for u, _ in r.skipped] == [f"{site.base}/private/secret.txt"]
        assert owner.execute("select path from sec_app.userweb").fetchall() == [(f"{b}/hnsw",)]
    finally:
        owner.execute("select ai.drop_vectorizer('userweb')")
        owner.execute("drop table if exists sec_app.userweb")
        with connect(installed, autocommit=True) as c:
            c.execute("select ai.disallow_load_from(%s)", (b,))


def test_load_file_connects_only_where_ingest_may(site):
    """ai.load_file's http(s) loader (images.loader) connects under the same address rules: a name
    on its list that resolves to loopback leads nowhere unless the address is listed too; never the
    metadata address."""
    import asyncio

    from pgmind.images.loader import Allowed, Loader

    async def load(prefixes, url):
        async def allowed():
            return [Allowed(p) for p in prefixes]
        loader = Loader(allowed, ttl=0)
        try:
            return await loader.load(url)
        finally:
            await loader.aclose()

    named = f"http://localhost:{site.port}/allowed/"
    with pytest.raises(PermissionDeniedError, match="resolves to 127.0.0.1, a loopback or private"):
        asyncio.run(load([named], named + "hnsw"))
    assert asyncio.run(load([named, site.base + "/"], named + "hnsw")) == MARKDOWN.encode()
    assert asyncio.run(load([site.base + "/allowed"], site.base + "/allowed/hnsw")) == MARKDOWN.encode()
    with pytest.raises(PermissionDeniedError, match="metadata"):
        asyncio.run(load(["http://169.254.169.254/"], "http://169.254.169.254/latest/meta-data/"))
