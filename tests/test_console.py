"""The web console (issue 39) in a real browser: Debian's Chromium driven by Playwright, against the
real model server and PostgreSQL of the test session.  The knowledge base is tiny and its models are
provider stand-ins (tests/standins.py: an OpenAI-compatible embedding and chat model), so the flows
are about the console, not the models.  Screenshots of each page go to build/test-artefacts/console/
(docs/console.md shows them)."""
from __future__ import annotations

import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from conftest import as_role
from pgmind.db import connect
from pgmind.vectorizer.worker import Worker
from standins import StandIn

playwright_sync = pytest.importorskip("playwright.sync_api")
CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (scripts/setup.sh installs it)", allow_module_level=True)

ARTEFACTS = Path(os.environ.get("PGMIND_TEST_ARTEFACTS", "build/test-artefacts")) / "console"
XSS = '<script>window.__xss = 1</script><img src="x" onerror="window.__xss = 1">熊猫 xss'
ROWS = [
    (1, "Giant pandas", "The giant panda eats bamboo for most of the day. Pandas live in the mountains of Sichuan."),
    (2, "大熊猫", "大熊猫是中国特有的动物。它们主要吃竹子,每天要吃十几公斤竹子。"),
    (3, "HNSW indexes", "An HNSW index makes vector search fast. Create it with CREATE INDEX ... USING hnsw."),
    (4, "Weather", "Beijing winters are cold and dry; summers are hot and rainy."),
    (5, XSS, "A document whose title is markup: " + XSS),
    (6, "Too long", "word " * 80),      # refused by the stand-in: quarantined
]


@pytest.fixture(scope="module")
def stack(installed, settings, server):
    """Two roles with an API key each; con_owner owns the knowledge base cdocs (6 rows, one of them
    quarantined), on a stand-in embedding model and chat model."""
    standin = StandIn(dim=8)
    with connect(installed, autocommit=True) as c:
        for r in ("con_owner", "con_other"):
            if c.execute("select 1 from pg_roles where rolname = %s", (r,)).fetchone():
                c.execute(f"drop owned by {r} cascade")
                c.execute(f"drop role {r}")
            c.execute(f"create role {r} login")
        c.execute("drop schema if exists con_app cascade")
        c.execute("create schema con_app authorization con_owner")
        for m in ("console-emb", "console-chat"):
            c.execute("select ai.drop_model(%s, if_exists => true)", (m,))
        c.execute("select ai.create_model('console-emb', %s, 'openai', 'embedding', 'text-embedding-3-small', "
                  "'{\"author_type\": \"token\", \"token\": \"sk-console-1\"}', "
                  "options => '{\"dimensions\": 8, \"max_tokens\": 60}')", (standin.url + "/v1",))
        c.execute("select ai.create_model('console-chat', %s, 'openai', 'chat', 'gpt-test', "
                  "'{\"author_type\": \"token\", \"token\": \"sk-console-2\"}')", (standin.url + "/v1",))
        for m in ("console-emb", "console-chat"):
            for r in ("con_owner", "con_other"):
                c.execute("select ai.grant_model(%s, %s)", (m, r))
        keys = {r: c.execute("select ai.create_api_key(%s)", (r,)).fetchone()[0] for r in ("con_owner", "con_other")}
    with as_role(installed, "con_owner") as o:
        o.execute("create table con_app.docs (id int primary key, title text not null, body text not null)")
        o.cursor().executemany("insert into con_app.docs values (%s, %s, %s)", ROWS)
        o.execute("select ai.create_vectorizer('con_app.docs'::regclass, name => 'cdocs', "
                  "content => $$title || E'\\n' || body$$, model => 'console-emb', chunking => '{\"method\": \"none\"}')")
        o.execute("""select ai.configure_rag('cdocs', '{"model": "console-chat", "expand": false, "translate_model": null,
                     "expand_model": "console-chat", "topic": null, "threshold": -1, "ground": false}')""")
    standin.default["/v1/embeddings"] = "refuse-long"
    drain(settings, installed)
    yield {"keys": keys, "standin": standin, "url": server + "/console", "server": server}
    with connect(installed, autocommit=True) as c:
        c.execute("select ai.drop_vectorizer('cdocs') where exists (select 1 from ai.vectorizer_status "
                  "where name = 'cdocs')")
        c.execute("delete from ai.feedback where vectorizer = 'cdocs'")
        c.execute("drop schema if exists con_app cascade")
        for r in ("con_owner", "con_other"):
            c.execute(f"drop owned by {r} cascade")
            c.execute(f"drop role {r}")
        for m in ("console-emb", "console-chat"):
            c.execute("select ai.drop_model(%s, if_exists => true)", (m,))
    standin.close()


def drain(settings, installed, name: str = "cdocs") -> None:
    """Embeds the queue with a real worker, in a thread of its own: the worker runs an event loop,
    and Playwright's sync API has one running on this thread."""
    from dataclasses import replace
    worker = Worker(replace(settings, max_retries=0), installed, names=[name], poll_interval=0.1)
    t = threading.Thread(target=worker.drain, kwargs={"timeout": 60})
    t.start()
    t.join()


@pytest.fixture(scope="module")
def browser(stack):
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.dialogs = []
    pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.accept()))
    yield pg
    context.close()


def shot(page, name: str) -> None:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTEFACTS / f"{name}.png"), full_page=True)


def sign_in(page, stack, role="con_owner"):
    page.goto(stack["url"] + "/signin")
    page.fill("#key", stack["keys"][role])
    page.click("#signin")
    page.wait_for_url(re.compile(r"/console/kbs$"))


def no_xss(page) -> None:
    assert page.evaluate("window.__xss") is None
    assert page.dialogs == []


# -- sign in and out -------------------------------------------------------------------------------

