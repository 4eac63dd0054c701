"""Issue 35: the services stop running as the install role.  Each test is one finding of that
attack battery (or a case of the same class) and failed on a427c08's code: owner code meeting the
worker's session, the training runner, grants over time, row security on the chunks, API keys."""
from __future__ import annotations

import json

import httpx
import psycopg
import pytest

from conftest import as_role, sql_error
from pgmind.db.connection import service_dsn
from pgmind.vectorizer.worker import Worker
from waiting import wait_for

HTTP = httpx.Client(timeout=120)


def drain(settings, dsn, names):
    w = Worker(settings, dsn, names=list(names), poll_interval=0.1)
    w.drain(timeout=120)
    return w


@pytest.fixture
def victim(conn):
    """Another owner's knowledge base (the install role's), with a secret in it."""
    conn.execute("drop table if exists public.victim_docs cascade")
    conn.execute("create table public.victim_docs (id int primary key, body text)")
    conn.execute("insert into public.victim_docs values (1, 'the launch code is 4711')")
    conn.execute("select ai.create_vectorizer('public.victim_docs'::regclass, name => 'victim_kb', "
                 "content => 'body', model => 'minilm')")
    yield "victim_kb"
    conn.execute("select ai.drop_vectorizer('victim_kb') where exists "
                 "(select 1 from ai.vectorizers where name = 'victim_kb')")
    conn.execute("drop table if exists public.victim_docs cascade")


def owner_kb(owner, conn, content: str, name: str = "sec_evil"):
    owner.execute(f"drop table if exists sec_app.{name}_src cascade")
    owner.execute(f"create table sec_app.{name}_src (id int primary key, body text)")
    owner.execute(f"select ai.create_vectorizer('sec_app.{name}_src'::regclass, name => %s, content => %s, "
                  "model => 'minilm')", (name, content))
    owner.execute(f"insert into sec_app.{name}_src values (1, 'hello')")


def drop_kb(conn, name: str = "sec_evil"):
    conn.execute("select ai.drop_vectorizer(%s) where exists (select 1 from ai.vectorizers where name = %s)",
                 (name, name))
    conn.execute(f"drop table if exists sec_app.{name}_src cascade")


def quarantined(conn, name):
    return conn.execute("select sqlstate, error from ai.vectorizer_errors where vectorizer = %s", (name,)).fetchall()


# -- finding 1: owner code in the worker's session ------------------------------------------------
def test_the_services_are_not_superusers(conn, server, settings, installed):
    """The worker, the model server and HTTP search connect as pgmind's own roles, never the install role."""
    for role in ("pgmind_service", "pgmind_gateway"):
        row = conn.execute("select rolsuper, rolcreaterole, rolcreatedb from pg_roles where rolname = %s", (role,)).fetchone()
        assert row == (False, False, False), role
        # nobody may become them
        assert conn.execute("select count(*) from pg_auth_members where roleid = %s::regrole", (role,)).fetchone()[0] == 0
    assert conn.execute("select count(*) from pg_auth_members where member = 'pgmind_service'::regrole").fetchone()[0] == 0
    w = Worker(settings, installed, names=["none"])
    assert w.conn.execute("select current_user, session_user").fetchone() == ("pgmind_service", "pgmind_service")
    w.close()
    users = {r[0] for r in conn.execute("select usename from pg_stat_activity where application_name like 'pgmind serve%'")}
    assert users and users <= {"pgmind_service", "pgmind_gateway"}, users


def test_content_cannot_call_the_server_as_another_role(owner, conn, victim, settings, installed, server):
    """The battery's case: content `body || ai_internal._server_request('/v1/search', '{…victim…}', '<install
    role>')` copied another owner's knowledge base into the attacker's chunks."""
    drain(settings, installed, ["victim_kb"])
    install_role = conn.execute("select current_user").fetchone()[0]
    body = json.dumps({"name": "victim_kb", "query": "launch code", "mode": "keyword"})
    owner_kb(owner, conn, f"body || coalesce(ai_internal._server_request('/v1/search', '{body}', "
                          f"'{install_role}'::name), '')")
    try:
        drain(settings, installed, ["sec_evil"])
        leaked = conn.execute("select count(*) from sec_app.sec_evil_chunks where chunk like '%4711%'").fetchone()[0]
        assert leaked == 0
        assert [s for s, _ in quarantined(conn, "sec_evil")] == ["42501"]
    finally:
        drop_kb(conn)


