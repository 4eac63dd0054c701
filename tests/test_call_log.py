"""The call log's flush (server/call_log.py) without the stack: when a flush returns, every record
made before it is written, a batch another flush was still writing included."""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from pgmind.server.call_log import CallLog, CallRecord


class HeldPool:
    """Stands in for the connection pool: each insert waits until ``release`` is set (``writing`` says
    one is waiting); ``rows`` holds what was committed."""

    def __init__(self, held: bool = True):
        self.rows = []
        self.writing, self.release = asyncio.Event(), asyncio.Event()
        if not held:
            self.release.set()

    @asynccontextmanager
    async def connection(self):
        pool, pending = self, []

        class Conn:
            @asynccontextmanager
            async def transaction(self):
                yield
                pool.rows.extend(pending)

            async def execute(self, *args):
                pass

            @asynccontextmanager
            async def cursor(self):
                class Cur:
                    async def executemany(self, sql, rows):
                        pool.writing.set()
                        await pool.release.wait()
                        pending.extend(rows)
                yield Cur()
        yield Conn()


def record(n: int) -> CallRecord:
    return CallRecord(f"m{n}", None, "embed", "sql", None, 1, None, None, 1.0, "ok")


def test_a_flush_waits_for_the_batch_under_way():
    async def run():
        pool = HeldPool()
        log = CallLog(pool, interval=3600)
        log.record(record(1))
        first = asyncio.ensure_future(log.flush())
        await pool.writing.wait()                          # the first flush is writing record 1
        log.record(record(2))
        second = asyncio.ensure_future(log.flush())
        for _ in range(10):                                # (lets the second flush run as far as it can)
            await asyncio.sleep(0)
        assert not second.done() and pool.rows == []       # it waits for the first ...
        pool.release.set()
        assert await second == 1 and await first == 1
        assert [r[0] for r in pool.rows] == ["m1", "m2"]   # ... and returns with both written
        assert await log.flush() == 0
    asyncio.run(run())


def test_a_flush_writes_more_than_one_batch():
    async def run():
        pool = HeldPool(held=False)
        log = CallLog(pool, interval=3600)
        for i in range(12_001):
            log.record(record(i))
        assert await log.flush() == 12_001 and len(pool.rows) == 12_001
    asyncio.run(run())
