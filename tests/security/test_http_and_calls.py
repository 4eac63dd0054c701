"""The model server and the SQL model functions against a role granted nothing, wrong credentials
and bad input: each test is a finding of issue 8, or a case of the same kind."""
from __future__ import annotations

import json
import threading

import httpx
import psycopg
import pytest

from conftest import as_role, sql_error
from pgmind.db import connect, install
from standins import StandIn
from waiting import wait_for

HTTP = httpx.Client(timeout=120)      # (the first call of a model loads it)

ROUTES = [("POST", "/v1/embeddings"), ("POST", "/v1/chat/completions"), ("GET", "/v1/models"),
          ("POST", "/v1/rerank"), ("POST", "/v1/search"), ("POST", "/v1/ask"),
          ("POST", "/api/v1/services/embeddings/text-embedding/text-embedding"),
          ("POST", "/api/v1/services/aigc/text-generation/generation"),
          ("POST", "/pgmind/v1/probe"), ("POST", "/pgmind/v1/call"), ("GET", "/metrics"), ("GET", "/openapi.json"),
          ("POST", "/v1/completions"), ("GET", "/v1/models/e5-small"), ("POST", "/pgmind/v1/call-log/flush")]


@pytest.fixture(scope="module")
def nobody_key(installed, sec_roles):
    with connect(installed, autocommit=True) as c:
        return c.execute("select ai.create_api_key('sec_nobody', 'tests')").fetchone()[0]


@pytest.fixture
def private_model(conn):
    """A model granted to no one (an alias of a local one)."""
    conn.execute("select ai.drop_model('sec-private', if_exists => true)")
    conn.execute("""insert into ai.model_registry (model_id, provider, model_type, model_name, options, dimensions)
                    select 'sec-private', provider, model_type, model_name, options, dimensions
                    from ai.model_registry where model_id = 'minilm'""")
    yield "sec-private"
    conn.execute("select ai.drop_model('sec-private', if_exists => true)")


@pytest.mark.parametrize("method,path", ROUTES)
@pytest.mark.parametrize("credential", [None, "Bearer wrong", "Basic abc", "Bearer x y", "bearer pgmk-" + "0" * 64])
def test_every_route_refuses_wrong_credentials(server, method, path, credential):
    headers = {"Authorization": credential} if credential else {}
    r = HTTP.request(method, server + path, headers=headers, json={})
    assert r.status_code == 401, (path, r.text)
    body = r.json()
    assert (body["code"] if path.startswith("/api/v1/") else body["error"]["type"]) == "authentication_error"


@pytest.mark.parametrize("path", ["/pgmind/v1/probe", "/pgmind/v1/call"])
def test_api_keys_cannot_use_the_databases_routes(server, nobody_key, path):
    """Finding 3: the probe route let anyone make the server call any URL with any environment secret."""
    r = HTTP.post(server + path, headers={"Authorization": f"Bearer {nobody_key}"},
                   json={"model_id": "x", "url": "http://127.0.0.1:1/v1", "provider": "openai",
                         "model_type": "embedding", "model_name": "m", "auth": {"author_type": "env", "env": "HOME"}})
    assert r.status_code == 403


