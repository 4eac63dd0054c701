"""Property-based fuzzing (hypothesis) of the SQL functions and the HTTP routes with texts that hold
surrogates, NULs, CJK, SQL and JSON syntax, huge and nested values.  The properties: the server
never answers 5xx for bad input and keeps serving; a SQL function either returns or raises a
clear error (a SQLSTATE of a known class, never an internal error) and the session stays usable."""
from __future__ import annotations

import json

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from pgmind.db import connect

HTTP = httpx.Client(timeout=120)
NASTY = st.sampled_from(["'; drop table x; --", "$$", "\\", "%s", "%(x)s", "{}", "[", "\ud800", "\udfff", "\x00",
                         "熊猫", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "a" * 5000, "(select current_user)", "\u202e", "\ufeff"])
TEXT = st.one_of(st.text(max_size=200), NASTY, st.lists(NASTY, max_size=4).map("".join))
JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), TEXT),
                    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
                    max_leaves=20)
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
# errors that a bad argument may cause; an internal error (XX), a crash (08) or a Python type
# prefix in the message is a bug
ALLOWED_CLASSES = {"22", "23", "42", "PM", "57", "0A", "P0", "2F", "39"}


def pg_text(s: str) -> str | None:
    """What a client can send as PostgreSQL text (no NUL, valid UTF-8), or None to skip."""
    if "\x00" in s:
        return None
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return s


def call(conn, query, params):
    try:
        conn.execute(query, params)
    except psycopg.Error as e:
        assert e.sqlstate and e.sqlstate[:2] in ALLOWED_CLASSES, (query, params, e.sqlstate, e)
        assert "plpy." not in str(e) and "Traceback" not in str(e), e
    assert conn.execute("select 1").fetchone() == (1,)          # the session is still usable


@FUZZ
@given(TEXT, TEXT)
def test_fuzz_sql_text_functions(conn, server, model, text):
    model, text = pg_text(model), pg_text(text)
    if model is None or text is None:
        return
    call(conn, "select ai.embed(%s, %s)", (model, text))
    call(conn, "select ai.embed('minilm', %s)", (text,))
    call(conn, "select ai.keyword_query(%s)", (text,))
    call(conn, "select ai.fts_text(%s)", (text,))
    call(conn, "select * from ai.search(%s, %s, mode => 'keyword')", (model, text))
    call(conn, "select * from ai.search('no_such_kb', 'x', mode => 'keyword', expansion => %s)", (text,))
    call(conn, "select ai.call_model(%s, %s)", (model, text))


@FUZZ
@given(JSON)
def test_fuzz_sql_jsonb_arguments(conn, server, value):
    try:
        doc = json.dumps(value, allow_nan=False)
    except ValueError:
        return
    if pg_text(doc) is None or "\\u0000" in doc:
        return
    call(conn, "select ai_internal._check_chunking(%s::jsonb)", (doc,))
    call(conn, "select ai_internal._check_index(%s::jsonb)", (doc,))
    call(conn, "select ai.chat('nope', %s::jsonb)", (doc,))
    call(conn, "select ai.chat('qwen-0.5b', '[{\"role\":\"user\",\"content\":\"hi\"}]', %s::jsonb || "
               "'{\"max_tokens\": 1}')", (doc,) if isinstance(value, dict) else ('{}',))


