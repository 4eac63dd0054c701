"""Issue 35, files and URLs: an s3:// prefix never signs with the model server's own AWS identity;
a trained model's name never becomes a path (nor do two databases share a model's folder); and a
malformed URL, header value or JSON body is a 400 with pgmind's error (SQLSTATE, hint), never a
500 nor a Python exception's name."""
from __future__ import annotations

import asyncio
import json
import re
import socket
from pathlib import Path

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from conftest import sql_error
from images_fixture import moto_s3, picture
from pgmind.db import connect
from pgmind.errors import ConfigError, PermissionDeniedError
from pgmind.images.loader import Allowed, Loader

HTTP = httpx.Client(timeout=60)

# what a message must not show: a Python exception's class, a traceback, a library's module
PYTHON_TEXT = re.compile(r"[A-Za-z]+(Error|Exception)\b|Error:|Exception|Traceback|\bhttpx\b|\bh11\b|http\.client|"
                         r"botocore|urllib|internal error")


def clean(message: str) -> bool:
    return not PYTHON_TEXT.search(message or "")


# -- A: S3 prefixes sign with their own credentials only ------------------------------------------------
@pytest.fixture(scope="module")
def store():
    """moto's S3 server (as tests/test_images.py): a bucket with one picture."""
    url, srv = moto_s3("vault", {"photos/red.png": picture(), "public/red.png": picture()}, "AKIDSETUP",
                       "setup-secret", public=("public/red.png",))
    yield url
    srv.stop()


@pytest.fixture
def server_identity(monkeypatch, tmp_path):
    """The model server's own AWS identity, everywhere boto3's default chain looks (variables, a
    profile in ~/.aws, no instance metadata here); and a record of every request's Authorization."""
    creds = tmp_path / "credentials"
    creds.write_text("[default]\naws_access_key_id = AKIDFROMFILE\naws_secret_access_key = file-secret\n")
    for name, value in {"AWS_ACCESS_KEY_ID": "AKIDSERVERROLE", "AWS_SECRET_ACCESS_KEY": "server-secret",
                        "AWS_SESSION_TOKEN": "server-session", "AWS_SHARED_CREDENTIALS_FILE": str(creds),
                        "AWS_CONFIG_FILE": str(tmp_path / "config"), "AWS_EC2_METADATA_DISABLED": "true",
                        "SHOP_KEY": "AKIDLENT", "SHOP_SECRET": "lent-secret"}.items():
        monkeypatch.setenv(name, value)
    from botocore.httpsession import URLLib3Session
    sent: list[str | None] = []
    original = URLLib3Session.send

    def send(self, request):
        auth = request.headers.get("Authorization")
        sent.append(auth.decode() if isinstance(auth, bytes) else auth)
        return original(self, request)
    monkeypatch.setattr(URLLib3Session, "send", send)
    return sent


def load(entry: Allowed, location: str, secret_env=("SHOP_KEY", "SHOP_SECRET")) -> bytes:
    async def allowed():
        return [entry]
    return asyncio.run(Loader(allowed, secret_env, ttl=0).load(location))


def test_an_s3_prefix_without_credentials_does_not_use_the_servers_identity(store, server_identity):
    """Finding: without credentials the prefix was read as whoever the model server is (AWS_* variables,
    ~/.aws, the instance role)."""
    entry = Allowed("s3://vault/photos/", {"endpoint_url": store})
    with pytest.raises((PermissionDeniedError, ConfigError)) as info:
        load(entry, "s3://vault/photos/red.png")
    err = info.value
    assert err.sqlstate in ("42501", "F0000")
    assert "credentials" in err.hint and "anonymous" in err.hint and "PGMIND_SECRET_ENV" in err.hint
    assert server_identity == []                      # nothing was sent, signed or not


def test_a_token_entry_without_its_secret_is_refused(store, server_identity):
    """The secret row missing (or half of it): an error, not a fall back to the default chain."""
    for secret in (None, {}, {"access_key_id": "AKIDENTRY"}):
        entry = Allowed("s3://vault/photos/", {"endpoint_url": store}, {"author_type": "token"}, secret)
        with pytest.raises(ConfigError) as info:
            load(entry, "s3://vault/photos/red.png")
        assert "credentials" in info.value.hint
    assert server_identity == []


