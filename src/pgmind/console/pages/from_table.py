"""A new knowledge base over an existing table the signed-in role owns: the table and its content
column are picked from lists the role's own catalog gives (the content is a column name, quoted
here; never SQL text from the form), with the model and the chunk size; "Preview" reads 3 rows of
that column as the role and shows them cut by the worker's own chunker
(pgmind.vectorizer.chunking.chunk_text); "Create" runs ai.create_vectorizer as the role.

Reading or changing another role's table in the gateway's session must run none of its owner's
code: the table is locked and checked to be a plain table first (no row security, no rules, no
foreign keys, only SECURITY DEFINER triggers, the content and key columns of built-in types)."""
from __future__ import annotations

import re

from fastapi import APIRouter, Request
from psycopg import sql
from psycopg.types.json import Jsonb

from ... import errors
from ...vectorizer.chunking import METHODS, ChunkingConfig, chunk_text
from ..db import as_role, rows
from ..web import PREFIX, check_csrf, integer, page, render, signed_in, text

router = APIRouter()
PREVIEW_ROWS = 3
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
TEXT_TYPES = ("text", "character varying", "character")


async def _tables(conn) -> list[dict]:
    """Plain tables with a primary key that the role owns (or a role it belongs to owns), outside
    pgmind's schemas."""
    return await rows(conn, """
        select c.oid::regclass::text as name
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where c.relkind = 'r' and pg_has_role(current_user, c.relowner, 'USAGE')
          and n.nspname not in ('ai', 'ai_internal', 'polar_ai', 'information_schema')
          and not starts_with(n.nspname, 'pg_') and has_schema_privilege(n.oid, 'usage')
          and exists (select 1 from pg_constraint k where k.conrelid = c.oid and k.contype = 'p')
        order by 1 limit 500""")


async def _columns(conn, table: str) -> list[str]:
    """The table's text columns (of the built-in text types): the content choices."""
    return [r["attname"] for r in await rows(conn, """
        select a.attname::text from pg_attribute a
        where a.attrelid = %s::regclass and a.attnum > 0 and not a.attisdropped
          and format_type(a.atttypid, null) = any (%s) order by a.attnum""", (table, list(TEXT_TYPES)))]


async def _models(conn) -> list[str]:
    return [r["model_id"] for r in await rows(
        conn, "select model_id from ai.models where model_type = 'embedding' and usable order by model_id")]


async def _plain(conn, table: str, column: str, mode: str) -> None:
    """Locks the table and refuses it unless reading it (and adding pgmind's triggers) runs no code of
    its owner's in this session."""
    await conn.execute(sql.SQL("lock table {} in " + mode + " mode").format(sql.SQL(table)))
    ok = (await (await conn.execute("""
        select c.relkind = 'r' and not c.relrowsecurity and not c.relhasrules and not c.relhassubclass
           and ai_internal._planner_safe(c.oid)
           and not exists (select 1 from pg_trigger g left join pg_proc p on p.oid = g.tgfoid
                           where g.tgrelid = c.oid and (g.tgisinternal or not coalesce(p.prosecdef, false)))
           and not exists (select 1 from pg_constraint k where k.confrelid = c.oid and k.contype = 'f')
           and not exists (select 1 from pg_attribute a where a.attrelid = c.oid and a.attnum > 0
                           and not a.attisdropped and a.atttypid >= 16384
                           and (a.attname = %s or a.attnum = any ((select k.conkey from pg_constraint k
                                                                    where k.conrelid = c.oid and k.contype = 'p')::int2[])))
        from pg_class c where c.oid = %s::regclass""", (column, table))).fetchone())[0]
    if not ok:
        raise errors.PermissionDeniedError(
            f"the console works only on a plain table; {table} has triggers, rules, row security, foreign keys "
            "or columns of types of its own", hint="create the knowledge base from SQL as your own role: "
                                                   "select ai.create_vectorizer(...)")


