"""Code that runs in the gateway's session could SET ROLE to any role that holds a key (the gateway
is a member of them all).  Found by a red-team pass over issue 35's fifth stop:

1. The planner folds a table owner's immutable functions in the CHECK constraints of the inheritance
   children and partitions it plans (constraint exclusion), so a key holder's function ran in the
   gateway's session during HTTP search and read another key role's table.  ai_internal._planner_safe
   now refuses such constraints (and partition keys of code), and the gateway's transactions turn
   constraint exclusion and partition pruning off.
2. ai_internal._reaches_superuser missed roles that are superusers in all but name on PostgreSQL 15:
   members of pg_execute_server_program / pg_write_server_files / pg_read_server_files, CREATEROLE
   roles (which can grant themselves those), members of pgmind's service roles.
3. A keyed role granted a superuser's membership after its key was made kept the gateway one SET ROLE
   from the superuser until the next sync: every gateway transaction now refuses while the gateway
   reaches one through any role."""
from __future__ import annotations

import httpx
import psycopg
import pytest

from conftest import gateway_leak, secret_table

HTTP = httpx.Client(timeout=120)
SECRET = "rt5 launch code 4711"

LEAK = gateway_leak("rt5")


@pytest.fixture
def victim_secret(conn, sec_roles):
    with secret_table(conn, "rt5", SECRET):
        yield


def _inherited(owner):
    owner.execute("create table sec_app.rt5_src (id int primary key, body text)")
    owner.execute("insert into sec_app.rt5_src values (1, 'hello')")
    owner.execute("select ai.create_vectorizer('sec_app.rt5_src'::regclass, name => 'rt5_kb', content => 'body', "
                  "model => 'minilm', backfill => false)")
    owner.execute(LEAK)
    owner.execute("create table sec_app.rt5_child (check (sec_app.rt5_leak() = 0 or id > 0)) "
                  "inherits (sec_app.rt5_src)")


def _partitioned(owner):
    owner.execute("create table sec_app.rt5_src (id int primary key, body text) partition by list (id)")
    owner.execute("create table sec_app.rt5_p1 partition of sec_app.rt5_src for values in (1)")
    owner.execute("insert into sec_app.rt5_src values (1, 'hello')")
    owner.execute("select ai.create_vectorizer('sec_app.rt5_src'::regclass, name => 'rt5_kb', content => 'body', "
                  "model => 'minilm', backfill => false)")
    owner.execute(LEAK)
    owner.execute("create table sec_app.rt5_p2 partition of sec_app.rt5_src "
                  "(check (sec_app.rt5_leak() = 0 or id > 0)) for values in (2)")


@pytest.mark.parametrize("make", [_inherited, _partitioned], ids=["inheritance-child", "partition"])
def test_http_search_never_plans_an_owners_check_constraint_in_the_gateway(make, owner, conn, server,
                                                                          victim_secret):
    make(owner)
    key = conn.execute("select ai.create_api_key('sec_owner')").fetchone()[0]
    try:
        # (the check HTTP search relies on sees the child's or partition's constraint)
        assert conn.execute("select ai_internal._planner_safe('sec_app.rt5_src'::regclass)").fetchone()[0] is False
        r = HTTP.post(server + "/v1/search",
                      json={"name": "rt5_kb", "query": "hello", "mode": "keyword", "filter": {"body": "hello"}},
                      headers={"Authorization": f"Bearer {key}"})
        assert SECRET not in r.text, f"another key's role's data came back: {r.status_code} {r.text}"
        assert r.status_code == 403, r.text
    finally:
        conn.execute("select ai.revoke_api_key(%s)", (key[:12],))
        conn.execute("select ai.drop_vectorizer('rt5_kb') where exists (select 1 from ai.vectorizers "
                     "where name = 'rt5_kb')")
        owner.execute("drop table if exists sec_app.rt5_src cascade")
        owner.execute("drop function if exists sec_app.rt5_leak()")


@pytest.mark.parametrize("grant", ["grant pg_execute_server_program to rt5_keyed",
                                   "grant pg_write_server_files to rt5_keyed",
                                   "grant pg_read_server_files to rt5_keyed",
                                   "alter role rt5_keyed createrole",
                                   "grant pgmind_service to rt5_keyed"])
def test_keys_refuse_roles_that_are_superusers_in_all_but_name(conn, grant):
    conn.execute("drop role if exists rt5_keyed")
    conn.execute("create role rt5_keyed")
    try:
        conn.execute(grant)
        assert conn.execute("select ai_internal._reaches_superuser('rt5_keyed'::regrole)").fetchone()[0], grant
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select ai.create_api_key('rt5_keyed')")
    finally:
        conn.execute("delete from ai.api_keys where role_name = 'rt5_keyed'")
        conn.execute("select ai_internal._sync_gateway()")
        conn.execute("drop role if exists rt5_keyed")


def test_the_gateway_refuses_while_it_reaches_a_superuser_through_any_keyed_role(conn, server, sec_roles):
    """A key's role made a member of a superuser after its key was made: until ai_internal._sync_gateway
    runs, the gateway belongs to it, so every search through the gateway — any key's — is refused."""
    for r in ("rt5_su",):
        conn.execute(f"drop role if exists {r}")
    conn.execute("create role rt5_su superuser nologin")
    victim = conn.execute("select ai.create_api_key('sec_nobody')").fetchone()[0]
    key = conn.execute("select ai.create_api_key('sec_owner')").fetchone()[0]
    body = {"name": "no_such_kb", "query": "hello", "mode": "keyword"}
    h = {"Authorization": f"Bearer {key}"}
    try:
        before = HTTP.post(server + "/v1/search", json=body, headers=h)
        assert before.status_code in (400, 404), before.text      # (no such knowledge base: the check passed)
        conn.execute("grant rt5_su to sec_nobody")              # (no sync: the gateway is still its member)
        assert conn.execute("select pg_has_role('pgmind_gateway', 'rt5_su', 'MEMBER')").fetchone()[0]
        r = HTTP.post(server + "/v1/search", json=body, headers=h)
        assert r.status_code == 403 and "superuser" in r.json()["error"]["hint"], r.text
        conn.execute("revoke rt5_su from sec_nobody")
        assert HTTP.post(server + "/v1/search", json=body, headers=h).status_code == before.status_code
    finally:
        conn.execute("revoke rt5_su from sec_nobody")
        for k in (victim, key):
            conn.execute("select ai.revoke_api_key(%s)", (k[:12],))
        conn.execute("drop role if exists rt5_su")