@pytest.mark.parametrize("call", [
    "ai.drop_vectorizer('victim_kb')",
    "ai.configure_rag('victim_kb', '{\"threshold\": 0.99}')",
    "ai.vectorizer_retry('victim_kb')",
    "ai_internal._create_training_job('embedding', 'victim_kb', 'minilm', 'stolen-model', '{}')::text",
])
def test_content_cannot_act_for_anyone_in_the_workers_session(call, owner, conn, victim, settings, installed, server):
    """The same path unregistered another owner's vectorizer, rewrote its RAG settings and queued a
    training job owned by the superuser: every check reachable from owner code trusted session_user."""
    owner_kb(owner, conn, f"body || coalesce(({call})::text, '')")
    try:
        drain(settings, installed, ["sec_evil"])
        assert conn.execute("select count(*) from ai.vectorizers where name = 'victim_kb'").fetchone()[0] == 1
        assert conn.execute("select config->'rag' from ai.vectorizers where name = 'victim_kb'").fetchone()[0] is None
        assert conn.execute("select count(*) from ai.training_jobs where new_model = 'stolen-model'").fetchone()[0] == 0
        assert conn.execute("select count(*) from sec_app.sec_evil_chunks").fetchone()[0] == 0
        assert [s for s, _ in quarantined(conn, "sec_evil")] == ["42501"]
    finally:
        drop_kb(conn)


def test_content_runs_as_its_owner_in_a_session_that_is_nobody(owner, conn, settings, installed, server):
    owner_kb(owner, conn, "current_user || ' ' || session_user || ' ' || current_setting('is_superuser')")
    try:
        drain(settings, installed, ["sec_evil"])
        assert conn.execute("select chunk from sec_app.sec_evil_chunks").fetchone()[0] == "sec_owner pgmind_service off"
    finally:
        drop_kb(conn)


def test_server_request_acts_only_as_the_role_that_runs_it(nobody, conn, server):
    install_role = conn.execute("select current_user").fetchone()[0]
    err = sql_error(nobody, "select ai_internal._server_request('/v1/embeddings', "
                            "'{\"model\": \"minilm\", \"input\": \"x\"}', %s)", (install_role,))
    assert err.sqlstate == "42501" and "cannot act as" in err.diag.message_primary
    # and the server's token is nowhere in the database for anyone to read
    assert conn.execute("select count(*) from ai._settings where key = 'server_token'").fetchone()[0] == 0
    # each role reads its own credential only
    mine = nobody.execute("select ai_internal._role_token()").fetchone()[0] or ""
    nobody.execute("select ai.embed('minilm', 'x')")      # (makes it, if this role had none)
    mine = nobody.execute("select ai_internal._role_token()").fetchone()[0]
    assert mine and nobody.execute("select count(*) from ai_internal.role_tokens").fetchone()[0] == 1
    theirs = conn.execute("select token from ai_internal.role_tokens t join pg_roles r on r.oid = t.role_oid "
                          "where r.rolname = 'sec_nobody'").fetchone()[0]
    assert theirs == mine


# -- finding 3: the training runner ------------------------------------------------------------------
@pytest.fixture
def admin_role(installed):
    with psycopg.connect(installed, autocommit=True) as c:
        c.execute("drop owned by sec_admin cascade" if c.execute(
            "select 1 from pg_roles where rolname = 'sec_admin'").fetchone() else "select 1")
        c.execute("drop role if exists sec_admin")
        c.execute("create role sec_admin login")
        c.execute("grant pgmind_admin to sec_admin")
        c.execute("drop schema if exists sec_adm cascade")
        c.execute("create schema sec_adm authorization sec_admin")
    yield "sec_admin"
    with psycopg.connect(installed, autocommit=True) as c:
        c.execute("drop schema if exists sec_adm cascade")
        c.execute("delete from ai.training_jobs where owner = 'sec_admin'")
        c.execute("drop owned by sec_admin cascade")
        c.execute("drop role sec_admin")


