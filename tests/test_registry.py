"""The model registry: registration checks, secrets, grants, ai.call_model with transform functions."""
from __future__ import annotations

import psycopg
import pytest

from conftest import sql_error
from pgmind.db import connect
from standins import StandIn, fake_vector
from waiting import wait_for


@pytest.fixture(scope="module")
def standin():
    s = StandIn(dim=8)
    yield s
    s.close()


@pytest.fixture
def fresh_models(conn):
    """Drop the models a test registers."""
    created = []
    yield created
    for m in created:
        conn.execute("select ai.drop_model(%s, if_exists => true)", (m,))


@pytest.fixture(scope="module")
def roles(installed):
    with connect(installed, autocommit=True) as c:
        for r in ("alice", "bob"):
            c.execute(f"drop role if exists {r}")
            c.execute(f"create role {r} login")
        c.execute("""
            create or replace function public.clip_in(model_id text, input text) returns jsonb
            language sql as $$ select jsonb_build_object('data', jsonb_build_array(jsonb_build_object('text', input)),
                                                         'execEndpoint', '/') $$;
            create or replace function public.clip_out(model_id text, response jsonb) returns jsonb
            language sql as $$ select response->'data'->0->'embedding' $$;
            create or replace function public.clip_headers(model_id text, input text) returns jsonb
            language sql as $$ select jsonb_build_object('X-Request-Source', 'pgmind-test') $$;
            create or replace function public.bad_in(x int) returns jsonb language sql as $$ select '{}'::jsonb $$;
            create or replace function public.text_in(model_id text, input text) returns text
            language sql as $$ select input $$;
        """)
    yield
    with connect(installed, autocommit=True) as c:
        for r in ("alice", "bob"):
            c.execute(f"drop owned by {r}")
            c.execute(f"drop role {r}")


def test_local_models_are_registered(conn):
    rows = dict(conn.execute("select model_id, model_type from ai.models where provider = 'pgmind'").fetchall())
    assert rows == {"e5-small": "embedding", "use-m3": "embedding", "minilm": "embedding", "qwen-0.5b": "chat",
                    "image-features": "image_embedding", "qwen-1.5b": "chat", "rerank-qwen-1.5b": "rerank"}


def test_call_model_with_transform_functions(conn, server, standin, roles, fresh_models):
    """The issue's clip example: in_fn → HTTP (with the secret added by the model server) → out_fn."""
    fresh_models.append("embedding/my_clip")
    conn.execute("""select ai.create_model('embedding/my_clip', %s, 'other', 'embedding', 'clip',
                    '{"author_type":"token","token":"clip-secret-42"}', 'clip_headers'::regproc,
                    'clip_in'::regproc, 'clip_out'::regproc)""", (standin.url + "/post",))
    out = conn.execute("select ai.call_model('embedding/my_clip', 'a white truck')").fetchone()[0]
    assert out == pytest.approx(fake_vector("a white truck", 8))
    sent = standin.requests[-1]
    assert sent["body"] == {"data": [{"text": "a white truck"}], "execEndpoint": "/"}
    assert sent["headers"]["Authorization"] == "Bearer clip-secret-42"
    assert sent["headers"]["X-Request-Source"] == "pgmind-test"


def test_call_model_jsonb_input_without_functions(conn, server, standin, roles, fresh_models):
    fresh_models.append("raw_clip")
    conn.execute("select ai.create_model('raw_clip', %s, 'other', 'embedding', 'clip')", (standin.url + "/post",))
    out = conn.execute("""select ai.call_model('raw_clip', '{"data": [{"text": "x"}]}'::jsonb)""").fetchone()[0]
    assert out["data"][0]["embedding"] == pytest.approx(fake_vector("x", 8))
    assert "Authorization" not in standin.requests[-1]["headers"]


def test_secret_never_shown(conn, server, standin, roles, fresh_models):
    fresh_models.append("secretive")
    conn.execute("""select ai.create_model('secretive', %s, 'other', 'embedding', 'clip',
                    '{"author_type":"token","token":"sk-live-very-secret"}')""", (standin.url + "/post",))
    auth = conn.execute("select auth from ai.models where model_id = 'secretive'").fetchone()[0]
    assert auth == {"author_type": "token", "token": "********"}
    everything = conn.execute("select string_agg(m::text, ' ') from ai.models m").fetchone()[0]
    assert "sk-live-very-secret" not in everything
    # other roles cannot read the secrets table, the settings, or the server token
    with connect(conn.info.dsn.replace("user=pgmind", "user=alice"), autocommit=True) as alice:
        for table in ("ai.model_secrets", "ai._settings", "ai.model_registry", "ai.call_log"):
            e = sql_error(alice, f"select * from {table}")
            assert e.sqlstate == "42501", table
        assert "sk-live" not in str(alice.execute("select array_agg(m::text) from ai.models m").fetchone()[0])


