"""Test fixtures: a real PostgreSQL (a fresh embedded cluster per session, or PGMIND_TEST_DSN) and a
real model server in a subprocess, with the real local models."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from pgmind.config import load_settings
from pgmind.db import Cluster, connect, install
from pgmind.db.migrate import SERVICE_ROLES
from pgmind.devserver import free_port, start_server, stop_server

# The fixtures that start the stack (the PostgreSQL cluster, the installed database, the model server):
# a test whose fixture closure holds any of them is marked ``stack`` (``make check`` leaves those out).
STACK_FIXTURES = frozenset({"cluster", "dsn", "installed", "conn", "server", "token"})


def pytest_configure(config):
    config.addinivalue_line("markers", "stack: needs the PostgreSQL cluster or the model server "
                                       "(set automatically from the test's fixtures)")
    config.addinivalue_line("markers", "models: loads a large local model without the stack (tens of seconds "
                                       "on a small CPU); make check leaves these out too")


def pytest_collection_modifyitems(config, items):
    for item in items:
        # fixturenames is the closure: fixtures that depend on the stack's fixtures count too
        if STACK_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.stack)


@pytest.fixture(scope="session")
def home():
    path = Path(tempfile.mkdtemp(prefix="pgmind-test-"))
    os.chmod(path, 0o711)
    return path


@pytest.fixture(scope="session")
def settings(home):
    return load_settings(home=str(home), pg_port=free_port(), server_port=free_port(),
                         dsn=os.environ.get("PGMIND_TEST_DSN") or None)


@pytest.fixture(scope="session")
def cluster(settings):
    if settings.dsn:
        yield None
        return
    c = Cluster(settings)
    try:
        c.start()
    except Exception as e:
        pytest.exit(f"cannot start the test PostgreSQL cluster: {e}", returncode=2)
    yield c
    c.destroy()


@pytest.fixture(scope="session")
def dsn(settings, cluster):
    return settings.dsn or cluster.dsn


@pytest.fixture(scope="session")
def installed(settings, dsn):
    with connect(dsn, register_vector=False) as conn:
        settings.server_token(create=True)
        install(conn, server_url=settings.effective_server_url,
                role_passwords={r: settings.role_password(r, create=True) for r in SERVICE_ROLES})
        # the provider stand-ins listen on loopback (tests/security checks what this allows and refuses)
        conn.execute("select ai.allow_outbound('127.0.0.1')")
        conn.commit()
    return dsn


@pytest.fixture
def conn(installed):
    with connect(installed, autocommit=True) as c:
        yield c


@pytest.fixture(scope="session")
def server(settings, installed):
    # no vectorizer worker inside: the tests run the workers they study themselves
    proc = start_server(settings, {"PROVIDER_TEST_KEY": "sk-from-env-123",
                                   "PGMIND_SECRET_ENV": "OPENAI_API_KEY,PROVIDER_TEST_KEY"}, args=("--no-worker",))
    yield settings.effective_server_url
    stop_server(proc)


@pytest.fixture(scope="session")
def token(settings, installed):
    return settings.server_token()


@pytest.fixture(scope="session")
def flush_call_log(server, token):
    """Writes the model server's queued ai.call_log records now (it writes them every half second):
    once it returns, every call the server has answered is in the table.  No waiting, no polling."""
    import httpx

    def flush() -> int:
        r = httpx.post(server + "/pgmind/v1/call-log/flush", headers={"Authorization": f"Bearer {token}"},
                       timeout=60)
        assert r.status_code == 200, r.text
        return r.json()["written"]
    return flush


def sql_error(conn: psycopg.Connection, query: str, params=None) -> psycopg.Error:
    """Runs a query that must fail; returns the error (its diag carries SQLSTATE, message, hint)."""
    with pytest.raises(psycopg.Error) as info:
        conn.execute(query, params)
    return info.value


# -- roles for the adversarial tests (tests/security) ---------------------------------------------
"""``sec_owner``: a non-superuser who owns a schema, a table and a vectorizer on it; ``sec_nobody``: a
role granted nothing.  Each has its own connection."""


def as_role(dsn: str, role: str) -> psycopg.Connection:
    return connect(psycopg.conninfo.make_conninfo(dsn, user=role), autocommit=True)


def gateway_leak(tag: str) -> str:
    """SQL making the owner's immutable function sec_app.<tag>_leak(): harmless anywhere but in a
    session of the gateway, where it SETs ROLE to sec_nobody (which holds a key, so the gateway is its
    member) and raises with sec_nobody's secret — what owner code reaching that session could do."""
    return f"""create or replace function sec_app.{tag}_leak() returns int language plpgsql immutable as $$
          declare v text;
          begin
              if session_user = 'pgmind_gateway' then
                  perform set_config('role', 'sec_nobody', true);
                  select string_agg(s, ',') into v from public.{tag}_secret;
                  raise exception 'LEAK as % in a session of %: %', current_user, session_user, v;
              end if;
              return 0;
          end $$"""


@contextmanager
def secret_table(conn, tag: str, secret: str):
    """sec_nobody's private table public.<tag>_secret holding ``secret``, and a live API key of
    sec_nobody's (so the gateway is its member), for the time of the block."""
    conn.execute(f"drop table if exists public.{tag}_secret")
    conn.execute(f"create table public.{tag}_secret (s text)")
    conn.execute(f"insert into public.{tag}_secret values (%s)", (secret,))
    conn.execute(f"alter table public.{tag}_secret owner to sec_nobody")
    conn.execute(f"revoke all on public.{tag}_secret from public")
    key = conn.execute("select ai.create_api_key('sec_nobody')").fetchone()[0]
    try:
        yield
    finally:
        conn.execute("select ai.revoke_api_key(%s)", (key[:12],))
        conn.execute(f"drop table if exists public.{tag}_secret")


@pytest.fixture(scope="module")
def sec_roles(installed):
    with connect(installed, autocommit=True) as c:
        for r in ("sec_owner", "sec_nobody"):
            c.execute(f"drop owned by {r} cascade" if c.execute(
                "select 1 from pg_roles where rolname = %s", (r,)).fetchone() else "select 1")
            c.execute(f"drop role if exists {r}")
            c.execute(f"create role {r} login")
        c.execute("drop schema if exists sec_app cascade")
        c.execute("create schema sec_app authorization sec_owner")
    yield {"owner": "sec_owner", "nobody": "sec_nobody"}
    with connect(installed, autocommit=True) as c:
        c.execute("drop schema if exists sec_app cascade")
        for r in ("sec_owner", "sec_nobody"):
            c.execute(f"drop owned by {r} cascade")
            c.execute(f"drop role {r}")


@pytest.fixture
def owner(installed, sec_roles):
    with as_role(installed, sec_roles["owner"]) as c:
        yield c


@pytest.fixture
def nobody(installed, sec_roles):
    with as_role(installed, sec_roles["nobody"]) as c:
        yield c