def test_s3_signs_with_the_entrys_own_credentials(store, server_identity):
    token = Allowed("s3://vault/photos/", {"endpoint_url": store}, {"author_type": "token"},
                    {"access_key_id": "AKIDENTRY", "secret_access_key": "entry-secret"})
    assert load(token, "s3://vault/photos/red.png") == picture()
    assert server_identity and all("Credential=AKIDENTRY/" in (a or "") for a in server_identity)
    server_identity.clear()
    lent = Allowed("s3://vault/photos/", {"endpoint_url": store},
                   {"author_type": "env", "access_key_env": "SHOP_KEY", "secret_key_env": "SHOP_SECRET"})
    assert load(lent, "s3://vault/photos/red.png") == picture()
    assert server_identity and all("Credential=AKIDLENT/" in (a or "") for a in server_identity)
    # variables the operator did not lend are not read
    with pytest.raises(PermissionDeniedError) as info:
        load(lent, "s3://vault/photos/red.png", secret_env=())
    assert "PGMIND_SECRET_ENV" in info.value.hint
    joined = " ".join(a or "" for a in server_identity)
    assert "AKIDSERVERROLE" not in joined and "AKIDFROMFILE" not in joined


def test_an_anonymous_prefix_sends_unsigned_requests(store, server_identity):
    """A public bucket: only where the entry says so, and then without any signature."""
    entry = Allowed("s3://vault/", {"endpoint_url": store, "anonymous": True})
    assert load(entry, "s3://vault/public/red.png") == picture()
    with pytest.raises(PermissionDeniedError):            # a private object stays private
        load(entry, "s3://vault/photos/red.png")
    assert server_identity and all(a is None for a in server_identity)


def test_load_file_from_an_s3_prefix_without_credentials(conn, server, store):
    """Through SQL: a clear error with its SQLSTATE and a hint that says how to give credentials."""
    conn.execute("select ai.allow_load_from('s3://vault/photos', %s::jsonb)", (json.dumps({"endpoint_url": store}),))
    try:
        e = sql_error(conn, "select ai.load_file('s3://vault/photos/red.png')")
        assert e.sqlstate in ("42501", "F0000"), e
        assert "credentials" in e.diag.message_hint and clean(e.diag.message_primary), e.diag.message_primary
    finally:
        conn.execute("select ai.disallow_load_from('s3://vault/photos/')")


# -- B: a trained model's name is never a path ---------------------------------------------------------
NASTY = ["../x", "../../../../tmp/pgmind-escape", "/abs", "/etc/passwd", "a/b", "a/../../b", "..", ".", "a\x00b",
         "\x00", "~", "~root/x", "a\\..\\b", "./.", "a/./b/", " ", "e5-ft", "org/model:v1@2", "x" * 400, "é/ü"]


def _check_inside(root: Path, kind: str, name: str) -> Path:
    from pgmind.training.paths import model_dir
    d = model_dir(root, kind, name)
    assert d.parent == (root / kind).resolve(), (name, d)       # one level under the kind's folder
    assert d.name not in (".", "..") and "\x00" not in str(d) and "/" not in d.name
    return d


@pytest.mark.parametrize("kind", ["finetuned", "trained"])
def test_nasty_model_names_stay_inside_the_models_folder(tmp_path, kind):
    dirs = {_check_inside(tmp_path, kind, n) for n in NASTY}
    assert len(dirs) == len(NASTY)                              # no two names share a folder


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.one_of(st.text(min_size=1, max_size=250),
                      st.lists(st.sampled_from(["..", ".", "/", "a", "\x00", "\\", "~", ":", "é"]),
                               min_size=1, max_size=30).map("".join)))
def test_any_model_name_stays_inside_the_models_folder(tmp_path, name):
    _check_inside(tmp_path, "finetuned", name)


def _runner_dir(settings, conn, name: str) -> Path:
    from pgmind.training.jobs import Runner
    return Path(Runner(settings, conn, {"options": {}, "loss": None, "new_model": name, "id": 0}).dir)


@pytest.fixture(scope="module")
def other_database(installed):
    with connect(installed, autocommit=True) as c:
        c.execute("drop database if exists pgmind_paths_other")
        c.execute("create database pgmind_paths_other")
    yield psycopg.conninfo.make_conninfo(installed, dbname="pgmind_paths_other")
    with connect(installed, autocommit=True) as c:
        c.execute("drop database if exists pgmind_paths_other with (force)")


