"""A vectorizer's owner code runs with the owner's rights only, and other roles cannot touch it.
Each test is one finding of issue 8 (the statement shapes of the review), or a case of the same kind."""
from __future__ import annotations

import pytest

from conftest import sql_error
from pgmind.vectorizer.chunking import ChunkingConfig
from pgmind.vectorizer.worker import Worker


@pytest.fixture
def kb(owner, conn):
    """A non-superuser's table with a vectorizer, embedded."""
    owner.execute("drop table if exists sec_app.notes cascade")
    owner.execute("create table sec_app.notes (id int primary key, body text)")
    owner.execute("insert into sec_app.notes values (1, 'pandas eat bamboo'), (2, '熊猫吃竹子'), (3, 'owls hunt at night')")
    vid = owner.execute("select ai.create_vectorizer('sec_app.notes'::regclass, name => 'sec_notes', "
                        "content => 'body', model => 'minilm')").fetchone()[0]
    yield vid
    conn.execute("select ai.drop_vectorizer('sec_notes') where exists "
                 "(select 1 from ai.vectorizer_status where name = 'sec_notes')")
    conn.execute("drop table if exists sec_app.notes cascade")


def drain(settings, installed, names=("sec_notes",)):
    w = Worker(settings, installed, names=list(names), poll_interval=0.1)
    w.drain(timeout=120)
    return w


def chunk_ids(conn):
    return sorted(r[0] for r in conn.execute("select distinct id from sec_app.sec_notes_chunks"))


def test_non_superuser_owner_creates_and_uses_a_vectorizer(kb, owner, settings, installed, server):
    drain(settings, installed)
    assert owner.execute("select count(distinct id) from sec_app.sec_notes_chunks").fetchone()[0] == 3
    assert owner.execute("select done, pending from ai.vectorizer_status where name = 'sec_notes'").fetchone() == (3, 0)
    owner.execute("delete from sec_app.notes where id = 3")
    assert owner.execute("select count(distinct id) from sec_app.sec_notes_chunks").fetchone()[0] == 2


def test_nobody_cannot_forget_or_truncate_anothers_chunks(kb, nobody, conn, settings, installed, server):
    """Finding 2: ai_internal._forget / ai_internal._forget_all had no owner check."""
    drain(settings, installed)
    for stmt in ("select ai_internal._forget(%s, array['{\"id\": 1}'::jsonb])", "select ai_internal._forget_all(%s)"):
        err = sql_error(nobody, stmt, (kb,))
        assert err.sqlstate == "42501", err
    assert chunk_ids(conn) == [1, 2, 3]


def test_nobody_cannot_enqueue_into_anothers_vectorizer(kb, nobody, conn, settings, installed, server):
    """Finding 5: ai_internal._enqueue(1, array['{"id":"x"}']) stalled another owner's vectorizer."""
    drain(settings, installed)
    err = sql_error(nobody, "select ai_internal._enqueue(%s, array['{\"id\": \"x\"}'::jsonb])", (kb,))
    assert err.sqlstate == "42501"
    assert nobody.execute("select count(*) from ai.vectorizer_queue").fetchone()[0] == 0   # sees no one's queue
    assert conn.execute("select count(*) from ai.vectorizer_queue where vectorizer_id = %s", (kb,)).fetchone()[0] == 0


def test_a_bad_key_from_the_owner_is_quarantined_alone(kb, owner, conn, settings, installed, server):
    drain(settings, installed)
    owner.execute("select ai_internal._enqueue(%s, array['{\"id\": \"x\"}'::jsonb])", (kb,))
    owner.execute("update sec_app.notes set body = 'pandas also eat fruit' where id = 1")
    drain(settings, installed)
    assert "fruit" in conn.execute("select chunk from sec_app.sec_notes_chunks where id = 1").fetchone()[0]
    err = conn.execute("select key, sqlstate from ai.vectorizer_errors where vectorizer = 'sec_notes'").fetchall()
    assert err == [({"id": "x"}, "22P02")]


