"""The vectorizer worker: lease queued keys, read their content, chunk, embed, write.

No lock and no transaction is held while a model runs.  The claim commits a lease (a visibility
timeout); the write happens in one transaction that first re-locks the queue rows and keeps only
those still leased to this worker, then replaces their chunks and removes them from the queue.
A worker killed at any moment loses nothing (its lease expires and another worker takes the rows)
and duplicates nothing (a late writer finds its lease gone and writes nothing).
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from ..config import Settings
from ..db import connect
from ..errors import PgmindError
from .chunking import ChunkingConfig, chunk_text
from .embedder import Embedder, is_permanent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Version:
    vid: int
    version: int
    name: str
    source: str
    key_columns: tuple[str, ...]
    key_types: tuple[str, ...]
    content: str
    owner: str
    dest_schema: str
    store_table: str
    model: str
    chunking: dict
    status: str

    def keys_from_json(self, alias: str) -> sql.Composable:
        return sql.SQL(", ").join(
            sql.SQL("({}->>{})::{}").format(sql.Identifier(alias), sql.Literal(c), sql.SQL(t))  # t: format_type()
            for c, t in zip(self.key_columns, self.key_types))

    def key_cols(self, alias: str | None = None) -> sql.Composable:
        return sql.SQL(", ").join(sql.Identifier(alias, c) if alias else sql.Identifier(c) for c in self.key_columns)

    def key_json(self, alias: str) -> sql.Composable:
        return sql.SQL("jsonb_build_object({})").format(sql.SQL(", ").join(
            sql.SQL("{}, {}").format(sql.Literal(c), sql.Identifier(alias, c)) for c in self.key_columns))

    @property
    def store(self) -> sql.Composable:
        return sql.Identifier(self.dest_schema, self.store_table)


VERSIONS = """
    select v.id, ver.version, v.name,
           (select format('%%I.%%I', n.nspname, c.relname) from pg_class c join pg_namespace n on n.oid = c.relnamespace
            where c.oid = v.source),
           v.key_columns, v.key_types, v.content, v.owner,
           v.dest_schema, ver.store_table, ver.model, ver.chunking, ver.status
    from ai.vectorizers v join ai.vectorizer_versions ver on ver.vectorizer_id = v.id
    where %(names)s::text[] is null or v.name = any(%(names)s)
    order by v.id, ver.version