def test_the_image_job_query_never_runs_in_the_runners_session(admin_role, installed, settings, conn, server):
    """An image job's query ran after SET LOCAL ROLE <owner> in a superuser session: a function in it
    called set_config('role', 'none', true) and went on as the superuser."""
    from pgmind.training.jobs import run_next
    with as_role(installed, admin_role) as adm:
        adm.execute("create table sec_adm.seen (who text)")
        adm.execute("""create function sec_adm.spy(label text) returns text language plpgsql as $$
                       begin
                           perform set_config('role', 'none', true);
                           insert into sec_adm.seen values (session_user || '/' || current_setting('is_superuser'));
                           return label;
                       end $$""")
        adm.execute("create table sec_adm.imgs (img bytea, label text)")
        adm.execute("insert into sec_adm.imgs select decode(repeat('00', 784), 'hex'), "
                    "case when g % 2 = 0 then 'a' else 'b' end from generate_series(1, 20) g")
        job = adm.execute("select ai.train_image_encoder('imgs', 'select img, sec_adm.spy(label) from sec_adm.imgs', "
                          "name => 'sec-spy-encoder', options => '{\"epochs\": 1}')").fetchone()[0]
        # the query ran now, in the admin's own session, and its rows were copied into the job
        assert conn.execute("select count(*) from ai.training_images where job_id = %s", (job,)).fetchone()[0] == 20
        adm.execute("delete from sec_adm.seen")
    run_next(settings, installed, job)
    seen = conn.execute("select who from sec_adm.seen").fetchall()
    assert seen == [], seen          # the runner ran nothing of the owner's
    conn.execute("select ai.drop_model('sec-spy-encoder', if_exists => true)")


def test_the_runner_reads_the_chunk_table_not_the_owners_view(owner, conn, settings, installed, server):
    """The runner read the owner's replaceable <name>_chunks view as the superuser."""
    from pgmind.training.jobs import Runner
    owner_kb(owner, conn, "body", name="sec_train")
    try:
        drain(settings, installed, ["sec_train"])
        owner.execute("create table sec_app.seen (who text)")
        owner.execute("""create function sec_app.spy() returns text language plpgsql as $$
                         begin insert into sec_app.seen values (session_user); return 'x'; end $$""")
        owner.execute("create or replace view sec_app.sec_train_chunks as select id, chunk_seq, "
                      "sec_app.spy() || chunk as chunk, embedding::vector as embedding, fts from sec_app.sec_train_chunks_v1")
        with psycopg.connect(service_dsn(settings, installed), autocommit=True) as svc:
            job = {"id": 0, "source": "sec_train", "new_model": "sec-train-x", "options": {}, "loss": None,
                   "owner": "sec_owner", "base_model": "minilm"}
            runner = Runner(settings, svc, job)
            chunks = runner._chunks(runner._vectorizer(), 5, 0)
        assert chunks and all(not c.startswith("x") for c, _ in chunks)
        assert owner.execute("select count(*) from sec_app.seen").fetchone()[0] == 0
    finally:
        drop_kb(conn, "sec_train")
        owner.execute("drop table if exists sec_app.seen")
        owner.execute("drop function if exists sec_app.spy() cascade")


# -- finding 4: a revoke reaches the vectorizers that use the model --------------------------------
def test_a_revoked_model_embeds_nothing_more(owner, conn, settings, installed, server):
    conn.execute("select ai.drop_model('sec-minilm', if_exists => true)")
    conn.execute("select ai.create_model('sec-minilm', null, 'pgmind', 'embedding', 'minilm')")
    conn.execute("select ai.grant_model('sec-minilm', 'sec_owner')")
    owner.execute("drop table if exists sec_app.rev_src cascade")
    owner.execute("create table sec_app.rev_src (id int primary key, body text)")
    owner.execute("select ai.create_vectorizer('sec_app.rev_src'::regclass, name => 'sec_rev', content => 'body', "
                  "model => 'sec-minilm')")
    try:
        owner.execute("insert into sec_app.rev_src values (1, 'before the revoke')")
        drain(settings, installed, ["sec_rev"])
        conn.execute("select ai.revoke_model('sec-minilm', 'sec_owner')")
        owner.execute("insert into sec_app.rev_src values (2, 'after the revoke')")
        drain(settings, installed, ["sec_rev"])
        assert [r[0] for r in conn.execute("select distinct id from sec_app.sec_rev_chunks")] == [1]
        (state, message), = quarantined(conn, "sec_rev")
        assert state == "42501" and "sec-minilm" in message
    finally:
        drop_kb(conn, "sec_rev")
        owner.execute("drop table if exists sec_app.rev_src cascade")
        conn.execute("select ai.drop_model('sec-minilm', if_exists => true)")