def test_nobody_cannot_register_or_read_anothers_vectorizer(kb, nobody):
    """Finding 1b: ai_internal._register_vectorizer was callable by anyone and validated almost nothing."""
    err = sql_error(nobody, "select ai_internal._register_vectorizer('forged', 'sec_app.notes'::regclass, 'body', "
                            "'minilm', null, null, current_user)")
    assert err.sqlstate == "42501"
    nobody.execute("create temp table t (id int primary key, body text)")
    err = sql_error(nobody, "select ai_internal._register_vectorizer('forged', 't'::regclass, 'body', 'minilm', null, null, "
                            "'sec_owner')")
    assert err.sqlstate == "42501"        # cannot claim to be another role
    for stmt in ("select * from ai_internal._vectorizer_info(%s)", "select ai_internal._owner_functions_sql(%s)"):
        assert sql_error(nobody, stmt, (kb,)).sqlstate == "42501"      # no one else's content expression
    for stmt in ("select ai_internal._activate_version(%s, 1)", "select ai_internal._probe_model('x', 'http://127.0.0.1:1/v1', "
                 "'openai', 'embedding', 'm', '{}', null, '{}')"):
        assert sql_error(nobody, stmt, (kb,) if "%s" in stmt else None).sqlstate == "42501"
    # the owner functions are the owner's alone
    assert sql_error(nobody, "select * from sec_app.sec_notes_vectorizer_content(array['{\"id\":1}'::jsonb])"
                     ).sqlstate == "42501"


def test_content_cannot_undo_the_role_switch(owner, conn, settings, installed, server):
    """Finding 1c: a content expression with set_config('role', ...) escaped the worker's SET LOCAL ROLE."""
    owner.execute("drop table if exists sec_app.esc cascade")
    owner.execute("create table sec_app.esc (id int primary key, body text)")
    owner.execute("insert into sec_app.esc values (1, 'x'), (2, 'y')")
    superuser = conn.execute("select current_user").fetchone()[0]
    owner.execute("select ai.create_vectorizer('sec_app.esc'::regclass, name => 'sec_esc', model => 'minilm', content => "
                  "%s)", (f"set_config('role', '{superuser}', true) || (select string_agg(value, ',') "
                          "from ai._settings) || body",))
    try:
        drain(settings, installed, ["sec_esc"])
        assert conn.execute("select count(*) from sec_app.sec_esc_chunks").fetchone()[0] == 0
        errors = conn.execute("select sqlstate, error from ai.vectorizer_errors where vectorizer = 'sec_esc'").fetchall()
        # refused either way: the settings are not readable, and the role cannot be set
        assert len(errors) == 2 and all(e[0] == "42501" for e in errors), errors
        assert all("pgm-" not in e[1] for e in errors)
        conn.execute("select ai.drop_vectorizer('sec_esc')")
        owner.execute("select ai.create_vectorizer('sec_app.esc'::regclass, name => 'sec_esc', model => 'minilm', "
                      "content => %s)", (f"set_config('role', '{superuser}', true) || current_user || body",))
        drain(settings, installed, ["sec_esc"])
        errors = conn.execute("select sqlstate, error from ai.vectorizer_errors where vectorizer = 'sec_esc'").fetchall()
        assert len(errors) == 2 and all("security-definer" in e[1] for e in errors), errors
    finally:
        conn.execute("select ai.drop_vectorizer('sec_esc')")
        conn.execute("drop table sec_app.esc")


def test_owner_triggers_on_the_chunk_table_run_as_the_owner(kb, owner, conn, settings, installed, server):
    """The worker's writes go through the owner's function: a trigger the owner put on the chunk table
    runs with the owner's rights, not the worker's."""
    owner.execute("create table sec_app.seen (who name, superuser bool)")
    owner.execute("""create function sec_app.spy() returns trigger language plpgsql as $$
                     begin insert into sec_app.seen select current_user,
                           (select rolsuper from pg_roles where rolname = current_user); return new; end $$""")
    owner.execute("create trigger spy before insert on sec_app.sec_notes_chunks_v1 for each row "
                  "execute function sec_app.spy()")
    drain(settings, installed)
    assert set(conn.execute("select who, superuser from sec_app.seen").fetchall()) == {("sec_owner", False)}


