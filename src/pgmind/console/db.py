"""Database access as the signed-in role: the same discipline as /v1/search (server/search_api.py).
A connection of the gateway role (a member of exactly the roles that hold an API key, with no rights
of its own) runs one transaction that SETs LOCAL ROLE to the session's role after checking that the
role is still no superuser; the transaction is read-only unless the page changes something, and has
a statement timeout.  The console adds no privilege: what the role may not do fails here as it would
in psql, and the error (SQLSTATE, message, hint) is shown."""
from __future__ import annotations

from contextlib import asynccontextmanager

import psycopg
from fastapi import Request
from psycopg import sql

from ..db.connection import from_sql_error


@asynccontextmanager
async def as_role(request: Request, role: str, *, write: bool = False):
    timeout_ms = int(request.app.state.settings.search_timeout * 1000)
    try:
        async with request.app.state.search_pool.connection() as conn:
            async with conn.transaction(force_rollback=not write):
                # (one round trip: ai_internal._act_as turns the planner's folding of owners' code off,
                # checks the role and SETs LOCAL ROLE; it raises, with a hint, when it may not)
                async with conn.pipeline():
                    if not write:
                        await conn.execute("set transaction read only")
                    await conn.execute(sql.SQL("set local statement_timeout = {}").format(sql.Literal(timeout_ms)))
                    await conn.execute("select ai_internal._act_as(%s)", (role,))
                yield conn
    except psycopg.Error as e:
        raise from_sql_error(e) from None


async def rows(conn, query, params=()) -> list[dict]:
    cur = await conn.execute(query, params)
    names = [d.name for d in cur.description or ()]
    return [dict(zip(names, r)) for r in await cur.fetchall()]