# -- finding 7: row security reaches the chunks ------------------------------------------------------
@pytest.fixture
def rls_kb(owner, conn, settings, installed, server):
    owner.execute("drop table if exists sec_app.tenant_docs cascade")
    owner.execute("create table sec_app.tenant_docs (id int primary key, tenant name, body text)")
    owner.execute("insert into sec_app.tenant_docs values (1, 'sec_owner', 'pandas eat bamboo in the owner rows'), "
                  "(2, 'sec_nobody', 'pandas eat apples in the nobody rows')")
    owner.execute("alter table sec_app.tenant_docs enable row level security")
    owner.execute("create policy mine on sec_app.tenant_docs using (tenant = current_user)")
    owner.execute("select ai.create_vectorizer('sec_app.tenant_docs'::regclass, name => 'sec_tenant', "
                  "content => 'body', model => 'minilm')")
    drain(settings, installed, ["sec_tenant"])
    owner.execute("grant usage on schema sec_app to sec_nobody")
    owner.execute("grant select on sec_app.sec_tenant_chunks_v1, sec_app.tenant_docs to sec_nobody")
    yield "sec_tenant"
    drop_kb(conn, "sec_tenant")
    owner.execute("drop table if exists sec_app.tenant_docs cascade")


def test_row_security_on_the_source_reaches_search_and_rag(rls_kb, nobody, owner, conn, server, token):
    """With the source under row security and the chunks granted as docs/sql.md says, B found A's rows."""
    hits = nobody.execute("select key from ai.search('sec_tenant', 'pandas', k => 5, mode => 'keyword')").fetchall()
    assert [h[0] for h in hits] == [{"id": 2}]
    hits = nobody.execute("select key from ai.search('sec_tenant', 'pandas eat', k => 5)").fetchall()
    assert [h[0] for h in hits] == [{"id": 2}]
    prompt = nobody.execute("select ai.rag_prompt('sec_tenant', 'what do pandas eat?', threshold => 0)").fetchone()[0]
    assert all("owner rows" not in s["chunk"] for s in prompt["sources"])
    # the owner (who bypasses its own table's policies) still sees both
    assert len(owner.execute("select key from ai.search('sec_tenant', 'pandas', k => 5, mode => 'keyword')").fetchall()) == 2
    # HTTP search does not run the owner's policies in its session: refused, with the way to do it
    key = conn.execute("select ai.create_api_key('sec_nobody')").fetchone()[0]
    try:
        for path, body in (("/v1/search", {"name": "sec_tenant", "query": "pandas", "mode": "keyword"}),
                           ("/v1/ask", {"name": "sec_tenant", "question": "what do pandas eat?"})):
            r = HTTP.post(server + path, json=body, headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 403 and "row security" in r.json()["error"]["message"], r.text
            assert "SQL" in r.json()["error"]["hint"]
    finally:
        conn.execute("select ai.revoke_api_key(%s)", (key[:12],))


# -- finding 8: API keys bound to the role ---------------------------------------------------------
def test_api_keys_die_with_their_role_and_refuse_superusers(conn, server):
    conn.execute("drop role if exists sec_keyed")
    conn.execute("create role sec_keyed")
    key = conn.execute("select ai.create_api_key('sec_keyed')").fetchone()[0]
    h = {"Authorization": f"Bearer {key}"}
    assert HTTP.get(server + "/v1/models", headers=h).status_code == 200
    conn.execute("alter role sec_keyed superuser")
    conn.execute("select pg_notify('pgmind_registry', '')")   # (what any registry change does)
    wait_for(lambda: HTTP.get(server + "/v1/models", headers=h).status_code == 401, timeout=10,
             what="the server to refuse the key of a role made superuser")
    assert HTTP.get(server + "/v1/models", headers=h).status_code == 401   # a superuser's rights: never
    conn.execute("alter role sec_keyed nosuperuser")
    conn.execute("drop role sec_keyed")
    conn.execute("create role sec_keyed")                # a new role of the same name gets nothing
    conn.execute("select pg_notify('pgmind_registry', '')")
    wait_for(lambda: HTTP.get(server + "/v1/models", headers=h).status_code == 401, timeout=10,
             what="the server to refuse the key of a dropped role to the new role of its name")
    assert HTTP.get(server + "/v1/models", headers=h).status_code == 401
    conn.execute("drop role sec_keyed")


def test_keys_refuse_members_of_superusers(conn, server):
    """SET ROLE follows memberships: a role that belongs to a superuser is refused a key, and a key's
    role that joins one later stops working at once — for the HTTP API, search and the gateway's
    memberships alike."""
    for r in ("sec_member", "sec_su"):
        conn.execute(f"drop role if exists {r}")
    conn.execute("create role sec_su superuser nologin")
    conn.execute("create role sec_member")
    try:
        conn.execute("grant sec_su to sec_member")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="member of one"):
            conn.execute("select ai.create_api_key('sec_member')")
        conn.execute("revoke sec_su from sec_member")
        key = conn.execute("select ai.create_api_key('sec_member')").fetchone()[0]
        h = {"Authorization": f"Bearer {key}"}
        assert HTTP.get(server + "/v1/models", headers=h).status_code == 200
        assert conn.execute("select pg_has_role('pgmind_gateway', 'sec_member', 'MEMBER')").fetchone()[0]
        conn.execute("grant sec_su to sec_member")            # joins a superuser after the key was made
        conn.execute("select ai_internal._sync_gateway()")
        assert not conn.execute("select pg_has_role('pgmind_gateway', 'sec_member', 'MEMBER')").fetchone()[0]
        conn.execute("select pg_notify('pgmind_registry', '')")
        wait_for(lambda: HTTP.get(server + "/v1/models", headers=h).status_code == 401, timeout=10,
                 what="the server to refuse the key of a role that joined a superuser")
        r = HTTP.post(server + "/v1/search", json={"name": "x", "query": "q"}, headers=h)
        assert r.status_code == 401, r.text
        conn.execute("select ai.revoke_api_key(%s)", (key[:12],))
    finally:
        conn.execute("drop owned by sec_member")
        for r in ("sec_member", "sec_su"):
            conn.execute(f"drop role if exists {r}")