"""


@dataclass
class BatchResult:
    rows: int = 0
    chunks: int = 0
    quarantined: int = 0
    transient_error: str | None = None


class Worker:
    def __init__(self, settings: Settings, dsn: str, *, names: list[str] | None = None, batch_rows: int = 32,
                 lease_seconds: float = 120.0, poll_interval: float = 1.0, worker_id: str | None = None,
                 embedder: Embedder | None = None):
        self.settings, self.dsn = settings, dsn
        self.names = names
        self.batch_rows = batch_rows
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.embedder = embedder or Embedder(settings, dsn)
        self._conn: psycopg.Connection | None = None
        self._last_heartbeat = 0.0
        self.totals = BatchResult()

    # -- connection and liveness --------------------------------------------------------------
    @property
    def conn(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.dsn, application_name=f"pgmind worker {self.worker_id}")
            self._register()
        return self._conn

    def _register(self) -> None:
        with self._conn.transaction():
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
        return [Version(r[0], r[1], r[2], r[3], tuple(r[4]), tuple(r[5]), r[6], r[7], r[8], r[9], r[10], r[11], r[12])
                for r in rows]

    # -- the loop ------------------------------------------------------------------------------
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
        """One batch for every version that has work; returns the rows written."""
        total = 0
        for ver in self.versions():
            result = self.process_batch(ver)
            total += result.rows
            if ver.status == "building":
                with self.conn.transaction():
                    if self.conn.execute("select ai._activate_version(%s, %s)", (ver.vid, ver.version)).fetchone()[0]:
                        log.info("vectorizer %s now serves version %s", ver.name, ver.version)
        return total

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
    def claim(self, ver: Version) -> list[tuple[dict, int]]:
        with self.conn.transaction():
            return [(r[0], r[1]) for r in self.conn.execute("""
                with c as (
                    select key from ai.vectorizer_queue
                    where vectorizer_id = %(vid)s and version = %(version)s and next_attempt_at <= now()
                      and (lease_until is null or lease_until < now())
                    order by queued_at limit %(n)s
                    for update skip locked)
                update ai.vectorizer_queue q
                   set lease_owner = %(me)s, lease_until = now() + make_interval(secs => %(lease)s),
                       attempts = q.attempts + 1
                from c where q.vectorizer_id = %(vid)s and q.version = %(version)s and q.key = c.key
                returning q.key, q.seq""",
                {"vid": ver.vid, "version": ver.version, "n": self.batch_rows, "me": self.worker_id,
                 "lease": self.lease_seconds}).fetchall()]

    def read_content(self, ver: Version, keys: list[dict]) -> dict[str, tuple[tuple, str | None]]:
        """key (as canonical JSON text) → (key values, content).  Read with the table owner's rights."""
        query = sql.SQL("""select {key_json}::text, {cols}, ({content})::text from {source} s
                           where ({cols}) in (select {from_json} from unnest(%s::jsonb[]) as k)""").format(
            key_json=ver.key_json("s"), cols=ver.key_cols("s"), content=sql.SQL(ver.content),
            source=sql.SQL(ver.source), from_json=ver.keys_from_json("k"))
        with self.conn.transaction():
            self.conn.execute("set local search_path = pg_catalog, pg_temp")
            self.conn.execute(sql.SQL("set local role {}").format(sql.Identifier(ver.owner)))
            rows = self.conn.execute(query, ([Jsonb(k) for k in keys],)).fetchall()
        n = len(ver.key_columns)
        return {r[0]: (tuple(r[1:1 + n]), r[1 + n]) for r in rows}

    def process_batch(self, ver: Version) -> BatchResult:
        claimed = self.claim(ver)
        if not claimed:
            return BatchResult()
        keys = [k for k, _ in claimed]
        result = BatchResult()
        try:
            contents = self.read_content(ver, keys)
            chunks, poison = self.embed(ver, contents)
        except (PgmindError, psycopg.DatabaseError) as e:
            if isinstance(e, psycopg.OperationalError):
                raise          # the connection is gone: run() reconnects; the leases expire
            # model server down, timeout, rate limit, or a content expression that failed in SQL:
            # the rows go back to the queue with a backoff, and the reason shows in the status
            error = e if isinstance(e, PgmindError) else PgmindError(
                f"reading the content failed: {e.diag.message_primary or e}", hint="check the content expression")
            self.release(ver, keys, error)
            result.transient_error = error.message
            self.heartbeat(result)
            return result
        result = self.write(ver, claimed, contents, chunks, poison)
        self.totals.rows += result.rows
        self.totals.chunks += result.chunks
        self.totals.quarantined += result.quarantined
        self.heartbeat(result)
        return result

    def embed(self, ver: Version, contents: dict) -> tuple[dict, dict]:
        """Chunks and embeddings per key; keys whose text the model refuses go to ``poison``."""
        config = ChunkingConfig.from_json(ver.chunking)
        model_max = self.embedder.max_tokens(ver.model)
        if model_max and config.method != "none" and config.max_tokens > model_max - 2:
            config = ChunkingConfig(config.method, model_max - 2, min(config.overlap, (model_max - 2) // 2 - 1))
        count = self.embedder.token_counter(ver.model)
        chunked = {k: chunk_text(text or "", config, count) for k, (_, text) in contents.items()}
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
                    vecs = self.embedder.embed_documents(ver.model, [c.text for c in cs]) if cs else []
                    out[k] = list(zip(cs, vecs))
                except PgmindError as row_error:
                    if not is_permanent(row_error):
                        raise
                    poison[k] = row_error
        return out, poison

    def write(self, ver: Version, claimed, contents, chunks, poison) -> BatchResult:
        import json
        seq_of = {json.dumps(k, sort_keys=True): seq for k, seq in claimed}
        result = BatchResult()
        with self.conn.transaction():
            owned = self.conn.execute("""
                select key, seq from ai.vectorizer_queue
                where vectorizer_id = %s and version = %s and key = any(%s::jsonb[]) and lease_owner = %s
                for update""", (ver.vid, ver.version, [Jsonb(k) for k, _ in claimed], self.worker_id)).fetchall()
            if not owned:
                return result        # our lease expired and another worker took the rows
            owned_keys = [k for k, _ in owned]
            self.conn.execute(sql.SQL("delete from {store} where ({cols}) in (select {from_json} "
                                      "from unnest(%s::jsonb[]) as k)").format(
                store=ver.store, cols=ver.key_cols(), from_json=ver.keys_from_json("k")),
                ([Jsonb(k) for k in owned_keys],))
            canon = {json.dumps(k, sort_keys=True): k for k in owned_keys}
            content_key = {json.dumps(json.loads(kt), sort_keys=True): kt for kt in contents}
            copy_sql = sql.SQL("copy {store} ({cols}, chunk_seq, chunk, embedding) from stdin").format(
                store=ver.store, cols=ver.key_cols())
            with self.conn.cursor().copy(copy_sql) as copy:
                for ck in canon:
                    kt = content_key.get(ck)
                    if kt is None or kt in poison:
                        continue          # the source row is gone (nothing to write), or quarantined
                    values = contents[kt][0]
                    for c, vec in chunks.get(kt, []):
                        copy.write_row((*values, c.seq, c.text, vec))
                        result.chunks += 1
                    result.rows += 1
            done, requeue, bad = [], [], []
            for k, seq in owned:
                ck = json.dumps(k, sort_keys=True)
                kt = content_key.get(ck)
                if kt is not None and kt in poison:
                    bad.append((k, poison[kt]))
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
