"""Red-team pass over issue 35's one-call gateway (ai_internal._act_as / _search_tables — now _lock_search_tables — / _gateway_search).

The gateway locks a knowledge base's tables and then checks them, so that their owner cannot turn
them into something that runs its code between the check and the search.  Each test here holds a
lock in the owner's own session so that the gateway's HTTP search waits at a chosen point, changes
the tables, commits, and lets the search go on: the owner's function then runs in the gateway's
session, SETs ROLE to another key's role and reads its table.

1. The source table dropped (the vectorizer stays, keyword search still works): _search_tables
   joins pg_class on the source, finds nothing and returns nulls, so _gateway_search returns early
   and locks nothing — not even the chunk table — and ai.search reads a chunk table checked while
   unlocked.  (The Python code before 630c3af locked the chunk table whatever the source was.)
1b. A source the key's role cannot SELECT (its owner revoked its own right) is not locked at all,
   and a filter makes ai.search plan a query on it (planning comes before the permission check).
2. The source renamed while the gateway waits for its lock: LOCK TABLE looks the name up again and
   locks (and _gateway_search checks) whatever table carries the name now, while ai.search reads
   the vectorizer's source by its OID — unlocked and unchecked.
3. REINDEX of one of the chunk table's indexes holds the gateway's planner at that index (ACCESS
   EXCLUSIVE on the index, while the table lock itself is compatible): an index of the owner's code
   created meanwhile on the (locked, checked) chunk table is folded when the query plans its next
   reference to the table.  The "window of microseconds" of _planner_safe's comment, held open."""
from __future__ import annotations

import threading
import time

import httpx
import psycopg
import pytest

from conftest import as_role, gateway_leak, secret_table

HTTP = httpx.Client(timeout=120)
SECRET = "rt6 launch code 9093"

LEAK = gateway_leak("rt6")


@pytest.fixture
def victim_secret(conn, sec_roles):
    with secret_table(conn, "rt6", SECRET):
        yield


@pytest.fixture
def kb(owner, conn, victim_secret):
    """sec_owner's knowledge base rt6_kb over sec_app.rt6_src, its chunk table, and sec_owner's key."""
    owner.execute("create table sec_app.rt6_src (id int primary key, body text)")
    owner.execute("insert into sec_app.rt6_src values (1, 'hello')")
    vid = owner.execute("select ai.create_vectorizer('sec_app.rt6_src'::regclass, name => 'rt6_kb', "
                        "content => 'body', model => 'minilm', backfill => false)").fetchone()[0]
    owner.execute(LEAK)
    (store,) = owner.execute("select store_table from ai_internal._vectorizer_stores(%s)", (vid,)).fetchone()
    key = conn.execute("select ai.create_api_key('sec_owner')").fetchone()[0]
    yield f"sec_app.{store}", key
    conn.execute("select ai.revoke_api_key(%s)", (key[:12],))
    try:
        conn.execute("select ai.drop_vectorizer('rt6_kb') where exists (select 1 from ai.vectorizers "
                     "where name = 'rt6_kb')")
    except Exception:       # (a vectorizer whose source is gone)
        conn.execute("delete from ai.vectorizer_versions where vectorizer_id = %s", (vid,))
        conn.execute("delete from ai.vectorizers where id = %s", (vid,))
    for t in ("rt6_src", "rt6_old", "rt6_decoy", store):
        conn.execute(f"drop table if exists sec_app.{t} cascade")
    conn.execute("drop function if exists sec_app.rt6_leak() cascade")


def _search(server, key, out, **extra):
    body = {"name": "rt6_kb", "query": "hello", "mode": "keyword", **extra}
    out["r"] = HTTP.post(server + "/v1/search", json=body, headers={"Authorization": f"Bearer {key}"})


def _search_waiting_on(conn, server, key, rel_oid, attacker, **extra):
    """Starts an HTTP search, waits until the gateway waits for a lock on rel_oid (held by the
    attacker's open transaction), commits the attacker's transaction, returns the response."""
    out = {}
    th = threading.Thread(target=_search, args=(server, key, out), kwargs=extra, daemon=True)
    th.start()
    deadline = time.monotonic() + 60
    waited = False
    while time.monotonic() < deadline and th.is_alive():
        if conn.execute("select exists (select 1 from pg_locks where not granted and relation = %s)",
                        (rel_oid,)).fetchone()[0]:
            waited = True
            break
        time.sleep(0.05)
    attacker.execute("commit")
    th.join(90)
    assert "r" in out, "the search did not answer"
    return waited, out["r"]


def _assert_refused(r):
    assert SECRET not in r.text, f"another key's role's data came back: {r.status_code} {r.text}"
    assert "LEAK" not in r.text, f"the owner's code ran in the gateway's session: {r.status_code} {r.text}"