def test_only_the_operator_flushes_the_call_log(conn, server, token, nobody_key):
    """The call log's flush (what the tests wait on) is the operator's, as /metrics is: neither an API
    key nor a role's SQL token opens it; the server's token does."""
    flush = server + "/pgmind/v1/call-log/flush"
    assert HTTP.post(flush, headers={"Authorization": f"Bearer {nobody_key}"}).status_code == 403
    conn.execute("select ai_internal._issue_role_tokens()")
    sql_token = conn.execute("select token from ai_internal.role_tokens where role_oid = 'sec_nobody'::regrole"
                             ).fetchone()[0]
    assert HTTP.post(server + "/pgmind/v1/call", headers={"Authorization": f"Bearer {sql_token}"},
                     json={}).status_code == 400          # (the token is good: the database's routes take it)
    assert HTTP.post(flush, headers={"Authorization": f"Bearer {sql_token}"}).status_code == 403
    r = HTTP.post(flush, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and isinstance(r.json()["written"], int), r.text


def test_nobody_cannot_probe_through_the_databases_credential(nobody):
    """ai_internal._server_request sends the server's token: the probe route still checks the caller."""
    err = sql_error(nobody, "select ai_internal._server_request('/pgmind/v1/probe', %s, current_user, 10)",
                    (json.dumps({"model_id": "x", "url": "http://127.0.0.1:1/v1", "provider": "openai",
                                 "model_type": "embedding", "model_name": "m",
                                 "auth": {"author_type": "env", "env": "OPENAI_API_KEY"}}),))
    assert err.sqlstate == "42501"


def test_docs_closed_and_unknown_routes_openai_shaped(server, token):
    assert HTTP.get(server + "/docs").status_code == 404
    r = HTTP.get(server + "/v1/nothing", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error"
    assert HTTP.get(server + "/openapi.json", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert HTTP.get(server + "/metrics", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_a_grant_works_before_the_server_hears_of_it(server, nobody_key, private_model, conn):
    """A refusal is not cached: a grant the server has not been told of yet (no NOTIFY: the row is
    written directly, as if the notice were still on its way) works on the next request."""
    body = {"model": private_model, "input": "x"}
    headers = {"Authorization": f"Bearer {nobody_key}"}
    assert HTTP.post(server + "/v1/embeddings", json=body, headers=headers).status_code == 403
    conn.execute("insert into ai.model_grants (model_id, grantee, granted_by) values (%s, 'sec_nobody', current_user)",
                 (private_model,))
    assert HTTP.post(server + "/v1/embeddings", json=body, headers=headers).status_code == 200


def test_api_key_carries_its_roles_grants_whatever_the_headers_say(server, nobody_key, private_model, conn):
    """Finding 10: a token holder who omitted (or forged) X-Pgmind-Caller got models it was not granted."""
    superuser = conn.execute("select current_user").fetchone()[0]
    for headers in ({}, {"X-Pgmind-Caller": superuser}):
        r = HTTP.post(server + "/v1/embeddings", json={"model": private_model, "input": "x"},
                       headers={"Authorization": f"Bearer {nobody_key}", **headers})
        assert r.status_code == 403, r.text
    r = HTTP.post(server + "/v1/embeddings", json={"model": "minilm", "input": "x"},
                   headers={"Authorization": f"Bearer {nobody_key}"})
    assert r.status_code == 200                                   # granted to public
    conn.execute("select ai.grant_model(%s, 'sec_nobody')", (private_model,))
    conn.execute("notify pgmind_registry")
    r = HTTP.post(server + "/v1/embeddings", json={"model": private_model, "input": "x"},
                   headers={"Authorization": f"Bearer {nobody_key}"})
    assert r.status_code == 200
    prefix = nobody_key[:12]
    revoker = connect(conn.info.dsn, autocommit=True)
    key2 = revoker.execute("select ai.create_api_key('sec_nobody')").fetchone()[0]
    revoker.execute("select ai.revoke_api_key(%s)", (key2[:12],))
    assert HTTP.get(server + "/v1/models", headers={"Authorization": f"Bearer {key2}"}).status_code == 401
    assert prefix != key2[:12]
    revoker.close()


def test_only_admins_make_api_keys_and_no_superuser_keys(nobody, conn):
    assert sql_error(nobody, "select ai.create_api_key('sec_nobody')").sqlstate == "42501"
    superuser = conn.execute("select current_user").fetchone()[0]
    assert sql_error(conn, "select ai.create_api_key(%s)", (superuser,)).sqlstate == "42501"
    assert nobody.execute("select count(*) from ai.api_key_list").fetchone()[0] == 0
    assert sql_error(nobody, "select * from ai.api_keys").sqlstate == "42501"


@pytest.fixture
def kb_http(owner, conn, settings, installed, server):
    from pgmind.vectorizer.worker import Worker
    owner.execute("drop table if exists sec_app.docs cascade")
    owner.execute("create table sec_app.docs (id int primary key, lang text, body text)")
    owner.execute("insert into sec_app.docs values (1, 'en', 'pandas eat bamboo'), (2, 'zh', '熊猫吃竹子'), "
                  "(3, 'en', 'the server token is secret')")
    owner.execute("select ai.create_vectorizer('sec_app.docs'::regclass, name => 'sec_docs', content => 'body', "
                  "model => 'minilm')")
    Worker(settings, installed, names=["sec_docs"], poll_interval=0.1).drain(timeout=120)
    yield "sec_docs"
    conn.execute("select ai.drop_vectorizer('sec_docs')")
    conn.execute("drop table sec_app.docs")


def _owner_key(installed) -> str:
    with connect(installed, autocommit=True) as c:
        return c.execute("select ai.create_api_key('sec_owner', 'tests')").fetchone()[0]


def test_search_over_http_runs_as_the_caller_with_structured_filters(server, token, nobody_key, kb_http, owner,
                                                                    installed):
    """Finding 1a: a search filter sent to the model server ran as the install role."""
    body = {"name": kb_http, "query": "pandas", "mode": "keyword"}
    # SQL text is not a filter here
    for bad in ("(select current_user)::int = 1", ["id = 1"], {"id": {"$gt": 1}}):
        r = HTTP.post(server + "/v1/search", json={**body, "filter": bad}, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 400, (bad, r.text)
    # a column name is an identifier, never SQL (searching as the table's owner, who may read it)
    owner_key = _owner_key(installed)
    r = HTTP.post(server + "/v1/search", json={**body, "filter": {"(select 1)": 1}},
                   headers={"Authorization": f"Bearer {owner_key}"})
    assert r.status_code == 400 and "does not exist" in r.json()["error"]["message"]
    # the caller's rights: a role that cannot read the chunks gets nothing
    r = HTTP.post(server + "/v1/search", json=body, headers={"Authorization": f"Bearer {nobody_key}"})
    assert r.status_code == 403, r.text
    r = HTTP.post(server + "/v1/search", json=body,
                   headers={"Authorization": f"Bearer {token}", "X-Pgmind-Caller": "sec_nobody"})
    assert r.status_code == 403, r.text
    # once granted, with a structured filter
    owner.execute("grant usage on schema sec_app to sec_nobody")
    # (search reads the chunk table itself: a view could run its owner's code in the searcher's session)
    owner.execute("grant select on sec_app.sec_docs_chunks_v1, sec_app.docs to sec_nobody")
    r = HTTP.post(server + "/v1/search", json={**body, "query": "熊猫 pandas", "filter": {"lang": "en"}},
                   headers={"Authorization": f"Bearer {nobody_key}"})
    assert r.status_code == 200, r.text
    assert [h["key"] for h in r.json()["results"]] == [{"id": 1}]
    r = HTTP.post(server + "/v1/search", json={**body, "query": "熊猫 pandas", "filter": {"id": [2, 3]}},
                   headers={"Authorization": f"Bearer {nobody_key}"})
    assert [h["key"] for h in r.json()["results"]] == [{"id": 2}]


def test_lone_surrogate_fails_alone(server, token, conn):
    """Finding 4: one lone surrogate killed the embedding batcher; every later request hung."""
    for model in ("minilm", "e5-small"):
        raw = '{"model": "%s", "input": ["a\\ud800b", "ok"]}' % model
        r = HTTP.post(server + "/v1/embeddings", content=raw.encode(),
                       headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}, timeout=30)
        assert r.status_code == 400 and "surrogate" in r.json()["error"]["message"], r.text
        r = HTTP.post(server + "/v1/embeddings", json={"model": model, "input": ["still works"]},
                       headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert r.status_code == 200
    raw = '{"model": "qwen-0.5b", "messages": [{"role": "user", "content": "\\udfff"}]}'
    r = HTTP.post(server + "/v1/chat/completions", content=raw.encode(),
                   headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert r.status_code == 400
    # through SQL: the internal function cannot be tricked into it either
    err = sql_error(conn, "select ai_internal._server_request('/v1/embeddings', %s, current_user, 10)",
                    ('{"model": "minilm", "input": ["\\ud800"]}',))
    assert err.sqlstate == "22023"
    assert conn.execute("select vector_dims(ai.embed('minilm', 'fine'))").fetchone()[0] == 384


def test_request_limits(server, token):
    """Finding 9: no cap on body size or input count."""
    auth = {"Authorization": f"Bearer {token}"}
    big = b'{"model": "minilm", "input": ["' + b"x" * (17 * 1024 * 1024) + b'"]}'
    r = HTTP.post(server + "/v1/embeddings", content=big, headers={**auth, "Content-Type": "application/json"},
                   timeout=60)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    r = HTTP.post(server + "/v1/embeddings", json={"model": "minilm", "input": ["x"] * 3000}, headers=auth)
    assert r.status_code == 400 and "limit" in r.json()["error"]["message"]
    r = HTTP.post(server + "/v1/embeddings", json={"model": "minilm", "input": "x" * 300_000}, headers=auth)
    assert r.status_code == 400


@pytest.mark.parametrize("body", [{"stop": 5}, {"stream_options": "x", "stream": True}, {"temperature": "hot"},
                                  {"max_tokens": -1}, {"messages": "hi"}, {"messages": [{"role": "god", "content": "x"}]},
                                  {"seed": 1.5}, {"stop": ["a"] * 40}])
def test_chat_wrong_types_are_400(server, token, body):
    """Finding 10: Python exception text or 500 for wrong types."""
    req = {"model": "qwen-0.5b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, **body}
    r = HTTP.post(server + "/v1/chat/completions", json=req, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 400, r.text
    assert "Traceback" not in r.text and r.json()["error"]["type"] == "invalid_request_error"


def test_dashscope_wrong_parameters_are_400(server, token):
    r = HTTP.post(server + "/api/v1/services/aigc/text-generation/generation", headers={"Authorization": f"Bearer {token}"},
                   json={"model": "qwen-0.5b", "input": {"prompt": "hi"}, "parameters": "x"})
    assert r.status_code == 400


def test_bad_timeout_option_does_not_outlive_its_call(conn, server):
    """Finding 8: {"timeout": -1} broke every later model call of the session."""
    for bad in ('{"timeout": -1}', '{"timeout": 0}', '{"timeout": "NaN"}', '{"timeout": 1e9}'):
        err = sql_error(conn, "select ai.generate('qwen-0.5b', 'hi', options => %s::jsonb)", (bad,))
        assert err.sqlstate in ("22023", "22P02"), (bad, err)
    assert conn.execute("select vector_dims(ai.embed('minilm', 'the session still works'))").fetchone()[0] == 384


def test_any_role_name_works(installed, conn, server):
    """Finding 8: a role whose name is not Latin-1 could never call a model."""
    conn.execute('drop role if exists "sec_用户"')
    conn.execute('create role "sec_用户" login')
    try:
        with as_role(installed, "sec_用户") as c:
            assert c.execute("select vector_dims(ai.embed('minilm', '你好'))").fetchone()[0] == 384
            assert c.execute("select vector_dims(ai.embed('minilm', 'again'))").fetchone()[0] == 384
    finally:
        conn.execute('drop role "sec_用户"')


def test_cancelled_generation_stops(conn, server, flush_call_log):
    """Finding 7: statement_timeout on ai.generate took effect only when the generation ended (174 s);
    now the call stops waiting at once and the server stops generating (the call log says so)."""
    conn.execute("set statement_timeout = '2s'")
    try:
        err = sql_error(conn, "select ai.generate('qwen-0.5b', 'Write a very long story about the sea.', "
                              "options => '{\"max_tokens\": 400, \"temperature\": 0}')")
    finally:
        conn.execute("reset statement_timeout")
    assert err.sqlstate == "57014"

    def cancelled_call():
        # the server records the call when it sees the client gone, which is after the SQL error:
        # flush what it has recorded so far, then look
        flush_call_log()
        row = conn.execute("select status, http_status, error from ai.call_log where model_id = 'qwen-0.5b' "
                           "order by id desc limit 1").fetchone()
        return row if row and row[1] == 499 else None
    row = wait_for(cancelled_call, timeout=20, interval=0.1, what="the cancelled generation's call-log record (499)")
    assert row[0] == "error" and row[1] == 499 and "cancelled" in row[2]


def test_install_during_calls_in_flight(installed, settings, conn, server):
    """Finding 10: pgmind install during an in-flight call gave 'cache lookup failed for function'."""
    errors = []

    def call():
        try:
            with connect(installed, autocommit=True) as c:
                for _ in range(20):
                    c.execute("select ai.embed('minilm', 'in flight')")
        except psycopg.Error as e:
            errors.append(e)
    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for _ in range(3):
        with connect(installed) as c:
            install(c, server_url=settings.effective_server_url)
    for t in threads:
        t.join()
    assert errors == []


def test_outbound_allow_list_and_secret_env(conn, server, nobody, flush_call_log):
    """Finding 3: the server called any address it was given, with any environment variable as key."""
    standin = StandIn(dim=8)
    try:
        conn.execute("select ai.drop_model('sec-remote', if_exists => true)")
        conn.execute("select ai.create_model('sec-remote', %s, 'openai', 'embedding', 'm', "
                     "'{\"author_type\": \"token\", \"token\": \"sk-sekrit-123456\"}')", (standin.url + "/v1",))
        assert conn.execute("select vector_dims(ai.embed('sec-remote', 'x'))").fetchone()[0] == 8
        # a provider that echoes the key: the key never reaches the error, the call log or the client
        standin.script["/v1/embeddings"] = ["echo401"]
        err = sql_error(conn, "select ai.embed('sec-remote', 'y')")
        assert "sk-sekrit" not in str(err) and "***" in err.diag.message_primary
        flush_call_log()             # (the call log is written in batches)
        logged = conn.execute("select error from ai.call_log where model_id = 'sec-remote' and status = 'error' "
                              "order by id desc limit 1").fetchone()
        assert logged and "sk-sekrit" not in logged[0] and "***" in logged[0]
        # loopback is refused once it is not on the list, whatever name reaches it
        conn.execute("select ai.disallow_outbound('127.0.0.1')")
        try:
            err = sql_error(conn, "select ai.embed('sec-remote', 'z')")
            assert err.sqlstate == "42501" and "not allowed" in err.diag.message_primary
            conn.execute("select ai.allow_outbound('localhost')")
            conn.execute("select ai.alter_model('sec-remote', url => %s)", (f"http://localhost:{standin.port}/v1",))
            err = sql_error(conn, "select ai.embed('sec-remote', 'z')")
            assert err.sqlstate == "42501" and "loopback or private" in err.diag.message_primary
        finally:
            conn.execute("select ai.allow_outbound('127.0.0.1')")
            conn.execute("select ai.disallow_outbound('localhost')")
        # only administrators change the list
        assert sql_error(nobody, "select ai.allow_outbound('10.0.0.0/8')").sqlstate == "42501"
        # an environment variable the operator did not lend
        conn.execute("select ai.drop_model('sec-env', if_exists => true)")
        conn.execute("insert into ai.model_registry (model_id, provider, model_type, model_name, url, auth, dimensions) "
                     "values ('sec-env', 'openai', 'embedding', 'm', %s, '{\"author_type\": \"env\", \"env\": \"HOME\"}', 8)",
                     (standin.url + "/v1",))
        conn.execute("notify pgmind_registry")
        err = sql_error(conn, "select ai.embed('sec-env', 'x')")
        assert err.sqlstate == "42501" and "PGMIND_SECRET_ENV" in err.diag.message_hint
        assert not any("Bearer /" in json.dumps(r["headers"]) for r in standin.requests)
    finally:
        conn.execute("select ai.drop_model('sec-remote', if_exists => true)")
        conn.execute("select ai.drop_model('sec-env', if_exists => true)")
        standin.close()


@pytest.mark.parametrize("stmt,state", [
    ("select ai.create_model('m1', 'http://127.0.0.1:99999/v1', 'openai', 'chat', 'x')", "22023"),
    ("select ai.create_model('m1', 'http://[::1/x', 'openai', 'chat', 'x')", "22023"),
    ("select ai.create_model('m1', 'http://h/v1', 'other', 'embedding', 'x', in_fn => '-')", None),
    ("select ai.create_model('m1', 'http://h/v1', 'openai', 'chat', 'x', options => '{\"dimensions\": \"abc\"}')",
     "22023"),
    ("select ai.grant_model('minilm', null)", "22004"),
    ("select * from ai.search('nope', 'q', rrf_k => -1)", "22023"),
    ("select ai.configure_rag('nope', '{\"k\": \"abc\"}')", "42704"),
])
def test_bad_arguments_get_clear_errors(conn, stmt, state):
    """Finding 10: invalid registrations accepted, raw cast errors without hints."""
    conn.execute("select ai.drop_model('m1', if_exists => true)")
    try:
        if state is None:          # '-' means no function: accepted as none, and works as none
            conn.execute(stmt)
            assert conn.execute("select in_fn from ai.model_registry where model_id = 'm1'").fetchone()[0] is None
            return
        err = sql_error(conn, stmt)
        assert err.sqlstate == state, (stmt, err)
        assert err.diag.message_hint
    finally:
        conn.execute("select ai.drop_model('m1', if_exists => true)")


def test_configure_rag_refuses_values_that_would_break_every_answer(owner, kb_http):
    for bad in ('{"k": "abc"}', '{"k": 0}', '{"threshold": "high"}', '{"language": "fr"}', '{"max_tokens": 1.5}',
                '[]'):
        err = sql_error(owner, "select ai.configure_rag('sec_docs', %s::jsonb)", (bad,))
        assert err.sqlstate == "22023" and err.diag.message_hint, bad
    assert owner.execute("select ai.configure_rag('sec_docs', '{\"k\": 3}')->>'k'").fetchone()[0] == "3"


def test_long_keyword_query_is_refused_quickly(owner, kb_http):
    """Finding 9: a 300 KB keyword query ran into the statement timeout (ai.fts_text was quadratic)."""
    err = sql_error(owner, "select * from ai.search('sec_docs', repeat('熊猫 pandas ', 30000), mode => 'keyword')")
    assert err.sqlstate == "22023"
    # RAG refuses it first, before its topic check and expansion (model calls that run before its search)
    err = sql_error(owner, "select ai.rag_prompt('sec_docs', repeat('熊猫 ', 5000))")
    assert err.sqlstate == "22023" and "15000 characters" in str(err) and err.diag.message_hint
    n = owner.execute("select length(ai.fts_text(repeat('熊猫吃竹子 pandas ', 20000)))").fetchone()[0]
    assert n > 300000


PATTERNS = ["api.openai.com", "*.aliyuncs.com", "127.0.0.1", "127.0.0.1:8080", "10.0.0.0/8", "::1", "[::1]:8080",
            "fd00::/8", "localhost", "host:abc", "http://x", "a b", "*.", "1.2.3.4/99x", "x;y", ""]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_outbound_patterns_same_rule_in_sql_and_python(conn, pattern):
    """What ai.allow_outbound accepts, the server's policy can parse (one rule, two sides)."""
    from pgmind.models.outbound import Entry
    try:
        conn.execute("select ai.allow_outbound(%s)", (pattern,))
        accepted = True
        conn.execute("select ai.disallow_outbound(%s)", (pattern,)) if pattern != "127.0.0.1" else None
    except psycopg.Error as e:
        assert e.sqlstate == "22023"
        accepted = False
    if accepted:
        Entry.parse(pattern)            # does not raise
    assert accepted == (PATTERNS.index(pattern) < 9)


def test_pg_cancel_backend_stops_a_generation(installed, conn, server):
    """Finding 7: pg_cancel_backend took effect only when the generation ended."""
    result = {}
    with connect(installed, autocommit=True) as victim:
        pid = victim.info.backend_pid

        def run():
            try:
                victim.execute("select ai.generate('qwen-0.5b', 'Tell a very long story about mountains.', "
                               "options => '{\"max_tokens\": 400, \"temperature\": 0}')")
                result["ok"] = True
            except psycopg.Error as e:
                result["error"] = e
        t = threading.Thread(target=run)
        t.start()
        wait_for(lambda: conn.execute("select state = 'active' from pg_stat_activity where pid = %s",
                                      (pid,)).fetchone()[0], timeout=30, what="the victim's call to be running")
        # a fixed pause, kept: nothing says when the request has reached the model server (the backend
        # is 'active' from the statement's start), and the cancel must find the generation under way,
        # not one not yet begun; half a second is ample for the request, short of the 400 tokens
        import time
        time.sleep(0.5)
        conn.execute("select pg_cancel_backend(%s)", (pid,))
        t.join(timeout=60)
        assert not t.is_alive()
        assert result.get("error") is not None and result["error"].sqlstate == "57014", result
        # the session goes on
        assert victim.execute("select vector_dims(ai.embed('minilm', 'after the cancel'))").fetchone()[0] == 384


def test_http_filters_only_on_built_in_types(server, kb_http, owner, installed):
    """A cast of an owner's type to text is the owner's function: not run for HTTP filters."""
    token = _owner_key(installed)      # (searching as the owner, who may read the table)
    owner.execute("create domain sec_app.lang_code as text")
    owner.execute("alter table sec_app.docs alter column lang type sec_app.lang_code")
    r = HTTP.post(server + "/v1/search", json={"name": kb_http, "query": "pandas", "mode": "keyword",
                                              "filter": {"lang": "en"}},
                  headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 400 and "built-in types" in r.json()["error"]["message"], r.text
    r = HTTP.post(server + "/v1/search", json={"name": kb_http, "query": "pandas", "mode": "keyword",
                                              "filter": {"id": 1}},
                  headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text


def test_an_alias_has_its_own_grants(conn, server, nobody_key, nobody):
    """An alias of a model granted to public is not granted by being one; nobody cannot make one."""
    conn.execute("select ai.drop_model('sec-alias', if_exists => true)")
    conn.execute("select ai.create_model('sec-alias', null, 'pgmind', 'chat', 'qwen-0.5b')")
    try:
        for path, body in (("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
                           ("/v1/completions", {"prompt": "hi"})):
            r = HTTP.post(server + path, json={"model": "sec-alias", "max_tokens": 1, **body},
                          headers={"Authorization": f"Bearer {nobody_key}"})
            assert r.status_code == 403 and r.json()["error"]["hint"], r.text
        e = sql_error(nobody, "select ai.create_model('sec-alias-2', null, 'pgmind', 'chat', 'qwen-0.5b')")
        assert e.sqlstate == "42501"
    finally:
        conn.execute("select ai.drop_model('sec-alias')")


def test_training_is_for_administrators_and_jobs_are_private(conn, nobody, owner):
    """A role granted nothing cannot train, see or cancel jobs; an owner who is not an administrator
    cannot either (a trained model is registered for everyone to be granted)."""
    for who in (nobody, owner):
        e = sql_error(who, "select ai.train_image_encoder('x', 'select ''\\x00''::bytea, (i % 2)::text "
                           "from generate_series(1, 30) i')")
        assert e.sqlstate == "42501" and "administrators" in e.diag.message_primary
    conn.execute("delete from ai.training_jobs where source = 'sec-private-job'")
    conn.execute("""insert into ai.training_jobs (kind, source, base_model, new_model, owner)
                    values ('embedding', 'sec-private-job', 'e5-small', 'sec-x', current_user)""")
    try:
        assert nobody.execute("select count(*) from ai.training_jobs").fetchone()[0] == 0
        assert nobody.execute("select count(*) from ai.training_pairs").fetchone()[0] == 0
        job = conn.execute("select id from ai.training_jobs where source = 'sec-private-job'").fetchone()[0]
        assert nobody.execute("select ai.cancel_training(%s)", (job,)).fetchone()[0] is False
        e = sql_error(nobody, "update ai.training_jobs set state = 'done'")
        assert e.sqlstate == "42501"
        e = sql_error(nobody, "select ai_internal._add_training_pairs(%s, '[]')", (job,))
        assert e.sqlstate == "42501"
    finally:
        conn.execute("delete from ai.training_jobs where source = 'sec-private-job'")
