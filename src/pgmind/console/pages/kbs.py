"""Knowledge bases: the list (ai.vectorizer_status as the signed-in role), one knowledge base's page
(its versions' progress and its documents, keyset-paged per state), the actions on it (retry one or
all quarantined documents, delete a document, pause / resume) and a document's whole text with one
chunk marked.  A knowledge base the role may not see is "not found", exactly like one that does not
exist: the console tells nothing of other roles' knowledge bases."""
from __future__ import annotations

import json
from datetime import timedelta

import psycopg
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse
from psycopg import sql
from psycopg.types.json import Jsonb

from ... import errors
from .. import i18n
from ..db import as_role, rows
from ..web import PREFIX, check_csrf, integer, page, render, secure, signed_in, text

router = APIRouter()
PAGE_SIZE = 50
STATES = ("done", "pending", "quarantined")


class NotFound(errors.PgmindError):
    http_status = 404
    sqlstate = "42704"


def not_found(request: Request) -> NotFound:
    t = i18n.translator(i18n.language(request))
    return NotFound(t("not_found"), hint=t("not_found_hint"))


def kb_name(request: Request, name: str) -> str:
    """A knowledge base name as ai.vectorizers allows it; anything else cannot exist."""
    text(name, "name", limit=100)
    if not (0 < len(name) <= 48 and name[0].isascii() and all(c.isascii() and (c.isalnum() or c == "_") for c in name)
            and name == name.lower() and not name[0].isdigit()):
        raise not_found(request)
    return name


def _eta(row: dict) -> timedelta | None:
    if "eta" in row:
        return row["eta"]
    left = (row.get("pending") or 0) + (row.get("leased") or 0)
    rate = float(row.get("rows_per_second") or 0)
    if left == 0:
        return timedelta(0)
    return timedelta(seconds=round(left / rate)) if rate > 0 else None


async def status_rows(conn, name: str | None = None) -> list[dict]:
    query = "select * from ai.vectorizer_status" + (" where name = %s" if name else "") + " order by name, version"
    found = await rows(conn, query, (name,) if name else ())
    for r in found:
        r["eta"] = _eta(r)
        r.setdefault("paused", None)
    return found


async def has_pause(conn) -> bool:
    row = await (await conn.execute("select to_regprocedure('ai.pause_vectorizer(text)') is not null")).fetchone()
    return bool(row[0])


@router.get(PREFIX + "/kbs")
@page
async def kb_list(request: Request):
    session = await signed_in(request)
    async with as_role(request, session.role) as conn:
        found = await status_rows(conn)
        # (an image collection is a knowledge base on an image model: its page is the image search)
        images = {r["model_id"] for r in await rows(conn, "select model_id from ai.models "
                                                          "where model_type = 'image_embedding'")}
    for kb in found:
        kb["images"] = kb["model"] in images
    return render(request, "kbs.html", session=session, kbs=found)


def _cursor(raw: str | None) -> object | None:
    """The page cursor: the last key of the page before (JSON, as the URL carries it)."""
    if not raw:
        return None
    text(raw, "after", limit=4000)
    try:
        return json.loads(raw)
    except ValueError:
        raise errors.InvalidRequestError("the page cursor is not valid", hint="start from the first page") from None


async def _target(conn, name: str):
    """The active version's chunk table, checked by ai_internal._search_target (plain table, the
    role may read it), locked, then checked again (so it cannot change in between); None when the
    source's row security hides rows from the role (hides_rows)."""
    q = "select vid, store, key_json, key_cols, source::text from ai_internal._search_target(%s, current_user)"
    t = await (await conn.execute(q, (name,))).fetchone()
    await conn.execute(sql.SQL("lock table {} in access share mode").format(sql.SQL(t[1])))
    t = await (await conn.execute(q, (name,))).fetchone()
    return None if await hides_rows(conn, t[4]) else t[:4]


async def hides_rows(conn, source: str) -> bool:
    """Whether row security on the source may hide rows from the role.  The chunk table has no row
    security of its own: ai.search carries the source's to the chunks by reading the source as the
    caller, which runs the policies, the owner's code, that must not run in the gateway's session.
    So the console shows no chunk of such a source (search it from SQL) unless the policies do not
    apply to the role: it owns the table (and row security is not forced on the owner) or it
    bypasses row security."""
    row = await (await conn.execute("""
        select c.relrowsecurity and not (
                   coalesce((select r.rolbypassrls from pg_roles r where r.rolname = current_user), false)
                   or (not c.relforcerowsecurity and pg_has_role(current_user, c.relowner, 'USAGE')))
        from pg_class c where c.oid = %s::regclass""", (source,))).fetchone()
    return bool(row and row[0])