def test_keys_see_only_their_models_and_not_the_metrics(conn, server, sec_roles):
    conn.execute("select ai.drop_model('sec-private', if_exists => true)")
    conn.execute("select ai.create_model('sec-private', null, 'pgmind', 'embedding', 'minilm')")
    key = conn.execute("select ai.create_api_key('sec_nobody')").fetchone()[0]
    h = {"Authorization": f"Bearer {key}"}
    try:
        ids = {m["id"] for m in HTTP.get(server + "/v1/models", headers=h).json()["data"]}
        assert "minilm" in ids and "sec-private" not in ids
        assert HTTP.get(server + "/v1/models/sec-private", headers=h).status_code == 404
        r = HTTP.get(server + "/metrics", headers=h)
        assert r.status_code == 403 and "victim" not in r.text
    finally:
        conn.execute("select ai.revoke_api_key(%s)", (key[:12],))
        conn.execute("select ai.drop_model('sec-private', if_exists => true)")


def test_can_use_answers_only_for_ones_own_role(nobody, conn):
    conn.execute("select ai.drop_model('sec-private2', if_exists => true)")
    conn.execute("select ai.create_model('sec-private2', null, 'pgmind', 'embedding', 'minilm')")
    conn.execute("select ai.grant_model('sec-private2', 'sec_owner')")
    try:
        assert nobody.execute("select ai_internal._can_use('sec_owner', 'sec-private2')").fetchone()[0] is False
        assert nobody.execute("select ai_internal._can_use('sec_nobody', 'minilm')").fetchone()[0] is True
        err = sql_error(nobody, "select ai_internal._may_use('sec_owner', 'sec-private2')")
        assert err.sqlstate == "42501"
    finally:
        conn.execute("select ai.drop_model('sec-private2', if_exists => true)")


