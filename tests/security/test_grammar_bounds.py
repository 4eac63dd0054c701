"""JSON schemas that llama.cpp's grammar parser cannot take (response_format, forced tool calls):
a 400 with a hint, never a dead model server.  Before grammar_guard, ``maxLength: 2000`` or
``pattern: ^a{0,3000}$`` made llama.cpp give up on the grammar and llama-cpp-python run with no
grammar sampler (SIGSEGV), and a deeper grammar overflowed the generation thread's stack.

The server tests run their own model server (not the session's), so that a crash here shows up
as these tests failing rather than as every later test's server being gone."""
from __future__ import annotations

import dataclasses
import json
import re

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings as hsettings, strategies as st

from pgmind.devserver import free_port, start_server, stop_server
from pgmind.errors import InvalidRequestError

HTTP = httpx.Client(timeout=120)
LONG_STRING = {"type": "string", "maxLength": 2000}
LONG_PATTERN = {"type": "string", "pattern": "^a{0,3000}$"}


def response_format(schema) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}


def forced_tool(schema) -> dict:
    return {"tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}],
            "tool_choice": {"type": "function", "function": {"name": "f"}}}


# -- without a server: the bounds and the child process -----------------------------------------

@pytest.mark.parametrize("schema, needle", [(LONG_STRING, "maxLength"), (LONG_PATTERN, "pattern"),
                                            ({"type": "object", "properties": {"a": LONG_STRING}}, "maxLength"),
                                            ({"type": "string", "pattern": "^(ab|c){5,99999}$"}, "pattern")])
def test_schema_bounds(schema, needle):
    from pgmind.models.local.llama import _call_schema, _grammar
    for what, s in (("response_format schema", schema),
                    ("tool parameters", _call_schema(forced_tool({"type": "object", "properties": {"p": schema}})["tools"]))):
        with pytest.raises(InvalidRequestError) as info:
            _grammar(s, what)
        err = info.value
        assert needle in err.message and err.hint and err.sqlstate == "22023" and err.http_status == 400


def test_within_bounds_builds():
    from pgmind.models.local import grammar_guard
    from pgmind.models.local.llama import _grammar
    n = grammar_guard.MAX_COUNT
    for schema in (None, {"type": "string", "maxLength": n}, {"type": "string", "pattern": f"^a{{0,{n}}}$"},
                   {"type": "array", "items": {"type": "string", "maxLength": n}, "maxItems": n}):
        assert re.search(r"^root\s*::=", _grammar(schema, "schema")._grammar, re.M)


def test_gbnf_bounds():
    from pgmind.models.local import grammar_guard as g
    deep = "root ::= " + '("a" ' * (g.MAX_NESTING + 1) + ")?" * (g.MAX_NESTING + 1)
    for text, needle in ((deep, "nested"), ('root ::= "a"{0,3000}', "repetition"), ("root ::= <x>", "token"),
                         ('root ::= "' + "a" * g.MAX_GBNF_BYTES + '"', "KB")):
        with pytest.raises(InvalidRequestError, match=needle):
            g.check_gbnf(text, "schema")
    ok = "root ::= " + '("a" ' * g.MAX_NESTING + ")?" * g.MAX_NESTING + '  # ( [ "\n'
    g.check_gbnf(ok, "schema")


def test_child_builds_what_the_bounds_let_through_and_takes_the_crashes():
    """Grammars past the bounds, straight to the child: the one llama.cpp rejects (1,001 nested
    groups: a NULL sampler in the server) and the one that overflows its stack (20,000) are
    verdicts, not crashes of this process; the child is started again; verdicts are cached."""
    import llama_cpp  # noqa: F401  (the child runs the server's llama.cpp)
    from pgmind.models.local import grammar_guard as g
    checker = g.GrammarChecker()
    stack = g.child_stack(g.thread_stack_size())

    def nested(n):
        return "root ::= " + '("a" ' * n + ")?" * n

    checker.check(nested(g.MAX_NESTING), "schema")
    assert "rejects it" in checker._build(nested(1001), stack)
    assert "crashed" in checker._build(nested(20000), stack)
    built = checker.built
    checker.check(nested(10), "schema")                          # a new child
    checker.check(nested(10), "schema")                          # cached
    assert checker.built == built + 1
    with pytest.raises(InvalidRequestError, match="nested more than"):
        checker.check(nested(g.MAX_NESTING + 1), "schema")      # the bound, before the child
    # a grammar text that passes the bounds but not llama.cpp: a 400 that says so, cached too
    with pytest.raises(InvalidRequestError, match="cannot build") as info:
        checker.check('root ::= "a" undefined-rule', "schema")
    assert info.value.hint and info.value.http_status == 400
    built = checker.built
    with pytest.raises(InvalidRequestError, match="cannot build"):
        checker.check('root ::= "a" undefined-rule', "schema")
    assert checker.built == built
    # on the smallest stack the child ever gets, the largest grammar the bounds let through
    # builds (it crashes at ~560 levels on 256 KB)
    assert g.child_stack(1 << 20) == 256 << 10
    assert checker._build(nested(g.MAX_NESTING), 256 << 10) is None
    checker._stop()


# -- the real server -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def own_server(settings, installed):
    s = dataclasses.replace(settings, server_port=free_port())
    proc = start_server(s, args=("--no-worker",))
    yield s.effective_server_url, proc
    stop_server(proc)


def chat(url, token, **extra) -> httpx.Response:
    body = {"model": "qwen-0.5b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1,
            "temperature": 0, **extra}
    return HTTP.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {token}"}, json=body)