def _key_match(key_cols: str, kfj: str, op: str) -> sql.Composable:
    """(key columns) compared with the key a JSON parameter names, cast to the key types (the
    registry's fragments: quoted identifiers and catalog type names); op is "=" or ">"."""
    return sql.SQL("({}) " + op + " (select {} from (select %s::jsonb as k) as given)").format(sql.SQL(key_cols),
                                                                                            sql.SQL(kfj))


async def documents(conn, name: str, vid: int, state: str, after) -> tuple[list[dict], object | None, str | None]:
    """One page of documents in a state, and the cursor of the next page (None on the last)."""
    if state == "done":
        try:
            async with conn.transaction():      # (a savepoint: no right to the chunks is not the end of the page)
                target = await _target(conn, name)
                if target is None:
                    return [], None, "rls_hidden"
                _, store, key_json, key_cols = target
                kfj = (await (await conn.execute("select ai_internal._key_from_json(%s, 'k')", (vid,))).fetchone())[0]
                cond = sql.SQL("")
                params: list = []
                if after is not None:
                    cond = sql.SQL(" and ") + _key_match(key_cols, kfj, ">")
                    params.append(Jsonb(after))
                query = sql.SQL("select {} as key, left(c.chunk, 300) as chunk from {} c where c.chunk_seq = 0{} "
                                "order by {} limit {}").format(sql.SQL(key_json), sql.SQL(store), cond,
                                                               sql.SQL(key_cols), sql.Literal(PAGE_SIZE + 1))
                found = await rows(conn, query, params)
        except psycopg.errors.InsufficientPrivilege:     # (an administrator not granted the chunks)
            return [], None, "no_chunks_right"
    else:
        # the queue and the quarantine in their primary key's order (ai_internal._queue_page: one
        # rights check, an index range scan); the cursor is the last row's [version, key]
        if after is not None and not (isinstance(after, list) and len(after) == 2 and isinstance(after[0], int)):
            raise errors.InvalidRequestError("the page cursor is not valid", hint="start from the first page")
        found = await rows(conn, "select key, version, at, attempts, leased, error, sqlstate "
                                 "from ai_internal._queue_page(%s, %s, %s, %s, %s)",
                           (vid, state, after[0] if after else None, Jsonb(after[1]) if after else None,
                            PAGE_SIZE + 1))
    more = len(found) > PAGE_SIZE
    found = found[:PAGE_SIZE]
    for r in found:
        r["key_text"] = json.dumps(r["key"], ensure_ascii=False, sort_keys=True)
        if r.get("error"):
            r["message"], _, r["hint"] = r["error"].partition(" (hint: ")
            r["hint"] = r["hint"].removesuffix(")") or None
    last = (found[-1]["key"] if state == "done" else [found[-1]["version"], found[-1]["key"]]) if more else None
    return found, last, None


async def visible(conn, request: Request, name: str) -> list[dict]:
    """The knowledge base's versions, as the role sees them; not found (404) when it sees none."""
    versions = await status_rows(conn, name)
    if not versions:
        raise not_found(request)
    return versions


async def image_collection(conn, versions: list[dict]) -> bool:
    """Whether the knowledge base is an image collection: its active version's model is an image
    model (of those the role sees); its pages are then the documents and the image search."""
    models = {r["model_id"] for r in await rows(conn, "select model_id from ai.models "
                                                      "where model_type = 'image_embedding'")}
    return any(v["model"] in models for v in versions if v["status"] == "active")


async def _visible(conn, request: Request, name: str) -> tuple[list[dict], int]:
    versions = await visible(conn, request, name)
    vid = (await (await conn.execute("select ai_internal._vectorizer_id(%s)", (name,))).fetchone())[0]
    return versions, vid


@router.get(PREFIX + "/kbs/{name}")
@page
async def kb_page(request: Request, name: str):
    session = await signed_in(request)
    name = kb_name(request, name)
    state = request.query_params.get("state", "done")
    state = state if state in STATES else "done"
    after = _cursor(request.query_params.get("after"))
    async with as_role(request, session.role) as conn:
        versions, vid = await _visible(conn, request, name)
        docs, next_after, problem = await documents(conn, name, vid, state, after)
        pausable = await has_pause(conn)
        image_kb = await image_collection(conn, versions)
    next_url = None
    if next_after is not None:
        from urllib.parse import urlencode
        next_url = f"{PREFIX}/kbs/{name}?" + urlencode({"state": state, "after": json.dumps(next_after,
                                                                                            ensure_ascii=False)})
    notice = request.query_params.get("notice")
    return render(request, "kb.html", session=session, name=name, versions=versions, docs=docs, state=state,
                  image_kb=image_kb,
                  states=STATES, next_url=next_url, first=after is None, problem=problem, pausable=pausable,
                  notice=notice if notice in ("requeued", "deleted", "paused", "resumed", "altered") else None,
                  notice_n=integer(request.query_params.get("n"), "n", 0, 0, 10**12))