def test_secret_not_in_call_log_or_errors(conn, server, standin, roles, fresh_models, flush_call_log):
    fresh_models.append("leaky")
    conn.execute("""select ai.create_model('leaky', %s, 'other', 'embedding', 'clip',
                    '{"author_type":"token","token":"sk-must-not-leak"}')""", (standin.url + "/post",))
    standin.script["/post"] = ["401"]
    e = sql_error(conn, """select ai.call_model('leaky', '{"data": []}'::jsonb)""")
    assert e.sqlstate == "PM002"
    assert "401" in e.diag.message_primary and "Incorrect API key" in e.diag.message_primary
    assert "sk-must-not-leak" not in str(e) + (e.diag.message_hint or "") + (e.diag.message_detail or "")
    flush_call_log()                     # the failed call's record is in ai.call_log now
    logged = conn.execute("select string_agg(l::text, ' ') from ai.call_log l").fetchone()[0]
    assert "sk-must-not-leak" not in logged


def test_env_secret(conn, server, standin, roles, fresh_models):
    """A key held in the model server's environment (PROVIDER_TEST_KEY is set by the fixture)."""
    fresh_models.append("envkey")
    conn.execute("""select ai.create_model('envkey', %s, 'other', 'embedding', 'clip',
                    '{"author_type":"env","env":"PROVIDER_TEST_KEY"}')""", (standin.url + "/post",))
    conn.execute("""select ai.call_model('envkey', '{"data": [{"text": "y"}]}'::jsonb)""")
    assert standin.requests[-1]["headers"]["Authorization"] == "Bearer sk-from-env-123"


def test_grants(conn, server, standin, roles, fresh_models, installed):
    fresh_models.append("guarded")
    conn.execute("select ai.create_model('guarded', %s, 'other', 'embedding', 'clip')", (standin.url + "/post",))
    call = """select ai.call_model('guarded', '{"data": [{"text": "z"}]}'::jsonb)"""
    alice_dsn = psycopg.conninfo.make_conninfo(installed, user="alice")
    with connect(alice_dsn, autocommit=True) as alice:
        e = sql_error(alice, call)
        assert e.sqlstate == "42501"
        assert "permission denied for model" in e.diag.message_primary
        assert "ai.grant_model('guarded', 'alice')" in e.diag.message_hint
        conn.execute("select ai.grant_model('guarded', 'alice')")
        assert alice.execute(call).fetchone()[0]["data"][0]["embedding"] == pytest.approx(fake_vector("z", 8))
        conn.execute("select ai.revoke_model('guarded', 'alice')")
        assert sql_error(alice, call).sqlstate == "42501"
        # going around ai.call_model to the internal function, claiming another role, is refused
        e = sql_error(alice, "select ai_internal._server_request('/pgmind/v1/call', "
                             "'{\"model\": \"guarded\", \"body\": {}}', 'pgmind')")
        assert e.sqlstate == "42501"
        # ... and claiming itself, the model server enforces the grant (its cache was dropped by
        # the registry's NOTIFY, which arrives just after the revoke commits)
        e = eventually_error(alice, "select ai_internal._server_request('/pgmind/v1/call', "
                                    "'{\"model\": \"guarded\", \"body\": {}}', 'alice')")
        assert e.sqlstate == "42501"
        # non-administrators cannot register models
        e = sql_error(alice, "select ai.create_model('mine', 'http://127.0.0.1:1/x', 'other', 'chat', 'm')")
        assert e.sqlstate == "42501"


def eventually_error(conn, query: str, within: float = 0.9) -> psycopg.Error:
    """The query must start failing within ``within`` seconds: a NOTIFY is asynchronous, but it
    must beat the cache TTL (30 s), or the invalidation is not working."""
    def failed():
        try:
            conn.execute(query)
        except psycopg.Error as e:
            return e
    return wait_for(failed, timeout=within, what=f"{query} to fail (it still succeeds)")


def test_revoking_a_local_model_from_public(conn, server, roles, installed):
    alice_dsn = psycopg.conninfo.make_conninfo(installed, user="alice")
    with connect(alice_dsn, autocommit=True) as alice:
        assert alice.execute("select vector_dims(ai.embed('minilm', 'hi'))").fetchone()[0] == 384
        conn.execute("select ai.revoke_model('minilm', 'public')")
        try:
            e = eventually_error(alice, "select ai.embed('minilm', 'hi')")
            assert e.sqlstate == "42501"
            conn.execute("select ai.grant_model('minilm', 'bob')")
            bob_dsn = psycopg.conninfo.make_conninfo(installed, user="bob")
            with connect(bob_dsn, autocommit=True) as bob:
                assert bob.execute("select vector_dims(ai.embed('minilm', 'hi'))").fetchone()[0] == 384
        finally:
            conn.execute("select ai.grant_model('minilm', 'public')")
            conn.execute("select ai.revoke_model('minilm', 'bob')")