def assert_alive(own_server, token):
    url, proc = own_server
    assert proc.poll() is None, f"the model server died (exit {proc.returncode})"
    assert HTTP.get(url + "/health").status_code == 200
    r = chat(url, token)
    assert r.status_code == 200 and r.json()["choices"], r.text


def assert_400(r: httpx.Response, needle: str):
    assert r.status_code == 400, r.text[:500]
    err = r.json()["error"]
    assert needle in err["message"] and err["hint"] and err["sqlstate"] == "22023", err


@pytest.mark.parametrize("schema, needle", [(LONG_STRING, "maxLength"), (LONG_PATTERN, "pattern")])
def test_crash_schemas_are_400s(own_server, token, schema, needle):
    url, _ = own_server
    assert_400(chat(url, token, response_format=response_format(schema)), needle)
    assert_alive(own_server, token)
    assert_400(chat(url, token, **forced_tool({"type": "object", "properties": {"s": schema}, "required": ["s"]})),
               needle)
    assert_400(chat(url, token, tools=forced_tool({"type": "object", "properties": {"s": schema}})["tools"],
                    tool_choice="required"), needle)
    assert_alive(own_server, token)


def test_crash_schema_streamed(own_server, token):
    """With stream=True the grammar is checked in the generating thread too: an error (a 400, or
    an error event if the stream had started), and the server lives."""
    url, _ = own_server
    r = chat(url, token, stream=True, response_format=response_format(LONG_STRING))
    assert r.status_code == 400 or (r.status_code == 200 and "maxLength" in r.text), (r.status_code, r.text[:300])
    assert "maxLength" in r.text
    assert_alive(own_server, token)


def test_crash_schema_through_sql(server, conn, token):
    """ai.chat (local chat models are granted to public) reaches the same path, here through the
    session's server: a 22023, and the server answers the next call."""
    import psycopg
    messages = json.dumps([{"role": "user", "content": "hi"}])
    for schema, needle in ((LONG_STRING, "maxLength"), (LONG_PATTERN, "pattern")):
        with pytest.raises(psycopg.Error) as info:
            conn.execute("select ai.chat('qwen-0.5b', %s::jsonb, %s::jsonb)",
                         (messages, json.dumps({"max_tokens": 1, "response_format": response_format(schema)})))
        assert info.value.sqlstate == "22023" and needle in str(info.value), info.value
    out = conn.execute("select ai.chat('qwen-0.5b', %s::jsonb, '{\"max_tokens\": 1}')", (messages,)).fetchone()[0]
    assert "message" in out, out


# schemas of any shape: nesting, types, counts around the bounds and far past them, patterns
# with repetitions, enums, anyOf
COUNT = st.one_of(st.integers(0, 40), st.sampled_from([255, 256, 257, 400, 1000, 1001, 2000, 4096, 30000]))
PIECE = st.sampled_from(["a", "ab", "[a-z]", "\\d", "(ab|c)", ".", "(x(y)?)", "[^\"]"])
QUANT = st.one_of(st.just(""), st.sampled_from(["*", "+", "?"]),
                  st.builds(lambda m: f"{{{m}}}", COUNT), st.builds(lambda m: f"{{{m},}}", COUNT),
                  st.builds(lambda m, n: f"{{{m},{m + n}}}", COUNT, COUNT))
PATTERN = st.lists(st.tuples(PIECE, QUANT).map("".join), min_size=1, max_size=3).map(lambda p: "^" + "".join(p) + "$")
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text("abc", max_size=5))
LEAF = st.one_of(
    st.fixed_dictionaries({"type": st.just("string")}, optional={"minLength": COUNT, "maxLength": COUNT,
                                                                  "pattern": PATTERN}),
    st.fixed_dictionaries({"type": st.sampled_from(["integer", "number", "boolean", "null"])}),
    st.builds(lambda v: {"enum": v}, st.lists(SCALAR, min_size=1, max_size=4)),
    st.builds(lambda v: {"const": v}, SCALAR))


def _object(props, required):
    return {"type": "object", "properties": props, "required": [k for k in props if k in required]}


SCHEMA = st.recursive(LEAF, lambda inner: st.one_of(
    st.builds(_object, st.dictionaries(st.sampled_from("abcdef"), inner, max_size=3), st.sets(st.sampled_from("abc"))),
    st.builds(lambda items, lo, hi: {"type": "array", "items": items, "minItems": lo, "maxItems": hi},
              inner, COUNT, COUNT),
    st.builds(lambda v: {"anyOf": v}, st.lists(inner, min_size=1, max_size=3))), max_leaves=6)


@hsettings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(SCHEMA, st.booleans())
@example(LONG_STRING, False)
@example(LONG_PATTERN, True)
def test_fuzz_schemas(own_server, token, schema, as_tool):
    url, proc = own_server
    if as_tool:
        r = chat(url, token, **forced_tool({"type": "object", "properties": {"p": schema}}))
    else:
        r = chat(url, token, response_format=response_format(schema))
    assert proc.poll() is None, f"the model server died on {json.dumps(schema)[:300]}"
    assert r.status_code in (200, 400), (r.status_code, r.text[:300], schema)
    body = r.json()
    if r.status_code == 400:
        assert body["error"]["message"] and body["error"]["type"] == "invalid_request_error", body
    else:
        assert body["choices"], body


def test_alive_after_fuzz(own_server, token):
    assert_alive(own_server, token)
