"""A vectorizer backfill on a Ray cluster (issue 40): ``pgmind vectorizer backfill NAME --ray [ADDRESS]``.

The driver, as the role that asks (which must own the source table, or be a pgmind administrator),
has ai.vectorizer_shards split the vectorizer's queue into key ranges, and hands them to a pool of
Ray actors.  Each actor is a vectorizer :class:`~pgmind.vectorizer.worker.Worker` of its own: it
connects as pgmind's service role (never as a superuser: it refuses one), loads the model once,
and runs the worker's own claim and write path (``Worker.claim`` on its key range, then
``Worker.process_claimed``): it reads rows through the owner's SECURITY DEFINER content function,
chunks, embeds, and writes in the one transaction that keeps only rows still leased to it.  So a
row is written once whether workers, Ray, or both run; an actor or a driver killed mid-batch
leaves leases that expire, Ray restarts the actor and retries its shard, and a re-run resumes from
what is still queued.  A paused vectorizer (ai.pause_vectorizer) is not claimed: the actors stop
after their batch in flight.

Ray is an optional extra (``pip install 'pgmind[ray]'``); it is imported only here, on use.
"""
from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, replace
from typing import Callable

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ..config import Settings
from ..db import connect, service_dsn
from ..db.connection import SERVICE_ROLE, from_sql_error, redact
from ..errors import InvalidRequestError, PermissionDeniedError, PgmindError

log = logging.getLogger(__name__)

LOCAL = ("auto", "local")


class RayClusterError(PgmindError):
    """The Ray cluster cannot be used: not installed, a bad address, unreachable."""
    sqlstate = "08001"


@dataclass(frozen=True)
class RayProgress:
    """How far a Ray backfill got: rows of the vectorizer's queue done of ``total`` (counted from
    the queue, so rows a worker writes meanwhile count too), the rate and the time left."""
    done: int
    total: int
    seconds: float
    rows_per_second: float
    eta_seconds: float | None


@dataclass
class RayBackfillResult:
    rows: int = 0              # rows written by the actors
    chunks: int = 0
    quarantined: int = 0
    transient_errors: int = 0
    shards: int = 0
    actors: int = 0
    left: int = 0              # rows still queued at the end (leased by a worker, backing off, or paused)
    paused: bool = False
    address: str = ""
    seconds: float = 0.0


def parse_address(address: str | None) -> str | None:
    """None for a local cluster started here ("auto"); else the address to join, checked:
    host:port (a cluster's GCS, as `ray start --head` prints it) or ray://host:port (Ray Client)."""
    if address is None or address.strip().lower() in LOCAL:
        return None
    a = address.strip()
    rest = a[len("ray://"):] if a.startswith("ray://") else a
    host, sep, port = rest.rpartition(":")
    ok = bool(sep) and port.isdigit() and 0 < int(port) < 65536 and bool(host.strip("[]")) and "/" not in rest \
        and "://" not in rest
    if not ok:
        raise InvalidRequestError(f"not a Ray cluster address: {address!r}",
                                  hint="pass auto (a local cluster), HOST:PORT of the head node as `ray start --head` "
                                       "prints it (port 6379 by default), or ray://HOST:10001 for Ray Client")
    return a


def _start_local(ray, actors: int | None, tries: int = 2) -> None:
    """A local Ray cluster for ``--ray auto``.  Ray waits a fixed 30 s for its local raylet to register
    and gives up with "timed out during startup"; on a loaded machine a second start usually makes it
    (the first warmed the caches), and when it does not, the way round is a head started beforehand."""
    for attempt in range(tries):
        try:
            ray.init(address="local", include_dashboard=False, num_cpus=actors, log_to_driver=False,
                     configure_logging=False)
            return
        except Exception as e:  # noqa: BLE001 - Ray raises a bare Exception for this
            if "timed out during startup" not in str(e):
                raise
            log.warning("the local Ray cluster did not start in Ray's 30 s (try %d of %d)", attempt + 1, tries)
            ray.shutdown()
    raise RayClusterError("the local Ray cluster did not start: its raylet did not register in Ray's fixed 30 s, "
                          f"{tries} times (a busy machine)",
                          hint="start the head first, e.g. `nice ray start --head --num-cpus 2`, and pass the "
                               "address it prints: --ray 127.0.0.1:6379")


