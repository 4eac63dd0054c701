"""Knowledge-base routes: /v1/search and /v1/ask (streaming with server-sent events).
Retrieval and the prompt come from SQL (ai.search, ai.rag_prompt), generation from the model hub.

The SQL runs as the caller's database role (SET LOCAL ROLE, in a transaction that is always rolled
back), and no text of the caller's becomes SQL: a filter here is a JSON object of column → value
(or → list of values), turned into a condition with quoted identifiers and literals.  (SQL callers
of ai.search write SQL filters, which run with their own rights.)"""
from __future__ import annotations

import json

import psycopg
from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from psycopg import sql

from ..db.connection import GATEWAY_PLANNER, from_sql_error
from ..errors import InvalidRequestError, PermissionDeniedError, PgmindError
from ..models.validation import check_text
from .deps import authenticate, caller, json_response, service
from ..rag.grounding import checked_reply

router = APIRouter(dependencies=[Depends(authenticate)], tags=["knowledge bases"])


class SearchRequest(BaseModel):
    name: str = Field(description="The knowledge base (vectorizer) name.")
    query: str
    k: int = Field(10, ge=1, le=1000)
    mode: str = Field("hybrid", description="vector, keyword or hybrid")
    expand: bool = Field(False, description="Also search the chat model's short answer (as RAG does).")
    filter: dict[str, str | int | float | bool | list[str | int | float] | None] | None = Field(
        None, description='Source-table columns and the values they must have: {"lang": "zh", "id": [1, 2]}.')
    chunks_per_source: int | None = Field(2, ge=1, le=1000,
                                          description="At most this many chunks of one document; null for all.")


class AskRequest(BaseModel):
    name: str
    question: str
    k: int | None = Field(None, ge=1, le=100)
    model: str | None = Field(None, description="The chat model (default: the knowledge base's).")
    threshold: float | None = None
    filter: dict[str, str | int | float | bool | list[str | int | float] | None] | None = None
    stream: bool = False


def _sql_text(value, where: str) -> None:
    """A text bound for PostgreSQL: valid Unicode and no NUL (which PostgreSQL text cannot hold)."""
    if isinstance(value, str):
        check_text(value, where, 10000)
        if "\x00" in value:
            raise InvalidRequestError(f"{where} holds a NUL character", hint="PostgreSQL text cannot hold one")


def filter_sql(spec: dict | None) -> str | None:
    """A structured filter as a SQL condition on the source table (alias s): identifiers and
    literals quoted by psycopg, conditions joined with AND."""
    if not spec:
        return None
    parts = []
    for column, value in spec.items():
        if not column or len(column) > 63:
            raise InvalidRequestError(f"invalid filter column {column!r}", hint="use the source table's column names")
        _sql_text(column, "a filter column")
        for v in value if isinstance(value, list) else [value]:
            _sql_text(v, "a filter value")
        col = sql.Identifier("s", column)
        if value is None:
            parts.append(sql.SQL("{} is null").format(col))
        elif isinstance(value, list):
            if not value or len(value) > 1000:
                raise InvalidRequestError("a filter list holds 1 to 1000 values")
            parts.append(sql.SQL("{}::text = any({})").format(col, sql.Literal([str(v) for v in value])))
        else:
            parts.append(sql.SQL("{}::text = {}").format(col, sql.Literal(str(value).lower() if isinstance(value, bool)
                                                                         else str(value))))
    return sql.SQL(" and ").join(parts).as_string(None)


