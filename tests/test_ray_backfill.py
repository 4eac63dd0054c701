"""The Ray backfill (issue 40) on a local multi-process Ray cluster that this module starts on
127.0.0.1 (a head node and one more node process, one CPU each), shared by every test here and
torn down at the end: the same chunks and embeddings as ``pgmind worker``, a worker and Ray at once,
an actor and a driver killed mid-run, a poison row, who may start one, bad addresses; and pausing
a vectorizer (ai.pause_vectorizer), which workers and Ray backfills honour."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import psycopg
import pytest

from conftest import sql_error
from pgmind.client import Pgmind
from pgmind.devserver import free_port, settings_env
from pgmind.errors import InvalidRequestError, PermissionDeniedError, PgmindError
from pgmind.vectorizer.chunking import ChunkingConfig, chunk_text
from pgmind.vectorizer.worker import Shard, Worker
from waiting import wait_for

ray = pytest.importorskip("ray", reason="Ray is pgmind's optional extra: pip install -e '.[ray]' (make setup does)")

TEXT = "VACUUM reclaims dead rows; 熊猫吃竹子。 "
CHUNKING = '{"method": "recursive", "max_tokens": 48, "overlap": 8}'


# -- the cluster -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_address():
    """A head node and a second node process on 127.0.0.1, each in a process group of its own (torn
    down by those groups' ids: other Ray clusters on the machine are left alone)."""
    ray_bin = str(Path(sys.executable).parent / "ray")
    port = free_port()
    temp = tempfile.mkdtemp(prefix="pgr", dir="/tmp")          # (Ray's socket paths must stay short)
    # Ray's token authentication off for this private loopback cluster, explicitly: with RAY_AUTH_MODE
    # unset, Ray 2.60 turns it on for a head node whenever ~/.ray/auth_token exists (a local
    # `ray.init()` writes one), and a driver must then find the token.  The CLI drivers inherit it.
    saved_mode = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--object-store-memory=100000000", "--block"]
    procs = []

    def start(*args, log):
        procs.append(subprocess.Popen([ray_bin, "start", *args, *common], env=env, start_new_session=True,
                                      stdout=open(Path(temp) / log, "w"), stderr=subprocess.STDOUT))
    try:
        start("--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp}", log="head.log")
        wait_for(lambda: _port_open(port), timeout=60, what="the Ray head node to listen")
        start(f"--address=127.0.0.1:{port}", log="node.log")
        ray.init(address=f"127.0.0.1:{port}", log_to_driver=False, configure_logging=False)
        try:
            wait_for(lambda: sum(n["Alive"] for n in ray.nodes()) == 2, timeout=60, what="both Ray nodes")
        finally:
            ray.shutdown()
        yield f"127.0.0.1:{port}"
    finally:
        for p in procs:
            _kill_group(p, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(3)
            except subprocess.TimeoutExpired:
                pass
            _kill_group(p, signal.SIGKILL)     # (what the node started: its raylet, its actors)
            p.wait(10)
        shutil.rmtree(temp, ignore_errors=True)
        if saved_mode is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved_mode


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _kill_group(p: subprocess.Popen, sig) -> None:
    try:
        os.killpg(p.pid, sig)
    except ProcessLookupError:
        pass


# -- helpers ---------------------------------------------------------------------------------------
def make_table(conn, table: str, n: int) -> None:
    conn.execute(f"drop table if exists {table} cascade")
    conn.execute(f"create table {table} (id int primary key, body text)")
    # short rows (one chunk), and every 50th long enough for several
    conn.execute(f"insert into {table} select g, 'row ' || g || ': ' || repeat(%s, case when g %% 50 = 0 then 12 else 1 end) "
                 f"from generate_series(1, %s) g", (TEXT, n))


def create(conn, table: str, name: str, poison: int | None = None, backfill: bool = True) -> None:
    # a content expression that fails on one row (division by zero): that row is poison
    content = "body" if poison is None else f"case when id = {int(poison)} then (1 / (id - id))::text else body end"
    conn.execute("select ai.create_vectorizer(%s::regclass, name => %s, content => %s, model => 'minilm', "
                 "chunking => %s::jsonb, backfill => %s)", (table, name, content, CHUNKING, backfill))


def drop(conn, table: str, *names: str) -> None:
    for name in names:
        conn.execute("select ai.drop_vectorizer(%s) where exists (select 1 from ai.vectorizers where name = %s)",
                     (name, name))
    conn.execute(f"drop table if exists {table} cascade")


def backfill_cmd(settings, name: str, address: str, *args: str) -> list[str]:
    """The CLI's Ray backfill (batches of 16 rows unless args say otherwise: the later --batch wins)."""
    return [sys.executable, "-m", "pgmind.cli", "vectorizer", "backfill", name, "--ray", address, "--batch", "16", *args]


def run_backfill(settings, name, address, *args, timeout=300) -> subprocess.CompletedProcess:
    r = subprocess.run(backfill_cmd(settings, name, address, *args), env=settings_env(settings),
                       capture_output=True, text=True, timeout=timeout)
    return r


def written(conn, name: str) -> dict[str, int]:
    """Rows written per worker id (ai.vectorizer_progress: one record per write transaction)."""
    return dict(conn.execute("select p.worker_id, sum(p.rows)::int from ai.vectorizer_progress p "
                             "join ai.vectorizers v on v.id = p.vectorizer_id where v.name = %s group by 1",
                             (name,)).fetchall())


def chunks(conn, view: str) -> dict:
    out: dict = {}
    for k, seq, chunk, emb in conn.execute(f"select id, chunk_seq, chunk, embedding from {view} order by 1, 2"):
        out.setdefault(k, []).append((seq, chunk, emb.to_numpy()))
    return out


def assert_exactly_chunked(conn, table: str, view: str, count, skip=(), chunking: str = CHUNKING) -> None:
    source = dict(conn.execute(f"select id, body from {table}").fetchall())
    got = chunks(conn, view)
    assert set(got) == set(source) - set(skip)
    config = ChunkingConfig.from_json(json.loads(chunking))
    for k in got:
        assert [(s, c) for s, c, _ in got[k]] == list(enumerate(c.text for c in chunk_text(source[k], config, count)))


def status(conn, name: str):
    """pending, leased, done, errors of the vectorizer's newest version."""
    return conn.execute("select pending, leased, coalesce(done, 0), errors from ai.vectorizer_status where name = %s "
                        "order by version desc limit 1", (name,)).fetchone()


@pytest.fixture(scope="module")
def counter(settings, installed):
    w = Worker(settings, installed, names=["none"])
    yield w.embedder.token_counter("minilm")
    w.close()


# -- the tests -------------------------------------------------------------------------------------
def test_ray_gives_the_workers_chunks_and_quarantines_a_poison_row_alone(conn, settings, installed, ray_address, counter):
    """A few thousand rows: a Ray backfill on the two-node cluster writes each row once, and the chunks
    and vectors ``pgmind worker`` writes for the same rows (cosine >= 0.9999; the worker embeds a
    sample of them, to keep the test short: every 20th row (the long rows among them) and the poison row); the
    poison row is quarantined alone, with the worker's error."""
    n = 2000
    make_table(conn, "ray_src", n)
    try:
        create(conn, "ray_src", "ray_by_ray", poison=13)
        create(conn, "ray_src", "ray_by_worker", poison=13, backfill=False)
        sample = [k for k in range(1, n + 1) if k % 20 == 0 or k == 13]
        conn.execute("select ai_internal._enqueue(v.id, array(select jsonb_build_object('id', k) from unnest(%s::int[]) k)) "
                     "from ai.vectorizers v where v.name = 'ray_by_worker'", (sample,))
        r = run_backfill(settings, "ray_by_ray", ray_address, "--batch", "64")
        assert r.returncode == 0, r.stderr + r.stdout
        assert f"{n - 1} rows" in r.stdout and "1 quarantined" in r.stdout and "Ray actors" in r.stdout
        w = Worker(settings, installed, names=["ray_by_worker"], poll_interval=0.1)
        try:
            w.drain(timeout=600)
        finally:
            w.close()
        by_ray, by_worker = chunks(conn, "ray_by_ray_chunks"), chunks(conn, "ray_by_worker_chunks")
        assert set(by_ray) == set(range(1, n + 1)) - {13} and set(by_worker) == set(sample) - {13}
        for k in by_worker:
            assert [(s, c) for s, c, _ in by_ray[k]] == [(s, c) for s, c, _ in by_worker[k]], k
            for (_, _, a), (_, _, b) in zip(by_ray[k], by_worker[k]):
                assert float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))) >= 0.9999, k
        assert all(len(by_ray[k]) > 1 for k in range(50, n + 1, 50))     # (the long rows have several chunks)
        assert_exactly_chunked(conn, "ray_src", "ray_by_ray_chunks", counter, skip={13})
        per_writer = written(conn, "ray_by_ray")
        assert sum(per_writer.values()) == n - 1                  # every row written exactly once
        assert all(wid.startswith("ray:") for wid in per_writer)  # by the actors
        for name, rows in (("ray_by_ray", n - 1), ("ray_by_worker", len(sample) - 1)):
            errs = conn.execute("select key, sqlstate, error from ai.vectorizer_errors where vectorizer = %s",
                                (name,)).fetchall()
            assert len(errs) == 1 and errs[0][0] == {"id": 13} and errs[0][1] == "22012", errs
            assert "division by zero" in errs[0][2]
            assert status(conn, name) == (0, 0, rows, 1)
        # the actors are gone from the workers' list
        assert conn.execute("select count(*) from ai.vectorizer_workers where worker_id like 'ray:%'").fetchone()[0] == 0
        # a re-run with nothing queued does nothing
        r = run_backfill(settings, "ray_by_ray", ray_address)
        assert r.returncode == 0 and "0 rows" in r.stdout, r.stderr + r.stdout
    finally:
        drop(conn, "ray_src", "ray_by_ray", "ray_by_worker")