def test_training_puts_a_model_under_the_home_per_database(settings, installed, other_database):
    """Finding: ``../`` in a name wrote encoder.pt outside the models folder; and fine-tuned weights
    went to the per-user cache, where two databases' models of one name overwrote each other."""
    home = Path(settings.home).resolve()
    with psycopg.connect(installed, autocommit=True) as a, psycopg.connect(other_database, autocommit=True) as b:
        for name in ("../../escape", "/tmp/abs", "a/b", "kb-ft"):
            da, db = _runner_dir(settings, a, name), _runner_dir(settings, b, name)
            assert home / "models" in da.parents and home / "models" in db.parents, (name, da)
            assert da != db, name                     # one folder per database
            assert _runner_dir(settings, a, name) == da      # and the same one every time (a resumed job)


def test_no_training_code_builds_a_path_from_a_name():
    """Every place that saves a trained model goes through pgmind.training.paths."""
    import pgmind.training.images as images
    import pgmind.training.jobs as jobs
    for module in (jobs, images):
        source = Path(module.__file__).read_text()
        assert not re.search(r"models_dir\s*/|/\s*(self\.)?job\[\"new_model\"\]", source), module.__name__


# -- C: malformed input is a 400 with pgmind's error, never a 500 ----------------------------------------
def _assert_400(r: httpx.Response, dashscope: bool = False):
    assert r.status_code == 400, (r.status_code, r.text[:500])
    body = r.json()
    err = body if dashscope else body["error"]
    assert err["sqlstate"] == "22023" and err.get("hint"), body
    assert clean(err["message"]), err["message"]


DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize("path", ["/v1/embeddings", "/v1/chat/completions", "/v1/completions", "/v1/rerank",
                                  "/v1/search", "/pgmind/v1/probe", "/pgmind/v1/call", "/pgmind/v1/images/load",
                                  "/api/v1/services/embeddings/text-embedding/text-embedding"])
@pytest.mark.parametrize("body", [DEEP, b'{"a":' * 50_000 + b"1" + b"}" * 50_000, b"\xc3\x28{}", b"1" * 5000,
                                  b"{", b"[1]"], ids=["deep-array", "deep-object", "not-utf8", "long-int",
                                                      "truncated", "not-object"])
def test_bad_json_bodies_are_400s(server, token, path, body):
    """Finding: a 100,000-deep JSON body was a 500 (RecursionError)."""
    r = HTTP.post(server + path, content=body, headers={"Authorization": f"Bearer {token}",
                                                        "Content-Type": "application/json"})
    _assert_400(r, dashscope=path.startswith("/api/v1/"))


BAD_URLS = ["http://127.0.0.1:abc/v1", "http://[::1/v1", "http://[127.0.0.1/v1",
            "http://::1]/v1", "http://127.0.0.1:99999/v1", "http://127.0.0.1:0/v1", "http://127.0.0.1/v1\x01x",
            "http://127.0.0.1/v1 x", "http://127.0.0.1/\r\nX-Injected: 1", "ftp://127.0.0.1/v1", "http:///v1",
            "http://a..b/v1", "http://" + "a" * 64 + ".example/v1", "http://user:pw@127.0.0.1:1/v1", "v1",
            "http://[fe80::1%eth0/v1"]


def _probe(server, token, url, **extra):
    body = {"model_id": "p35", "url": url, "provider": "openai", "model_type": "embedding", "model_name": "m",
            **extra}
    return HTTP.post(server + "/pgmind/v1/probe", json=body, headers={"Authorization": f"Bearer {token}"})


@pytest.mark.parametrize("url", BAD_URLS)
def test_probe_with_a_malformed_url_is_a_400(server, token, url):
    """Finding: a non-numeric port, an unbalanced [ were 500s (or http.client/httpx text)."""
    _assert_400(_probe(server, token, url))


@pytest.mark.parametrize("secret", ["sk-密钥", "sk-a\nX-Injected: 1", "sk-a\rb", "sk-\x00b", "sk-\x7f"])
def test_probe_with_a_key_http_cannot_carry_is_a_400(server, token, secret):
    """Finding: UnicodeEncodeError (a 500) for a non-ASCII key, LocalProtocolError text for a line break."""
    r = _probe(server, token, "http://127.0.0.1:9/v1", auth={"author_type": "token"}, secret=secret)
    _assert_400(r)
    assert secret not in r.text and "Authorization" in r.json()["error"]["message"]