@FUZZ
@given(JSON)
def test_fuzz_http_embeddings(server, token, value):
    r = HTTP.post(server + "/v1/embeddings", content=json.dumps({"model": "minilm", "input": value}).encode(),
                  headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert r.status_code in (200, 400, 413), r.text
    assert "Traceback" not in r.text


@FUZZ
@given(st.one_of(JSON, st.dictionaries(st.sampled_from(["model", "messages", "input", "stop", "max_tokens", "seed",
                                                        "temperature", "stream_options", "n", "parameters"]),
                                       JSON, max_size=6)))
def test_fuzz_http_bodies_every_route(server, token, body):
    raw = json.dumps(body).encode()
    for path in ("/v1/embeddings", "/v1/chat/completions", "/v1/completions", "/v1/rerank", "/v1/search", "/v1/ask",
                 "/api/v1/services/embeddings/text-embedding/text-embedding",
                 "/api/v1/services/aigc/text-generation/generation", "/pgmind/v1/call"):
        if path in ("/v1/chat/completions", "/api/v1/services/aigc/text-generation/generation") \
                and isinstance(body, dict) and body.get("messages"):
            continue          # a valid chat would run the model: covered by the protocol tests
        if path == "/v1/completions" and isinstance(body, dict) and body.get("prompt"):
            continue
        r = HTTP.post(server + path, content=raw, headers={"Authorization": f"Bearer {token}",
                                                          "Content-Type": "application/json"})
        assert r.status_code < 500 or r.status_code in (502, 504), (path, body, r.status_code, r.text)
        assert "Traceback" not in r.text
    assert HTTP.get(server + "/health").status_code == 200


@pytest.fixture(scope="module")
def searcher_key(installed):
    """HTTP search runs as a role: an API key's (the server's token searches as no one)."""
    with connect(installed, autocommit=True) as c:
        c.execute("drop role if exists fuzz_searcher")
        c.execute("create role fuzz_searcher")
        key = c.execute("select ai.create_api_key('fuzz_searcher')").fetchone()[0]
    yield key
    with connect(installed, autocommit=True) as c:
        c.execute("select ai.revoke_api_key(%s)", (key[:12],))
        c.execute("drop role fuzz_searcher")


@FUZZ
@given(st.dictionaries(TEXT, st.one_of(TEXT, st.integers(), st.lists(TEXT, max_size=3)), max_size=3))
def test_fuzz_http_search_filters(server, searcher_key, spec):
    r = HTTP.post(server + "/v1/search",
                  content=json.dumps({"name": "no_such_kb", "query": "x", "mode": "keyword", "filter": spec}).encode(),
                  headers={"Authorization": f"Bearer {searcher_key}", "Content-Type": "application/json"})
    assert r.status_code in (400, 404), r.text


@pytest.fixture(scope="module", autouse=True)
def _close():
    yield
    HTTP.close()


@FUZZ
@given(st.binary(max_size=3000), TEXT, st.integers(min_value=-5, max_value=70000), st.integers(-5, 70000))
def test_fuzz_image_functions(conn, server, data, location, w, h):
    """Any bytes as an image, any text as a location: a clear error or a result, never a crash, and
    nothing read outside the load allow-list (which is empty here)."""
    from images_fixture import picture
    location = pg_text(location)
    for img in (data, picture()[: len(data) % 600 + 1], picture() + data):
        call(conn, "select ai.image_info(%s)", (img,))
        call(conn, "select ai.resize_image(%s, %s, %s)", (img, w % 4000 if w > 0 else w, h % 4000 if h > 0 else h))
        call(conn, "select ai.image_as_base64(%s, true)", (img,))
        call(conn, "select ai.embed_image('image-features', %s)", (img,))
    if location is not None:
        try:
            conn.execute("select ai.load_file(%s)", (location,))
            raise AssertionError(f"{location!r} was read with an empty allow-list")
        except psycopg.Error as e:
            assert e.sqlstate in ("42501", "22023"), (location, e.sqlstate, e)
        call(conn, "select * from ai.search_images(%s, %s)", (location, location))


CHAT_KEYS = st.sampled_from(["tools", "tool_choice", "response_format", "logprobs", "top_logprobs", "logit_bias",
                             "functions", "function_call", "max_tokens", "stop", "seed", "temperature", "user"])
TOOLISH = st.one_of(JSON, st.lists(st.fixed_dictionaries({"type": st.just("function"), "function": st.dictionaries(
    st.sampled_from(["name", "description", "parameters"]), JSON, max_size=3)}), max_size=3))


@FUZZ
@given(st.dictionaries(CHAT_KEYS, TOOLISH, max_size=5), st.lists(st.dictionaries(
    st.sampled_from(["role", "content", "tool_calls", "tool_call_id", "name"]), TOOLISH, max_size=4), max_size=3))
def test_fuzz_chat_options_and_messages(options, messages):
    """Tools, schemas, tool calls and content parts of any shape: accepted in a clean form, or a
    clear 400 (InvalidRequestError), never another exception."""
    from pgmind.errors import InvalidRequestError
    from pgmind.models.validation import check_chat_options, check_messages
    from pgmind.server.openai_api import chat_options
    for check, value in ((lambda o: check_chat_options(chat_options(o)), options), (check_messages, messages)):
        try:
            check(value)
        except InvalidRequestError as e:
            assert e.message
