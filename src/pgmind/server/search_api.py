"""Knowledge-base routes: /v1/search and /v1/ask (streaming with server-sent events).
Retrieval and the prompt come from SQL (ai.search, ai.rag_prompt), generation from the model hub."""
from __future__ import annotations

import json

import psycopg
from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from ..db.connection import from_sql_error
from ..errors import PgmindError
from .deps import authenticate, caller, json_response, service

router = APIRouter(dependencies=[Depends(authenticate)], tags=["knowledge bases"])


class SearchRequest(BaseModel):
    name: str = Field(description="The knowledge base (vectorizer) name.")
    query: str
    k: int = Field(10, ge=1, le=1000)
    mode: str = Field("hybrid", description="vector, keyword or hybrid")
    filter: str | None = Field(None, description="A SQL condition on the source table's columns.")


class AskRequest(BaseModel):
    name: str
    question: str
    k: int | None = Field(None, ge=1, le=100)
    model: str | None = Field(None, description="The chat model (default: the knowledge base's).")
    threshold: float | None = None
    filter: str | None = None
    stream: bool = False


async def _query(request: Request, query: str, params) -> list:
    try:
        async with request.app.state.pool.connection() as conn:
            return await (await conn.execute(query, params)).fetchall()
    except psycopg.Error as e:
        raise from_sql_error(e) from None


@router.post("/v1/search")
async def search(request: Request, body: SearchRequest):
    rows = await _query(request, "select key, chunk_seq, chunk, score, similarity, vector_rank, keyword_rank "
                                  "from ai.search(%s, %s, k => %s, mode => %s, filter => %s)",
                        (body.name, body.query, body.k, body.mode, body.filter))
    keys = ("key", "chunk_seq", "chunk", "score", "similarity", "vector_rank", "keyword_rank")
    return json_response({"results": [dict(zip(keys, r)) for r in rows]})


@router.post("/v1/ask")
async def ask(request: Request, body: AskRequest):
    (row,) = await _query(request, "select ai.rag_prompt(%s, %s, %s, %s, %s, %s)",
                          (body.name, body.question, body.k, body.model, body.threshold, body.filter))
    prompt = row[0]
    svc, who = service(request), caller(request, "pgmind-api")
    if not prompt["answered"]:
        result = {"answer": prompt["answer"], "sources": [], "answered": False, "usage": None}
        if not body.stream:
            return json_response(result)

        async def declined():
            yield _event({"type": "delta", "content": prompt["answer"]})
            yield _event({"type": "done", **result})
        return StreamingResponse(declined(), media_type="text/event-stream")
    if not body.stream:
        spec, r = await svc.chat(prompt["model"], prompt["messages"], prompt["options"], who)
        return json_response({"answer": r.content, "sources": prompt["sources"], "answered": True, "model": spec.model_id,
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
        yield _event({"type": "done", "answer": "".join(parts), "sources": prompt["sources"], "answered": True,
                      "model": spec.model_id, "usage": usage})
    return StreamingResponse(events(), media_type="text/event-stream")


def _event(obj: dict) -> str:
    return "data: " + json.dumps(obj, ensure_ascii=False) + "\n\n"
