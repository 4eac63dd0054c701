"""Writes every model call to ai.call_log, off the request path: records are queued and flushed
in one multi-row insert every half second (or at once, when the operator asks: ``flush``).  No
payloads unless the operator asked for them."""
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
        self._flushing = asyncio.Lock()     # one writer at a time: a flush waits for the one under way

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def record(self, rec: CallRecord) -> None:
        try:
            self._queue.put_nowait(rec)
        except asyncio.QueueFull:
            CALL_LOG_DROPPED.inc()

    async def flush(self) -> int:
        """Writes the records queued when it is called; when it returns, each of them is in the table
        (or counted as dropped), a batch another flush was writing included.  Returns how many it wrote."""
        async with self._flushing:
            left, written = self._queue.qsize(), 0
            while left > 0 and not self._queue.empty():
                batch = [self._queue.get_nowait() for _ in range(min(left, 5000, self._queue.qsize()))]
                left -= len(batch)
                written += await self._write(batch)
            return written

    async def _write(self, batch: list[CallRecord]) -> int:
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
            return 0
        return len(batch)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.flush()

    async def aclose(self) -> None:
        if self._task:
            self._task.cancel()
        await self.flush()