def test_content_failing_for_one_row_does_not_block_the_others(owner, conn, settings, installed, server):
    """Finding 6 (last part): a content expression that fails for one row blocked its batch forever."""
    owner.execute("drop table if exists sec_app.div cascade")
    owner.execute("create table sec_app.div (id int primary key, body text)")
    owner.execute("insert into sec_app.div select g, 'row ' || g from generate_series(1, 5) g")
    owner.execute("select ai.create_vectorizer('sec_app.div'::regclass, name => 'sec_div', model => 'minilm', "
                  "content => '(10 / (id - 3))::text || body')")
    try:
        drain(settings, installed, ["sec_div"])
        assert [r[0] for r in conn.execute("select distinct id from sec_app.sec_div_chunks order by 1")] == [1, 2, 4, 5]
        assert conn.execute("select key, sqlstate from ai.vectorizer_errors where vectorizer = 'sec_div'"
                            ).fetchall() == [({"id": 3}, "22012")]
    finally:
        conn.execute("select ai.drop_vectorizer('sec_div')")
        conn.execute("drop table sec_app.div")


def test_worker_refuses_an_owner_function_made_unsafe(kb, owner, conn, settings, installed, server):
    """An owner who turns its content function into SECURITY INVOKER (which would run as the worker's
    administrator) gets its rows held back with the reason, and the worker goes on."""
    owner.execute("alter function sec_app.sec_notes_vectorizer_content(jsonb[]) security invoker")
    w = Worker(settings, installed, names=["sec_notes"], poll_interval=0.1)
    w.run_once()
    assert chunk_ids(conn) == []
    last = conn.execute("select last_error from ai.vectorizer_status where name = 'sec_notes'").fetchone()[0]
    assert "SECURITY DEFINER" in last
    conn.execute("select ai_internal._install_owner_functions(%s)", (kb,))     # what `pgmind install` does
    conn.execute("update ai.vectorizer_queue set next_attempt_at = now() where vectorizer_id = %s", (kb,))
    drain(settings, installed)
    assert chunk_ids(conn) == [1, 2, 3]


BAD_CHUNKING = ['[]', '"x"', '{"max_token": 100}', '{"max_tokens": 9, "overlap": 5}', '{"method": null}',
                '{"method": "words"}', '{"max_tokens": 7}', '{"max_tokens": 100.5}', '{"max_tokens": "100"}',
                '{"overlap": -1}', '{"overlap": 2.5}', '{"overlap": null}', '{"max_tokens": 100000}', '{"max_tokens": true}',
                '{"title": "yes"}', '{"title": 1}']
GOOD_CHUNKING = ['{}', 'null', '{"method": "none"}', '{"max_tokens": 9, "overlap": 4}', '{"max_tokens": 8, "overlap": 0}',
                 '{"method": "markdown", "max_tokens": 8192, "overlap": 100}', '{"max_tokens": 64.0, "overlap": 8}',
                 '{"method": "markdown", "title": true}', '{"title": false}']


@pytest.mark.parametrize("spec", BAD_CHUNKING + GOOD_CHUNKING)
def test_chunking_rule_is_the_same_in_sql_and_python(conn, spec):
    """Finding 6: one rule, two sides.  SQL's ai_internal._check_chunking and the worker's ChunkingConfig
    accept and refuse exactly the same specs."""
    import json
    try:
        conn.execute("select ai_internal._check_chunking(%s::jsonb)", (spec,))
        sql_ok = True
    except Exception as e:  # noqa: BLE001
        assert getattr(e, "sqlstate", None) == "22023", e
        sql_ok = False
    try:
        ChunkingConfig.from_json(json.loads(spec))
        py_ok = True
    except Exception:  # noqa: BLE001
        py_ok = False
    assert sql_ok == py_ok == (spec in GOOD_CHUNKING)


