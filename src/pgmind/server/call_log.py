"""Writes every model call to ai.call_log, off the request path: records are queued and flushed
in one multi-row insert every half second.  No payloads unless the operator asked for them."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import astuple, dataclass

from psycopg_pool import AsyncConnectionPool

from .metrics import CALL_LOG_DROPPED

log = logging.getLogger(__name__)


@dataclass
class CallRecord:
    model_id: str
    provider: str | None
    operation: str
    client: str
    caller: str | None
    items: int | None
    input_tokens: int | None
    output_tokens: int | None
    latency_ms: float
    status: str
    http_status: int | None = None
    error: str | None = None
    payload: object = None


INSERT = """insert into ai.call_log (model_id, provider, operation, client, caller, items, input_tokens,
            output_tokens, latency_ms, status, http_status, error, payload)
            values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"""


class CallLog:
    def __init__(self, pool: AsyncConnectionPool, interval: float = 0.5, max_queue: int = 100_000):
        self.pool = pool
        self.interval = interval
        self._queue: asyncio.Queue[CallRecord] = asyncio.Queue(max_queue)
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def record(self, rec: CallRecord) -> None:
        try:
            self._queue.put_nowait(rec)
        except asyncio.QueueFull:
            CALL_LOG_DROPPED.inc()

    async def flush(self) -> None:
        batch = []
        while not self._queue.empty() and len(batch) < 5000:
            batch.append(self._queue.get_nowait())
        if not batch:
            return
        from psycopg.types.json import Jsonb
        rows = [astuple(r)[:-1] + (Jsonb(r.payload) if r.payload is not None else None,) for r in batch]
        try:
            async with self.pool.connection() as conn:
                async with conn.transaction():
                    # a log: losing the last half second in a crash is fine; waiting for fsync is not
                    await conn.execute("set local synchronous_commit = off")
                    async with conn.cursor() as cur:
                        await cur.executemany(INSERT, rows)
        except Exception as e:  # the log must never take the server down; the loss is counted
            CALL_LOG_DROPPED.inc(len(batch))
            log.error("could not write %d call-log records: %s", len(batch), e)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.flush()

    async def aclose(self) -> None:
        if self._task:
            self._task.cancel()
        await self.flush()
