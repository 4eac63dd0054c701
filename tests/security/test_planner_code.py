"""The planner runs code of a table's owner (a review's finding, issue 35's class): planning any
query on a table folds the constant parts of its indexes' expressions and predicates and of its
extended statistics' expressions, so an immutable function of the owner's there runs in the session
that plans — another role's, the gateway's, the service role's, a superuser's.  pgmind reads a table
in a session not the owner's only when ai_internal._planner_safe says no such code is there."""
from __future__ import annotations

import pytest

from pgmind.errors import PermissionDeniedError
from security.test_console_owner_code import _plain_source_as

BOOM = """create or replace function sec_app.boom() returns text language plpgsql immutable as $$
          begin
              if current_user <> 'sec_owner' then
                  raise exception 'the owner''s code ran as %', current_user;
              end if;
              return '';
          end $$"""


@pytest.fixture
def kb(owner, conn):
    owner.execute("create table sec_app.plan (id int primary key, body text)")
    owner.execute("insert into sec_app.plan values (1, 'pandas eat bamboo')")
    vid = owner.execute("select ai.create_vectorizer('sec_app.plan'::regclass, name => 'sec_plan', "
                        "content => 'body', model => 'minilm')").fetchone()[0]
    owner.execute(BOOM)
    (store,) = owner.execute("select store_table from ai_internal._vectorizer_stores(%s)", (vid,)).fetchone()
    yield vid, f"sec_app.{store}"
    conn.execute("select ai.drop_vectorizer('sec_plan') where exists "
                 "(select 1 from ai.vectorizer_status where name = 'sec_plan')")
    conn.execute("drop table if exists sec_app.plan cascade")
    conn.execute("drop function if exists sec_app.boom() cascade")


@pytest.mark.parametrize("code", ["create index on {t} ((sec_app.boom() || chunk))",
                                  "create index on {t} (chunk_seq) where sec_app.boom() = ''",
                                  "create statistics sec_app.plan_stats on (sec_app.boom() || chunk), chunk_seq from {t}"])
def test_status_never_plans_a_chunk_table_with_the_owners_code(kb, owner, conn, code):
    vid, store = kb
    assert conn.execute("select ai_internal._planner_safe(%s::regclass)", (store,)).fetchone()[0] is True
    owner.execute(code.format(t=store))
    owner.execute(f"grant select on {store} to public")
    # a superuser reading the status: the chunk table is not counted (its count would run boom())
    assert conn.execute("select ai_internal._planner_safe(%s::regclass)", (store,)).fetchone()[0] is False
    assert conn.execute("select done from ai.vectorizer_status where name = 'sec_plan'").fetchone() == (None,)


def test_a_source_with_the_owners_code_in_an_index_is_refused_by_the_console(kb, owner, installed):
    vid, _ = kb
    owner.execute("create index on sec_app.plan ((sec_app.boom() || body))")
    with pytest.raises(PermissionDeniedError):
        _plain_source_as(installed, "sec_owner", vid)      # the gateway's session: refused even for the owner


def test_children_and_pgvectors_own_operator_classes(kb, owner, conn):
    vid, store = kb
    # pgmind's own chunk table (an HNSW index of pgvector's operator class) is safe to plan
    assert conn.execute("select ai_internal._store_is_plain(%s::regclass)", (store,)).fetchone()[0] is True
    # a child with the owner's code: a query on the parent plans the child too
    owner.execute("create table sec_app.plan_child () inherits (sec_app.plan)")
    owner.execute("create index on sec_app.plan_child ((sec_app.boom() || body))")
    assert conn.execute("select ai_internal._planner_safe('sec_app.plan'::regclass)").fetchone()[0] is False