def test_sign_in_wrong_key_then_right_key_then_out(page, stack):
    page.goto(stack["url"])
    assert page.url.endswith("/console/signin?expired=1")
    shot(page, "signin")
    page.fill("#key", "pgmk-not-a-real-key")
    page.click("#signin")
    assert "unknown or revoked" in page.inner_text("#signin-error")
    sign_in(page, stack)
    assert page.inner_text("#who").endswith("con_owner")
    assert page.locator("tr.kb-row[data-kb=cdocs]").count() == 1
    shot(page, "kbs")
    # the key is in no cookie, URL or storage; the session cookie is HttpOnly and SameSite=Strict
    cookies = page.context.cookies()
    session = next(c for c in cookies if c["name"] == "pgmind_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert all(stack["keys"]["con_owner"] not in c["value"] for c in cookies)
    storage = page.evaluate("JSON.stringify(localStorage) + JSON.stringify(sessionStorage)")
    assert stack["keys"]["con_owner"] not in storage and "pgmk-" not in storage and "pgmk-" not in page.url
    page.click("#signout")
    page.wait_for_url(re.compile(r"/signin\?out=1$"))
    page.goto(stack["url"] + "/kbs")
    assert "/signin" in page.url


def test_security_headers(stack):
    r = httpx.get(stack["url"] + "/signin")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert r.headers["x-frame-options"] == "DENY"
    assert "<script>" not in r.text and " on" not in re.sub(r"\bon\w*-", "", "") and "onclick" not in r.text


# -- knowledge bases -------------------------------------------------------------------------------

def test_kb_page_states_retry_and_delete(page, stack):
    sign_in(page, stack)
    page.click("a[href='/console/kbs/cdocs']")
    assert page.inner_text("#kb-name") == "cdocs"
    assert page.locator("#docs tr.doc").count() == 5
    shot(page, "kb")
    page.click("#state-quarantined")
    row = page.locator("#docs tr.doc")
    assert row.count() == 1 and '{"id": 6}' in row.inner_text()
    assert "too long" in page.inner_text("#docs .message")
    shot(page, "kb-quarantined")
    page.click("button.retry-one")
    assert "1 documents queued again" in page.inner_text("#notice")
    assert page.locator("#docs tr.doc").count() == 1        # now pending
    page.click("#state-pending")
    page.click("button.delete")
    assert page.dialogs == ["Delete this document from the source table?"]
    page.dialogs.clear()
    assert page.inner_text("#notice") == "Document deleted."
    page.click("#state-quarantined")
    assert page.locator("#no-docs").count() == 1
    no_xss(page)


def test_documents_are_paged(page, stack, installed, settings):
    with as_role(installed, "con_owner") as o:
        o.execute("insert into con_app.docs select g, 'filler ' || g, 'text ' || g from generate_series(100, 219) g")
    try:
        sign_in(page, stack)
        # queued (no worker runs in the test server): the pending tab pages through the queue
        page.goto(stack["url"] + "/kbs/cdocs?state=pending")
        seen = []
        while True:
            seen += page.locator("#docs td.key").all_inner_texts()
            if page.locator("#next-page").count() == 0:
                break
            page.click("#next-page")
        assert len(seen) == len(set(seen)) == 120
        drain(settings, installed)
        page.goto(stack["url"] + "/kbs/cdocs")
        first = page.locator("#docs td.key").all_inner_texts()
        assert len(first) == 50
        page.click("#next-page")
        second = page.locator("#docs td.key").all_inner_texts()
        assert len(second) == 50 and not set(first) & set(second)
        page.click("#next-page")
        assert page.locator("#docs td.key").count() == 125 - 100
        assert page.locator("#next-page").count() == 0
    finally:
        with as_role(installed, "con_owner") as o:
            o.execute("delete from con_app.docs where id >= 100")


def test_pause_and_resume(page, stack, conn):
    if not conn.execute("select to_regprocedure('ai.pause_vectorizer(text)') is not null").fetchone()[0]:
        pytest.skip("ai.pause_vectorizer is not in this install yet")
    sign_in(page, stack)
    page.goto(stack["url"] + "/kbs/cdocs")
    page.click("#pause")
    assert page.locator("#paused-badge").count() == 1
    assert conn.execute("select paused from ai.vectorizer_status where name = 'cdocs'").fetchone()[0]
    page.click("#resume")
    assert page.locator("#paused-badge").count() == 0
    assert not conn.execute("select paused from ai.vectorizer_status where name = 'cdocs'").fetchone()[0]



def test_create_a_kb_from_uploaded_files(page, stack, installed, settings, tmp_path):
    """Three files, one a broken PDF: it is listed as failed with its reason and stored nowhere; the
    two others are read by ingest's code, embedded, and the knowledge base finishes."""
    xss_name = '<img src=x onerror="window.__xss = 1">.md'
    (tmp_path / xss_name).write_text("# Red pandas\n\nRed pandas eat bamboo too.\n", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("熊猫每天吃竹子。", encoding="utf-8")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> garbage, no xref")
    sign_in(page, stack)
    try:
        page.click("#nav-new")
        page.fill("#name", "uploaded")
        page.select_option("#schema", "con_app")
        page.select_option("#model", "console-emb")
        page.set_input_files("#files", [str(tmp_path / n) for n in (xss_name, "notes.txt", "broken.pdf")])
        shot(page, "new")
        page.click("#create")
        assert "3 files received, 2 documents stored" in page.inner_text("#created-summary")
        failed = page.locator("#upload-failed tr.failed")
        assert failed.count() == 1 and failed.locator("td.file").inner_text() == "broken.pdf"
        assert failed.locator("td.reason").inner_text().strip()
        shot(page, "created")
        no_xss(page)
        drain(settings, installed, "uploaded")
        page.click("#created-kb")
        assert page.locator("#docs tr.doc").count() == 2
        assert "<img src=x onerror=" in page.inner_text("#docs")     # (quotes arrive as %22: the HTML spec)
        no_xss(page)
    finally:
        with as_role(installed, "con_owner") as o:
            o.execute("select ai.drop_vectorizer('uploaded') where exists (select 1 from ai.vectorizer_status "
                      "where name = 'uploaded')")
            o.execute("drop table if exists con_app.uploaded")


def test_upload_refuses_bad_names_and_other_schemas(page, stack):
    sign_in(page, stack)
    token = page.get_attribute('meta[name="csrf-token"]', "content")
    files = {"files": {"name": "a.txt", "mimeType": "text/plain", "buffer": b"hello"}}
    for fields, said in (({"name": "Bad Name", "schema": "con_app", "model": "console-emb"}, "invalid knowledge base name"),
                         ({"name": "ok", "schema": "public", "model": "console-emb"}, "may not create tables"),
                         ({"name": "ok", "schema": "con_app", "model": "nope"}, "not an embedding model")):
        r = page.request.post(stack["url"] + "/new", multipart={**fields, "csrf": token, **files},
                              headers={"Origin": stack["server"]})
        assert r.status == 400 and said in r.text(), (fields, r.text()[:300])


@pytest.fixture
def clip_model(installed):
    """An image model (a clip-as-service stand-in) granted to con_owner."""
    standin = StandIn(dim=16)
    with connect(installed, autocommit=True) as c:
        c.execute("select ai.drop_model('console-clip3', if_exists => true)")
        c.execute("""select ai.create_model('console-clip3', %s, 'clip', 'image_embedding', 'ViT-B-32',
                                            '{"author_type": "token", "token": "t"}')""", (standin.url + "/post",))
        c.execute("select ai.grant_model('console-clip3', 'con_owner')")
    yield "console-clip3"
    with connect(installed, autocommit=True) as c:
        c.execute("select ai.drop_model('console-clip3', if_exists => true)")
    standin.close()


def _picture(colour, fmt: str = "PNG") -> bytes:
    import io
    from PIL import Image
    out = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(out, format=fmt)
    return out.getvalue()


def test_create_an_image_collection_from_uploaded_pictures(page, stack, installed, settings, clip_model):
    """Three pictures dropped on the box, one broken: it is listed as failed with its reason and stored
    nowhere; the two others are read by ingest-images' code into the role's new table (their bytes,
    keyed by their names: no server path), embedded, listed with the image badge and found by words
    and by a picture."""
    import base64
    broken = "<img src=x onerror=window.__xss=1>broken.png"
    dropped = [("red.png", _picture((220, 30, 30)), "image/png"),
               ("blue", _picture((30, 30, 220), "JPEG"), "image/jpeg"),      # no suffix: named by its bytes
               (broken, b"\x89PNG\r\n\x1a\n broken", "image/png")]
    sign_in(page, stack)
    try:
        page.click("#nav-new")
        page.fill("#images-name", "upics")
        page.select_option("#images-schema", "con_app")
        page.select_option("#images-model", clip_model)
        page.evaluate("""files => {
            const dt = new DataTransfer();
            for (const [name, b64, type] of files) {
                const bin = atob(b64), bytes = new Uint8Array(bin.length);
                for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
                dt.items.add(new File([bytes], name, {type}));
            }
            document.getElementById("images-dropzone").dispatchEvent(
                new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
        }""", [[n, base64.b64encode(d).decode(), m] for n, d, m in dropped])
        assert page.eval_on_selector("#images-files", "i => i.files.length") == 3
        shot(page, "new-images")
        page.click("#create-images")
        assert "3 pictures received, 2 stored" in page.inner_text("#created-summary")
        failed = page.locator("#upload-failed tr.failed")
        assert failed.count() == 1 and failed.locator("td.file").inner_text() == broken
        assert "not an image" in failed.locator("td.reason").inner_text()
        assert "pgmind-upload" not in page.content()
        shot(page, "created-images")
        no_xss(page)
        with as_role(installed, "con_owner") as o:
            stored = o.execute("select path, octet_length(img) from con_app.upics order by path").fetchall()
        assert [p for p, _ in stored] == ["blue.jpg", "red.png"] and all(n for _, n in stored)
        drain(settings, installed, "upics")
        page.goto(stack["url"] + "/kbs")
        assert page.locator("tr.kb-row[data-kb=upics] a.badge.images").count() == 1
        page.goto(stack["url"] + "/kbs/upics")
        assert page.locator("#docs tr.doc").count() == 2 and "pgmind-upload" not in page.inner_text("#docs")
        page.goto(stack["url"] + "/kbs/upics/images")
        page.fill("#image-q", "a red picture")
        page.click("#image-search")
        assert page.locator("#image-hits li.image-hit").count() == 2
        pictures_drawn(page)
        found = page.inner_text("#image-hits")
        assert "red.png" in found and "blue.jpg" in found
        page.set_input_files("#picture", files=[{"name": "q.png", "mimeType": "image/png",
                                                 "buffer": _picture((200, 40, 40))}])
        page.click("#picture-search")
        assert page.locator("#image-hits li.image-hit").count() == 2
        pictures_drawn(page)
        no_xss(page)
    finally:
        with as_role(installed, "con_owner") as o:
            o.execute("select ai.drop_vectorizer('upics') where exists (select 1 from ai.vectorizer_status "
                      "where name = 'upics')")
            o.execute("drop table if exists con_app.upics")


def test_picture_upload_refuses_no_pictures_too_many_and_too_big(page, stack, installed, clip_model):
    """A file that is no picture (by its first bytes, whatever its name), 51 pictures, one over 10 MB,
    a text model: each refuses the whole upload with the reason, and nothing is made."""
    sign_in(page, stack)
    token = page.get_attribute('meta[name="csrf-token"]', "content")
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    fields = {"name": "refused", "schema": "con_app", "model": clip_model, "csrf": token}
    png = _picture((1, 2, 3))
    with httpx.Client(cookies=cookies, headers={"Origin": stack["server"]}, timeout=60) as client:
        for form, files, said in (
                ({}, [("a.png", png), ("x.png", b"<html><script>alert(1)</script></html>")],
                 "x.png is not a picture"),
                ({}, [(f"p{i}.png", png) for i in range(51)], "51 files; the limit is 50"),
                ({}, [("big.png", b"\x89PNG\r\n\x1a\n" + b"\0" * (10 * 1024 * 1024))], "big.png is over 10 MB"),
                ({}, [], "No files were sent"),
                ({"model": "console-emb"}, [("a.png", png)], "not an image model")):
            r = client.post(stack["url"] + "/new/images", data={**fields, **form},
                            files=[("files", (n, d, "image/png")) for n, d in files] or [("x", ("", b"", "text/plain"))])
            assert r.status_code == 400 and said in r.text, (said, r.status_code, r.text[:300])
        r = client.post(stack["url"] + "/new/images", data={**fields, "csrf": "forged"},
                        files=[("files", ("a.png", png, "image/png"))])
        assert r.status_code == 403
    with as_role(installed, "con_owner") as o:
        assert o.execute("select to_regclass('con_app.refused')").fetchone()[0] is None


# -- hit test ----------------------------------------------------------------------------------------

def test_hit_test_english_and_chinese_side_by_side(page, stack):
    sign_in(page, stack)
    page.goto(stack["url"] + "/kbs/cdocs/search")
    page.fill("#q", "panda bamboo")
    page.select_option("#mode", "keyword")
    page.click("#search")
    hits = page.locator("#results-a li.hit")
    assert hits.count() >= 1 and '{"id": 1}' in hits.first.inner_text()
    assert "bamboo" in [m.lower() for m in page.locator("#results-a mark").all_inner_texts()]
    # a second configuration beside the first
    page.check("#compare")
    page.select_option("#b_mode", "hybrid")
    page.click("#search")
    assert page.locator("#results-b li.hit").count() >= 1
    shot(page, "hit-test")
    # Chinese
    page.fill("#q", "大熊猫吃什么")
    page.uncheck("#compare")
    page.click("#search")
    assert '{"id": 2}' in page.locator("#results-a li.hit").first.inner_text()
    assert any("熊猫" in m for m in page.locator("#results-a mark").all_inner_texts())
    # the whole document, the chunk marked
    page.locator("#results-a a.open-doc").first.click()
    assert page.locator("section.chunk.marked").count() == 1
    assert "竹子" in page.inner_text("section.chunk.marked")
    no_xss(page)


# -- ask -----------------------------------------------------------------------------------------------

def test_ask_streams_after_the_sources(stack):
    """The event order on the wire: the sources, then the answer's pieces, then done."""
    with httpx.Client(base_url=stack["url"]) as c:
        c.get("/signin")
        r = c.post("/signin", data={"key": stack["keys"]["con_owner"], "csrf": c.cookies["pgmind_pre"]})
        assert r.status_code == 303
        page = c.get("/kbs/cdocs/ask")
        token = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)
        with c.stream("POST", "/kbs/cdocs/ask", data={"question": "What do pandas eat?"},
                      headers={"X-CSRF-Token": token, "Origin": stack["server"]}) as s:
            assert s.headers["content-type"].startswith("text/event-stream")
            events = [json.loads(line[6:]) for line in s.iter_lines() if line.startswith("data: ")]
    types = [e["type"] for e in events]
    assert types[0] == "sources" and types[-1] == "done" and "delta" in types
    assert events[0]["sources"] and events[-1]["answered"]


def test_ask_in_the_browser_and_feedback_exported(page, stack, conn, tmp_path, settings):
    sign_in(page, stack)
    page.goto(stack["url"] + "/kbs/cdocs/ask")
    page.fill("#question", "What do pandas eat?")
    page.click("#ask")
    page.wait_for_selector("#feedback-box:not([hidden])")
    assert page.locator("#sources li.source").count() >= 1
    assert page.inner_text("#answer").strip()
    shot(page, "ask")
    # a citation opens its source with the chunk marked
    cite = page.locator("#answer a.cite").first
    assert cite.count() == 1
    # feedback: thumbs down and a corrected answer
    page.check("#thumb-up")
    page.fill("#correction", "Pandas eat bamboo.")
    page.click("#save-feedback")
    page.wait_for_selector("#feedback-saved")
    (n,) = conn.execute("select count(*) from ai.feedback where vectorizer = 'cdocs' and rating = 1 "
                        "and correction = 'Pandas eat bamboo.'").fetchone()
    assert n == 1
    # exported as a pgmind eval file, which eval reads
    with page.expect_download() as dl:
        page.click("#export")
    path = tmp_path / "feedback.jsonl"
    dl.value.save_as(path)
    from pgmind.evaluation import load_questions
    questions = load_questions(path)
    assert [q.question for q in questions] == ["What do pandas eat?"] and questions[0].gold
    cite.click()
    page.wait_for_url(re.compile(r"/doc\?"))
    assert page.locator("section.chunk.marked").count() == 1
    no_xss(page)
    # evaluated in the console: pgmind eval's retrieval scores on the feedback, then on a file
    page.click("#tab-eval")
    page.click("#run-eval")
    rows = page.locator("#eval-runs tr.eval-row[data-run='1'][data-lang='all']")
    assert rows.count() == 3                       # vector, keyword, hybrid
    assert page.locator("#eval-runs tr[data-run='1'][data-mode='keyword'][data-lang='all'] td.mrr").inner_text()
    questions = tmp_path / "questions.jsonl"
    questions.write_text(json.dumps({"question": "大熊猫吃什么", "lang": "zh", "gold": ["2"]}, ensure_ascii=False)
                         + "\n", encoding="utf-8")
    page.check("#source-file")
    page.set_input_files("#questions", str(questions))
    page.click("#run-eval")
    assert page.locator("#eval-runs tr.eval-row[data-run='2'][data-lang='zh']").count() == 3
    questions.write_text("\n".join(json.dumps(q, ensure_ascii=False) for q in (
        {"question": "大熊猫吃什么", "lang": "zh", "gold": ["2"], "facts": ["竹子"]},
        {"question": "What do pandas eat?", "lang": "en", "gold": ["1"], "facts": ["bamboo"]},
        {"question": "Who won the 2018 World Cup?", "lang": "en", "gold": []})) + "\n", encoding="utf-8")
    page.check("#source-file")
    page.set_input_files("#questions", str(questions))
    page.check("#with-answers")
    page.click("#run-eval")
    assert page.locator("#eval-runs tr.eval-row[data-run='3'][data-lang='zh']").count() == 3
    assert page.locator("#eval-runs tr.eval-row[data-run='1']").count() >= 3       # the earlier runs are kept
    # answers and declines per language (RAG as the role, the stand-in chat model echoes its prompt,
    # so it answers everything: the unanswerable question is not declined)
    assert page.locator("#eval-answers tr.answer-row[data-run='3']").count() == 3     # all, en, zh
    all_row = page.locator("#eval-answers tr.answer-row[data-run='3'][data-lang='all']")
    assert all_row.locator("td.declined").inner_text() == "0.0"
    assert page.locator("#last-answers tr.answered-q").count() == 3
    # the runs side by side: recall@5 and MRR per mode, and the answers, as SVG bars, one group a run
    assert page.locator("#eval-charts figure.chart").count() == 3
    assert page.locator("#chart-eval-1 svg rect.bar").count() >= 6
    assert "#3" in page.inner_text("#chart-eval-1") and "hybrid" in page.inner_text("#chart-eval-1 ul.legend")
    no_xss(page)
    shot(page, "eval")
    # kept in the pgmind home, so a restart keeps them: read back on a fresh page
    kept = list((settings.home / "console" / "eval").glob("*/*.jsonl"))
    assert len(kept) == 1 and len(kept[0].read_text(encoding="utf-8").splitlines()) == 3
    page.goto(stack["url"] + "/kbs/cdocs/eval")
    assert page.locator("#eval-runs tr.eval-row[data-run='3']").count() >= 3
    # bad files: a 400 that names the upload, not a temporary file
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n", encoding="utf-8")
    page.check("#source-file")
    page.set_input_files("#questions", str(bad))
    page.click("#run-eval")
    assert "bad.jsonl:1" in page.inner_text("#error-message") and "/tmp" not in page.inner_text("main")
    many = tmp_path / "many.jsonl"
    many.write_text("".join(json.dumps({"question": f"q{i}", "gold": ["1"]}) + "\n" for i in range(21)))
    page.goto(stack["url"] + "/kbs/cdocs/eval")
    page.check("#source-file")
    page.set_input_files("#questions", str(many))
    page.check("#with-answers")
    page.click("#run-eval")
    assert "the console answers at most 20" in page.inner_text("#error-message")


def test_a_decline_says_why(page, stack, installed):
    with as_role(installed, "con_owner") as o:
        o.execute("""select ai.configure_rag('cdocs', '{"threshold": 1}')""")
    try:
        sign_in(page, stack)
        page.goto(stack["url"] + "/kbs/cdocs/ask")
        page.fill("#question", "What do pandas eat?")
        page.click("#ask")
        page.wait_for_selector("#reason:not([hidden])")
        assert page.inner_text("#status") == "Declined"
        assert "does not contain the answer" in page.inner_text("#answer")
        # the reason is ai.rag_prompt's own (why_declined's sentence of its "decline"), not a number the
        # console worked out: the bar is the knowledge base's 1, the nearest passages link to their documents
        why = page.inner_text("#decline-why")
        assert why.startswith("(declined: the nearest passage's similarity ") and "below the threshold 1.000" in why
        reason = page.inner_text("#reason")
        assert "Best similarity" in reason and "Threshold" in reason and "1.000" in reason
        assert "Nearest passages" in reason and "Topic score" not in reason
        links = page.locator("#reason a.nearest-link")
        assert links.count() >= 1
        href = links.first.get_attribute("href")
        assert "/kbs/cdocs/doc?key=" in href and "#chunk-" in href
        shot(page, "ask-declined")
        links.first.click()
        page.wait_for_url(re.compile(r".*/kbs/cdocs/doc\?key=.*"))
        assert page.locator("[id^=chunk-]").count() >= 1
        # a Chinese question gets the sentence in Chinese (the console's language is English)
        page.goto(stack["url"] + "/kbs/cdocs/ask")
        page.fill("#question", "大熊猫吃什么?")
        page.click("#ask")
        page.wait_for_selector("#decline-why")
        assert page.inner_text("#decline-why").startswith("（已拒答：最相近段落的相似度")
    finally:
        with as_role(installed, "con_owner") as o:
            o.execute("""select ai.configure_rag('cdocs', '{"threshold": -1}')""")


# -- privilege, escaping, CSRF, bad input -----------------------------------------------------------

def test_another_role_sees_nothing_of_the_first_ones(page, stack):
    sign_in(page, stack, "con_other")
    assert page.locator("#no-kbs").count() == 1
    for path in ("/kbs/cdocs", "/kbs/cdocs?state=quarantined", "/kbs/cdocs/search?q=panda",
                 '/kbs/cdocs/doc?key={"id":%201}', "/kbs/cdocs/ask", "/kbs/cdocs/feedback.jsonl"):
        response = page.goto(stack["url"] + path)
        assert response.status == 404, path
        body = page.inner_text("body")
        assert "No knowledge base of that name that you can see." in body
        assert "bamboo" not in body and "panda" not in body.lower().replace("q=panda", "")
    # a state-changing request with its own session's token: still not found
    token = page.get_attribute('meta[name="csrf-token"]', "content")
    r = page.request.post(stack["url"] + "/kbs/cdocs/retry", form={"csrf": token},
                          headers={"Origin": stack["server"]})
    assert r.status == 404


def test_markup_in_documents_runs_nothing(page, stack):
    sign_in(page, stack)
    for path in ("/kbs/cdocs", '/kbs/cdocs/doc?key={"id":%205}', "/kbs/cdocs/search?q=xss&mode=keyword"):
        page.goto(stack["url"] + path)
        assert "<script>window.__xss = 1</script>" in page.inner_text("main"), path
        no_xss(page)
    page.goto(stack["url"] + "/kbs/cdocs/ask")
    page.fill("#question", "熊猫 xss")
    page.click("#ask")
    page.wait_for_selector("#feedback-box:not([hidden])")
    assert "<img" in page.inner_text("#sources") or "<img" in page.inner_text("#answer")
    no_xss(page)
    shot(page, "xss")


def test_a_request_from_another_origin_is_refused(page, stack, conn):
    """A page of another site posts the feedback form: the browser does not send the SameSite=Strict
    cookie, and without it, or with it but from the wrong origin or without the token, nothing is
    stored."""
    attack = ('<form id="f" method="post" action="%s/kbs/cdocs/feedback">'
              '<input name="question" value="csrf"><input name="rating" value="up"></form>'
              '<script>document.getElementById("f").submit()</script>' % stack["url"])

    class Evil(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(attack.encode())

        def log_message(self, *a):
            pass
    evil = ThreadingHTTPServer(("127.0.0.1", 0), Evil)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        sign_in(page, stack)
        page.goto(f"http://localhost:{evil.server_address[1]}/")
        page.wait_for_load_state("networkidle")
        # the session's own cookie, but another origin / no token
        token = page.context.cookies()
        r1 = page.request.post(stack["url"] + "/kbs/cdocs/feedback",
                               form={"question": "csrf", "rating": "up"}, headers={"Origin": stack["server"]})
        r2 = page.request.post(stack["url"] + "/kbs/cdocs/feedback",
                               form={"question": "csrf", "rating": "up"},
                               headers={"Origin": "http://evil.example"})
        assert r1.status == 403 and r2.status == 403 and token
    finally:
        evil.shutdown()
    assert conn.execute("select count(*) from ai.feedback where question = 'csrf'").fetchone()[0] == 0


def test_a_roles_own_code_never_runs_in_the_consoles_session(page, stack, installed):
    """A review found two ways in (both critical, fixed): a function of the role's own, in a schema on
    its search path, standing in for a built-in the console's queries call (starts_with(name, text)
    beats pg_catalog's starts_with(text, text)), and deleting a key the source lacks, which deleted
    from the chunk table as the role (its triggers: the owner's code).  The gateway's sessions resolve
    names in pg_catalog only, and a key the source lacks is an error."""
    with connect(installed, autocommit=True) as c:
        c.execute("drop schema if exists con_owner cascade")
        c.execute("create schema con_owner authorization con_owner")
    try:
        with as_role(installed, "con_owner") as o:
            o.execute("""create function con_owner.starts_with(name, text) returns boolean language plpgsql
                         as $$ begin raise exception 'the role''s own code ran'; end $$""")
            o.execute("""create function con_owner.lower(text) returns text language plpgsql
                         as $$ begin raise exception 'the role''s own code ran'; end $$""")
        sign_in(page, stack)
        for path in ("/new", "/new/table", "/kbs", "/kbs/cdocs"):
            page.goto(stack["url"] + path)
            assert "own code ran" not in page.content(), path
        token = page.get_attribute('meta[name="csrf-token"]', "content")
        r = page.request.post(stack["url"] + "/kbs/cdocs/delete", form={"key": '{"id": 424242}', "csrf": token},
                              headers={"Origin": stack["server"]})
        assert r.status == 400 and "has no row with that key" in r.text()
    finally:
        with connect(installed, autocommit=True) as c:
            c.execute("drop schema if exists con_owner cascade")


def test_bad_input_gives_an_error_page(page, stack):
    sign_in(page, stack)
    cases = {"/kbs/cdocs/search?q=" + "x" * 3000: "question has 3000 characters",
             "/kbs/cdocs/search?q=a%00b": "NUL",
             "/kbs/cdocs/search?q=panda&k=100000": "k is 100000",
             "/kbs/cdocs/search?q=panda&mode=%3Cscript%3E": "unknown mode",
             "/kbs/cdocs/doc?key=%7Bnot-json": "not valid",
             "/kbs/Robert');drop table x;--": "No knowledge base"}
    for path, said in cases.items():
        response = page.goto(stack["url"] + path)
        assert 400 <= response.status < 500, path
        assert said in page.inner_text("main"), path
        assert "Traceback" not in page.content()
        no_xss(page)
    page.goto(stack["url"] + "/kbs/cdocs/search?q=%ED%A0%80panda")    # a lone surrogate's bytes
    assert "Traceback" not in page.content()
    shot(page, "error")


def test_an_unknown_console_address_is_an_html_404(page, stack):
    sign_in(page, stack)
    response = page.goto(stack["url"] + "/no/such/page")
    assert response.status == 404 and "No such page." in page.inner_text("#error-message")


def test_a_wrong_or_ended_session_goes_to_sign_in(browser, stack):
    context = browser.new_context()
    context.add_cookies([{"name": "pgmind_session", "value": "forged", "url": stack["server"] + "/console"}])
    pg = context.new_page()
    pg.goto(stack["url"] + "/kbs/cdocs")
    assert "/console/signin" in pg.url and "Your session has ended" in pg.inner_text("#notice")
    context.close()


def test_chinese_interface_and_the_switch(browser, stack):
    context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.goto(stack["url"] + "/signin")
    assert pg.inner_text("h1") == "登录"
    pg.fill("#key", stack["keys"]["con_owner"])
    pg.click("#signin")
    pg.wait_for_url(re.compile(r"/console/kbs$"))
    assert pg.inner_text("h1") == "知识库"
    pg.goto(stack["url"] + "/kbs/cdocs/search?q=大熊猫&mode=hybrid")
    shot(pg, "hit-test-zh")
    pg.click("#lang-switch")
    assert pg.inner_text("h1").startswith("Hit test")
    pg.click("#lang-switch")
    assert pg.inner_text("h1").startswith("命中测试")
    context.close()



def test_feedback_rows_are_the_writers_and_the_owners(stack, installed):
    """ai.feedback's row security: a role writes rows as itself only, about a knowledge base it may
    search, and reads its own; the knowledge base's owner reads (and may delete) every row about it;
    nobody else reads them."""
    import psycopg
    insert = ("insert into ai.feedback (vectorizer_id, vectorizer, question, answered, rating) "
              "values (ai_internal._vectorizer_id('cdocs'), 'cdocs', %s, false, -1)")
    with as_role(installed, "con_other") as other, as_role(installed, "con_owner") as owner:
        # not allowed to search cdocs: no feedback about it
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            other.execute(insert, ("rls refused",))
        (store,) = owner.execute("select store from ai_internal._search_target('cdocs', current_user)").fetchone()
        owner.execute(f"grant usage on schema con_app to con_other; grant select on con_app.docs, {store} to con_other")
        try:
            other.execute(insert, ("rls other",))
            owner.execute(insert, ("rls owner",))
            mine = lambda c: sorted(r[0] for r in c.execute(  # noqa: E731
                "select question from ai.feedback where question like 'rls %'"))
            assert mine(owner) == ["rls other", "rls owner"] and mine(other) == ["rls other"]
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                other.execute("insert into ai.feedback (vectorizer_id, vectorizer, question, answered, rating, "
                              "created_by) values (ai_internal._vectorizer_id('cdocs'), 'cdocs', 'rls forged', true, "
                              "1, 'con_owner')")
            assert other.execute("delete from ai.feedback where question like 'rls %'").rowcount == 0
            assert owner.execute("delete from ai.feedback where question like 'rls %'").rowcount == 2
        finally:
            owner.execute(f"revoke select on con_app.docs, {store} from con_other; "
                          "revoke usage on schema con_app from con_other")



def test_health_is_for_administrators_only(browser, page, stack, installed):
    with connect(installed, autocommit=True) as c:
        if c.execute("select 1 from pg_roles where rolname = 'con_admin'").fetchone():
            c.execute("drop owned by con_admin cascade")
            c.execute("drop role con_admin")
        c.execute("create role con_admin")
        c.execute("grant pgmind_admin to con_admin")
        # (ai.vectorizer_status raises 42501 for a role without usage on a chunk table's schema, in
        # psql as in the console: the view's to_regclass needs it)
        c.execute("grant usage on schema con_app to con_admin")
        admin_key = c.execute("select ai.create_api_key('con_admin')").fetchone()[0]
        c.execute("""insert into ai.vectorizer_progress (vectorizer_id, version, at, rows, chunks, worker_id)
                     select v.id, 1, now() - make_interval(mins => m), 40 + m, 40 + m, 'console-test'
                     from ai.vectorizers v, generate_series(3, 9) m where v.name = 'cdocs'""")
        # a row waiting five minutes: the queue's lag
        c.execute("""insert into ai.vectorizer_queue (vectorizer_id, version, key, queued_at)
                     select v.id, 1, '{"id": 777777}', now() - interval '5 minutes'
                     from ai.vectorizers v where v.name = 'cdocs'""")
    try:
        # not an administrator: no link, the page is "not found", and the throughput is refused (42501)
        sign_in(page, stack)
        assert page.locator("#nav-health").count() == 0
        assert page.goto(stack["url"] + "/health").status == 404
        import psycopg
        with as_role(installed, "con_other") as o:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                o.execute("select * from ai_internal._throughput_minutes(60)")
        context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
        admin = context.new_page()
        admin.goto(stack["url"] + "/signin")
        admin.fill("#key", admin_key)
        admin.click("#signin")
        admin.wait_for_url(re.compile(r"/console/kbs$"))
        assert "(administrator)" in admin.inner_text("#who")
        assert admin.locator("tr.kb-row[data-kb=cdocs]").count() == 1      # administrators see every status
        admin.click("#nav-health")
        assert "PostgreSQL" in admin.inner_text("#health-services")
        assert "cdocs" in admin.inner_text("#queues")
        # throughput: the rows written per minute in the last hour, a line per knowledge base
        chart = admin.locator("#chart-throughput")
        assert "cdocs" in chart.locator("ul.legend").inner_text()
        assert chart.locator("svg polyline.line").count() >= 1
        # the queue lag over time: the console's own samples, one a minute (this minute's at least)
        lag = admin.locator("#chart-lag")
        assert "cdocs" in lag.locator("ul.legend").inner_text()
        assert lag.locator("svg polyline.line, svg circle").count() >= 1
        top = int(re.search(r"\n(\d+)\n0\n", lag.inner_text()).group(1))
        assert 330 <= top < 400        # the y axis: 1.1 × the lag, five minutes and the test's seconds
        shot(admin, "health")
        context.close()
    finally:
        with connect(installed, autocommit=True) as c:
            c.execute("delete from ai.vectorizer_progress where worker_id = 'console-test'")
            c.execute("""delete from ai.vectorizer_queue where key = '{"id": 777777}'""")
            c.execute("drop owned by con_admin cascade")
            c.execute("drop role con_admin")


CALLS_MODEL = "console-calls-<b>m</b>"
CALLS_ROLE = "<script>window.__xss = 1</script>"       # a role name in the log: any text PostgreSQL allows


@pytest.fixture
def call_log_admin(installed):
    """con_calls_admin (a pgmind administrator with an API key) and 60 calls of a model whose name,
    caller and error texts are markup: 55 ok, 5 errors, one a minute over the last hour."""
    with connect(installed, autocommit=True) as c:
        if c.execute("select 1 from pg_roles where rolname = 'con_calls_admin'").fetchone():
            c.execute("drop owned by con_calls_admin cascade")
            c.execute("drop role con_calls_admin")
        c.execute("create role con_calls_admin login")
        c.execute("grant pgmind_admin to con_calls_admin")
        key = c.execute("select ai.create_api_key('con_calls_admin')").fetchone()[0]
        c.execute("delete from ai.call_log where model_id = %s", (CALLS_MODEL,))
        c.execute("""insert into ai.call_log (called_at, model_id, provider, operation, client, caller, items,
                                              latency_ms, status, http_status, error)
                     select now() - make_interval(mins => i), %s, 'openai', case when i %% 2 = 0 then 'embed' else 'chat' end,
                            'sql', %s, 1, 10 + i, case when i %% 12 = 0 then 'error' else 'ok' end,
                            case when i %% 12 = 0 then 500 end,
                            case when i %% 12 = 0 then %s || i end
                     from generate_series(0, 59) i""", (CALLS_MODEL, CALLS_ROLE, XSS + " failed #"))
    yield key
    with connect(installed, autocommit=True) as c:
        c.execute("delete from ai.call_log where model_id = %s", (CALLS_MODEL,))
        c.execute("drop owned by con_calls_admin cascade")
        c.execute("drop role con_calls_admin")


def test_call_log_for_administrators_only(browser, page, stack, installed, call_log_admin):
    import psycopg
    # not an administrator: no link, the page is "not found", and the functions refuse the role (42501)
    sign_in(page, stack)
    page.goto(stack["url"] + "/models")
    assert page.locator("#call-log-link").count() == 0
    assert page.goto(stack["url"] + "/models/calls").status == 404
    with as_role(installed, "con_other") as o:
        for q in ("select * from ai_internal._call_log_page(null, null, null, false, null, null, null, 10)",
                  "select * from ai_internal._call_log_minutes(null, null, null, 60)"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                o.execute(q)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            o.execute("select * from ai.call_log limit 1")
    # an administrator reads the page of calls, without payloads
    with as_role(installed, "con_calls_admin") as a:
        got = a.execute("select count(*) from ai_internal._call_log_page(%s, null, null, false, null, null, null, 500)",
                        (CALLS_MODEL,)).fetchone()[0]
        assert got == 60
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            a.execute("select * from ai.call_log limit 1")          # the table itself stays the service's
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
    admin = context.new_page()
    admin.dialogs = []
    admin.on("dialog", lambda d: (admin.dialogs.append(d.message), d.accept()))
    try:
        admin.goto(stack["url"] + "/signin")
        admin.fill("#key", call_log_admin)
        admin.click("#signin")
        admin.wait_for_url(re.compile(r"/console/kbs$"))
        admin.click("#nav-models")
        admin.click("#call-log-link")
        admin.fill("#f-model", CALLS_MODEL)
        admin.click("#apply-filters")
        rows = admin.locator("#calls tr.call")
        assert rows.count() == 50                              # a page; the next one starts below its last id
        assert CALLS_MODEL in admin.inner_text("#calls") and CALLS_ROLE in admin.inner_text("#calls")
        assert admin.locator("#recent-errors tr").count() == 1 + 5
        assert XSS + " failed #0" in admin.inner_text("#recent-errors")
        # the charts: inline SVG, bars of calls, lines of latency, drawn without script
        assert admin.locator("#chart-calls svg rect.bar").count() >= 55
        assert admin.locator("#chart-latency svg polyline.line").count() >= 2
        no_xss(admin)
        shot(admin, "call-log")
        ids = [int(r) for r in rows.evaluate_all("rs => rs.map(r => r.dataset.id)")]
        admin.click("#next-page")
        older = [int(r) for r in admin.locator("#calls tr.call").evaluate_all("rs => rs.map(r => r.dataset.id)")]
        assert len(older) == 10 and max(older) < min(ids)
        # filters: errors only, one operation, a time range
        admin.goto(stack["url"] + "/models/calls?errors=1&model=" + quote(CALLS_MODEL))
        assert admin.locator("#calls tr.call").count() == 5
        assert admin.locator("#calls tr.call.ok").count() == 0
        admin.goto(stack["url"] + "/models/calls?operation=chat&model=" + quote(CALLS_MODEL))
        assert admin.locator("#calls tr.call").count() == 30
        assert "1" in admin.locator("#calls tr.call td").nth(6).inner_text()        # items
        admin.goto(stack["url"] + "/models/calls?since=2000-01-01T00:00&until=2000-01-02T00:00&model="
                   + quote(CALLS_MODEL))
        assert admin.locator("#no-calls").count() == 1
        # bad filters: a 400 page that says what is wrong, never a 500
        cases = {"?model=a%00b": "NUL", "?since=yesterday": "not a date and time",
                 "?since=2026-13-45T99:99": "not a date and time",
                 "?since=0001-01-01T00:00%2B05:00": "not a date and time",
                 "?until=9999-12-31T23:59-05:00": "not a date and time", "?until=" + "9" * 5000: "until has",
                 "?operation=%3Cscript%3E": "unknown operation", "?caller=" + "r" * 100: "caller has",
                 "?before=-1": "before is -1", "?before=abc": "not a whole number",
                 "?since=2026-12-07T10:00&until=2026-12-07T09:00": "time range is empty",
                 "?model=" + "m" * 300: "model has"}
        for query, said in cases.items():
            response = admin.goto(stack["url"] + "/models/calls" + query)
            assert response.status == 400, query
            assert said in admin.inner_text("main"), query
            assert "Traceback" not in admin.content()
        response = admin.goto(stack["url"] + "/models/calls?caller=%ED%A0%80x")       # a lone surrogate's bytes
        assert response.status < 500 and "Traceback" not in admin.content()
        no_xss(admin)
    finally:
        context.close()


def test_create_a_kb_over_an_existing_table_with_a_chunk_preview(page, stack, installed, settings):
    with as_role(installed, "con_owner") as o:
        o.execute("create table con_app.notes (id int primary key, body text, n int)")
        o.execute("insert into con_app.notes values (1, %s, 1), (2, %s, 2), (3, %s, 3), (4, 'four', 4)",
                  ("one two three " * 20, XSS, "大熊猫吃竹子。" * 10))
        o.execute("create table con_app.trig (id int primary key, body text)")
        o.execute("create function con_app.noisy() returns trigger language plpgsql as "
                  "$$ begin return new; end $$")
        o.execute("create trigger noisy before insert on con_app.trig for each row execute function con_app.noisy()")
    try:
        sign_in(page, stack)
        page.goto(stack["url"] + "/new")
        page.click("#from-table")
        options = page.locator("#table option").all_inner_texts()
        assert "con_app.notes" in options and "con_app.docs" in options
        page.select_option("#table", "con_app.notes")
        page.click("#choose-table")
        assert page.locator("#column option").all_inner_texts() == ["body"]      # the text columns only
        page.fill("#max-tokens", "8")
        page.fill("#overlap", "0")
        page.click("#preview")
        rows = page.locator("#chunk-preview .preview-row")
        assert rows.count() == 3                                                  # 3 rows, cut by the chunker
        assert page.locator("#chunk-preview .preview-chunk").count() > 3
        assert XSS in page.inner_text("#chunk-preview") or "xss" in page.inner_text("#chunk-preview")
        no_xss(page)
        shot(page, "new-from-table")
        # no CSRF token: refused; bad input: a 400 page that says what is wrong
        assert page.request.post(stack["url"] + "/new/table", form={"table": "con_app.notes", "column": "body",
                                                                    "action": "preview"}).status == 403
        csrf = page.locator("#kb-table-form input[name=csrf]").get_attribute("value")
        base = {"csrf": csrf, "table": "con_app.notes", "column": "body", "action": "preview"}
        cases = [({"column": "body); drop table con_app.notes; --"}, "no text column"),
                 ({"column": "n"}, "no text column"),
                 ({"table": "ai.call_log"}, "no table"),
                 ({"table": "con_app.notes\x00"}, "NUL"),
                 ({"max_tokens": "99999"}, "max_tokens is 99999"),
                 ({"max_tokens": "16", "overlap": "8"}, "invalid chunk sizes"),
                 ({"method": "<script>"}, "unknown chunking method"),
                 ({"action": "create", "name": "Bad Name", "model": "console-emb"}, "invalid knowledge base name"),
                 ({"action": "create", "name": "cnotes", "model": "no-such"}, "not an embedding model")]
        for change, said in cases:
            r = page.request.post(stack["url"] + "/new/table", form={**base, **change},
                                  headers={"Origin": stack["server"]})
            assert r.status == 400, change
            assert said in r.text(), change
        # a table with a trigger of its owner's: refused before any of it is read
        page.goto(stack["url"] + "/new/table?table=con_app.trig")
        page.click("#preview")
        assert "plain table" in page.inner_text("main")
        # create: ai.create_vectorizer as the role, then the worker embeds the 4 rows
        page.goto(stack["url"] + "/new/table?table=con_app.notes")
        page.fill("#kb-name", "cnotes")
        page.select_option("#kb-model", "console-emb")
        page.fill("#max-tokens", "64")
        page.fill("#overlap", "8")
        page.click("#create-kb")
        page.wait_for_url(re.compile(r"/console/kbs/cnotes"))
        with as_role(installed, "con_owner") as o:
            v = o.execute("select source, chunking->>'max_tokens' from ai.vectorizer_status "
                          "where name = 'cnotes'").fetchone()
        assert v == ("con_app.notes", "64")
        drain(settings, installed, "cnotes")
        with as_role(installed, "con_owner") as o:
            assert o.execute("select done, pending from ai.vectorizer_status where name = 'cnotes'").fetchone() == (4, 0)
    finally:
        with connect(installed, autocommit=True) as c:
            c.execute("select ai.drop_vectorizer('cnotes') where exists (select 1 from ai.vectorizer_status "
                      "where name = 'cnotes')")
            c.execute("drop table if exists con_app.notes, con_app.trig")
            c.execute("drop function if exists con_app.noisy()")


def test_models_masked_and_tested(page, stack):
    sign_in(page, stack)
    page.click("#nav-models")
    row = page.locator("tr.model[data-model=console-emb]")
    assert row.count() == 1
    assert "sk-console-1" not in page.content() and "********" in row.locator(".auth").inner_text()
    row.locator("button.test-model").click()
    assert "8 dimensions" in page.inner_text("#test-result")
    page.locator("tr.model[data-model=console-chat] button.test-model").click()
    assert "echo:" in page.inner_text("#test-result")



def test_alter_builds_a_new_version_that_takes_over(page, stack, installed, settings):
    sign_in(page, stack)
    page.goto(stack["url"] + "/kbs/cdocs")
    page.click("#alter-box summary")
    page.fill("#alter-chunking", '{"method": "none", "max_tokens": 128}')
    page.click("#alter")
    assert page.inner_text("#notice") == "A new version is being built."
    assert "building" in page.inner_text("#versions")
    page.goto(stack["url"] + "/kbs/cdocs")
    page.click("#alter-box summary")
    page.fill("#alter-chunking", "[not json")
    page.click("#alter")
    assert "not valid JSON" in page.inner_text("#error-message")
    drain(settings, installed)
    page.goto(stack["url"] + "/kbs/cdocs")
    versions = page.inner_text("#versions")
    assert "v2" in versions and "building" not in versions and '"max_tokens": 128' in versions



def pictures_drawn(page) -> None:
    """Waits until every picture of the grid has loaded and was decoded by the browser."""
    for img in page.locator("#image-hits img.thumb").all():
        img.scroll_into_view_if_needed()
        for _ in range(50):
            if img.evaluate("i => i.complete && i.naturalWidth > 0"):
                break
            page.wait_for_timeout(100)
        else:
            raise AssertionError(f"a picture did not load: {img.get_attribute('src')}")


def test_image_search_by_words_and_by_picture(browser, page, stack, installed, settings, tmp_path):
    """An image collection on a clip-as-service stand-in: listed with the knowledge bases, found by
    words and by an uploaded picture, a grid of the pictures themselves (served by the console as the
    role, re-encoded) with their names, escaped (a file named as markup); uploads that are no picture
    or too big are refused, a request without the token too; another role gets no picture, and a key
    is no path."""
    import io
    from PIL import Image

    def png(colour) -> bytes:
        out = io.BytesIO()
        Image.new("RGB", (64, 48), colour).save(out, format="PNG")
        return out.getvalue()
    folder = tmp_path / "pics"
    folder.mkdir()
    evil = "<img src=x onerror=alert(1)>red"
    for name, colour in ((evil + ".png", (220, 30, 30)), ("blue.png", (30, 30, 220))):
        (folder / name).write_bytes(png(colour))
    standin = StandIn(dim=16)
    with connect(installed, autocommit=True) as c:
        c.execute("select ai.drop_model('console-clip', if_exists => true)")
        c.execute("""select ai.create_model('console-clip', %s, 'clip', 'image_embedding', 'ViT-B-32',
                                            '{"author_type": "token", "token": "t"}')""", (standin.url + "/post",))
        c.execute("select ai.grant_model('console-clip', 'con_owner')")
        c.execute("select ai.allow_load_from(%s)", (str(folder),))
    try:
        with as_role(installed, "con_owner") as o:
            o.execute("create table con_app.pics (id int primary key, path text not null)")
            o.execute("insert into con_app.pics values (1, %s), (2, %s)",
                      (str(folder / (evil + ".png")), str(folder / "blue.png")))
            o.execute("select ai.create_vectorizer('con_app.pics'::regclass, name => 'cpics', content => 'path', "
                      "model => 'console-clip', modality => 'image', labels => 0)")
        drain(settings, installed, "cpics")
        with connect(installed, autocommit=True) as c:
            # labels and text read in the picture (OCR) as the vectorizer writes them, markup included
            (store,) = c.execute("select store from ai_internal._search_target('cpics', current_user)").fetchone()
            c.execute(f"update {store} set chunk = %s where id = 2",
                      ("blue\ncat 90%; <i>dog</i> 5%\n<script>window.__xss = 1</script>熊猫 OCR",))
        sign_in(page, stack)
        assert page.locator("tr.kb-row[data-kb=cpics] a.badge.images").count() == 1
        assert page.locator("tr.kb-row[data-kb=cdocs] a.badge.images").count() == 0
        page.click("tr.kb-row[data-kb=cpics] a.badge.images")
        page.fill("#image-q", "a red picture")
        page.click("#image-search")
        assert page.locator("#image-hits li.image-hit").count() == 2
        # the pictures themselves, made by the console (decoded: the browser drew them)
        pictures_drawn(page)
        assert evil in page.inner_text("#image-hits")
        labels = page.locator("#image-hits li.image-hit .labels").all_inner_texts()
        assert any("cat 90%; <i>dog</i> 5%" in x and "<script>window.__xss = 1</script>熊猫 OCR" in x for x in labels)
        no_xss(page)
        src = page.locator("#image-hits img.thumb").first.get_attribute("src")
        r = page.request.get(stack["server"] + src)
        assert r.status == 200 and r.headers["content-type"] in ("image/png", "image/jpeg")
        assert r.headers["x-content-type-options"] == "nosniff"
        (tmp_path / "query.png").write_bytes(png((200, 40, 40)))
        page.set_input_files("#picture", str(tmp_path / "query.png"))
        page.click("#picture-search")
        assert page.locator("#image-hits li.image-hit").count() == 2
        pictures_drawn(page)
        shot(page, "images")
        (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
        page.goto(stack["url"] + "/kbs/cpics/images")
        page.set_input_files("#picture", str(tmp_path / "broken.png"))
        with page.expect_response(lambda r: r.request.method == "POST") as answer:
            page.click("#picture-search")
        assert answer.value.status < 500 and "Traceback" not in page.content()
        no_xss(page)
        # uploads: not a picture, too big, no token
        token = page.get_attribute('meta[name="csrf-token"]', "content")
        url = stack["url"] + "/kbs/cpics/images"

        def upload(data: bytes, with_token=True):
            return page.request.post(url, headers={"Origin": stack["server"]}, multipart={
                **({"csrf": token} if with_token else {}),
                "picture": {"name": "p.png", "mimeType": "image/png", "buffer": data}})
        r = upload(b"<html><script>alert(1)</script></html>")
        assert r.status == 400 and "not a picture" in r.text()
        r = upload(b"\x89PNG\r\n\x1a\n" + b"\0" * (11 * 1024 * 1024))
        assert r.status == 400 and "over 10 MB" in r.text()
        assert upload(png((1, 2, 3)), with_token=False).status == 403
        # a key is a key: no path in it reaches the file system, and a key the table lacks is not found
        for key, status in (('{"id": "../../../etc/passwd"}', 400), ('{"id": 99}', 404), ("[1]", 400)):
            assert page.request.get(stack["url"] + "/kbs/cpics/picture?key=" + quote(key)).status == status, key
        # a text knowledge base: no picture to show (its content is an expression, not one column)
        assert page.request.get(stack["url"] + '/kbs/cdocs/picture?key=' + quote('{"id": 1}')).status == 403
        page.goto(stack["url"] + "/kbs/cdocs/images")
        assert page.locator("#not-images").count() == 1 and page.locator("#tab-images").count() == 0
        # an image collection's pages: its documents and the image search; the text pages say so
        for path in ("/kbs/cpics/search?q=red", "/kbs/cpics/ask", "/kbs/cpics/eval"):
            page.goto(stack["url"] + path)
            assert page.locator("#image-kb").count() == 1 and page.locator("#tab-search").count() == 0, path
        page.click("#to-images")
        assert page.locator("#images-words").count() == 1
        # a picture's document page shows it above its text
        page.goto(stack["url"] + '/kbs/cpics/doc?key=' + quote('{"id": 2}'))
        assert page.locator("#tab-images").count() == 1 and "blue" in page.inner_text("#document")
        page.wait_for_function("() => document.getElementById('doc-picture').naturalWidth > 0")
        # another role: not found, the page and the pictures
        context = browser.new_context()
        other = context.new_page()
        sign_in(other, stack, "con_other")
        assert other.goto(stack["url"] + "/kbs/cpics/images?q=red").status == 404
        assert other.request.get(stack["server"] + src).status == 404
        context.close()
    finally:
        with connect(installed, autocommit=True) as c:
            c.execute("select ai.drop_vectorizer('cpics') where exists (select 1 from ai.vectorizer_status "
                      "where name = 'cpics')")
            c.execute("drop table if exists con_app.pics")
            c.execute("select ai.disallow_load_from(%s)", (str(folder),))
            c.execute("select ai.drop_model('console-clip', if_exists => true)")
        standin.close()

def _admin_page(browser, stack, installed, role: str):
    """A page signed in as a fresh pgmind administrator ``role`` (made here; the caller drops it)."""
    with connect(installed, autocommit=True) as c:
        if c.execute("select 1 from pg_roles where rolname = %s", (role,)).fetchone():
            c.execute(f"drop owned by {role} cascade")
            c.execute(f"drop role {role}")
        c.execute(f"create role {role}")
        c.execute(f"grant pgmind_admin to {role}")
        key = c.execute("select ai.create_api_key(%s)", (role,)).fetchone()[0]
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.dialogs = []
    pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.accept()))
    pg.goto(stack["url"] + "/signin")
    pg.fill("#key", key)
    pg.click("#signin")
    pg.wait_for_url(re.compile(r"/console/kbs$"))
    return context, pg


def _drop_role(installed, role: str) -> None:
    with connect(installed, autocommit=True) as c:
        c.execute(f"drop owned by {role} cascade")
        c.execute(f"drop role {role}")


def test_models_registered_granted_and_revoked_by_an_administrator(browser, page, stack, installed, conn):
    """Register a model (its secret stored, never shown), grant it to a role and take it back, from the
    page, through ai.create_model / ai.grant_model / ai.revoke_model as the administrator; others get
    no form and "not found", and a request without the token is refused."""
    secret = "sk-registered-secret-4242"
    conn.execute("select ai.drop_model('console-reg', if_exists => true)")
    context, admin = _admin_page(browser, stack, installed, "con_madmin")
    try:
        admin.click("#nav-models")
        admin.click("#register-box summary")
        admin.fill("#r-model-id", "console-reg")
        admin.select_option("#r-type", "embedding")
        admin.select_option("#r-provider", "openai")
        admin.fill("#r-name", '<img src=x onerror="window.__xss = 1">emb')
        admin.fill("#r-url", stack["standin"].url + "/v1")
        admin.select_option("#r-auth", "token")
        admin.fill("#r-token", secret)
        admin.fill("#r-options", '{"dimensions": 8}')
        admin.click("#register")
        admin.wait_for_url(re.compile(r"/console/models\?notice=registered"))
        assert admin.inner_text("#notice") == "Model console-reg registered."
        row = admin.locator("tr.model[data-model=console-reg]")
        assert row.count() == 1 and "********" in row.locator(".auth").inner_text()
        assert secret not in admin.content() and secret not in admin.url
        assert '<img src=x onerror="window.__xss = 1">emb' in row.inner_text()
        no_xss(admin)
        owner, name, dims = conn.execute("select owner, model_name, dimensions from ai.models "
                                         "where model_id = 'console-reg'").fetchone()
        assert owner == "con_madmin" and name.endswith(">emb") and dims == 8
        # grant it to con_other, then take it back
        row.locator(".grant-role").fill("con_other")
        row.locator("button.grant").click()
        assert admin.inner_text("#notice") == "Grant on console-reg given."
        assert "con_other" in admin.locator("tr.model[data-model=console-reg] td.grantees").inner_text()
        assert conn.execute("select ai_internal._may_use('con_other', 'console-reg')").fetchone()[0]
        admin.click("#register-box summary")
        shot(admin, "models")
        admin.click("#register-box summary")
        admin.locator("tr.model[data-model=console-reg] .grant-role").fill("con_other")
        admin.locator("tr.model[data-model=console-reg] button.revoke").click()
        assert admin.inner_text("#notice") == "Grant on console-reg taken back."
        assert not conn.execute("select ai_internal._may_use('con_other', 'console-reg')").fetchone()[0]
        # the database's own errors, shown: an unknown role, a duplicate id, bad options
        admin.locator("tr.model[data-model=console-reg] .grant-role").fill("no_such_role")
        admin.locator("tr.model[data-model=console-reg] button.grant").click()
        assert "does not exist" in admin.inner_text("#error-message")
        assert admin.inner_text("#error-sqlstate") == "42704"
        admin.goto(stack["url"] + "/models")
        token = admin.get_attribute('meta[name="csrf-token"]', "content")
        base = {"csrf": token, "model_id": "console-reg", "type": "embedding", "provider": "openai",
                "name": "m", "url": stack["standin"].url + "/v1", "auth_kind": "none"}
        for change, said in (({}, "already exists"), ({"model_id": "<b>x</b>"}, "invalid model id"),
                             ({"model_id": "x2", "options": "[1"}, "not a JSON object"),
                             ({"model_id": "x2", "type": "<script>"}, "Unknown model type"),
                             ({"model_id": "x2", "auth_kind": "token", "token": ""}, "token is empty")):
            r = admin.request.post(stack["url"] + "/models/register", form={**base, **change},
                                   headers={"Origin": stack["server"]})
            assert r.status in (400, 409), change
            assert said in r.text(), change
        # no token: refused, and nothing granted
        r = admin.request.post(stack["url"] + "/models/grant", form={"model": "console-reg", "role": "con_other"})
        assert r.status == 403
        assert not conn.execute("select ai_internal._may_use('con_other', 'console-reg')").fetchone()[0]
    finally:
        context.close()
        conn.execute("select ai.drop_model('console-reg', if_exists => true)")
        _drop_role(installed, "con_madmin")
    # not an administrator: no forms, and the actions are "not found"
    sign_in(page, stack)
    page.click("#nav-models")
    assert page.locator("#register-form").count() == 0 and page.locator("form.grant-form").count() == 0
    token = page.get_attribute('meta[name="csrf-token"]', "content")
    for path, form in (("/models/register", {"model_id": "x3", "type": "chat", "provider": "openai", "name": "x"}),
                       ("/models/grant", {"model": "console-emb", "role": "con_owner"})):
        r = page.request.post(stack["url"] + path, form={"csrf": token, **form}, headers={"Origin": stack["server"]})
        assert r.status == 404, path


def test_a_transform_of_a_roles_own_never_runs_in_the_consoles_session(page, stack, installed, conn):
    """Security finding M2: "test this model" ran the model's transform functions in the gateway's
    session, where a role's function could SET ROLE to any API key's role.  A transform function of
    con_other's that switches to con_owner and reads its documents: in psql, as con_other, the switch
    fails (con_other is no member of con_owner); in the console it is refused before it runs."""
    import psycopg
    conn.execute("drop schema if exists con_xf cascade")
    conn.execute("create schema con_xf authorization con_other")
    with as_role(installed, "con_other") as o:
        o.execute("""create function con_xf.steal(model text, input text) returns jsonb language plpgsql as $$
                     begin
                         perform set_config('role', 'con_owner', true);
                         return jsonb_build_object('input', (select string_agg(body, ' ') from con_app.docs));
                     end $$""")
    conn.execute("select ai.drop_model('console-xf', if_exists => true)")
    conn.execute("select ai.create_model('console-xf', %s, 'openai', 'rerank', 'rr', in_fn => 'con_xf.steal'::regproc)",
                  (stack["standin"].url + "/v1",))
    conn.execute("select ai.grant_model('console-xf', 'con_other')")
    try:
        with as_role(installed, "con_other") as o:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                o.execute("select ai.call_model('console-xf', 'x')")
        sign_in(page, stack, "con_other")
        page.click("#nav-models")
        row = page.locator("tr.model[data-model=console-xf]")
        assert "con_xf.steal" in row.inner_text()
        with page.expect_response(lambda r: r.request.method == "POST") as answer:
            row.locator("button.test-model").click()
        assert answer.value.status == 403
        assert "con_xf.steal(text,text) (con_other)" in page.inner_text("#error-message")
        assert page.inner_text("#error-sqlstate") == "42501"
        assert "bamboo" not in page.content()
        # the console's models still test (no transforms)
        page.goto(stack["url"] + "/models")
        page.locator("tr.model[data-model=console-emb] button.test-model").click()
        assert "8 dimensions" in page.inner_text("#test-result")
    finally:
        conn.execute("select ai.drop_model('console-xf', if_exists => true)")
        conn.execute("drop schema if exists con_xf cascade")


def test_sign_in_rotates_the_session_and_a_revoked_key_ends_its_sessions(browser, stack, installed, conn):
    key = conn.execute("select ai.create_api_key('con_owner', 'rotation')").fetchone()[0]
    contexts = [browser.new_context(), browser.new_context()]
    try:
        pages = [c.new_page() for c in contexts]

        def sign(pg):
            pg.goto(stack["url"] + "/signin")
            pg.fill("#key", key)
            pg.click("#signin")
            pg.wait_for_url(re.compile(r"/console/kbs$"))
            return next(c["value"] for c in pg.context.cookies() if c["name"] == "pgmind_session")
        first = sign(pages[0])
        second = sign(pages[0])                       # signed in again in the same browser: a new id
        assert second != first
        # the old id is worth nothing now
        ctx = browser.new_context()
        ctx.add_cookies([{"name": "pgmind_session", "value": first, "url": stack["server"] + "/console"}])
        stale = ctx.new_page()
        stale.goto(stack["url"] + "/kbs")
        assert "/console/signin" in stale.url
        ctx.close()
        sign(pages[1])                                # a second browser on the same key
        for pg in pages:
            pg.goto(stack["url"] + "/kbs")
            assert pg.locator("tr.kb-row[data-kb=cdocs]").count() == 1
        conn.execute("select ai.revoke_api_key(%s)", (key[:12],))
        # the first request after the revocation ends every session of the key
        pages[0].goto(stack["url"] + "/kbs")
        assert "/console/signin" in pages[0].url
        st_cookie = next(c["value"] for c in pages[1].context.cookies() if c["name"] == "pgmind_session")
        r = httpx.get(stack["url"] + "/kbs", cookies={"pgmind_session": st_cookie}, follow_redirects=False)
        assert r.status_code == 303 and "/signin" in r.headers["location"]
        pages[1].goto(stack["url"] + "/signin")
        pages[1].fill("#key", key)
        pages[1].click("#signin")
        assert "unknown or revoked" in pages[1].inner_text("#signin-error")
    finally:
        for c in contexts:
            c.close()


def test_documents_of_a_source_with_row_security(browser, page, stack, installed, settings, conn):
    """The chunk table has no row security; the source's policies are its owner's code, which the
    console does not run.  A role they apply to (an administrator with select on both tables, whose
    policy shows it row 1 only) sees no chunk of the knowledge base, on the list and by a document's
    address; the table's owner, to whom they do not apply, sees them all."""
    with as_role(installed, "con_owner") as o:
        o.execute("create table con_app.secret (id int primary key, who text not null, body text not null)")
        o.execute("insert into con_app.secret values (1, 'con_radmin', 'visible note'), (2, 'nobody', 'hidden salary 9000')")
        o.execute("alter table con_app.secret enable row level security")
        o.execute("create policy mine on con_app.secret for select using (who = current_user)")
        o.execute("select ai.create_vectorizer('con_app.secret'::regclass, name => 'csecret', content => 'body', "
                  "model => 'console-emb', chunking => '{\"method\": \"none\"}')")
    drain(settings, installed, "csecret")
    context = None
    try:
        store = conn.execute("select store from ai_internal._search_target('csecret', current_user)").fetchone()[0]
        context, admin = _admin_page(browser, stack, installed, "con_radmin")
        conn.execute(f"grant usage on schema con_app to con_radmin; grant select on con_app.secret, {store} to con_radmin")
        admin.goto(stack["url"] + "/kbs/csecret")
        assert admin.locator("#docs tr.doc").count() == 0
        assert "row security" in admin.inner_text("#problem")
        assert "hidden salary" not in admin.content()
        response = admin.goto(stack["url"] + '/kbs/csecret/doc?key={"id":%202}')
        assert response.status == 403 and "hidden salary" not in admin.content()
        assert admin.inner_text("#error-sqlstate") == "42501"
        # the owner: the policies do not apply to it, and it sees both documents
        sign_in(page, stack)
        page.goto(stack["url"] + "/kbs/csecret")
        assert page.locator("#docs tr.doc").count() == 2 and page.locator("#problem").count() == 0
    finally:
        if context:
            context.close()
        conn.execute("select ai.drop_vectorizer('csecret') where exists (select 1 from ai.vectorizer_status "
                     "where name = 'csecret')")
        conn.execute("drop table if exists con_app.secret")
        if conn.execute("select 1 from pg_roles where rolname = 'con_radmin'").fetchone():
            _drop_role(installed, "con_radmin")


def test_the_demo_consoles_pages_on_its_kinds_of_knowledge_base(browser, stack, installed, settings, tmp_path):
    """`make demo`'s console, walked: a picture collection made as `pgmind ingest-images --allow-load`
    makes it (a table of paths, its vectorizer loading them through the allow-list), beside the text
    knowledge base, and a role set up by scripts/demo.sh's own SQL (an administrator with select on
    every source and chunk table, not their owner): every page opens, with what it is for on it."""
    import io
    from PIL import Image

    from pgmind.images.collection import ingest_images
    demo_sql = Path(__file__).parent.parent.joinpath("scripts/demo.sh").read_text()
    demo_sql = demo_sql[demo_sql.index("<<'SQL'\n") + 8:demo_sql.index("\nSQL\n")].replace("console_demo", "con_demo")
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, colour in (("dog.png", (120, 80, 40)), ("sky.png", (90, 160, 230))):
        out = io.BytesIO()
        Image.new("RGB", (80, 60), colour).save(out, format="PNG")
        (folder / name).write_bytes(out.getvalue())
    standin = StandIn(dim=16)
    context = None
    with connect(installed, autocommit=True) as c:
        c.execute("select ai.drop_model('console-clip2', if_exists => true)")
        c.execute("""select ai.create_model('console-clip2', %s, 'clip', 'image_embedding', 'ViT-B-32',
                                            '{"author_type": "none"}')""", (standin.url + "/post",))
        c.execute("drop table if exists public.con_photos")
        ingest_images(c, folder, "con_photos", model="console-clip2", allow_load=True)
    try:
        drain(settings, installed, "con_photos")
        with connect(installed, autocommit=True) as c:
            if c.execute("select 1 from pg_roles where rolname = 'con_demo'").fetchone():
                c.execute("drop owned by con_demo cascade")
                c.execute("drop role con_demo")
            c.execute(demo_sql)
            key = c.execute("select ai.create_api_key('con_demo', 'make demo')").fetchone()[0]
        context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
        pg = context.new_page()
        pg.dialogs = []
        pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.accept()))
        pg.goto(stack["url"] + "/signin")
        pg.fill("#key", key)
        pg.click("#signin")
        pg.wait_for_url(re.compile(r"/console/kbs$"))
        assert pg.locator("tr.kb-row[data-kb=con_photos] a.badge.images").count() == 1
        pages = {"/kbs": "#kb-list", "/kbs/cdocs": "#docs", "/kbs/cdocs?state=quarantined": "#versions",
                 '/kbs/cdocs/doc?key={"id":%201}': "section.chunk", "/kbs/cdocs/search?q=panda": "li.hit",
                 "/kbs/cdocs/ask": "#ask-form", "/kbs/cdocs/eval": "#eval-form",
                 "/kbs/con_photos": "#docs", "/kbs/con_photos/images?q=dog": "li.image-hit",
                 "/kbs/con_photos/search": "#image-kb", "/new": "#new-form", "/new/table": "main",
                 "/models": "#models", "/models/calls": "#calls, #no-calls", "/health": "#queues"}
        for path, what in pages.items():
            response = pg.goto(stack["url"] + path)
            assert response.status == 200, (path, pg.inner_text("main")[:300])
            assert pg.locator(what).count() >= 1, path
            assert "Traceback" not in pg.content()
        # the photos themselves, loaded by path through the allow-list as con_demo
        pg.goto(stack["url"] + "/kbs/con_photos/images?q=dog")
        pictures_drawn(pg)
        assert "dog" in pg.inner_text("#image-hits")
        no_xss(pg)
    finally:
        if context:
            context.close()
        with connect(installed, autocommit=True) as c:
            c.execute("select ai.drop_vectorizer('con_photos') where exists (select 1 from ai.vectorizer_status "
                      "where name = 'con_photos')")
            c.execute("drop table if exists public.con_photos")
            c.execute("select ai.disallow_load_from(%s)", (str(folder),))
            c.execute("select ai.drop_model('console-clip2', if_exists => true)")
            if c.execute("select 1 from pg_roles where rolname = 'con_demo'").fetchone():
                c.execute("drop owned by con_demo cascade")
                c.execute("drop role con_demo")
        standin.close()


# (last: it locks this client address out of signing in)
def test_sign_in_attempts_are_limited(stack):
    with httpx.Client(base_url=stack["url"]) as c:
        c.get("/signin")
        token = c.cookies["pgmind_pre"]
        codes = [c.post("/signin", data={"key": "pgmk-wrong", "csrf": token}).status_code for _ in range(11)]
        # (ten failures from one address; the earlier tests' ended with a success, which clears them)
        assert codes[:10] == [401] * 10 and codes[10] == 429
        r = c.post("/signin", data={"key": stack["keys"]["con_owner"], "csrf": token})
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0    # the right key waits too
        # a client's own X-Forwarded-For is not its address (the server trusts no proxy headers)
        r = c.post("/signin", data={"key": "pgmk-wrong", "csrf": token}, headers={"X-Forwarded-For": "10.9.8.7"})
        assert r.status_code == 429
