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

from ..db.connection import from_sql_error
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
        # One round trip (pipelined): a statement that fails aborts the transaction, so the query runs
        # only after ai_internal._gateway_search has acted as the role, locked the knowledge base's
        # tables and checked them (the checks, their messages and hints are there).
        async with request.app.state.search_pool.connection() as conn, conn.pipeline():
            async with conn.transaction(force_rollback=True):
                await conn.execute("set transaction read only")
                await conn.execute(f"set local statement_timeout = {timeout_ms}")
                await conn.execute("select ai_internal._gateway_search(%s, %s, %s)",
                                   (who.role, name, list(filter_columns)))
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