def _back(name: str, notice: str, state: str = "done", n: int = 0):
    from urllib.parse import urlencode
    return secure(RedirectResponse(f"{PREFIX}/kbs/{name}?" + urlencode({"state": state, "notice": notice, "n": n}),
                                   status_code=303))


def _key_field(data) -> object:
    raw = text(data.get("key"), "key", limit=4000)
    try:
        return json.loads(raw)
    except ValueError:
        raise errors.InvalidRequestError("the document key is not valid JSON", hint="use the page's buttons") from None


@router.post(PREFIX + "/kbs/{name}/retry")
@page
async def retry(request: Request, name: str):
    session = await signed_in(request)
    data = await check_csrf(request, session)
    name = kb_name(request, name)
    async with as_role(request, session.role, write=True) as conn:
        _, vid = await _visible(conn, request, name)
        if data.get("key"):
            # ai_internal._enqueue: the queue's row security lets only the owner queue its keys
            await conn.execute("select ai_internal._enqueue(%s, array[%s::jsonb])", (vid, Jsonb(_key_field(data))))
            n = 1
        else:
            n = (await (await conn.execute("select ai.vectorizer_retry(%s)", (name,))).fetchone())[0]
    return _back(name, "requeued", "pending", n)


async def plain_source(conn, vid: int, hint: str) -> tuple[str, str, str]:
    """The source table (name, key columns for alias s, key-from-JSON for alias k), locked, once it is
    known that no code of another role's can run in this session when it is read or changed: a plain
    table, no row security, no rules, no children (a delete reaches theirs), no index or statistics
    object with a function of the owner's (the planner runs those: ai_internal._planner_safe), no
    foreign keys (their actions fire other tables' triggers), key columns of built-in types, and every trigger SECURITY DEFINER (where SET ROLE is refused) and
    either pgmind's own or the signed-in role's: pgmind's functions take the session's role for the
    caller, so another owner's definer trigger in an administrator's session would act as the
    administrator."""
    source, key_cols, kfj, key_columns = await (await conn.execute(
        "select source::text, ai_internal._key_cols(%s, 's'), ai_internal._key_from_json(%s, 'k'), "
        "key_columns::text[] from ai_internal._vectorizer_info(%s)", (vid, vid, vid))).fetchone()
    await conn.execute(sql.SQL("lock table {} in row exclusive mode").format(sql.SQL(source)))
    plain = (await (await conn.execute("""
        select c.relkind = 'r' and not c.relrowsecurity and not c.relhasrules and not c.relhassubclass
           and ai_internal._planner_safe(c.oid)
           and not exists (select 1 from pg_trigger g left join pg_proc p on p.oid = g.tgfoid
                           where g.tgrelid = c.oid
                             and (g.tgisinternal or not coalesce(p.prosecdef, false)
                                  or p.proowner not in ((select n.nspowner from pg_namespace n
                                                         where n.nspname = 'ai_internal'),
                                                        (select r.oid from pg_roles r where r.rolname = current_user))))
           and not exists (select 1 from pg_constraint k where k.confrelid = c.oid and k.contype = 'f')
           and not exists (select 1 from pg_attribute a where a.attrelid = c.oid and a.attnum > 0
                           and not a.attisdropped and a.atttypid >= 16384 and a.attname = any (%s::name[]))
        from pg_class c where c.oid = %s::regclass""", (key_columns, source))).fetchone())[0]
    if not plain:
        raise errors.PermissionDeniedError(
            f"the console works only on a plain source table; {source} has triggers, rules, row security, "
            "foreign keys or key types of its own", hint=hint.format(source=source))
    return source, key_cols, kfj