# -- finding 9: error hygiene ----------------------------------------------------------------------
def test_an_owner_check_for_a_vectorizer_that_does_not_exist_fails(nobody):
    err = sql_error(nobody, "select ai_internal._check_vectorizer_owner(987654)")
    assert err.sqlstate == "42704" and err.diag.message_hint


def test_a_caller_header_that_is_not_utf8_is_a_400(server, token):
    r = HTTP.post(server + "/v1/embeddings", json={"model": "minilm", "input": "x"},
                  headers={"Authorization": f"Bearer {token}", "X-Pgmind-Caller": "%ff%fe"})
    assert r.status_code == 400 and "X-Pgmind-Caller" in r.json()["error"]["message"]


# -- the upgrade path --------------------------------------------------------------------------------
def test_install_gives_the_service_what_an_older_vectorizer_needs(conn, settings, installed, server):
    """A knowledge base made before the service role existed (as `make demo`'s is: by the install role)
    keeps working once `pgmind install` has run again: the worker, as pgmind_service, embeds new rows."""
    from pgmind.db import install
    conn.execute("drop table if exists public.old_docs cascade")
    conn.execute("create table public.old_docs (id int primary key, body text)")
    conn.execute("select ai.create_vectorizer('public.old_docs'::regclass, name => 'old_kb', content => 'body', "
                 "model => 'minilm')")
    try:
        names = conn.execute("select ai_internal._owner_function_names(id) from ai.vectorizers "
                             "where name = 'old_kb'").fetchone()[0]
        # what an install of the previous release left: nothing granted to the service role
        conn.execute(f"revoke all on function {names[1]}, {names[2]}, {names[3]} from pgmind_service")
        conn.execute("revoke all on public.old_kb_chunks_v1 from pgmind_service")
        conn.execute("insert into public.old_docs values (1, 'pandas eat bamboo')")
        with psycopg.connect(installed) as c:
            install(c, server_url=settings.effective_server_url)
        drain(settings, installed, ["old_kb"])
        assert conn.execute("select count(*) from public.old_kb_chunks").fetchone()[0] == 1
        assert conn.execute("select key from ai.search('old_kb', 'pandas', k => 1)").fetchone()[0] == {"id": 1}
    finally:
        conn.execute("select ai.drop_vectorizer('old_kb') where exists (select 1 from ai.vectorizers where name = 'old_kb')")
        conn.execute("drop table if exists public.old_docs cascade")


# -- a review of this design (its findings reproduced, then fixed) ---------------------------------
def test_an_overload_of_an_owner_function_is_never_called(owner, conn, settings, installed, server):
    """The worker called its checked owner functions by name with untyped arguments, so an owner's
    SECURITY INVOKER overload taking text (preferred over name) ran as the service role."""
    owner_kb(owner, conn, "body", name="sec_ovl")
    try:
        owner.execute("create table sec_app.loot (who name, what text)")
        owner.execute("grant insert on sec_app.loot to public")
        owner.execute("""create function sec_app.sec_ovl_vectorizer_write(store text, remove jsonb[], keys jsonb[],
                             seqs int[], chunks text[], embeddings vector[]) returns bigint language plpgsql as $$
                         begin
                             insert into sec_app.loot select current_user, count(*)::text from ai._settings;
                             return 0;
                         end $$""")
        owner.execute("grant execute on function sec_app.sec_ovl_vectorizer_write(text, jsonb[], jsonb[], int[], "
                      "text[], vector[]) to public")
        owner.execute("""create function sec_app.sec_ovl_vectorizer_activate(new_store text, old_store text)
                         returns void language plpgsql as $$
                         begin insert into sec_app.loot values (current_user, 'activate'); end $$""")
        owner.execute("grant execute on function sec_app.sec_ovl_vectorizer_activate(text, text) to public")
        drain(settings, installed, ["sec_ovl"])
        owner.execute("select ai.alter_vectorizer('sec_ovl', model => 'e5-small')")
        drain(settings, installed, ["sec_ovl"])
        assert owner.execute("select count(*) from sec_app.loot").fetchone()[0] == 0
        assert conn.execute("select count(*) from sec_app.sec_ovl_chunks").fetchone()[0] == 1
    finally:
        drop_kb(conn, "sec_ovl")
        owner.execute("drop table if exists sec_app.loot")


