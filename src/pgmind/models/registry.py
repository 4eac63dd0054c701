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
        self._keys: dict[str, tuple[float, tuple[str, bool] | None]] = {}
        self._token_secret: str | None = None

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
                "select exists (select 1 from pg_roles where rolname = %s) and ai_internal._may_use(%s, %s)",
                (role, role, model_id))).fetchone())[0]
        # only a yes is cached: a grant works on the next request, without waiting for the NOTIFY
        # to reach the listener (a revoke still waits for it, or for the TTL)
        if ok:
            self._grants[key] = now
        return ok

    async def is_admin(self, role: str) -> bool:
        async with self.pool.connection() as conn:
            return (await (await conn.execute("select ai_internal._is_admin(%s)", (role,))).fetchone())[0]

    async def credential_role(self, key: str) -> tuple[str, bool] | None:
        """(role, is a SQL token) for an active API key or a role's SQL token, else None.  Both are
        bound to the role's OID (a dropped role's credentials die with it; a new role of the same
        name gets nothing), and an API key of a role that has become a superuser is refused.
        Cached by the credential's hash, like the grants."""
        import hashlib
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        hit = self._keys.get(digest)
        now = time.monotonic()
        if hit and now - hit[0] < self.ttl:
            return hit[1]
        async with self.pool.connection() as conn:
            if key.startswith("pgr-"):
                oid = await self._role_token_oid(conn, key)
                row = None if oid is None else await (await conn.execute(
                    "select rolname, true from pg_roles where oid = %s", (oid,))).fetchone()
            else:
                row = await (await conn.execute(
                    """select r.rolname, false from ai.api_keys k join pg_roles r on r.oid = k.role_oid
                       where k.key_sha256 = %s and k.revoked_at is null
                         and not ai_internal._reaches_superuser(r.oid)""", (digest,))).fetchone()
        self._keys[digest] = (now, (row[0], row[1]) if row else None)
        return self._keys[digest][1]

    async def _role_token_oid(self, conn, token: str) -> int | None:
        """The role OID a SQL token names, if its mac is right ('pgr-<oid>-<mac>', made by
        ai_internal._issue_role_tokens): checked without the token table, so a token made in a
        transaction that has not committed works at once."""
        import hashlib
        import hmac
        _, _, rest = token.partition("pgr-")
        oid, _, mac = rest.partition("-")
        if not oid.isascii() or not oid.isdigit() or len(oid) > 10:
            return None
        if self._token_secret is None:
            row = await (await conn.execute(
                "select value from ai._settings where key = 'role_token_secret'")).fetchone()
            if row is None:
                return None
            self._token_secret = row[0]
        expected = hashlib.sha256(f"{self._token_secret}:{oid}:{self._token_secret}".encode()).hexdigest()
        return int(oid) if hmac.compare_digest(expected, mac.encode("utf-8", "replace").decode()) else None

    async def list(self) -> list[ModelSpec]:
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(SPEC_QUERY.replace("where r.model_id = %s", "order by r.model_id"))).fetchall()
        return [spec_from_row(r) for r in rows]

    def forget(self) -> None:
        self._token_secret = None       # (a re-install may have changed it)
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
