"""The console's writes to a source table run no code of another role's (red-team finding M1).

pgmind's functions take the session's role for the caller (ai_internal._session_role).  When an
administrator deleted a document of another owner's table from the console, the owner's SECURITY
DEFINER trigger ran in the administrator's session, and calls it made to pgmind's functions were
answered as if the administrator made them.  The console now touches a source table only when every
trigger there is pgmind's own or the signed-in role's; the table's owner still deletes its rows."""
from __future__ import annotations

import asyncio

import psycopg
import pytest

from pgmind.console.pages.kbs import plain_source
from pgmind.db import connect
from pgmind.errors import PermissionDeniedError


@pytest.fixture
def kb(owner, conn, installed):
    with connect(installed, autocommit=True) as c:
        c.execute("drop role if exists sec_admin")
        c.execute("create role sec_admin login in role pgmind_admin")
    owner.execute("create table sec_app.pages (id int primary key, body text)")
    owner.execute("insert into sec_app.pages values (1, 'pandas eat bamboo')")
    # the owner lets the administrator manage its documents (else the table is out of its reach anyway)
    owner.execute("grant usage on schema sec_app to sec_admin")
    owner.execute("grant select, insert, update, delete on sec_app.pages to sec_admin")
    vid = owner.execute("select ai.create_vectorizer('sec_app.pages'::regclass, name => 'sec_pages', "
                        "content => 'body', model => 'minilm')").fetchone()[0]
    yield vid
    conn.execute("select ai.drop_vectorizer('sec_pages') where exists "
                 "(select 1 from ai.vectorizer_status where name = 'sec_pages')")
    conn.execute("drop table if exists sec_app.pages cascade")
    conn.execute("drop owned by sec_admin cascade")
    conn.execute("drop role sec_admin")


def _plain_source_as(installed: str, role: str, vid: int):
    async def run():
        async with await psycopg.AsyncConnection.connect(installed) as c:
            await c.execute(psycopg.sql.SQL("set role {}").format(psycopg.sql.Identifier(role)))
            return await plain_source(c, vid, "hint for {source}")
    return asyncio.run(run())


def test_an_administrator_never_runs_another_owners_trigger(kb, owner, installed):
    # pgmind's own trigger on the table is the owner's function: the owner may replace its body
    owner.execute("""create function sec_app.spy() returns trigger language plpgsql security definer
                     set search_path = pg_catalog as $$ begin
                       perform ai_internal._check_caller('sec_admin');   -- would pass as the admin
                       return old; end $$""")
    owner.execute("create trigger spy before delete on sec_app.pages for each row execute function sec_app.spy()")
    with pytest.raises(PermissionDeniedError) as e:
        _plain_source_as(installed, "sec_admin", kb)
    assert "plain source table" in e.value.message
    # the owner deleting its own rows: its own code in its own name
    source, _, _ = _plain_source_as(installed, "sec_owner", kb)
    assert source == "sec_app.pages"


def test_an_administrator_is_refused_even_for_pgminds_trigger_alone(kb, installed):
    """pgmind's queue trigger is a function the table's owner owns (and could replace): an
    administrator deletes another owner's rows in SQL, with the owner's consent, not from the console."""
    with pytest.raises(PermissionDeniedError):
        _plain_source_as(installed, "sec_admin", kb)