def test_a_worker_and_ray_at_once_and_an_actor_killed_mid_run_write_each_row_once(conn, settings, installed, ray_address,
                                                                                   counter):
    """``pgmind worker`` runs while the Ray backfill does, and one actor is killed (kill -9) while it
    holds a batch: Ray restarts it and retries its shard, the batch's lease expires, and every row is
    written exactly once, by whoever."""
    n = 300
    make_table(conn, "ray_both", n)
    worker = None
    try:
        create(conn, "ray_both", "ray_both")
        worker = subprocess.Popen([sys.executable, "-m", "pgmind.cli", "worker", "--vectorizer", "ray_both",
                                   "--batch", "8"], env=settings_env(settings),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        proc = subprocess.Popen(backfill_cmd(settings, "ray_both", ray_address, "--lease", "3"),
                                env=settings_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # an actor that has written a batch and holds the lease of the next one
            pid = wait_for(lambda: conn.execute(
                "select w.pid from ai.vectorizer_workers w join ai.vectorizer_queue q on q.lease_owner = w.worker_id "
                "where w.worker_id like 'ray:%%' and q.lease_until > now() and w.rows_done > 0 limit 1").fetchone(),
                timeout=180, interval=0.02, what="an actor with a batch in flight")[0]
            # the actors connect as pgmind's service role, never as a superuser
            users = {u for (u,) in conn.execute("select usename from pg_stat_activity "
                                                "where application_name like 'pgmind worker ray:%'")}
            assert users == {"pgmind_service"}
            os.kill(pid, signal.SIGKILL)
            out, err = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, err + out          # (Ray retried the killed actor's shard)
        wait_for(lambda: status(conn, "ray_both") == (0, 0, n, 0), timeout=120, what="every row embedded")
        per_writer = written(conn, "ray_both")
        assert sum(per_writer.values()) == n, per_writer          # each row once, whoever wrote it
        assert any(w.startswith("ray:") for w in per_writer)
        assert_exactly_chunked(conn, "ray_both", "ray_both_chunks", counter)
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(60)
        drop(conn, "ray_both", "ray_both")


def test_a_driver_killed_mid_run_then_a_rerun_resumes_and_switches_the_version(conn, settings, installed, ray_address,
                                                                               counter):
    """The driver is killed (kill -9) mid-run: its actors end, their leases expire, and the same
    command again does only what is left.  The rows were queued by ai.alter_vectorizer (a new
    version, building): once the backfill empties its queue it becomes the active one."""
    n = 300
    make_table(conn, "ray_driver", n)
    try:
        create(conn, "ray_driver", "ray_driver", backfill=False)
        new_chunking = '{"method": "recursive", "max_tokens": 40, "overlap": 4}'
        assert conn.execute("select ai.alter_vectorizer('ray_driver', chunking => %s::jsonb)",
                            (new_chunking,)).fetchone()[0] == 2
        proc = subprocess.Popen(backfill_cmd(settings, "ray_driver", ray_address, "--lease", "3"),
                                env=settings_env(settings), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: status(conn, "ray_driver")[1] > 0 and status(conn, "ray_driver")[2] >= 32,
                     timeout=180, interval=0.02, what="the backfill to write batches while holding leases")
        finally:
            proc.kill()
            proc.wait()
        # Ray ends the dead driver's actors; their leases expire
        wait_for(lambda: conn.execute("select count(*) from pg_stat_activity "
                                      "where application_name like 'pgmind worker ray:%'").fetchone()[0] == 0,
                 timeout=120, what="the dead driver's actors to end")
        before = sum(written(conn, "ray_driver").values())
        assert 0 < before < n
        r = run_backfill(settings, "ray_driver", ray_address, "--lease", "3")   # resumes: no --requeue
        assert r.returncode == 0, r.stderr + r.stdout
        assert f"{n - before} rows" in r.stdout, r.stdout                      # only what was left
        assert conn.execute("select version, status from ai.vectorizer_status where name = 'ray_driver'"
                            ).fetchall() == [(2, "active")]
        assert status(conn, "ray_driver") == (0, 0, n, 0)
        assert sum(written(conn, "ray_driver").values()) == n
        assert_exactly_chunked(conn, "ray_driver", "ray_driver_chunks", counter, chunking=new_chunking)
    finally:
        drop(conn, "ray_driver", "ray_driver")


def test_pause_and_resume(conn, settings, installed, nobody):
    """A paused vectorizer's queue is claimed by no worker and no Ray backfill; its owner resumes it;
    a role granted nothing can do neither."""
    make_table(conn, "ray_pause", 40)
    try:
        create(conn, "ray_pause", "ray_pause")
        assert conn.execute("select ai.pause_vectorizer('ray_pause')").fetchone()[0] is True
        assert conn.execute("select ai.pause_vectorizer('ray_pause')").fetchone()[0] is False   # already
        assert conn.execute("select paused, pending from ai.vectorizer_status where name = 'ray_pause'"
                            ).fetchone() == (True, 40)
        w = Worker(settings, installed, names=["ray_pause"], poll_interval=0.1)
        try:
            assert w.run_once() == 0
            ver = conn.execute("select v.id from ai.vectorizers v where v.name = 'ray_pause'").fetchone()[0]
            assert conn.execute("select count(*) from ai.vectorizer_queue where vectorizer_id = %s "
                                "and lease_owner is not null", (ver,)).fetchone()[0] == 0
            with pytest.raises(PgmindError) as e:
                Pgmind(settings=settings).backfill("ray_pause", ray=f"127.0.0.1:{free_port()}")
            assert e.value.sqlstate == "55000" and "paused" in e.value.message
            assert "ai.resume_vectorizer('ray_pause')" in e.value.hint
            # changes still queue while paused
            conn.execute("insert into ray_pause values (41, 'one more')")
            for who in (nobody,):
                for fn in ("pause", "resume"):
                    err = sql_error(who, f"select ai.{fn}_vectorizer('ray_pause')")
                    assert err.sqlstate == "42501" and "must own" in err.diag.message_primary
                    assert err.diag.message_hint
            assert conn.execute("select ai.resume_vectorizer('ray_pause')").fetchone()[0] is True
            assert conn.execute("select paused from ai.vectorizer_status where name = 'ray_pause'").fetchone()[0] is False
            w.drain(timeout=300)
            st = conn.execute("select pending, done, paused, eta from ai.vectorizer_status where name = 'ray_pause'"
                              ).fetchone()
            assert st[:3] == (0, 41, False) and st[3].total_seconds() == 0
        finally:
            w.close()
        err = sql_error(conn, "select ai.pause_vectorizer('no_such_vectorizer')")
        assert err.sqlstate == "42704" and err.diag.message_hint
        # the CLI: pgmind vectorizer pause / resume, the status's paused column; a role granted nothing refused
        from typer.testing import CliRunner
        from pgmind.cli import app
        env = settings_env(settings)
        out = CliRunner().invoke(app, ["vectorizer", "pause", "ray_pause"], env=env)
        assert out.exit_code == 0 and "ray_pause: paused" in out.output, out.output
        out = CliRunner().invoke(app, ["vectorizer", "status", "--json"], env=env)
        assert next(r for r in json.loads(out.output) if r["name"] == "ray_pause")["paused"] is True
        nobody_dsn = psycopg.conninfo.make_conninfo(installed, user="sec_nobody")
        out = CliRunner().invoke(app, ["--dsn", nobody_dsn, "vectorizer", "resume", "ray_pause"], env=env)
        assert out.exit_code == 1 and "must own the source table" in out.output and "hint:" in out.output
        out = CliRunner().invoke(app, ["vectorizer", "resume", "ray_pause"], env=env)
        assert out.exit_code == 0 and "ray_pause: resumed" in out.output, out.output
    finally:
        drop(conn, "ray_pause", "ray_pause")


def test_a_paused_vectorizer_stops_an_actor_after_its_batch_in_flight(conn, settings, installed):
    """The actor's own loop (ShardRunner, here without Ray): a batch claimed before the pause is
    written; then it claims nothing more and its shard ends, saying it was paused."""
    from pgmind.db import service_dsn
    from pgmind.vectorizer.ray_backfill import ShardRunner
    make_table(conn, "ray_pause2", 30)
    runner = None
    try:
        create(conn, "ray_pause2", "ray_pause2")
        runner = ShardRunner(replace(settings, service_dsn=service_dsn(settings, installed)), "ray_pause2", 10, 60.0)
        shard = Shard(1, None, None)
        ver = runner.worker.versions()[0]
        claimed = runner.worker.claim(ver, shard)
        assert len(claimed) == 10
        conn.execute("select ai.pause_vectorizer('ray_pause2')")
        assert runner.worker.process_claimed(ver, claimed).rows == 10      # the batch in flight is written
        got = runner.run_shard(shard)
        assert got["paused"] is True and got["rows"] == 0
        assert status(conn, "ray_pause2") == (20, 0, 10, 0)
        conn.execute("select ai.resume_vectorizer('ray_pause2')")
        got = runner.run_shard(shard)
        assert got["paused"] is False and got["rows"] == 20
        assert status(conn, "ray_pause2") == (0, 0, 30, 0)
    finally:
        if runner is not None:
            runner.close()
        drop(conn, "ray_pause2", "ray_pause2")


def test_status_shows_rate_and_eta_while_work_is_left(conn, settings, installed):
    make_table(conn, "ray_eta", 60)
    try:
        create(conn, "ray_eta", "ray_eta")
        assert conn.execute("select eta from ai.vectorizer_status where name = 'ray_eta'").fetchone()[0] is None
        w = Worker(settings, installed, names=["ray_eta"], batch_rows=20)
        try:
            ver = w.versions()[0]
            w.process_batch(ver)
        finally:
            w.close()
        rate, eta = conn.execute("select rows_per_second, eta from ai.vectorizer_status where name = 'ray_eta'"
                                 ).fetchone()
        assert rate > 0 and eta is not None and eta.total_seconds() >= 0
        rows = Pgmind(settings=settings).vectorizer_status()
        row = next(r for r in rows if r["name"] == "ray_eta")
        assert row["paused"] is False and row["eta_seconds"] is not None
    finally:
        drop(conn, "ray_eta", "ray_eta")


def test_who_may_start_a_backfill(conn, settings, installed, owner, nobody, sec_roles):
    """A role that does not own the table is refused before anything reaches Ray (the address here
    is not even a cluster); the owner's own plan is given; an actor refuses a superuser session."""
    make_table(conn, "ray_victim", 5)
    try:
        create(conn, "ray_victim", "ray_victim")
        nobody_dsn = psycopg.conninfo.make_conninfo(installed, user=sec_roles["nobody"])
        with pytest.raises(PermissionDeniedError) as e:
            Pgmind(settings=replace(settings, dsn=nobody_dsn)).backfill("ray_victim", ray=f"127.0.0.1:{free_port()}")
        assert "must own" in e.value.message and e.value.hint
        err = sql_error(nobody, "select * from ai.vectorizer_shards('ray_victim', 4)")
        assert err.sqlstate == "42501"
        shards = conn.execute("select version, after_key, upto_key, pending from ai.vectorizer_shards('ray_victim', 2)"
                              ).fetchall()
        assert shards == [(1, None, {"id": 3}, 3), (1, {"id": 3}, None, 2)]     # contiguous, every key in one
        # an actor given a superuser's DSN refuses to start (the owner's content must never run there)
        from pgmind.vectorizer.ray_backfill import ShardRunner
        with pytest.raises(PermissionDeniedError) as e:
            ShardRunner(replace(settings, service_dsn=installed), "ray_victim", 8, 30.0)
        assert "superuser" in e.value.message and "pgmind_service" in e.value.hint
        # ... and a member of a superuser's role (it could SET ROLE to it)
        su = conn.execute("select current_user").fetchone()[0]
        conn.execute("drop role if exists ray_member")
        conn.execute("create role ray_member login")
        conn.execute(psycopg.sql.SQL("grant {} to ray_member").format(psycopg.sql.Identifier(su)))
        try:
            with pytest.raises(PermissionDeniedError) as e:
                ShardRunner(replace(settings, service_dsn=psycopg.conninfo.make_conninfo(installed, user="ray_member")),
                            "ray_victim", 8, 30.0)
            assert "member" in e.value.message
        finally:
            conn.execute("drop role ray_member")
        # an owner's content expression that, run by an actor, tries to pause someone else's vectorizer:
        # it runs as its owner in the service role's session, which acts for no one
        owner.execute("drop table if exists sec_app.ray_evil cascade")
        owner.execute("create table sec_app.ray_evil (id int primary key, body text)")
        owner.execute("insert into sec_app.ray_evil values (1, 'x')")
        owner.execute("select ai.create_vectorizer('sec_app.ray_evil'::regclass, name => 'ray_evil', model => 'minilm', "
                      "content => $$body || ai.pause_vectorizer('ray_victim')::text$$)")
        from pgmind.db import service_dsn
        runner = ShardRunner(replace(settings, service_dsn=service_dsn(settings, installed)), "ray_evil", 8, 30.0)
        try:
            got = runner.run_shard(Shard(1, None, None))
        finally:
            runner.close()
        assert got["quarantined"] == 1 and got["rows"] == 0
        assert conn.execute("select paused from ai.vectorizer_status where name = 'ray_victim'").fetchone()[0] is False
        assert conn.execute("select sqlstate from ai.vectorizer_errors where vectorizer = 'ray_evil'"
                            ).fetchone()[0] == "42501"
    finally:
        conn.execute("select ai.drop_vectorizer('ray_evil') where exists (select 1 from ai.vectorizers "
                     "where name = 'ray_evil')")
        conn.execute("drop table if exists sec_app.ray_evil cascade")
        drop(conn, "ray_victim", "ray_victim")


def test_clear_errors(conn, settings, installed):
    from pgmind.vectorizer.ray_backfill import RayClusterError, parse_address
    for bad in ("not an address", "http://127.0.0.1:6379", "127.0.0.1:99999", "127.0.0.1", ":6379"):
        with pytest.raises(InvalidRequestError) as e:
            parse_address(bad)
        assert "ray start --head" in e.value.hint, bad
    assert parse_address("auto") is None and parse_address("10.0.0.5:6379") == "10.0.0.5:6379"
    assert parse_address("ray://head:10001") == "ray://head:10001"
    make_table(conn, "ray_err", 3)
    try:
        create(conn, "ray_err", "ray_err")
        with pytest.raises(RayClusterError) as e:           # nothing listens there
            Pgmind(settings=settings).backfill("ray_err", ray=f"127.0.0.1:{free_port()}")
        assert "cannot reach the Ray cluster" in e.value.message and "ray start --head" in e.value.hint
    finally:
        drop(conn, "ray_err", "ray_err")
    # through the CLI: the message, its hint, exit code 1
    r = subprocess.run([sys.executable, "-m", "pgmind.cli", "vectorizer", "backfill", "no_such_vectorizer",
                        "--ray", "127.0.0.1:6379"], env=settings_env(settings), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1 and 'vectorizer "no_such_vectorizer" does not exist' in r.stderr
    assert "hint:" in r.stderr and "vectorizer_status" in r.stderr
    r = subprocess.run([sys.executable, "-m", "pgmind.cli", "vectorizer", "backfill", "x", "--ray", "nope"],
                       env=settings_env(settings), capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "not a Ray cluster address" in r.stderr and "hint:" in r.stderr


def test_a_slow_local_ray_start_is_tried_again_then_explained():
    """Ray waits a fixed 30 s for a local raylet: on a loaded machine `--ray auto` is tried once more,
    then refused with the way round (a head started first)."""
    from pgmind.vectorizer.ray_backfill import RayClusterError, _start_local

    class SlowRay:
        def __init__(self, failures):
            self.failures, self.inits, self.shutdowns = failures, 0, 0

        def init(self, **kw):
            self.inits += 1
            if self.inits <= self.failures:
                raise Exception("The current node timed out during startup. This could happen because ...")

        def shutdown(self):
            self.shutdowns += 1
    once = SlowRay(1)
    _start_local(once, 2)
    assert (once.inits, once.shutdowns) == (2, 1)
    always = SlowRay(5)
    with pytest.raises(RayClusterError) as e:
        _start_local(always, 2)
    assert always.inits == 2 and "ray start --head" in e.value.hint