def _reachable(address: str, timeout: float = 5.0) -> None:
    rest = address[len("ray://"):] if address.startswith("ray://") else address
    host, _, port = rest.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise RayClusterError(f"cannot reach the Ray cluster at {address}: {e.strerror or e}",
                              hint="start its head node there with `ray start --head --port PORT` (and "
                                   "`ray start --address HEAD:PORT` on the others), check the host and port, "
                                   "or pass --ray auto for a local cluster") from None


def _ray():
    try:
        import ray
    except ImportError:
        raise RayClusterError("Ray is not installed", hint="pip install 'pgmind[ray]'") from None
    return ray


# -- what travels to the actors ---------------------------------------------------------------
def shippable(settings: Settings, dsn: str) -> Settings:
    """The settings the driver sends its actors.  Ray keeps an actor's arguments in its control store,
    where whoever reaches the cluster can read them, and sends them to other machines: so no secret
    travels — the service DSN goes without its password, and the model server's token and the
    other DSNs not at all.  Each node supplies the password itself (:func:`_node_dsn`)."""
    params = conninfo_to_dict(service_dsn(settings, dsn))
    params.pop("password", None)
    params.pop("sslpassword", None)     # (a client key's passphrase)
    return replace(settings, service_dsn=make_conninfo(**params), dsn=None, gateway_dsn=None, token=None)


def _node_dsn(settings: Settings) -> str:
    """The service DSN on the actor's own node: PGMIND_SERVICE_DSN where the node sets it, else the
    shipped DSN with the password file `pgmind install` wrote under the pgmind home (a local cluster:
    the driver's machine), else libpq's own (PGPASSWORD, ~/.pgpass) — docs/scale.md."""
    given = os.environ.get("PGMIND_SERVICE_DSN")
    if given:
        return given
    params = conninfo_to_dict(settings.service_dsn)
    password = settings.role_password(SERVICE_ROLE) if params.get("user") == SERVICE_ROLE else None
    if password:
        params["password"] = password
    return make_conninfo(**params)