def test_probe_with_a_bad_header_option_is_a_400(server, token):
    for headers in ({"X-Tenant": "中文"}, {"Bad Name": "x"}, {"X-A": "a\nb"}, {"": "x"}, {"X-A": 1}, "x", ["a"]):
        _assert_400(_probe(server, token, "http://127.0.0.1:9/v1", options={"headers": headers}))


def _sql_clean_error(conn, stmt, params=None, states=("22023",)):
    e = sql_error(conn, stmt, params)
    assert e.sqlstate in states, (e.sqlstate, str(e))
    assert e.diag.message_hint, str(e)
    assert clean(e.diag.message_primary), e.diag.message_primary
    return e


def test_create_model_with_a_url_or_key_python_cannot_use(conn, server):
    """Through ai.create_model (its probe): the SQL checks pass these; the model server's answer is a
    22023 with a hint, not a 500 nor an exception's name."""
    conn.execute("select ai.allow_outbound('*.example')")
    try:
        stmt = "select ai.create_model('p35-sql', %s, 'openai', 'embedding', 'm', auth => %s::jsonb)"
        # a label over 63 characters: getaddrinfo's IDNA encoder raised UnicodeError
        _sql_clean_error(conn, stmt, ("http://" + "a" * 64 + ".example/v1", "{}"))
        _sql_clean_error(conn, stmt, ("http://a..example/v1", "{}"))
        for key in ("sk-密钥", "sk-a\nX-Injected: 1"):
            e = _sql_clean_error(conn, stmt, ("http://127.0.0.1:9/v1", json.dumps({"token": key})))
            assert key not in str(e)
        e = _sql_clean_error(conn, "select ai.create_model('p35-sql', 'http://127.0.0.1:9/v1', 'openai', 'embedding', "
                                   "'m', options => %s::jsonb)", (json.dumps({"headers": {"X-A": "é"}}),))
        assert "X-A" in e.diag.message_primary
        assert conn.execute("select count(*) from ai.model_registry where model_id = 'p35-sql'").fetchone()[0] == 0
    finally:
        conn.execute("select ai.disallow_outbound('*.example')")


def test_load_file_with_a_malformed_url(conn, server):
    """ai.load_file parses the location itself: the same malformed URLs are 22023s, not 500s."""
    for location in ("http://127.0.0.1:abc/x.png", "http://[::1/x.png", "https://host:99999/x.png",
                     "s3://bucket:abc/x.png", "http://[127.0.0.1/x.png"):
        _sql_clean_error(conn, "select ai.load_file(%s)", (location,))


def test_allow_load_from_takes_the_anonymous_option_for_s3_only(conn):
    conn.execute("select ai.allow_load_from('s3://sec-public-bucket/', '{\"anonymous\": true}')")
    try:
        assert conn.execute("select options from ai.load_allow where prefix = 's3://sec-public-bucket/'"
                            ).fetchone()[0] == {"anonymous": True}
    finally:
        conn.execute("select ai.disallow_load_from('s3://sec-public-bucket/')")
    for prefix, options in (("s3://sec-public-bucket/", '{"anonymous": "yes"}'), ("file:///tmp/x/", '{"anonymous": true}')):
        err = sql_error(conn, "select ai.allow_load_from(%s, %s::jsonb)", (prefix, options))
        assert err.sqlstate == "22023" and err.diag.message_hint


def test_ipv6_addresses_that_carry_a_private_ipv4_address_are_not_public():
    """NAT64, 6to4 and IPv4-compatible addresses reach the IPv4 address inside them; Python calls
    them global whatever it is (a review's finding), and 192.0.0.192 is a cloud's old metadata address."""
    import ipaddress

    from pgmind.checked_connect import _is_public
    for private in ("64:ff9b::a00:5", "64:ff9b:1::a9fe:a9fe", "2002:a9fe:a9fe::1", "::a9fe:a9fe", "::7f00:1",
                    "192.0.0.192", "::ffff:10.0.0.1"):
        assert not _is_public(ipaddress.ip_address(private)), private
    for public in ("8.8.8.8", "64:ff9b::808:808", "2002:808:808::1", "2606:4700::1111"):
        assert _is_public(ipaddress.ip_address(public)), public