def _form(data, tables: list[str]) -> dict:
    table = text(data.get("table"), "table", limit=200, required=False)
    if table and table not in tables:
        raise errors.InvalidRequestError(f"no table {table[:60]!r} of yours to build on",
                                         hint="choose one of the list (tables you own, with a primary key)")
    method = text(data.get("method"), "method", limit=20, required=False) or "recursive"
    if method not in METHODS:
        raise errors.InvalidRequestError(f"unknown chunking method {method[:20]!r}", hint="one of " + ", ".join(METHODS))
    max_tokens = integer(data.get("max_tokens"), "max_tokens", 256, 8, 8192)
    overlap = integer(data.get("overlap"), "overlap", min(32, (max_tokens - 1) // 2), 0, 4095)
    chunking = ChunkingConfig.from_json({"method": method, "max_tokens": max_tokens, "overlap": overlap})
    return {"table": table or None, "column": text(data.get("column"), "column", limit=63, required=False) or None,
            "name": text(data.get("name"), "name", limit=48, required=False).strip(),
            "model": text(data.get("model"), "model", limit=200, required=False) or None,
            "method": method, "max_tokens": max_tokens, "overlap": overlap, "chunking": chunking}


async def _view(request: Request, session, data, *, action: str | None):
    async with as_role(request, session.role, write=action == "create") as conn:
        tables = [r["name"] for r in await _tables(conn)]
        models = await _models(conn)
        f = _form(data, tables)
        columns = await _columns(conn, f["table"]) if f["table"] else []
        if f["column"] is not None and f["column"] not in columns:
            raise errors.InvalidRequestError(f"{f['table']} has no text column {f['column'][:63]!r}",
                                             hint="choose one of the list")
        if action and not (f["table"] and f["column"]):
            raise errors.InvalidRequestError("choose a table and its content column", hint="pick them from the lists")
        preview = None
        if action == "preview":
            await _plain(conn, f["table"], f["column"], "access share")
            values = await rows(conn, sql.SQL("select {} as content from {} limit {}").format(
                sql.Identifier(f["column"]), sql.SQL(f["table"]), sql.Literal(PREVIEW_ROWS)))
            preview = [{"n": i, "chunks": chunk_text(v["content"] or "", f["chunking"])}
                       for i, v in enumerate(values, 1)]
        elif action == "create":
            if not _NAME.match(f["name"]):
                raise errors.InvalidRequestError(f"invalid knowledge base name {f['name'][:60]!r}",
                                                 hint="lower-case letters, digits and _, starting with a letter, at most 48")
            if f["model"] not in models:
                raise errors.InvalidRequestError(f"model {str(f['model'])[:60]!r} is not an embedding model you may use",
                                                 hint="choose one of the list")
            await _plain(conn, f["table"], f["column"], "share row exclusive")
            content = sql.Identifier(f["column"]).as_string(conn)
            await conn.execute("select ai.create_vectorizer(%s::regclass, name => %s, content => %s, model => %s, "
                               "chunking => %s)",
                               (f["table"], f["name"], content, f["model"],
                                Jsonb({"method": f["method"], "max_tokens": f["max_tokens"], "overlap": f["overlap"]})))
            return None, f
    return render(request, "new_table.html", session=session, tables=tables, models=models, columns=columns,
                  f=f, methods=METHODS, preview=preview, preview_rows=PREVIEW_ROWS), f


@router.get(PREFIX + "/new/table")
@page
async def new_from_table(request: Request):
    session = await signed_in(request)
    response, _ = await _view(request, session, request.query_params, action=None)
    return response


@router.post(PREFIX + "/new/table")
@page
async def preview_or_create(request: Request):
    session = await signed_in(request)
    data = await check_csrf(request, session)
    action = data.get("action")
    if action not in ("preview", "create"):
        raise errors.InvalidRequestError("unknown action", hint="use the page's Preview or Create button")
    response, f = await _view(request, session, data, action=action)
    if response is None:
        from fastapi.responses import RedirectResponse
        from ..web import secure
        return secure(RedirectResponse(f"{PREFIX}/kbs/{f['name']}", status_code=303))
    return response