# -- the actor ---------------------------------------------------------------------------------
class ShardRunner:
    """One Ray actor: a vectorizer worker with its own model copy, over one vectorizer's shards."""

    def __init__(self, settings: Settings, name: str, batch_rows: int, lease_seconds: float, poll: float = 0.5):
        from .worker import Worker
        self.name, self.poll = name, poll
        # settings.service_dsn is the driver's service DSN without its password: the actor connects as
        # pgmind's service role with the password its own node holds
        settings = replace(settings, service_dsn=_node_dsn(settings))
        self.worker = Worker(settings, settings.service_dsn, names=[name], batch_rows=batch_rows,
                             lease_seconds=lease_seconds, poll_interval=poll,
                             worker_id=f"ray:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}")
        # (a member of such a role can SET ROLE to it: memberships count)
        su, = self.worker.conn.execute("select exists (select 1 from pg_catalog.pg_roles r "
                                       "where (r.rolsuper or r.rolbypassrls) "
                                       "and pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER'))").fetchone()
        self.worker.conn.commit()
        if su:   # the owners' content expressions must never run in a session that could become more
            self.worker.close()
            raise PermissionDeniedError("a Ray actor refuses to run as a superuser, a role that bypasses row "
                                        "security, or a member of either",
                                        hint="point PGMIND_SERVICE_DSN at pgmind's service role, pgmind_service")
        versions = self.worker.versions()
        if versions:     # the model loads once, here (its tokenizer with it)
            self.worker.embedder.token_counter(versions[0].model)

    def pid(self) -> int:
        return os.getpid()

    def run_shard(self, shard) -> dict:
        """Claims and processes batches of this key range until none is left in it.  Rows leased by
        another (a worker, or an actor that died) are waited for: theirs finish, or their lease
        expires and they are claimed here.  Stops when the vectorizer is paused."""
        w = self.worker
        out = {"rows": 0, "chunks": 0, "quarantined": 0, "transient_errors": 0, "paused": False}
        while True:
            ver = next((v for v in w.versions() if v.version == shard.version), None)
            if ver is None:        # paused (versions() leaves it out), dropped, or that version replaced
                out["paused"] = self._paused()
                return out
            claimed = w.claim(ver, shard)
            if claimed:
                r = w.process_claimed(ver, claimed)
                out["rows"] += r.rows
                out["chunks"] += r.chunks
                out["quarantined"] += r.quarantined
                out["transient_errors"] += 1 if r.transient_error else 0
                continue
            if not self._left(ver, shard):
                return out
            w.heartbeat()
            time.sleep(self.poll)

    def _left(self, ver, shard) -> bool:
        from .worker import _jsonb_or_none
        with self.worker.conn.transaction():
            return self.worker.conn.execute(
                """select exists (select 1 from ai.vectorizer_queue where vectorizer_id = %(vid)s
                     and version = %(version)s and (%(after)s::jsonb is null or key > %(after)s::jsonb)
                     and (%(upto)s::jsonb is null or key <= %(upto)s::jsonb))""",
                {"vid": ver.vid, "version": ver.version, "after": _jsonb_or_none(shard.after_key),
                 "upto": _jsonb_or_none(shard.upto_key)}).fetchone()[0]

    def _paused(self) -> bool:
        with self.worker.conn.transaction():
            row = self.worker.conn.execute("select paused_at is not null from ai.vectorizers where name = %s",
                                           (self.name,)).fetchone()
        return bool(row and row[0])

    def activate(self) -> None:
        """A building version (ai.alter_vectorizer) whose queue is now empty replaces the active one,
        as a worker would switch it (Worker.activate: the registry, then the owner's function)."""
        for ver in self.worker.versions():
            if ver.status == "building":
                self.worker.activate(ver)

    def close(self) -> None:
        w = self.worker
        try:
            with w.conn.transaction():
                w.conn.execute("delete from ai.vectorizer_workers where worker_id = %s", (w.worker_id,))
        finally:
            w.close()


# -- the driver --------------------------------------------------------------------------------
def _plan(conn, name: str, shards: int) -> list:
    from .worker import Shard
    try:
        rows = conn.execute("select version, after_key, upto_key, pending from ai.vectorizer_shards(%s, %s)",
                            (name, shards)).fetchall()
    except psycopg.Error as e:      # (its SQLSTATE, message and hint kept)
        raise from_sql_error(e) from None
    return [Shard(*r) for r in rows]


def _queued(conn, name: str) -> int:
    return conn.execute("select coalesce(sum(pending + leased), 0)::bigint from ai.vectorizer_status where name = %s",
                        (name,)).fetchone()[0]


