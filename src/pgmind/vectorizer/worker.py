"""The vectorizer worker: lease queued keys, read their content, chunk, embed, write.

No lock and no transaction is held while a model runs.  The claim commits a lease (a visibility
timeout); the write happens in one transaction that first re-locks the queue rows and keeps only
those still leased to this worker, then replaces their chunks and removes them from the queue.
A worker killed at any moment loses nothing (its lease expires and another worker takes the rows)
and duplicates nothing (a late writer finds its lease gone and writes nothing).  A live worker
renews its batch's leases while it reads and embeds (LeaseKeeper), so a batch slower than the lease
is not taken and embedded a second time by another worker.
"""
from __future__ import annotations

import json
import logging
import re
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, replace

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from ..config import Settings
from ..db import connect, service_dsn
from ..errors import PermissionDeniedError, PgmindError
from .chunking import ChunkingConfig, chunk_text
from .embedder import Embedder, is_permanent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Version:
    """What the worker needs of a vectorizer version: the source, keys and content expression are
    the owner functions' business (ai_internal._owner_functions_sql)."""
    vid: int
    version: int
    name: str
    owner: str
    store_table: str
    model: str
    chunking: dict
    status: str
    content_fn: str       # the owner's functions (regprocedure text), see ai_internal._owner_functions_sql
    write_fn: str
    activate_fn: str
    config: dict          # the vectorizer's settings: {"modality": "image", "ocr": …, "labels": …} for images

    @property
    def modality(self) -> str:
        return (self.config or {}).get("modality", "text")


VERSIONS = """
    select v.id, ver.version, v.name, v.owner, ver.store_table, ver.model, ver.chunking, ver.status,
           f.names[2], f.names[3], f.names[4], v.config
    from ai.vectorizers v cross join lateral (select ai_internal._owner_function_names(v.id) as names) f
    join ai.vectorizer_versions ver on ver.vectorizer_id = v.id
    where (%(names)s::text[] is null or v.name = any(%(names)s)) and v.paused_at is null
    order by v.id, ver.version
"""


@dataclass
class BatchResult:
    rows: int = 0
    chunks: int = 0
    quarantined: int = 0
    transient_error: str | None = None


class LeaseKeeper:
    """Renews a claimed batch's leases every third of the lease while the batch is read and embedded,
    on a connection of its own (the worker's is busy or between transactions), and only for the rows
    still leased to this worker.  A batch done within a third of the lease opens nothing.  If the
    renewal fails, the lease simply runs out: the write keeps only rows still leased, as before."""

    def __init__(self, worker: "Worker", ver: Version, keys: list[dict]):
        self.worker, self.ver, self.keys = worker, ver, [Jsonb(k) for k in keys]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pgmind lease keeper", daemon=True)
        self.renewals = 0

    def __enter__(self) -> "LeaseKeeper":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        lease = self.worker.lease_seconds
        while not self._stop.wait(lease / 3):
            try:
                conn = self.worker.lease_conn()
                with conn.transaction():
                    conn.execute("""update ai.vectorizer_queue set lease_until = now() + make_interval(secs => %s)
                                    where vectorizer_id = %s and version = %s and key = any(%s::jsonb[])
                                      and lease_owner = %s""",
                                 (lease, self.ver.vid, self.ver.version, self.keys, self.worker.worker_id))
                self.renewals += 1
            except psycopg.Error as e:
                log.warning("vectorizer %s: could not renew a batch's leases (%s); another worker may take "
                            "it when they run out", self.ver.name, e)
                self.worker.close_lease_conn()