def test_the_service_role_cannot_change_the_registry_or_the_installers_records(settings, installed, conn):
    """Had the service role been reached, it could rewrite a vectorizer's owner and content and have the
    next install regenerate its functions as the superuser."""
    with psycopg.connect(service_dsn(settings, installed), autocommit=True) as svc:
        for stmt in ("update ai.vectorizers set owner = current_user",
                     "delete from ai.installed_files",
                     "update ai.model_registry set in_fn = null",
                     "insert into ai.api_keys (key_sha256, key_prefix, role_name) values ('x', 'x', 'x')",
                     "update ai._settings set value = value"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                svc.execute(stmt)
        # nor read anyone's token (it has no BYPASSRLS; the tokens' policy shows a role its own)
        assert svc.execute("select count(*) from ai_internal.role_tokens t join pg_roles r on r.oid = t.role_oid "
                           "where r.rolname <> current_user").fetchone()[0] == 0
        assert conn.execute("select count(*) from ai_internal.role_tokens").fetchone()[0] > 1
    # and install regenerates owner functions only for the table's real owner
    conn.execute("drop table if exists public.own_docs cascade")
    conn.execute("create table public.own_docs (id int primary key, body text)")
    conn.execute("select ai.create_vectorizer('public.own_docs'::regclass, name => 'own_kb', content => 'body', "
                 "model => 'minilm')")
    try:
        conn.execute("update ai.vectorizers set owner = 'sec_owner' where name = 'own_kb'")
        vid = conn.execute("select id from ai.vectorizers where name = 'own_kb'").fetchone()[0]
        err = sql_error(conn, "select ai_internal._install_owner_functions(%s)", (vid,))
        assert err.sqlstate == "42501"
    finally:
        conn.execute("update ai.vectorizers set owner = current_user where name = 'own_kb'")
        conn.execute("select ai.drop_vectorizer('own_kb')")
        conn.execute("drop table if exists public.own_docs cascade")


def test_http_search_refuses_a_source_that_became_a_view(owner, conn, settings, installed, server):
    """PG15 lets an owner turn its emptied source into a view (CREATE RULE "_RETURN"); HTTP search read it
    in the gateway's session, where the view's function switched to another key's role."""
    owner_kb(owner, conn, "body", name="sec_view")
    key = conn.execute("select ai.create_api_key('sec_owner')").fetchone()[0]
    try:
        drain(settings, installed, ["sec_view"])
        owner.execute("create table sec_app.seen (who name)")
        owner.execute("grant insert on sec_app.seen to public")
        owner.execute("""create function sec_app.spy() returns text language plpgsql as $$
                         begin insert into sec_app.seen values (session_user); return 'en'; end $$""")
        for t in ("insert", "change", "truncate"):
            owner.execute(f"drop trigger sec_view_vectorizer_{t} on sec_app.sec_view_src")
        owner.execute("delete from sec_app.sec_view_src")
        owner.execute("alter table sec_app.sec_view_src drop constraint sec_view_src_pkey")
        owner.execute("vacuum sec_app.sec_view_src")
        owner.execute("""create rule "_RETURN" as on select to sec_app.sec_view_src do instead
                         select 1::int as id, sec_app.spy() as body""")
        r = HTTP.post(server + "/v1/search", json={"name": "sec_view", "query": "hello", "mode": "keyword",
                                                   "filter": {"body": "en"}},
                      headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 403 and "plain table" in r.json()["error"]["message"], r.text
        assert owner.execute("select count(*) from sec_app.seen").fetchone()[0] == 0
    finally:
        conn.execute("select ai.revoke_api_key(%s)", (key[:12],))
        conn.execute("select ai.drop_vectorizer('sec_view') where exists (select 1 from ai.vectorizers "
                     "where name = 'sec_view')")
        owner.execute("drop view if exists sec_app.sec_view_src")
        owner.execute("drop table if exists sec_app.sec_view_src, sec_app.seen cascade")
        owner.execute("drop function if exists sec_app.spy()")