def backfill(settings: Settings, dsn: str, name: str, *, address: str | None = "auto", actors: int | None = None,
             shards_per_actor: int = 4, batch_rows: int = 32, lease_seconds: float = 120.0, requeue: bool = False,
             num_gpus: float | None = None, progress: Callable[[RayProgress], None] | None = None,
             timeout: float | None = None) -> RayBackfillResult:
    """Embeds the vectorizer's queue on a Ray cluster (``address``: "auto" starts a local one, else
    HOST:PORT or ray://HOST:PORT joins one).  ``dsn`` is the asking role's: it must own the
    vectorizer's table.  ``requeue`` queues every row first (as ai.vectorizer_backfill); without it
    a re-run resumes from what is still queued.  ``actors``: one model copy each (default: one per
    CPU of the cluster, or per GPU where it has GPUs; each then takes ``num_gpus``, default 1)."""
    target = parse_address(address)
    start = time.monotonic()
    with connect(dsn, autocommit=True, application_name="pgmind ray driver") as conn:
        try:
            if requeue:
                conn.execute("select ai.vectorizer_backfill(%s)", (name,))
            _plan(conn, name, 1)   # the owner's check (and the vectorizer's, and not paused) before Ray starts
            total = _queued(conn, name)
        except psycopg.Error as e:
            raise from_sql_error(e) from None
        if total == 0:
            return RayBackfillResult(address=address or "auto", seconds=time.monotonic() - start)
        ray = _ray()
        started_here = False
        if not ray.is_initialized():
            if target is None:
                _start_local(ray, actors)
            else:
                _reachable(target)
                try:
                    ray.init(address=target, log_to_driver=False, configure_logging=False)
                except (ConnectionError, RuntimeError, TimeoutError) as e:
                    raise RayClusterError(f"cannot join the Ray cluster at {target}: {e}",
                                          hint="is it a Ray head node (`ray start --head` prints its address)? "
                                               "The driver needs the same Ray and Python versions as the cluster") from None
            started_here = True
        try:
            resources = ray.cluster_resources()
            gpus = int(resources.get("GPU", 0))
            if num_gpus is None:
                num_gpus = 1.0 if gpus else 0.0
            # (no more actors than the cluster can place: one that never starts would hold its shards)
            room = max(1, int(gpus / num_gpus)) if num_gpus else max(1, int(resources.get("CPU", 1)))
            n = min(actors, room) if actors else room
            shards = _plan(conn, name, n * shards_per_actor)
            svc = shippable(settings, dsn)
            Runner = ray.remote(ShardRunner).options(num_cpus=1 if not num_gpus else 0, num_gpus=num_gpus,
                                                     max_restarts=3, max_task_retries=3)
            pool = [Runner.remote(svc, name, batch_rows, lease_seconds) for _ in range(min(n, len(shards)))]
            result = RayBackfillResult(shards=len(shards), actors=len(pool), address=target or "auto (local)")
            log.info("Ray backfill of %s: %d rows in %d shards on %d actors (%s), as %s", name, total, len(shards),
                     len(pool), result.address, redact(svc.service_dsn))
            todo = list(shards)
            running: dict = {}
            free = list(pool)
            deadline = None if timeout is None else time.monotonic() + timeout
            last_poll = 0.0
            while todo or running:
                while todo and free:
                    actor = free.pop()
                    running[actor.run_shard.remote(todo.pop(0))] = actor
                ready, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
                for ref in ready:
                    free.append(running.pop(ref))
                    try:
                        got = ray.get(ref)
                    except ray.exceptions.RayError as e:
                        raise RayClusterError(f"a Ray actor failed: {_cause(e)}",
                                              hint="nothing is lost: its leases expire; run the backfill again") from None
                    for k in ("rows", "chunks", "quarantined", "transient_errors"):
                        setattr(result, k, getattr(result, k) + got[k])
                    result.paused = result.paused or got["paused"]
                    if got["paused"]:
                        todo.clear()
                now = time.monotonic()
                if progress and now - last_poll >= 0.5:
                    last_poll = now
                    progress(_progress(total, _queued(conn, name), now - start))
                if deadline is not None and now > deadline:
                    raise TimeoutError(f"the Ray backfill of {name} did not finish in {timeout} s")
            if not result.paused:
                try:
                    ray.get(pool[0].activate.remote())
                except ray.exceptions.RayError as e:
                    log.warning("the new version was not switched to (a worker will): %s", _cause(e))
            for actor in pool:
                try:
                    ray.get(actor.close.remote())
                except ray.exceptions.RayError:
                    pass
            result.left = _queued(conn, name)
            result.seconds = time.monotonic() - start
            if progress:
                progress(_progress(total, result.left, result.seconds))
            return result
        finally:
            if started_here:
                ray.shutdown()


def _progress(total: int, left: int, seconds: float) -> RayProgress:
    done = max(0, total - left)
    rate = done / seconds if seconds > 0 else 0.0
    return RayProgress(done, total, seconds, rate, left / rate if rate > 0 else None)


def _cause(e: Exception) -> str:
    cause = getattr(e, "cause", None)
    if isinstance(cause, PgmindError):
        return cause.message
    return str(cause or e).strip().splitlines()[-1][:300]
