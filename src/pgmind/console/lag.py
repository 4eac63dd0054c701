"""Queue lag over time, for the health page: the age of each knowledge base's oldest queued row,
sampled once a minute.  PostgreSQL keeps no history of it (a queue row is deleted when embedded),
so the console keeps one, cheaply: one grouped query a minute over the queue's primary key, as the
server's own service role (the same reading as /metrics), into a few hours of samples in memory.
The history starts when the console is first used after the server starts (and each health page
takes a sample of its own, so the current minute is always there)."""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from datetime import datetime, timezone

log = logging.getLogger(__name__)
INTERVAL = 60.0
KEPT_MINUTES = 6 * 60
QUERY = """select v.name::text, count(q.key)::bigint,
                  coalesce(extract(epoch from now() - min(q.queued_at)), 0)::float8
           from ai.vectorizers v left join ai.vectorizer_queue q on q.vectorizer_id = v.id
           group by v.name"""


class LagHistory:
    def __init__(self, kept: int = KEPT_MINUTES):
        self.kept = kept
        self._samples: dict[str, deque] = {}
        self._task: asyncio.Task | None = None

    def record(self, at: datetime, found) -> None:
        """(name, queued, lag seconds) rows at one moment; a knowledge base gone is dropped."""
        minute = at.astimezone(timezone.utc).replace(second=0, microsecond=0)
        names = set()
        for name, queued, lag in found:
            names.add(name)
            samples = self._samples.setdefault(name, deque(maxlen=self.kept))
            if samples and samples[-1][0] == minute:
                samples.pop()                 # one sample a minute: the latest
            samples.append((minute, float(lag), int(queued)))
        for gone in set(self._samples) - names:
            del self._samples[gone]

    def series(self) -> dict[str, dict[datetime, float]]:
        """{knowledge base: {minute: lag in seconds}}."""
        return {name: {m: lag for m, lag, _ in samples} for name, samples in sorted(self._samples.items())}

    async def sample(self, pool) -> None:
        async with pool.connection() as conn, conn.transaction():
            # (names in pg_catalog only: a count(jsonb) someone put in a schema on the service role's
            # default path would otherwise be a closer match than pg_catalog's count("any"))
            await conn.execute("set local search_path = pg_catalog, pg_temp")
            found = await (await conn.execute(QUERY)).fetchall()
        self.record(datetime.now(timezone.utc), found)

    def start(self, pool) -> None:
        """The minute sampler, once per server (on the server's event loop)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(pool), name="console queue lag")

    async def _run(self, pool) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.sample(pool)
            except asyncio.CancelledError:
                raise
            except Exception:          # (the database away a while: the chart has a gap, the sampler goes on)
                log.warning("console: the queue lag sample failed", exc_info=True)
            await asyncio.sleep(max(1.0, INTERVAL - (time.monotonic() - started)))
