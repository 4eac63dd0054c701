"""Vectorizers against the real database and real local models: propagation of every kind of
change, composite keys, crashes (kill -9 mid-batch and mid-write), parallel workers, poison rows,
a model server that goes down and comes back, and model changes that switch atomically."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import psycopg
import pytest

from conftest import sql_error
from pgmind.db import connect
from pgmind.devserver import settings_env
from pgmind.vectorizer.chunking import ChunkingConfig, chunk_text
from pgmind.vectorizer.worker import Worker
from waiting import wait_for

PARAGRAPH = ("PostgreSQL provides several index types: B-tree, Hash, GiST, SP-GiST, GIN and BRIN. "
             "Each index type uses a different algorithm that is best suited to different types of queries. ")


@pytest.fixture
def docs(conn):
    conn.execute("drop table if exists docs cascade")
    conn.execute("create table docs (id int primary key, title text, body text)")
    yield "docs"
    conn.execute("select ai.drop_vectorizer('docs') where exists (select 1 from ai.vectorizer_status where name = 'docs')")
    conn.execute("drop table if exists docs cascade")


def make_worker(settings, dsn, **kw) -> Worker:
    return Worker(settings, dsn, poll_interval=0.1, **kw)


def chunks_of(conn, view="docs_chunks", key="id"):
    rows = conn.execute(f"select {key}, chunk_seq, chunk from {view} order by {key}, chunk_seq").fetchall()
    out: dict = {}
    for k, seq, chunk in rows:
        out.setdefault(k, []).append((seq, chunk))
    return out


def assert_exactly_chunked(conn, config: ChunkingConfig, count):
    """Every source row has exactly the chunks its text gives, numbered 0..n-1, nothing else."""
    source = dict(conn.execute("select id, title || E'\\n\\n' || body from docs").fetchall())
    got = chunks_of(conn)
    assert set(got) == {k for k, text in source.items() if text.strip()}
    for k, text in source.items():
        expected = [c.text for c in chunk_text(text, config, count)]
        assert [seq for seq, _ in got.get(k, [])] == list(range(len(expected))), k
        assert [c for _, c in got.get(k, [])] == expected, k


def create(conn, **kw):
    args = {"content": "title || E'\\n\\n' || body", "model": "e5-small",
            "chunking": '{"method": "recursive", "max_tokens": 64, "overlap": 8}', **kw}
    conn.execute("select ai.create_vectorizer('docs'::regclass, name => 'docs', content => %(content)s, "
                 "model => %(model)s, chunking => %(chunking)s::jsonb)", args)


def test_insert_update_delete_truncate(conn, docs, settings, installed, server):
    conn.execute("insert into docs values (1, 'Pandas', '熊猫主要吃竹子。它们每天花很多时间进食。'), "
                 "(2, 'Indexes', %s)", (PARAGRAPH * 4,))
    create(conn)
    w = make_worker(settings, installed)
    w.drain()
    count = w.embedder.token_counter("e5-small")
    config = ChunkingConfig("recursive", 64, 8)
    assert_exactly_chunked(conn, config, count)
    assert len(chunks_of(conn)[2]) > 1
    # the vectors are the model's own for those chunks
    chunk, emb = conn.execute("select chunk, embedding from docs_chunks where id = 1 and chunk_seq = 0").fetchone()
    direct = w.embedder.embed_documents("e5-small", [chunk])[0]
    assert np.allclose(emb.to_numpy(), direct, atol=1e-5)

    conn.execute("insert into docs values (3, 'New', 'A brand new row about vacuum.')")
    conn.execute("update docs set body = 'Pandas also eat fruit.' where id = 1")
    conn.execute("update docs set title = title where id = 2")           # no change of content: nothing queued
    assert conn.execute("select count(*) from ai.vectorizer_queue").fetchone()[0] == 2
    w.drain()
    assert_exactly_chunked(conn, config, count)
    assert "fruit" in chunks_of(conn)[1][0][1]

    conn.execute("delete from docs where id = 2")                        # chunks go at once, in the same transaction
    assert 2 not in chunks_of(conn)
    conn.execute("update docs set id = 30 where id = 3")                 # a new key: old chunks go, new ones come
    assert 3 not in chunks_of(conn)
    w.drain()
    assert set(chunks_of(conn)) == {1, 30}

    conn.execute("truncate docs")
    assert chunks_of(conn) == {}
    assert conn.execute("select count(*) from ai.vectorizer_queue").fetchone()[0] == 0


def test_status_and_workers_views(conn, docs, settings, installed, server, token):
    conn.execute("insert into docs select g, 't' || g, 'body ' || g from generate_series(1, 20) g")
    create(conn)
    st = conn.execute("select pending, leased, done, errors, lag is not null from ai.vectorizer_status "
                      "where name = 'docs'").fetchone()
    assert st == (20, 0, 0, 0, True)
    w = make_worker(settings, installed)
    w.drain()
    st = conn.execute("select pending, done, rows_per_second > 0 from ai.vectorizer_status where name = 'docs'").fetchone()
    assert st == (0, 20, True)
    hb = conn.execute("select rows_done, silent_for < interval '1 minute' from ai.vectorizer_worker_status "
                      "where worker_id = %s", (w.worker_id,)).fetchone()
    assert hb == (20, True)
    apps = conn.execute("select count(*) from pg_stat_activity where application_name = %s",
                        (f"pgmind worker {w.worker_id}",)).fetchone()[0]
    assert apps == 1
    # the state says why rows wait (issue 38, item 7): a killed worker (silent past a lease) is not alive
    conn.execute("update ai.vectorizer_workers set heartbeat_at = now() - interval '10 minutes'")
    assert conn.execute("select alive from ai.vectorizer_worker_status where worker_id = %s",
                        (w.worker_id,)).fetchone()[0] is False
    assert conn.execute("select state, workers from ai.vectorizer_status where name = 'docs'").fetchone() == ("done", 0)
    conn.execute("insert into docs values (98, 'waits', 'queued with no worker alive')")
    assert conn.execute("select state from ai.vectorizer_status where name = 'docs'").fetchone()[0] == "no worker running"
    w.heartbeat(force=True)
    assert conn.execute("select state, workers from ai.vectorizer_status where name = 'docs'").fetchone() == ("queued", 1)
    conn.execute("select ai.pause_vectorizer('docs')")
    assert conn.execute("select state from ai.vectorizer_status where name = 'docs'").fetchone()[0] == "paused"
    conn.execute("select ai.resume_vectorizer('docs')")
    w.drain()
    import httpx
    conn.execute("insert into docs values (99, 'late', 'queued, not yet embedded')")
    text = httpx.get(server + "/metrics", headers={"Authorization": f"Bearer {token}"}).text
    assert 'pgmind_vectorizer_pending{vectorizer="docs",version="1"} 1.0' in text
    assert 'pgmind_vectorizer_rows_per_second{vectorizer="docs",version="1"}' in text
    # a worker that closes leaves the list (pgmind ingest's and backfill's stayed listed as running)
    w.close()
    assert conn.execute("select count(*) from ai.vectorizer_workers where worker_id = %s",
                        (w.worker_id,)).fetchone()[0] == 0


def test_composite_key(conn, settings, installed, server):
    conn.execute("drop table if exists notes cascade")
    conn.execute("create table notes (tenant text, note_id int, txt text, primary key (tenant, note_id))")
    conn.execute("insert into notes values ('acme', 1, '第一条笔记'), ('acme', 2, 'second note'), ('globex', 1, 'third')")
    try:
        conn.execute("select ai.create_vectorizer('notes'::regclass, content => 'txt', model => 'minilm')")
        w = make_worker(settings, installed)
        w.drain()
        rows = conn.execute("select tenant, note_id, chunk from notes_chunks order by 1, 2").fetchall()
        assert rows == [("acme", 1, "第一条笔记"), ("acme", 2, "second note"), ("globex", 1, "third")]
        conn.execute("delete from notes where tenant = 'acme' and note_id = 2")
        conn.execute("update notes set txt = 'changed' where tenant = 'globex'")
        w.drain()
        rows = conn.execute("select tenant, note_id, chunk from notes_chunks order by 1, 2").fetchall()
        assert rows == [("acme", 1, "第一条笔记"), ("globex", 1, "changed")]
    finally:
        conn.execute("select ai.drop_vectorizer('notes')")
        conn.execute("drop table notes")


def test_create_checks(conn, docs):
    conn.execute("create table if not exists nokey (x text)")
    try:
        e = sql_error(conn, "select ai.create_vectorizer('nokey'::regclass, content => 'x')")
        assert e.sqlstate == "42P16" and "primary key" in e.diag.message_hint
    finally:
        conn.execute("drop table nokey")
    e = sql_error(conn, "select ai.create_vectorizer('docs'::regclass, content => 'nosuchcol')")
    assert e.sqlstate == "42601" and "not a valid expression" in e.diag.message_primary
    e = sql_error(conn, "select ai.create_vectorizer('docs'::regclass, content => 'body', model => 'qwen-0.5b')")
    assert e.sqlstate == "22023" and "not an embedding model" in e.diag.message_primary
    e = sql_error(conn, "select ai.create_vectorizer('docs'::regclass, content => 'body', model => 'nope')")
    assert e.sqlstate == "42704"
    e = sql_error(conn, """select ai.create_vectorizer('docs'::regclass, content => 'body',
                           chunking => '{"method": "sentences"}')""")
    assert e.sqlstate == "22023" and "chunking method" in e.diag.message_primary
    e = sql_error(conn, "select ai.create_vectorizer('docs'::regclass)")   # two text columns: say which
    assert e.sqlstate == "22023" and "content is required" in e.diag.message_primary
    create(conn)
    e = sql_error(conn, "select ai.create_vectorizer('docs'::regclass, name => 'docs', content => 'body')")
    assert e.sqlstate == "42710"


def test_index_uses_the_models_metric(conn, docs):
    create(conn)
    indexdef = conn.execute("select indexdef from pg_indexes where tablename = 'docs_chunks_v1' "
                            "and indexdef like '%hnsw%'").fetchone()[0]
    assert "vector_cosine_ops" in indexdef and "m='16'" in indexdef
    plan = "\n".join(r[0] for r in conn.execute(
        "explain select id from docs_chunks order by embedding <=> (select embedding from docs_chunks limit 1) "
        "limit 5").fetchall())
    assert "docs_chunks_v1_embedding_idx" in plan     # the index serves the view


def test_poison_rows_are_quarantined_and_retried(conn, docs, settings, installed, server):
    conn.execute("insert into docs values (1, 'ok', 'short text'), (2, 'too long', %s), (3, 'ok', 'also short')",
                 (PARAGRAPH * 40,))
    create(conn, chunking='{"method": "none"}')    # no chunking: the long row exceeds e5's 512 tokens
    w = make_worker(settings, installed)
    w.drain()
    assert set(chunks_of(conn)) == {1, 3}                                 # the rest of the batch is written
    err = conn.execute("select key, sqlstate, error, attempts from ai.vectorizer_errors where vectorizer = 'docs'"
                       ).fetchone()
    assert err[0] == {"id": 2} and err[1] == "22001" and "512" in err[2] and err[3] == 1
    assert conn.execute("select errors, pending from ai.vectorizer_status where name = 'docs'").fetchone() == (1, 0)
    assert conn.execute("select ai.vectorizer_retry('docs')").fetchone()[0] == 1
    assert conn.execute("select pending, errors from ai.vectorizer_status where name = 'docs'").fetchone() == (1, 0)
    conn.execute("update docs set body = 'now it fits' where id = 2")     # fixing the row queues it again
    w.drain()
    assert set(chunks_of(conn)) == {1, 2, 3}
    assert conn.execute("select count(*) from ai.vectorizer_errors").fetchone()[0] == 0


def test_two_workers_share_without_overlap(conn, docs, settings, installed, server):
    n = 160
    conn.execute("insert into docs select g, 'row ' || g, %s || g from generate_series(1, %s) g", (PARAGRAPH, n))
    create(conn, model="minilm")
    workers = [make_worker(settings, installed, batch_rows=8) for _ in range(2)]
    threads = [threading.Thread(target=w.drain) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    per_worker = dict(conn.execute("select worker_id, sum(rows) from ai.vectorizer_progress p "
                                   "join ai.vectorizers v on v.id = p.vectorizer_id where v.name = 'docs' "
                                   "group by worker_id").fetchall())
    assert sum(per_worker.values()) == n                        # every row written exactly once
    assert all(per_worker.get(w.worker_id, 0) > 0 for w in workers)
    assert conn.execute("select count(distinct id) from docs_chunks").fetchone()[0] == n
    assert_exactly_chunked(conn, ChunkingConfig("recursive", 64, 8), workers[0].embedder.token_counter("minilm"))


def test_a_batch_slower_than_its_lease_keeps_it(conn, docs, settings, installed, server):
    """A batch that takes longer than the lease (a slow remote model, huge rows) has its leases renewed
    while it is read and embedded: another worker claims none of it meanwhile, and it is written once."""
    conn.execute("insert into docs select g, 'row ' || g, %s || g from generate_series(1, 4) g", (PARAGRAPH,))
    create(conn, model="minilm")
    slow = make_worker(settings, installed, batch_rows=8, lease_seconds=1.5)
    other = make_worker(settings, installed, batch_rows=8)
    taken: list = []
    embed = slow.embed

    def slow_embed(ver, contents, config):
        time.sleep(2.5)                          # past the 1.5 s lease
        taken.extend(other.claim(ver))
        return embed(ver, contents, config)
    slow.embed = slow_embed
    try:
        slow.drain(timeout=120)
        assert taken == []
        rows = conn.execute("select worker_id, sum(rows) from ai.vectorizer_progress p join ai.vectorizers v "
                            "on v.id = p.vectorizer_id where v.name = 'docs' group by worker_id").fetchall()
        assert rows == [(slow.worker_id, 4)]
        assert conn.execute("select count(distinct id) from docs_chunks").fetchone()[0] == 4
    finally:
        slow.close()
        other.close()


def _worker_process(settings, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pgmind.cli", "worker", *args], env=settings_env(settings),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_kill_9_mid_batch(conn, docs, settings, installed, server):
    n = 120
    conn.execute("insert into docs select g, 'row ' || g, %s || g from generate_series(1, %s) g",
                 (PARAGRAPH * 3, n))
    create(conn)
    proc = _worker_process(settings, "--batch", "8", "--lease", "3")
    try:
        wait_for(lambda: conn.execute("select coalesce(done, 0) >= 16 and leased > 0 from ai.vectorizer_status "
                                      "where name = 'docs'").fetchone()[0],
                 timeout=120, interval=0.02, what="the worker to write two batches while holding a lease")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    done, leased = conn.execute("select done, leased from ai.vectorizer_status where name = 'docs'").fetchone()
    assert 0 < done < n and leased > 0
    w = make_worker(settings, installed)
    w.drain()                                  # takes over once the dead worker's lease expires
    assert conn.execute("select done, pending, leased from ai.vectorizer_status where name = 'docs'"
                        ).fetchone() == (n, 0, 0)
    assert_exactly_chunked(conn, ChunkingConfig("recursive", 64, 8), w.embedder.token_counter("e5-small"))


def test_kill_9_mid_write(conn, docs, settings, installed, server):
    """The worker is killed inside its write transaction: nothing of that batch is kept, and the
    next worker writes it exactly once."""
    conn.execute("insert into docs select g, 'row ' || g, 'text ' || g from generate_series(1, 10) g")
    create(conn)
    with connect(installed) as blocker:
        blocker.execute("lock table docs_chunks_v1 in access exclusive mode")   # the write will wait here
        proc = _worker_process(settings, "--batch", "10", "--lease", "2")
        try:
            backend = wait_for(lambda: conn.execute(
                "select pid from pg_stat_activity where application_name like 'pgmind worker%%' "
                "and wait_event_type = 'Lock'").fetchone(), timeout=120,
                what="the worker to reach its write (waiting for the table's lock)")
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        blocker.rollback()
    # the killed worker's backend gets the lock now: once it has gone (it finds its client gone), its
    # transaction has ended, committed or not, and nothing of the batch may be there
    wait_for(lambda: conn.execute("select not exists (select from pg_stat_activity where pid = %s)",
                                  backend).fetchone()[0], timeout=30, what="the killed worker's backend to end")
    assert conn.execute("select count(*) from docs_chunks").fetchone()[0] == 0
    w = make_worker(settings, installed)
    w.drain()
    assert_exactly_chunked(conn, ChunkingConfig("recursive", 64, 8), w.embedder.token_counter("e5-small"))


def test_model_server_down_then_back(conn, docs, settings, installed, server, tmp_path):
    """A remote model reached through the model server: while the server is down the rows wait in
    the queue with the reason shown; when it is back they are embedded."""
    from dataclasses import replace

    from conftest import free_port
    from pgmind.devserver import start_server, stop_server
    from standins import StandIn
    standin = StandIn(dim=8)
    conn.execute("select ai.drop_model('remote-vec', if_exists => true)")
    # its key is in the model server's environment only: the worker goes through the server
    conn.execute("select ai.create_model('remote-vec', %s, 'openai', 'embedding', 'text-embedding-3-small', "
                 "'{\"author_type\": \"env\", \"env\": \"PROVIDER_TEST_KEY\"}')", (standin.url + "/v1",))
    own = replace(settings, server_port=free_port())         # a model server of this test's own
    try:
        conn.execute("insert into docs values (1, 'a', 'first'), (2, 'b', 'second')")
        create(conn, model="remote-vec")
        w = make_worker(own, installed)
        assert w.run_once() == 0                                   # no server: nothing written
        st = conn.execute("select pending, leased, last_error from ai.vectorizer_status where name = 'docs'").fetchone()
        assert st[0] + st[1] == 2 and "cannot reach the model server" in st[2]
        proc = start_server(own, {"PROVIDER_TEST_KEY": "sk-from-env-123", "PGMIND_SECRET_ENV": "PROVIDER_TEST_KEY"},
                            args=("--no-worker",))
        try:
            w.drain(timeout=60)
        finally:
            stop_server(proc)
        assert set(chunks_of(conn)) == {1, 2}
        assert conn.execute("select vector_dims(embedding) from docs_chunks limit 1").fetchone()[0] == 8
    finally:
        conn.execute("select ai.drop_vectorizer('docs') where exists (select 1 from ai.vectorizer_status where name = 'docs')")
        conn.execute("select ai.drop_model('remote-vec')")
        standin.close()


def test_alter_switches_atomically(conn, docs, settings, installed, server):
    conn.execute("insert into docs select g, 'row ' || g, 'text about tables ' || g from generate_series(1, 12) g")
    create(conn)
    conn.execute("grant select on docs_chunks to public")
    w = make_worker(settings, installed)
    w.drain()
    assert conn.execute("select vector_dims(embedding) from docs_chunks limit 1").fetchone()[0] == 384
    conn.execute("""select ai.configure_rag('docs', '{"threshold": 0.8, "k": 4}')""")
    conn.execute("select ai.alter_vectorizer('docs', model => 'use-m3')")
    st = conn.execute("select version, status, pending from ai.vectorizer_status where name = 'docs' order by version"
                      ).fetchall()
    assert st == [(1, "active", 0), (2, "building", 12)]
    conn.execute("insert into docs values (100, 'during', 'added while the new version builds')")
    # the old version keeps serving, including new rows
    w.process_batch(next(v for v in w.versions() if v.version == 1))
    assert conn.execute("select count(*) from docs_chunks where id = 100").fetchone()[0] == 1
    assert conn.execute("select vector_dims(embedding) from docs_chunks limit 1").fetchone()[0] == 384
    w.drain()
    st = conn.execute("select version, status, model from ai.vectorizer_status where name = 'docs'").fetchall()
    assert st == [(2, "active", "use-m3")]
    # the owner's threshold was on e5-small's scale: reset with the switch (issue 38), other settings kept
    assert conn.execute("select config->'rag' from ai.vectorizers where name = 'docs'").fetchone()[0] == {"k": 4}
    assert conn.execute("select count(distinct id), min(vector_dims(embedding)) from docs_chunks").fetchone() == (13, 512)
    assert conn.execute("select to_regclass('docs_chunks_v1')").fetchone()[0] is None
    assert conn.execute("select has_table_privilege('public', 'docs_chunks', 'select')").fetchone()[0]


def test_drop_vectorizer(conn, docs, settings, installed):
    create(conn)
    conn.execute("select ai.drop_vectorizer('docs')")
    assert conn.execute("select to_regclass('docs_chunks'), to_regclass('docs_chunks_v1')").fetchone() == (None, None)
    assert conn.execute("select count(*) from pg_trigger where tgrelid = 'docs'::regclass and not tgisinternal"
                        ).fetchone()[0] == 0
    conn.execute("insert into docs values (1, 'x', 'y')")             # no trigger left behind
    e = sql_error(conn, "select ai.drop_vectorizer('docs')")
    assert e.sqlstate == "42704"


def test_only_the_owner_changes_a_vectorizer(conn, docs, installed):
    create(conn)
    conn.execute("drop role if exists mallory")
    conn.execute("create role mallory login")
    try:
        with connect(psycopg.conninfo.make_conninfo(installed, user="mallory"), autocommit=True) as m:
            assert sql_error(m, "select ai.drop_vectorizer('docs')").sqlstate == "42501"
            assert sql_error(m, "select ai.vectorizer_backfill('docs')").sqlstate == "42501"
            assert m.execute("select count(*) from ai.vectorizer_status").fetchone()[0] == 0
    finally:
        conn.execute("drop role mallory")


def test_serve_runs_a_worker(conn, docs, settings, installed):
    """`pgmind serve` embeds queued rows by itself (its built-in worker)."""
    from dataclasses import replace

    from conftest import free_port
    from pgmind.devserver import start_server, stop_server
    create(conn)
    conn.execute("insert into docs values (1, 'served', 'embedded by the worker inside pgmind serve')")
    own = replace(settings, server_port=free_port())
    proc = start_server(own)
    try:
        wait_for(lambda: chunks_of(conn), timeout=60, interval=0.2, what="the server's own worker to embed the row")
    finally:
        stop_server(proc)
    assert set(chunks_of(conn)) == {1}


def test_worker_in_the_server_process_shares_its_models(conn, docs, settings, installed):
    """The in-process worker embeds through the model server's hub: one copy of each local model,
    and its batches go through the same batcher the HTTP routes use."""
    import asyncio
    import threading
    from pgmind.models.hub import ModelHub
    from pgmind.vectorizer.embedder import Embedder
    batches = []
    hub = ModelHub(settings, on_batch=lambda model, n: batches.append((model, n)))
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    try:
        create(conn)
        conn.execute("insert into docs (id, title, body) values (1, 't', 'shared models'), (2, 't', 'one copy')")
        w = Worker(settings, installed, poll_interval=0.1, embedder=Embedder(settings, installed, hub=hub, loop=loop))
        w.drain()
        assert len(chunks_of(conn)) == 2
        w.embedder.embed_documents("e5-small", ["again"])
        assert len(hub._local) == 1 and {m for m, _ in batches} == {"e5-small"}
        w.close()
    finally:
        asyncio.run_coroutine_threadsafe(hub.aclose(), loop).result()
        loop.call_soon_threadsafe(loop.stop)


def test_a_failing_content_expression_never_blocks_the_users_writes(conn, docs, settings, installed, server):
    """Issue 38: the trigger evaluated the content on OLD, so every later UPDATE of a quarantined row
    raised the expression's error, the update that fixes it included; only DELETE worked."""
    conn.execute("select ai.create_vectorizer('docs'::regclass, content => '''n='' || (body::int)::text', "
                 "model => 'minilm')")
    conn.execute("insert into docs values (1, 't', '41'), (2, 't', 'not a number')")
    make_worker(settings, installed, names=["docs"]).drain(timeout=120)
    assert [r[0] for r in conn.execute("select sqlstate from ai.vectorizer_errors where vectorizer = 'docs'")] == ["22P02"]
    conn.execute("update docs set title = 'another column' where id = 2")     # was: 22P02 from the trigger
    conn.execute("update docs set body = '42' where id = 2")                  # the fix itself
    make_worker(settings, installed, names=["docs"]).drain(timeout=120)
    assert dict(conn.execute("select id, chunk from docs_chunks").fetchall()) == {1: "n=41", 2: "n=42"}
    assert conn.execute("select count(*) from ai.vectorizer_errors where vectorizer = 'docs'").fetchone()[0] == 0