@router.post(PREFIX + "/kbs/{name}/delete")
@page
async def delete_document(request: Request, name: str):
    """Deletes the document's row from the source table, as the role (a plain source only:
    plain_source)."""
    session = await signed_in(request)
    data = await check_csrf(request, session)
    name = kb_name(request, name)
    key = _key_field(data)
    async with as_role(request, session.role, write=True) as conn:
        _, vid = await _visible(conn, request, name)
        source, key_cols, kfj = await plain_source(conn, vid, "delete the row from SQL as your own role: "
                                                             "delete from {source} where ...")
        match = _key_match(key_cols, kfj, "=")
        cur = await conn.execute(sql.SQL("delete from only {} s where ").format(sql.SQL(source)) + match,
                                 (Jsonb(key),))
        # (a key the source no longer has is not deleted from the chunks here: that would run as the
        # role on the chunk table, whose triggers are its owner's code; pgmind's trigger removed its
        # chunks when the row went)
        if cur.rowcount == 0:
            raise errors.InvalidRequestError(f"{source} has no row with that key",
                                             hint="it was deleted already; its chunks went with it")
    return _back(name, "deleted", data.get("state") if data.get("state") in STATES else "done")


@router.post(PREFIX + "/kbs/{name}/alter")
@page
async def alter(request: Request, name: str):
    """ai.alter_vectorizer: a new version with another model or chunking, embedded beside the active
    one (its own progress row above) and switched to by a worker when complete.  It reads every key
    of the source, so only over a plain source table (plain_source)."""
    session = await signed_in(request)
    data = await check_csrf(request, session)
    name = kb_name(request, name)
    model = text(data.get("model"), "model", limit=200, required=False) or None
    raw = text(data.get("chunking"), "chunking", limit=4000, required=False).strip()
    try:
        chunking = json.loads(raw) if raw else None
    except ValueError:
        raise errors.InvalidRequestError("the chunking is not valid JSON",
                                         hint='e.g. {"method": "markdown", "max_tokens": 256, "overlap": 32}') from None
    if chunking is not None and not isinstance(chunking, dict):
        raise errors.InvalidRequestError("the chunking is a JSON object", hint='e.g. {"method": "none"}')
    async with as_role(request, session.role, write=True) as conn:
        _, vid = await _visible(conn, request, name)
        await plain_source(conn, vid, "run it from SQL as your own role: select ai.alter_vectorizer(...)")
        await conn.execute("select ai.alter_vectorizer(%s, model => %s, chunking => %s)",
                           (name, model, Jsonb(chunking) if chunking is not None else None))
    return _back(name, "altered")


@router.post(PREFIX + "/kbs/{name}/pause")
@router.post(PREFIX + "/kbs/{name}/resume")
@page
async def pause_resume(request: Request, name: str):
    session = await signed_in(request)
    await check_csrf(request, session)
    name = kb_name(request, name)
    pausing = request.url.path.endswith("/pause")
    t = i18n.translator(i18n.language(request))
    async with as_role(request, session.role, write=True) as conn:
        await _visible(conn, request, name)
        if not await has_pause(conn):
            raise errors.InvalidRequestError(t("no_pause"), hint=t("no_pause_hint"))
        await conn.execute(sql.SQL("select {}(%s)").format(
            sql.SQL("ai.pause_vectorizer" if pausing else "ai.resume_vectorizer")), (name,))
    return _back(name, "paused" if pausing else "resumed")


@router.get(PREFIX + "/kbs/{name}/doc")
@page
async def document(request: Request, name: str):
    """A document's chunks in order (the active version), the one asked for marked."""
    session = await signed_in(request)
    name = kb_name(request, name)
    key = _cursor(request.query_params.get("key"))
    if key is None:
        raise errors.InvalidRequestError("which document? the link names none", hint="open a document from a list")
    marked = integer(request.query_params.get("chunk"), "chunk", -1, -1, 10**6)
    async with as_role(request, session.role) as conn:
        versions, vid = await _visible(conn, request, name)
        image_kb = await image_collection(conn, versions)
        target = await _target(conn, name)
        if target is None:
            t = i18n.translator(i18n.language(request))
            raise errors.PermissionDeniedError(t("rls_hidden"), hint=t("rls_hidden_hint"))
        _, store, _, key_cols = target
        kfj = (await (await conn.execute("select ai_internal._key_from_json(%s, 'k')", (vid,))).fetchone())[0]
        match = _key_match(key_cols, kfj, "=")
        chunks = await rows(conn, sql.SQL("select c.chunk_seq, c.chunk from {} c where ").format(sql.SQL(store))
                            + match + sql.SQL(" order by c.chunk_seq limit 2000"), (Jsonb(key),))
    if not chunks:
        raise not_found(request)
    return render(request, "doc.html", session=session, name=name, image_kb=image_kb,
                  key=json.dumps(key, ensure_ascii=False),
                  chunks=chunks, marked=marked)