def test_a_dropped_source_leaves_the_chunk_table_unlocked(kb, owner, conn, server, installed):
    store, key = kb
    owner.execute("drop table sec_app.rt6_src cascade")
    # (refused at once now, with nothing left unlocked: before, keyword search still answered)
    base = HTTP.post(server + "/v1/search", json={"name": "rt6_kb", "query": "hello", "mode": "keyword"},
                     headers={"Authorization": f"Bearer {key}"})
    assert base.status_code != 200 and "is gone" in base.text, base.text
    oid = conn.execute("select %s::regclass::oid", (store,)).fetchone()[0]
    with as_role(installed, "sec_owner") as attacker:
        attacker.execute("begin")
        attacker.execute(f"alter table {store} enable row level security")
        attacker.execute(f"alter table {store} force row level security")
        attacker.execute(f"create policy rt6_p on {store} using (sec_app.rt6_leak() = 0)")
        waited, r = _search_waiting_on(conn, server, key, oid, attacker)
    _assert_refused(r)
    # (a search that ran over a chunk table with the owner's row security would have run its policy)
    assert r.status_code != 200, r.text


def test_a_source_renamed_while_the_gateway_waits_for_its_lock(kb, owner, conn, server, installed):
    store, key = kb
    owner.execute("create table sec_app.rt6_decoy (id int primary key, body text)")
    oid = conn.execute("select 'sec_app.rt6_src'::regclass::oid").fetchone()[0]
    with as_role(installed, "sec_owner") as attacker:
        attacker.execute("begin")
        attacker.execute("alter table sec_app.rt6_src rename to rt6_old")
        attacker.execute("alter table sec_app.rt6_decoy rename to rt6_src")
        attacker.execute("alter table sec_app.rt6_old enable row level security")
        attacker.execute("alter table sec_app.rt6_old force row level security")
        attacker.execute("create policy rt6_p on sec_app.rt6_old using (sec_app.rt6_leak() = 0)")
        waited, r = _search_waiting_on(conn, server, key, oid, attacker)
    assert waited, "the gateway never waited for the source's lock"
    _assert_refused(r)
    # (the vectorizer's source is still the table with row security, which HTTP search refuses)
    assert r.status_code == 403, r.text


def test_a_source_its_owner_cannot_read_is_checked_unlocked(kb, owner, conn, server, installed):
    """The gateway locks the source only when the key's role may SELECT it (LOCK needs that); its
    owner can revoke its own SELECT, and a filter still makes ai.search plan a query on it."""
    store, key = kb
    owner.execute("revoke select on sec_app.rt6_src from sec_owner")
    oid = conn.execute("select 'sec_app.rt6_src'::regclass::oid").fetchone()[0]
    with as_role(installed, "sec_owner") as attacker:
        attacker.execute("begin")
        attacker.execute("alter table sec_app.rt6_src enable row level security")
        attacker.execute("alter table sec_app.rt6_src force row level security")
        attacker.execute("create policy rt6_p on sec_app.rt6_src using (sec_app.rt6_leak() = 0)")
        waited, r = _search_waiting_on(conn, server, key, oid, attacker, filter={"body": "hello"})
    _assert_refused(r)


def test_an_index_created_while_the_planner_waits_at_another_index(kb, owner, conn, server, installed):
    store, key = kb
    (index,) = conn.execute("select indexrelid::regclass::text from pg_index where indrelid = %s::regclass "
                            "order by indexrelid limit 1", (store,)).fetchone()
    index_oid = conn.execute("select %s::regclass::oid", (index,)).fetchone()[0]
    assert conn.execute("select ai_internal._store_is_plain(%s::regclass)", (store,)).fetchone()[0] is True
    with as_role(installed, "sec_owner") as attacker, as_role(installed, "sec_owner") as other:
        attacker.execute("begin")
        attacker.execute(f"reindex index {index}")     # ACCESS EXCLUSIVE on the index, SHARE on the table
        out = {}
        th = threading.Thread(target=_search, args=(server, key, out), daemon=True)
        th.start()
        deadline, waited = time.monotonic() + 60, False
        while time.monotonic() < deadline and th.is_alive():
            if conn.execute("select exists (select 1 from pg_locks where not granted and relation = %s)",
                            (index_oid,)).fetchone()[0]:
                waited = True
                break
            time.sleep(0.05)
        if waited:
            # the gateway holds the chunk table's lock and has checked it: SHARE (CREATE INDEX) does
            # not conflict with its ACCESS SHARE
            other.execute(f"create index rt6_leak_idx on {store} ((sec_app.rt6_leak() + chunk_seq))")
        attacker.execute("commit")
        th.join(90)
    assert waited, "the gateway's planner never waited at the index"
    assert "r" in out, "the search did not answer"
    _assert_refused(out["r"])


def test_a_role_granted_nothing_locks_nothing(kb, installed):
    """ai_internal._lock_search_tables is a definer that any role may call: for a role that may not
    read the chunks it refuses (42501) before it takes a lock, so nobody locks another owner's
    tables through it."""
    with as_role(installed, "sec_nobody") as nobody:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as e:
            nobody.execute("select * from ai_internal._lock_search_tables('rt6_kb')")
    assert "permission denied for knowledge base" in str(e.value)