@pytest.mark.parametrize("spec", BAD_CHUNKING)
def test_bad_chunking_refused_at_creation(owner, spec, kb):
    err = sql_error(owner, "select ai.alter_vectorizer('sec_notes', chunking => %s::jsonb)", (spec,))
    assert err.sqlstate == "22023" and err.diag.message_hint


@pytest.mark.parametrize("index", ['{"m": 1000}', '{"type": "hnsw", "lists": 5}', '{"type": "btree"}', '[]',
                                   '{"m": "abc"}', '{"type": "ivfflat", "lists": 0}', '{"m": 2.5}',
                                   '{"type": "ivfflat", "lists": 10.5}', '{"m": 16, "ef_construction": null}'])
def test_bad_index_refused(owner, index, kb):
    err = sql_error(owner, "select ai.alter_vectorizer('sec_notes', index => %s::jsonb)", (index,))
    assert err.sqlstate == "22023" and err.diag.message_hint


def test_index_counts_are_stored_whole(conn):
    """16.0 passes as 16 and is stored as 16, so the index is built from plain integers."""
    spec = conn.execute("""select ai_internal._check_index('{"type": "hnsw", "m": 16.0, "ef_construction": 64.0}'),
                                  ai_internal._check_index('{"type": "ivfflat", "lists": 10.0}')""").fetchone()
    assert spec == ({"type": "hnsw", "m": 16, "ef_construction": 64}, {"type": "ivfflat", "lists": 10})
    assert all(type(v) is int for s in spec for v in s.values() if v not in ("hnsw", "ivfflat"))


def test_nobody_cannot_read_anothers_knowledge_base_settings(kb, nobody, owner, conn):
    """ai.search's target (store, source, RAG settings) only for a role that may read the chunks."""
    for stmt in ("select * from ai.search('sec_notes', 'pandas', mode => 'keyword')",
                 "select ai.translate_query('sec_notes', '熊猫')",
                 "select ai.rag_prompt('sec_notes', 'pandas')",
                 "select ai.topic_score('sec_notes', 'pandas')"):
        err = sql_error(nobody, stmt)
        assert err.sqlstate == "42501" and "grant select" in err.diag.message_hint, stmt
    err = sql_error(nobody, "select * from ai_internal._search_target('sec_notes', 'sec_owner')")
    assert err.sqlstate == "42501"                 # cannot claim another role
    assert owner.execute("select count(*) from ai.search('sec_notes', 'pandas', mode => 'keyword')").fetchone()[0] >= 0
    # what RAG runs with the caller's rights: the expansion and the topic check call models as the owner
    owner.execute("""select ai.configure_rag('sec_notes', '{"topic": "fruit"}')""")
    assert owner.execute("select count(*) from ai.search('sec_notes', 'pandas', mode => 'keyword', "
                         "expand => true)").fetchone()[0] >= 0
    assert isinstance(owner.execute("select ai.topic_score('sec_notes', 'apples')").fetchone()[0], float)


def test_models_view_shows_what_a_role_may_use(nobody, conn):
    conn.execute("select ai.drop_model('sec-hidden', if_exists => true)")
    conn.execute("insert into ai.model_registry (model_id, provider, model_type, model_name, dimensions) "
                 "values ('sec-hidden', 'openai', 'embedding', 'm', 8)")
    try:
        seen = {r[0] for r in nobody.execute("select model_id from ai.models")}
        assert "sec-hidden" not in seen and "minilm" in seen
        assert "sec-hidden" in {r[0] for r in conn.execute("select model_id from ai.models")}
    finally:
        conn.execute("select ai.drop_model('sec-hidden')")