def test_a_model_in_use_cannot_be_dropped(conn, docs):
    """Issue 38: ai.drop_model dropped a model an active vectorizer used; its search then failed and its
    queue retried forever."""
    conn.execute("select ai.drop_model('minilm-in-use', if_exists => true)")
    conn.execute("select ai.create_model('minilm-in-use', null, 'pgmind', 'embedding', 'minilm')")
    conn.execute("select ai.create_vectorizer('docs'::regclass, content => 'body', model => 'minilm-in-use')")
    err = sql_error(conn, "select ai.drop_model('minilm-in-use')")
    assert err.sqlstate == "2BP01" and "docs" in err.diag.message_primary and "alter_vectorizer" in err.diag.message_hint
    conn.execute("select ai.drop_vectorizer('docs')")
    assert conn.execute("select ai.drop_model('minilm-in-use')").fetchone()[0] is True


def test_status_lists_what_each_role_may_see_when_others_keep_private_schemas(conn, installed):
    """A vectorizer in a schema only its owner may use: the others' status still lists (without it,
    or with done unknown), never 42501 for the whole view (seen from the console)."""
    conn.execute("drop schema if exists carol_s cascade")
    for r in ("carol", "dave"):
        conn.execute(f"drop role if exists {r}")
        conn.execute(f"create role {r} login")
    try:
        conn.execute("create schema carol_s authorization carol")
        with connect(psycopg.conninfo.make_conninfo(installed, user="carol"), autocommit=True) as carol:
            carol.execute("create table carol_s.notes (id int primary key, body text)")
            carol.execute("insert into carol_s.notes values (1, 'private')")
            carol.execute("select ai.create_vectorizer('carol_s.notes'::regclass, name => 'carol_notes', "
                          "content => 'body', model => 'e5-small')")
            assert carol.execute("select pending from ai.vectorizer_status where name = 'carol_notes'").fetchone() == (1,)
        with connect(psycopg.conninfo.make_conninfo(installed, user="dave"), autocommit=True) as dave:
            assert dave.execute("select count(*) from ai.vectorizer_status where name = 'carol_notes'").fetchone() == (0,)
            conn.execute("grant pgmind_admin to dave")
            # an administrator without usage on carol's schema: listed, its done count unknown
            assert dave.execute("select pending, done from ai.vectorizer_status "
                                "where name = 'carol_notes'").fetchone() == (1, None)
    finally:
        conn.execute("select ai.drop_vectorizer('carol_notes')") if conn.execute(
            "select count(*) from ai.vectorizers where name = 'carol_notes'").fetchone()[0] else None
        conn.execute("drop schema if exists carol_s cascade")
        for r in ("carol", "dave"):
            conn.execute(f"drop owned by {r}")
            conn.execute(f"drop role {r}")