@pytest.mark.parametrize("args,sqlstate,needle", [
    ("'m1', 'ftp://x/y', 'other', 'embedding', 'x'", "22023", "invalid model URL"),
    ("'m1', 'http://127.0.0.1:1/x', 'acme', 'embedding', 'x'", "22023", "unknown provider"),
    ("'m1', 'http://127.0.0.1:1/x', 'other', 'tts', 'x'", "22023", "unknown model type"),
    ("'m1', null, 'other', 'embedding', 'x'", "22023", "needs a URL"),
    ("'bad id!', 'http://127.0.0.1:1/x', 'other', 'embedding', 'x'", "22023", "invalid model id"),
    ("'m1', 'http://127.0.0.1:1/x', 'other', 'embedding', 'x', '{\"author_type\":\"token\"}'", "22023", "no token"),
    ("'m1', 'http://127.0.0.1:1/x', 'other', 'embedding', 'x', '{}', null, 'bad_in'::regproc", "42883", "wrong arguments"),
    ("'m1', 'http://127.0.0.1:1/x', 'other', 'embedding', 'x', '{}', null, 'text_in'::regproc", "42P13", "returns text"),
    ("'e5-small', null, 'pgmind', 'embedding', 'x'", "42710", "already exists"),
])
def test_create_model_checks(conn, roles, args, sqlstate, needle):
    e = sql_error(conn, f"select ai.create_model({args})")
    assert e.sqlstate == sqlstate
    assert needle in e.diag.message_primary
    assert e.diag.message_hint


def test_create_model_checks_dimensions_by_calling(conn, server, standin, fresh_models):
    """An OpenAI-compatible embedding model: its dimension is measured at registration."""
    fresh_models.append("remote-emb")
    conn.execute("select ai.create_model('remote-emb', %s, 'openai', 'embedding', 'text-embedding-3-small')",
                 (standin.url + "/v1",))
    assert conn.execute("select dimensions from ai.models where model_id = 'remote-emb'").fetchone()[0] == 8
    e = sql_error(conn, """select ai.create_model('remote-emb-2', %s, 'openai', 'embedding', 'x',
                           options => '{"dimensions": 1536}')""", (standin.url + "/v1",))
    assert e.sqlstate == "22000"
    assert "returns 8 dimensions" in e.diag.message_primary
    fresh_models.append("remote-emb-3")                    # 8.0 is the whole number 8 (JSON Schema's integer)
    conn.execute("""select ai.create_model('remote-emb-3', %s, 'openai', 'embedding', 'x',
                    options => '{"dimensions": 8.0}')""", (standin.url + "/v1",))
    assert conn.execute("select dimensions from ai.models where model_id = 'remote-emb-3'").fetchone()[0] == 8
    for bad in ('8.5', '"8"', '0', '16001', 'null', '[8]'):
        e = sql_error(conn, "select ai.create_model('remote-emb-4', %s, 'openai', 'embedding', 'x', options => %s)",
                      (standin.url + "/v1", f'{{"dimensions": {bad}}}'))
        assert e.sqlstate == "22023" and "dimensions" in e.diag.message_primary and e.diag.message_hint, bad


def test_alter_and_drop(conn, standin, fresh_models):
    fresh_models.append("changing")
    conn.execute("select ai.create_model('changing', %s, 'other', 'chat', 'v1')", (standin.url + "/post",))
    conn.execute("select ai.alter_model('changing', name => 'v2', options => '{\"timeout\": 5}')")
    assert conn.execute("select model_name, options from ai.models where model_id = 'changing'").fetchone() == \
        ("v2", {"timeout": 5})
    assert conn.execute("select ai.drop_model('changing')").fetchone()[0] is True
    assert sql_error(conn, "select ai.drop_model('changing')").sqlstate == "42704"
    assert conn.execute("select ai.drop_model('changing', if_exists => true)").fetchone()[0] is False