class Worker:
    def __init__(self, settings: Settings, dsn: str, *, names: list[str] | None = None, batch_rows: int = 32,
                 lease_seconds: float = 120.0, poll_interval: float = 1.0, worker_id: str | None = None,
                 embedder: Embedder | None = None):
        # whatever dsn names, the worker connects as pgmind's service role (never its user's, never the
        # install role): the owners' code it meets can be no more than its owner (docs/security.md)
        self.settings, self.dsn = settings, service_dsn(settings, dsn)
        self.names = names
        self.batch_rows = batch_rows
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.embedder = embedder or Embedder(settings, self.dsn)
        from .images import ImageEmbedding
        self.images = ImageEmbedding(self.embedder)
        self._conn: psycopg.Connection | None = None
        self._lease_conn: psycopg.Connection | None = None     # LeaseKeeper's, opened on its first renewal
        self._last_heartbeat = 0.0
        self.totals = BatchResult()
        self.content_timeout = 60.0      # seconds for the owner's content function on one batch

    # -- connection and liveness --------------------------------------------------------------
    @property
    def conn(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.dsn, application_name=f"pgmind worker {self.worker_id}")
            self._register()
        return self._conn

    def lease_conn(self) -> psycopg.Connection:
        if self._lease_conn is None or self._lease_conn.closed:
            self._lease_conn = connect(self.dsn, application_name=f"pgmind worker {self.worker_id} (leases)")
        return self._lease_conn

    def close_lease_conn(self) -> None:
        if self._lease_conn is not None:
            try:
                self._lease_conn.close()
            except psycopg.Error:
                pass
            self._lease_conn = None

    def _register(self) -> None:
        with self._conn.transaction():
            # workers silent for ten minutes were killed: they leave the list (their leases expired long ago)
            self._conn.execute("delete from ai.vectorizer_workers where heartbeat_at < now() - interval '10 minutes'")
            self._conn.execute("""insert into ai.vectorizer_workers (worker_id, hostname, pid)
                                  values (%s, %s, %s) on conflict (worker_id) do update set heartbeat_at = now()""",
                               (self.worker_id, socket.gethostname(), os.getpid()))

    def heartbeat(self, result: BatchResult | None = None, force: bool = False) -> None:
        now = time.monotonic()
        if not force and result is None and now - self._last_heartbeat < 5:
            return
        r = result or BatchResult()
        with self.conn.transaction():
            self.conn.execute("""update ai.vectorizer_workers set heartbeat_at = now(), rows_done = rows_done + %s,
                                        chunks_done = chunks_done + %s, errors = errors + %s,
                                        last_error = coalesce(%s, last_error)
                                 where worker_id = %s""",
                              (r.rows, r.chunks, r.quarantined + (1 if r.transient_error else 0), r.transient_error,
                               self.worker_id))
        self._last_heartbeat = now

    def versions(self) -> list[Version]:
        with self.conn.transaction():
            rows = self.conn.execute(VERSIONS, {"names": self.names}).fetchall()
        return [Version(*r) for r in rows]

    # -- the loop ------------------------------------------------------------------------------
    def close(self) -> None:
        """Lets go of the models and connections (a worker with its own hub: its event loop too), and
        leaves the workers' list: one that ran drain or embed_pending (pgmind ingest, backfill,
        worker --once) stayed listed as running until a worker started ten minutes later."""
        self.embedder.close()
        self.close_lease_conn()
        if self._conn is not None and not self._conn.closed:
            try:
                self._conn.rollback()
                with self._conn.transaction():
                    self._conn.execute("delete from ai.vectorizer_workers where worker_id = %s", (self.worker_id,))
            except psycopg.Error:      # (best effort: a silent worker leaves the list after ten minutes)
                pass
            self._conn.close()

    def run(self, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        log.info("worker %s started", self.worker_id)
        while not stop.is_set():
            try:
                done = self.run_once()
            except psycopg.OperationalError as e:
                log.warning("database connection lost (%s); reconnecting", e)
                self._conn = None
                stop.wait(self.poll_interval)
                continue
            self.heartbeat()
            if done == 0:
                stop.wait(self.poll_interval)
        if self._conn is not None and not self._conn.closed:
            self.conn.execute("delete from ai.vectorizer_workers where worker_id = %s", (self.worker_id,))
            self.conn.commit()
            self._conn.close()

    def run_once(self) -> int:
        """One batch for every version that has work; returns the rows written.  What one
        vectorizer does wrong (a broken owner function, a dropped table) is logged and recorded on
        its rows; the others go on."""
        total = 0
        for ver in self.versions():
            try:
                result = self.process_batch(ver)
                total += result.rows
                if ver.status == "building":
                    self.activate(ver)
            except psycopg.OperationalError:
                raise
            except Exception as e:  # noqa: BLE001 - the worker must outlive any one vectorizer
                log.exception("vectorizer %s: %s", ver.name, e)
                self._reset_connection()
        return total

    def activate(self, ver: Version) -> None:
        """A building version with an empty queue replaces the active one: the registry switches and
        the owner's function points the view at the new table and drops the old one, atomically."""
        with self.conn.transaction():
            old = self.conn.execute("select ai_internal._activate_version(%s, %s)", (ver.vid, ver.version)).fetchone()[0]
            if old is None:
                return
            self._owner_call(ver, ver.activate_fn, "select {call}", (ver.store_table, old))
        log.info("vectorizer %s now serves version %s", ver.name, ver.version)

    # -- the owner's code ----------------------------------------------------------------------
    def _owner_call(self, ver: Version, fn: str, query: str, params):
        """Calls one of the vectorizer's owner functions in the current transaction.  The function
        must be SECURITY DEFINER and owned by the table's owner (PostgreSQL then refuses SET ROLE
        inside it, so it cannot become more than the owner); its pg_proc row stays share-locked until
        the transaction ends, so it cannot be altered between this check and the call.  Afterwards
        every setting it may have changed in this session is reset."""
        ok = self.conn.execute("select ai_internal._lock_owner_function(%s, %s)", (fn, ver.owner)).fetchone()[0]
        if not ok:
            raise VectorizerBroken(f"vectorizer {ver.name}: {fn} is missing, or no longer a SECURITY DEFINER "
                                   f"function of {ver.owner}",
                                   hint="re-run `pgmind install` to re-create the vectorizer's functions")
        # Every argument is cast to the checked signature's own type: an argument of unknown type
        # would let PostgreSQL prefer an overload the owner made (a SECURITY INVOKER function taking
        # text where ours takes name), which would then run as the service role.  (fn is the catalog's
        # regprocedure text of a signature pgmind made: its types hold no commas.)
        name, _, types = fn.partition("(")
        args = ", ".join(f"%s::{t.strip()}" for t in types.rstrip(")").split(",")) if types.rstrip(")") else ""
        try:
            return self.conn.execute(sql.SQL(query).format(call=sql.SQL(f"{name}({args})")), params).fetchall()
        finally:
            if self.conn.info.transaction_status != psycopg.pq.TransactionStatus.INERROR:
                self.conn.execute("reset all")
                self.conn.execute("set local search_path = pg_catalog, pg_temp")

    def _reset_connection(self) -> None:
        """After an unexpected failure: a fresh connection, so nothing of it carries on."""
        if self._conn is not None and not self._conn.closed:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
        self._conn = None

    def drain(self, timeout: float | None = 600.0, on_batch=None) -> None:
        """Process until every queue this worker serves is empty (backfill, ingest, tests).
        ``on_batch(rows)`` is called after each round; rows leased by other workers are waited for."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while deadline is None or time.monotonic() < deadline:
            done = self.run_once()
            if on_batch:
                on_batch(done)
            if done == 0:
                if not self._pending():
                    return
                time.sleep(self.poll_interval)
        raise TimeoutError("the vectorizer queues did not drain in time")

    def _pending(self) -> bool:
        with self.conn.transaction():
            return self.conn.execute(
                """select exists (select 1 from ai.vectorizer_queue q join ai.vectorizers v on v.id = q.vectorizer_id
                                  where %(names)s::text[] is null or v.name = any(%(names)s))""",
                {"names": self.names}).fetchone()[0]

    # -- one batch -----------------------------------------------------------------------------
    def claim(self, ver: Version, shard: "Shard | None" = None) -> list[tuple[dict, int]]:
        """Leases up to batch_rows ready keys of this version (of one key range, for a Ray shard);
        none while the vectorizer is paused (ai.pause_vectorizer; a batch already claimed finishes)."""
        after, upto = (shard.after_key, shard.upto_key) if shard else (None, None)
        with self.conn.transaction():
            return [(r[0], r[1]) for r in self.conn.execute("""
                with c as (
                    select key from ai.vectorizer_queue
                    where vectorizer_id = %(vid)s and version = %(version)s and next_attempt_at <= now()
                      and (lease_until is null or lease_until < now())
                      and (%(after)s::jsonb is null or key > %(after)s::jsonb)
                      and (%(upto)s::jsonb is null or key <= %(upto)s::jsonb)
                      and not exists (select 1 from ai.vectorizers v where v.id = %(vid)s and v.paused_at is not null)
                    order by queued_at limit %(n)s
                    for update skip locked)
                update ai.vectorizer_queue q
                   set lease_owner = %(me)s, lease_until = now() + make_interval(secs => %(lease)s),
                       attempts = q.attempts + 1
                from c where q.vectorizer_id = %(vid)s and q.version = %(version)s and q.key = c.key
                returning q.key, q.seq""",
                {"vid": ver.vid, "version": ver.version, "n": self.batch_rows, "me": self.worker_id,
                 "lease": self.lease_seconds, "after": _jsonb_or_none(after), "upto": _jsonb_or_none(upto)}
            ).fetchall()]

    def read_content(self, ver: Version, keys: list[dict]) -> dict[str, str | None]:
        """canonical key → content, read by the owner's content function (so the content expression
        runs with the owner's rights, and never more)."""
        with self.conn.transaction():
            self.conn.execute("set local search_path = pg_catalog, pg_temp")
            self.conn.execute("set local statement_timeout = %s" % int(self.content_timeout * 1000))
            self.conn.execute("set local bytea_output = hex")     # image (bytea) columns arrive as hex text
            rows = self._owner_call(ver, ver.content_fn, "select key, content from {call}",
                                    ([Jsonb(k) for k in keys],))
        return {canon(k): text for k, text in rows}

    def read_content_isolated(self, ver: Version, keys: list[dict]) -> tuple[dict, dict[str, PgmindError]]:
        """Like read_content; when the batch fails in SQL (a content expression that fails for some
        rows, a key that is not of the key's type), each row is read alone and the failing ones are
        returned as poison, so they cannot hold back the good rows of their batch."""
        try:
            return self.read_content(ver, keys), {}
        except psycopg.OperationalError:
            raise
        except psycopg.DatabaseError as e:
            if not _row_error(e):
                raise
            if len(keys) == 1:          # (a batch of one: that row is the one that fails)
                return {}, {canon(keys[0]): _content_error(e)}
        contents, poison = {}, {}
        for k in keys:
            try:
                contents.update(self.read_content(ver, [k]))
            except psycopg.OperationalError:
                raise
            except psycopg.DatabaseError as e:
                if not _row_error(e):
                    raise
                poison[canon(k)] = _content_error(e)
        return contents, poison

    def process_batch(self, ver: Version, shard: "Shard | None" = None) -> BatchResult:
        """Claims one batch (of one key range, for a Ray shard) and processes it."""
        claimed = self.claim(ver, shard)
        if not claimed:
            return BatchResult()
        return self.process_claimed(ver, claimed)

    def process_claimed(self, ver: Version, claimed: list[tuple[dict, int]]) -> BatchResult:
        """The one write path for a claimed batch, the same for ``pgmind worker`` and a Ray actor:
        read the rows with the owner's rights (the owner's content function), chunk, embed, and
        write chunks and vectors in one transaction that keeps only the rows still leased to this
        worker; poison rows are quarantined, transient failures give the rows back with a backoff."""
        keys = [k for k, _ in claimed]
        try:
            return self._process(ver, claimed, keys)
        except psycopg.OperationalError:
            raise
        except Exception as e:  # noqa: BLE001 - e.g. a broken owner function: say so on the rows, retry later
            log.exception("vectorizer %s: %s", ver.name, e)
            self._reset_connection()
            error = e if isinstance(e, PgmindError) else PgmindError(f"{type(e).__name__}: {e}")
            self.release(ver, keys, error)
            result = BatchResult(transient_error=error.message)
            self.heartbeat(result)
            return result

    def _process(self, ver: Version, claimed, keys) -> BatchResult:
        result = BatchResult()
        denied = self._grant_error(ver)
        if denied is not None:     # nothing is read or embedded: the rows wait in quarantine for a grant
            result = self.write(ver, claimed, {}, {}, {canon(k): denied for k in keys}, {canon(k) for k in keys})
            self.totals.quarantined += result.quarantined
            self.heartbeat(result)
            return result
        try:
            with LeaseKeeper(self, ver, keys):
                contents, poison = self.read_content_isolated(ver, keys)
                try:
                    config = ChunkingConfig.from_json(ver.chunking)
                except PgmindError as e:   # a spec from before the checks: every row of it says why
                    contents, poison = {}, {canon(k): e for k in keys}
                unread = set(poison)      # rows whose key or content SQL could not read: their chunks stay
                chunks, refused = self.embed(ver, contents, config) if contents else ({}, {})
                poison.update(refused)
        except (PgmindError, psycopg.DatabaseError) as e:
            if isinstance(e, psycopg.OperationalError):
                raise          # the connection is gone: run() reconnects; the leases expire
            # model server down, timeout, rate limit, or SQL that failed as a whole: the rows go
            # back to the queue with a backoff, and the reason shows in the status
            error = e if isinstance(e, PgmindError) else PgmindError(
                f"reading the content failed: {e.diag.message_primary or e}", hint="check the content expression")
            self.release(ver, keys, error)
            result.transient_error = error.message
            self.heartbeat(result)
            return result
        result = self.write(ver, claimed, contents, chunks, poison, unread)
        self.totals.rows += result.rows
        self.totals.chunks += result.chunks
        self.totals.quarantined += result.quarantined
        self.heartbeat(result)
        return result

    def _grant_error(self, ver: Version) -> PermissionDeniedError | None:
        """The owner's grant on the model, checked on every batch: a revoked model embeds nothing more."""
        with self.conn.transaction():
            ok = self.conn.execute("select ai_internal._may_use(%s, %s)", (ver.owner, ver.model)).fetchone()[0]
        if ok:
            return None
        return PermissionDeniedError(f'role {ver.owner} may no longer use model "{ver.model}"',
                                     hint=f"the model's owner or an administrator can run: select ai.grant_model("
                                          f"'{ver.model}', '{ver.owner}'); then select ai.vectorizer_retry('{ver.name}')")

    def embed(self, ver: Version, contents: dict, config: ChunkingConfig) -> tuple[dict, dict]:
        """Chunks and embeddings per key; keys whose text the model refuses go to ``poison``."""
        if ver.modality == "image":
            return self.images.embed(ver, contents)
        model_max = self.embedder.max_tokens(ver.model)
        if model_max and config.method != "none" and config.max_tokens > model_max - 2:
            config = replace(config, max_tokens=model_max - 2, overlap=min(config.overlap, (model_max - 2) // 2 - 1))
        count = self.embedder.token_counter(ver.model)
        chunked = {k: chunk_text(text or "", config, count) for k, text in contents.items()}
        texts = [c.text for cs in chunked.values() for c in cs]
        out: dict[str, list] = {}
        poison: dict[str, PgmindError] = {}
        try:
            vectors = self.embedder.embed_documents(ver.model, texts) if texts else []
            i = 0
            for k, cs in chunked.items():
                out[k] = [(c, vectors[i + j]) for j, c in enumerate(cs)]
                i += len(cs)
        except PgmindError as e:
            if not is_permanent(e):
                raise
            for k, cs in chunked.items():      # find the rows the model refuses; embed the rest
                try:
                    out[k] = self._embed_row(ver, contents[k] or "", cs, config, count)
                except PgmindError as row_error:
                    if not is_permanent(row_error):
                        raise
                    poison[k] = row_error
        return out, poison

    def _embed_row(self, ver: Version, text: str, chunks: list, config: ChunkingConfig, count) -> list:
        """One row's chunks.  When the model refuses them, the row is chunked again at half the size,
        up to three times, before it counts as refused: a remote model's tokenizer can count more
        tokens than our estimate (code, numbers), and a smaller chunk is better than no chunk."""
        for attempt in range(4):
            try:
                vecs = self.embedder.embed_documents(ver.model, [c.text for c in chunks]) if chunks else []
                return list(zip(chunks, vecs))
            except PgmindError as e:
                if not is_permanent(e) or config.method == "none" or config.max_tokens <= 16 or attempt == 3:
                    raise
                size = max(8, config.max_tokens // 2)
                config = replace(config, max_tokens=size, overlap=min(config.overlap, (size - 1) // 2))
                chunks = chunk_text(text, config, count)
        raise AssertionError("unreachable")

    def write(self, ver: Version, claimed, contents, chunks, poison, unread=frozenset()) -> BatchResult:
        """One transaction: keep only the rows still leased to us, replace their chunks (through the
        owner's write function), quarantine the poison rows, and take the rest off the queue."""
        seq_of = {canon(k): seq for k, seq in claimed}
        result = BatchResult()
        with self.conn.transaction():
            self.conn.execute("set local search_path = pg_catalog, pg_temp")
            owned = self.conn.execute("""
                select key, seq from ai.vectorizer_queue
                where vectorizer_id = %s and version = %s and key = any(%s::jsonb[]) and lease_owner = %s
                for update""", (ver.vid, ver.version, [Jsonb(k) for k, _ in claimed], self.worker_id)).fetchall()
            if not owned:
                return result        # our lease expired and another worker took the rows
            keys, seqs, texts, vectors = [], [], [], []
            for k, _ in owned:
                ck = canon(k)
                if ck not in contents or ck in poison:
                    continue          # the source row is gone (nothing to write), or quarantined
                for c, vec in chunks.get(ck, []):
                    keys.append(Jsonb(k))
                    seqs.append(c.seq)
                    texts.append(c.text)
                    vectors.append(vec)
                result.rows += 1
            result.chunks = len(keys)
            remove = [Jsonb(k) for k, _ in owned if canon(k) not in unread]
            self._owner_call(ver, ver.write_fn, "select {call}",
                             (ver.store_table, remove, keys, seqs, texts, vectors))
            done, requeue, bad = [], [], []
            for k, seq in owned:
                ck = canon(k)
                if ck in poison:
                    bad.append((k, poison[ck]))
                elif seq == seq_of.get(ck):
                    done.append(k)
                else:
                    requeue.append(k)     # changed again while we worked: do it once more
            for k, err in bad:
                self.conn.execute("""
                    insert into ai._vectorizer_errors (vectorizer_id, version, key, error, sqlstate, attempts)
                    select vectorizer_id, version, key, %s, %s, attempts from ai.vectorizer_queue
                    where vectorizer_id = %s and version = %s and key = %s
                    on conflict (vectorizer_id, version, key) do update
                        set error = excluded.error, sqlstate = excluded.sqlstate, attempts = excluded.attempts,
                            failed_at = now()""", (err.message, err.sqlstate, ver.vid, ver.version, Jsonb(k)))
                result.quarantined += 1
            self.conn.execute("delete from ai.vectorizer_queue where vectorizer_id = %s and version = %s "
                              "and key = any(%s::jsonb[])",
                              (ver.vid, ver.version, [Jsonb(k) for k in done] + [Jsonb(k) for k, _ in bad]))
            if requeue:
                self.conn.execute("""update ai.vectorizer_queue set lease_owner = null, lease_until = null
                                     where vectorizer_id = %s and version = %s and key = any(%s::jsonb[])""",
                                  (ver.vid, ver.version, [Jsonb(k) for k in requeue]))
            self.conn.execute("insert into ai.vectorizer_progress (vectorizer_id, version, rows, chunks, worker_id) "
                              "values (%s, %s, %s, %s, %s)",
                              (ver.vid, ver.version, result.rows, result.chunks, self.worker_id))
        return result

    def release(self, ver: Version, keys: list[dict], error: PgmindError) -> None:
        """A transient failure (model server down, timeout, rate limit): give the rows back with a
        backoff that grows with their attempts, and say why in the queue."""
        log.warning("vectorizer %s: %s; will retry", ver.name, error.message)
        with self.conn.transaction():
            self.conn.execute("""
                update ai.vectorizer_queue
                   set lease_owner = null, lease_until = null, last_error = %s,
                       next_attempt_at = now() + make_interval(secs => least(60, power(2, least(attempts, 10)) * 0.5))
                where vectorizer_id = %s and version = %s and key = any(%s::jsonb[]) and lease_owner = %s""",
                (error.message, ver.vid, ver.version, [Jsonb(k) for k in keys], self.worker_id))


@dataclass(frozen=True)
class Shard:
    """A key range of one version's queue: keys greater than ``after_key`` (None: no bound) and at
    most ``upto_key`` (None: no bound), as ai.vectorizer_shards plans them for a Ray backfill."""
    version: int
    after_key: dict | list | str | int | float | None
    upto_key: dict | list | str | int | float | None
    pending: int = 0


def _jsonb_or_none(value):
    return None if value is None else Jsonb(value)


class VectorizerBroken(PgmindError):
    """A vectorizer's owner functions are missing or were changed into something unsafe to call."""
    sqlstate = "55000"


def canon(key: dict) -> str:
    """One text per key, whatever order its JSON came in."""
    return json.dumps(key, sort_keys=True)


def _content_error(e: psycopg.DatabaseError) -> PgmindError:
    """A row's failed content read as it is quarantined: the message without PL/Python's prefixes."""
    message = re.sub(r"^((spiexceptions|plpy)\.\w+: )+", "", e.diag.message_primary or str(e))
    err = PgmindError(f"reading the content failed: {message}",
                      hint=e.diag.message_hint or "fix the row or the content expression, then select "
                                                  "ai.vectorizer_retry(...)")
    err.sqlstate = e.sqlstate or err.sqlstate
    return err


def _row_error(e: psycopg.DatabaseError) -> bool:
    """An error that one row's data can cause (a failed cast or expression), as opposed to one that
    fails every row alike (a lock timeout, a cancelled statement, a dropped table)."""
    return (e.sqlstate or "")[:2] in ("22", "23", "2F", "39", "P0", "42") and e.sqlstate not in ("42P01", "42883")