async def _query(request: Request, query: str, params, name: str, filter_columns=()) -> list:
    """Runs as the caller's role, read-only, with a statement timeout, always rolled back, in a
    session of the gateway role (a member of exactly the roles that hold an API key, with no rights
    of its own): never in a session that could be more than the caller."""
    who = caller(request, "pgmind-api")
    if not who.role:
        raise PermissionDeniedError("searching needs a database role to search as",
                                    hint="use an API key (select ai.create_api_key('<role>')), or name the role "
                                         "in X-Pgmind-Caller with the server's token")
    timeout_ms = int(request.app.state.settings.search_timeout * 1000)
    try:
        # (pipelined: the statements between two checks go in one round trip; a fetch waits for its
        # own results, so every check is still read before the next step runs)
        async with request.app.state.search_pool.connection() as conn, conn.pipeline():
            async with conn.transaction(force_rollback=True):
                await conn.execute("set transaction read only")
                await conn.execute(f"set local statement_timeout = {timeout_ms}")
                for statement in GATEWAY_PLANNER:
                    await conn.execute(statement)
                # (checked at use: a role made a superuser, or a member of one, after its key was issued
                # is refused)
                may, = await (await conn.execute("select ai_internal._may_act_as(%s)", (who.role,))).fetchone()
                if not may:
                    raise PermissionDeniedError(f"the model server cannot search as role {who.role}",
                                                hint="search with an API key of a role that is neither a superuser "
                                                     "nor a member of one (ai.create_api_key); if yours is such a "
                                                     "key, another key's role has joined a superuser: an "
                                                     "administrator runs pgmind install to drop it")
                await conn.execute(sql.SQL("set local role {}").format(sql.Identifier(who.role)))
                # the tables are locked before they are checked, so the owner cannot turn them into
                # something that runs its code (row security, rules) between the check and the search
                store, source, readable = await (await conn.execute(
                    "select t.store, t.source::text, has_table_privilege(t.source, 'select') "
                    "from ai_internal._search_target(%s, current_user) t", (name,))).fetchone()
                await conn.execute(sql.SQL("lock table {} in access share mode").format(
                    sql.SQL(", ").join([sql.SQL(store), sql.SQL(source)] if readable else [sql.SQL(store)])))
                # row security on the source reaches the chunks (ai._search_run reads the source as
                # the caller), but its policies are the owner's code, which must not run in this
                # session (its session user is the gateway, not the caller); a filter's column of a
                # type of the owner's own would run its casts (the owner's functions)
                rls, owned_types, not_table = await (await conn.execute(
                    """select c.relrowsecurity,
                              exists (select 1 from pg_attribute a where a.attrelid = c.oid and a.atttypid >= 16384
                                      and a.attname = any(%s) and not a.attisdropped),
                              c.relkind not in ('r', 'p') or c.relhasrules or not ai_internal._planner_safe(c.oid)
                       from pg_class c where c.oid = %s::regclass""",
                    (list(filter_columns), source))).fetchone()     # (the query itself checks the target again)
                # (a view's functions, a rule's, or an index's or statistics object's — which the planner
                # runs: ai_internal._planner_safe — would run here as the caller)
                if not_table:
                    raise PermissionDeniedError(f'the source of knowledge base "{name}" is no longer a plain table',
                                                hint="search it from SQL as your own role, or re-create the "
                                                     "vectorizer over a table")
                if rls:
                    raise PermissionDeniedError(f'knowledge base "{name}" keeps its source table\'s row security, '
                                                "which HTTP search does not run",
                                                hint="call ai.search / ai.rag from SQL as your own role")
                if owned_types:
                    raise InvalidRequestError("filters over HTTP work on columns of built-in types only",
                                              hint="filter on text, number, boolean or date columns, or call "
                                                   "ai.search from SQL")
                return await (await conn.execute(query, params)).fetchall()
    except psycopg.Error as e:
        raise from_sql_error(e) from None


@router.post("/v1/search")
async def search(request: Request, body: SearchRequest):
    for where, text in (("name", body.name), ("query", body.query), ("mode", body.mode)):
        _sql_text(text, where)
    rows = await _query(request, "select key, chunk_seq, chunk, score, similarity, vector_rank, keyword_rank, "
                                  "chunk_score, lists from ai.search(%s, %s, k => %s, mode => %s, filter => %s, "
                                  "expand => %s, chunks_per_source => %s)",
                        (body.name, body.query, body.k, body.mode, filter_sql(body.filter), body.expand,
                         body.chunks_per_source), body.name, list(body.filter or ()))
    keys = ("key", "chunk_seq", "chunk", "score", "similarity", "vector_rank", "keyword_rank", "chunk_score", "lists")
    return json_response({"results": [dict(zip(keys, r)) for r in rows]})


@router.post("/v1/ask")
async def ask(request: Request, body: AskRequest):
    for where, text in (("name", body.name), ("question", body.question), ("model", body.model)):
        _sql_text(text, where)
    (row,) = await _query(request, "select ai.rag_prompt(%s, %s, %s, %s, %s, %s)",
                          (body.name, body.question, body.k, body.model, body.threshold, filter_sql(body.filter)),
                          body.name, list(body.filter or ()))
    prompt = row[0]
    svc, who = service(request), caller(request, "pgmind-api")
    if not prompt["answered"]:
        result = {"answer": prompt["answer"], "sources": [], "answered": False, "usage": None, "confidence": None,
                  "decline": prompt.get("decline")}
        if not body.stream:
            return json_response(result)

        async def declined():
            yield _event({"type": "delta", "content": prompt["answer"]})
            yield _event({"type": "done", **result})
        return StreamingResponse(declined(), media_type="text/event-stream")
    if not body.stream:
        spec, r = await svc.chat(prompt["model"], prompt["messages"], prompt["options"], who)
        return json_response({"answer": r.content, **checked_reply(body.question, r.content, prompt),
                              "sources": prompt["sources"], "answered": True, "model": spec.model_id,
                              "usage": {"prompt_tokens": r.input_tokens, "completion_tokens": r.output_tokens}})
    spec, deltas = await svc.chat_stream(prompt["model"], prompt["messages"], prompt["options"], who)

    async def events():
        parts, usage = [], None
        try:
            async for d in deltas:
                if d.content:
                    parts.append(d.content)
                    yield _event({"type": "delta", "content": d.content})
                if d.finish_reason:
                    usage = {"prompt_tokens": d.input_tokens, "completion_tokens": d.output_tokens}
        except PgmindError as e:
            yield _event({"type": "error", **e.to_dict()["error"]})
            return
        # (the deltas were the model's draft; "done" carries the answer checked against the sources)
        answer = "".join(parts)
        yield _event({"type": "done", "answer": answer, **checked_reply(body.question, answer, prompt),
                      "sources": prompt["sources"], "answered": True, "model": spec.model_id, "usage": usage})
    return StreamingResponse(events(), media_type="text/event-stream")


def _event(obj: dict) -> str:
    return "data: " + json.dumps(obj, ensure_ascii=False) + "\n\n"