def test_a_remote_model_with_its_dimension_registers_before_its_key_and_network(conn, server, fresh_models):
    """Issue 38, item 9: the dimension given, the registration needs no call (the key and the network
    can come later; a NOTICE says what the call found); without it, the call is needed and its error
    is the server's, with its SQLSTATE and hint and no PL/Python prefix."""
    notices: list = []
    conn.add_notice_handler(lambda d: notices.append((d.message_primary, d.message_hint)))   # (valid in the call only)
    fresh_models.extend(["later-emb", "later-emb-2"])
    conn.execute("""select ai.create_model('later-emb', null, 'openai', 'embedding', 'text-embedding-3-small',
                    '{"author_type": "env", "env": "PGMIND_TEST_NOT_LENT"}', options => '{"dimensions": 1536}')""")
    assert conn.execute("select dimensions from ai.models where model_id = 'later-emb'").fetchone()[0] == 1536
    message, hint = notices[-1]
    assert message.startswith('model "later-emb" was registered without a check: ') and \
        "PGMIND_TEST_NOT_LENT" in message and "plpy" not in message
    assert "pgmind models test later-emb" in hint and "PGMIND_SECRET_ENV" in hint
    # the network not in place yet (a host not on the outbound allow-list)
    conn.execute("""select ai.create_model('later-emb-2', 'https://embeddings.later.example/v1', 'openai', 'embedding',
                    'm', '{"token": "sk-later"}', options => '{"dimensions": 8}')""")
    assert "not allowed" in notices[-1][0] and "ai.allow_outbound" in notices[-1][1]
    # a definition that cannot work is still refused, dimension or not
    e = sql_error(conn, """select ai.create_model('later-emb-3', 'https://embeddings.later.example/v1', 'openai',
                           'embedding', 'm', options => '{"dimensions": 8, "headers": {"X-A": "é"}}')""")
    assert e.sqlstate == "22023" and "X-A" in e.diag.message_primary and e.diag.message_hint
    # without the dimension: the call is needed, and its error is clean
    e = sql_error(conn, """select ai.create_model('later-emb-3', null, 'openai', 'embedding', 'm',
                           '{"author_type": "env", "env": "PGMIND_TEST_NOT_LENT"}')""")
    assert e.sqlstate == "42501" and e.diag.message_primary.startswith("model later-emb-3 takes its key from")
    assert e.diag.message_hint
    assert conn.execute("select count(*) from ai.model_registry where model_id = 'later-emb-3'").fetchone()[0] == 0


def test_call_model_on_a_local_chat_model(conn, server):
    """Issue 38, item 8: ai.call_model reads a local chat model's body as OpenAI's chat request."""
    out = conn.execute("""select ai.call_model('qwen-0.5b', '{"messages": [{"role": "user", "content": "Say hi."}],
                          "max_tokens": 8, "temperature": 0}'::jsonb)""").fetchone()[0]
    assert out["choices"][0]["message"]["role"] == "assistant" and out["choices"][0]["message"]["content"]
    assert out["usage"]["completion_tokens"] >= 1 and out["model"] == "qwen-0.5b"
    out = conn.execute("select ai.call_model('qwen-0.5b', '用一个词回答：你好')").fetchone()[0]    # a text: one user message
    assert out["choices"][0]["message"]["content"]
    e = sql_error(conn, """select ai.call_model('qwen-0.5b', '{"prompt": "x"}'::jsonb)""")
    assert e.sqlstate == "22023" and "messages" in e.diag.message_primary and e.diag.message_hint
    e = sql_error(conn, """select ai.call_model('qwen-0.5b', '{"messages": [{"role": "user", "content": "x"}],
                           "temprature": 0}'::jsonb)""")
    assert e.sqlstate == "22023" and "temprature" in e.diag.message_primary


def test_registering_as_a_role_that_is_not_an_administrator(conn, installed, roles):
    """Issue 38, item 10: not PostgreSQL's bare "permission denied for function create_model": what it
    takes (pgmind_admin) and how to get it, for the role that asked."""
    with connect(psycopg.conninfo.make_conninfo(installed, user="alice"), autocommit=True) as alice:
        e = sql_error(alice, "select ai.create_model('alice-model', null, 'pgmind', 'embedding', 'e5-small')")
        assert e.sqlstate == "42501"
        assert e.diag.message_primary == "only pgmind administrators register models (role alice is not one)"
        assert e.diag.message_hint == "a superuser can make it one: grant pgmind_admin to alice"
    assert conn.execute("select count(*) from ai.model_registry where model_id = 'alice-model'").fetchone()[0] == 0
    # hints name the role that was named
    e = sql_error(conn, "select ai.grant_model('e5-small', 'Data Team')")
    assert e.sqlstate == "42704" and e.diag.message_hint == 'create the role first (create role "Data Team"), or grant to public'
    e = sql_error(conn, "select ai.create_api_key('Data Team')")
    assert e.sqlstate == "42704" and 'create role "Data Team" nologin' in e.diag.message_hint
    e = sql_error(conn, "select ai.create_api_key(null)")
    assert e.sqlstate == "22004" and e.diag.message_hint