def test_a_stored_bad_chunking_spec_quarantines_its_rows_and_the_worker_goes_on(kb, conn, owner, settings,
                                                                                  installed, server):
    """Finding 6: one bad chunking spec (from before the checks) killed every worker."""
    owner.execute("drop table if exists sec_app.other cascade")
    owner.execute("create table sec_app.other (id int primary key, body text)")
    owner.execute("insert into sec_app.other values (1, 'fine')")
    owner.execute("select ai.create_vectorizer('sec_app.other'::regclass, name => 'sec_other', model => 'minilm')")
    try:
        conn.execute("update ai.vectorizer_versions set chunking = '[]' where vectorizer_id = %s", (kb,))
        drain(settings, installed, ["sec_notes", "sec_other"])
        assert conn.execute("select count(*) from sec_app.sec_other_chunks").fetchone()[0] == 1
        errors = conn.execute("select error from ai.vectorizer_errors where vectorizer = 'sec_notes'").fetchall()
        assert len(errors) == 3 and all("chunking must be a JSON object" in e[0] for e in errors)
    finally:
        conn.execute("select ai.drop_vectorizer('sec_other')")
        conn.execute("drop table sec_app.other")


def test_killed_workers_leave_the_list(conn, settings, installed, server):
    """Finding 10: killed workers stayed listed forever."""
    conn.execute("insert into ai.vectorizer_workers (worker_id, hostname, pid, heartbeat_at) "
                 "values ('dead-worker', 'h', 1, now() - interval '1 hour') on conflict do nothing")
    w = Worker(settings, installed, names=["none"], poll_interval=0.1)
    w.run_once()
    ids = {r[0] for r in conn.execute("select worker_id from ai.vectorizer_worker_status")}
    assert "dead-worker" not in ids and w.worker_id in ids


def test_chunk_table_with_owner_types_is_not_read_by_others(kb, owner, conn, settings, installed, server):
    """A column changed to a type of the owner's own (its casts and operators are the owner's code)
    would run that code in the reader's session: search refuses the table, the status shows no count."""
    drain(settings, installed)
    owner.execute("create domain sec_app.myint as int")
    owner.execute("drop view sec_app.sec_notes_chunks")          # (the view holds the column's type)
    owner.execute("alter table sec_app.sec_notes_chunks_v1 alter column chunk_seq type sec_app.myint")
    err = sql_error(conn, "select * from ai.search('sec_notes', 'pandas', mode => 'keyword')")
    assert err.sqlstate == "55000" and "plain table" in err.diag.message_primary
    assert conn.execute("select done from ai.vectorizer_status where name = 'sec_notes'").fetchone()[0] is None


def test_non_superuser_owner_alters_backfills_and_retries(kb, owner, nobody, conn, settings, installed, server):
    """The whole life of a vectorizer as a table owner who is not a superuser; grants on the chunk
    table follow a new version."""
    drain(settings, installed)
    owner.execute("grant usage on schema sec_app to sec_nobody")
    owner.execute("grant select on sec_app.sec_notes_chunks_v1, sec_app.sec_notes_chunks to sec_nobody")
    assert owner.execute("select ai.alter_vectorizer('sec_notes', model => 'e5-small')").fetchone()[0] == 2
    drain(settings, installed)
    assert owner.execute("select version, status, model from ai.vectorizer_status where name = 'sec_notes'"
                         ).fetchall() == [(2, "active", "e5-small")]
    assert nobody.execute("select count(distinct id) from sec_app.sec_notes_chunks_v2").fetchone()[0] == 3
    assert nobody.execute("select count(*) from ai.search('sec_notes', 'bamboo', mode => 'keyword')").fetchone()[0] >= 1
    assert owner.execute("select ai.vectorizer_backfill('sec_notes')").fetchone()[0] == 3
    drain(settings, installed)
    assert owner.execute("select ai.vectorizer_retry('sec_notes')").fetchone()[0] == 0
    owner.execute("select ai.drop_vectorizer('sec_notes')")
    assert conn.execute("select count(*) from pg_proc where proname like 'sec_notes_vectorizer_%'").fetchone()[0] == 0
