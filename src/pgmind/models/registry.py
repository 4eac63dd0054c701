"""Reads the model registry for the model server, with a cache so the hot path does not query the
database on every request.  Every change to the registry (create, alter, drop, grant, revoke)
sends NOTIFY pgmind_registry, on which the cache is dropped; the TTL bounds staleness should the
listening connection be lost."""
from __future__ import annotations

import asyncio
import logging
import time

import psycopg

from psycopg_pool import AsyncConnectionPool

from ..errors import UnknownModelError
from .spec import SPEC_QUERY, ModelSpec, spec_from_row

log = logging.getLogger(__name__)
CHANNEL = "pgmind_registry"


class Registry:
    def __init__(self, pool: AsyncConnectionPool, ttl: float = 30.0):
        self.pool = pool
        self.ttl = ttl
        self._specs: dict[str, tuple[float, ModelSpec | None]] = {}
        self._grants: dict[tuple[str, str], float] = {}      # (role, model) → when its yes was read
        self._keys: dict[str, tuple[float, str | None]] = {}

    async def get(self, model_id: str) -> ModelSpec:
        if not isinstance(model_id, str) or not model_id:
            from ..errors import InvalidRequestError
            raise InvalidRequestError("no model given", hint="pass the model id, e.g. \"model\": \"e5-small\"")
        hit = self._specs.get(model_id)
        now = time.monotonic()
        if hit and now - hit[0] < self.ttl:
            spec = hit[1]
        else:
            async with self.pool.connection() as conn:
                row = await (await conn.execute(SPEC_QUERY, (model_id,))).fetchone()
            spec = spec_from_row(row) if row else None
            self._specs[model_id] = (now, spec)
        if spec is None:
            raise UnknownModelError(f'model "{model_id}" is not registered')
        return spec

    async def can_use(self, role: str, model_id: str) -> bool:
        key = (role, model_id)
        now = time.monotonic()
        seen = self._grants.get(key)
        if seen is not None and now - seen < self.ttl:
            return True
        async with self.pool.connection() as conn:
            ok = (await (await conn.execute(
                "select exists (select 1 from pg_roles where rolname = %s) and ai_internal._can_use(%s, %s)",
                (role, role, model_id))).fetchone())[0]
        # only a yes is cached: a grant works on the next request, without waiting for the NOTIFY
        # to reach the listener (a revoke still waits for it, or for the TTL)
        if ok:
            self._grants[key] = now
        return ok

    async def is_admin(self, role: str) -> bool:
        async with self.pool.connection() as conn:
            return (await (await conn.execute("select ai_internal._is_admin(%s)", (role,))).fetchone())[0]

    async def api_key_role(self, key: str) -> str | None:
        """The role of an active API key, or None.  Cached by the key's hash, like the grants."""
        import hashlib
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        hit = self._keys.get(digest)
        now = time.monotonic()
        if hit and now - hit[0] < self.ttl:
            return hit[1]
        async with self.pool.connection() as conn:
            row = await (await conn.execute(
                "select role_name from ai.api_keys where key_sha256 = %s and revoked_at is null", (digest,))).fetchone()
        self._keys[digest] = (now, row[0] if row else None)
        return self._keys[digest][1]

    async def list(self) -> list[ModelSpec]:
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(SPEC_QUERY.replace("where r.model_id = %s", "order by r.model_id"))).fetchall()
        return [spec_from_row(r) for r in rows]

    def forget(self) -> None:
        self._specs.clear()
        self._grants.clear()
        self._keys.clear()

    async def listen(self, dsn: str) -> None:
        """Drops the cache on every registry change; reconnects if the connection is lost."""
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                        dsn, autocommit=True, application_name="pgmind serve (registry listener)") as conn:
                    await conn.execute(f"listen {CHANNEL}")
                    self.forget()   # changes made while we were not listening
                    async for _ in conn.notifies():
                        self.forget()
            except asyncio.CancelledError:
                raise
            except psycopg.Error as e:
                log.warning("registry listener lost its connection (%s); retrying", e)
                await asyncio.sleep(1.0)
