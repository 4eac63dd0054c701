"""The OpenAI protocol: /v1/embeddings, /v1/chat/completions (streaming too), /v1/models.
The official openai SDK works against it by changing only base_url and api_key."""
from __future__ import annotations

import json
import time
import uuid

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from ..errors import InvalidRequestError, PgmindError
from .deps import authenticate, caller, json_body, json_response, service, while_connected
from .service import vectors_to_base64

router = APIRouter(dependencies=[Depends(authenticate)])


def _texts(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    if isinstance(value, list) and value and all(isinstance(v, (int, list)) for v in value):
        raise InvalidRequestError("token-id input is not supported", hint="send the texts themselves")
    raise InvalidRequestError("input must be a text or a non-empty list of texts")


@router.post("/v1/embeddings", tags=["openai"])
async def embeddings(request: Request):
    body = await json_body(request)
    svc = service(request)
    texts = _texts(body.get("input"))
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise InvalidRequestError(f"unknown encoding_format {fmt!r}", hint="use float or base64")
    spec, result = await svc.embed(body.get("model"), texts, caller(request, "openai-api"),
                                   body.get("input_type") or "query", bool(body.get("truncate", False)))
    vectors = result.vectors
    dims = body.get("dimensions")
    if dims is not None:
        if not isinstance(dims, int) or not 0 < dims <= vectors.shape[1]:
            raise InvalidRequestError(f"dimensions must be between 1 and {vectors.shape[1]}")
        vectors = vectors[:, :dims]
    values = vectors_to_base64(vectors) if fmt == "base64" else vectors.tolist()
    return json_response({"object": "list", "model": spec.model_id,
                          "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(values)],
                          "usage": {"prompt_tokens": result.input_tokens, "total_tokens": result.input_tokens}})


def _options(body: dict) -> dict:
    if body.get("n", 1) != 1:
        raise InvalidRequestError("only n=1 is supported")
    return {k: v for k, v in body.items() if k not in ("model", "messages", "stream", "stream_options", "n", "user")}


@router.post("/v1/chat/completions", tags=["openai"])
async def chat_completions(request: Request):
    body = await json_body(request)
    svc = service(request)
    who = caller(request, "openai-api")
    cid, created = "chatcmpl-" + uuid.uuid4().hex[:24], int(time.time())
    if not body.get("stream"):
        spec, result = await while_connected(
            request, lambda cancel: svc.chat(body.get("model"), body.get("messages"), _options(body), who, cancel))
        return {"id": cid, "object": "chat.completion", "created": created, "model": spec.model_id,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": result.content},
                             "finish_reason": result.finish_reason, "logprobs": None}],
                "usage": {"prompt_tokens": result.input_tokens, "completion_tokens": result.output_tokens,
                          "total_tokens": result.input_tokens + result.output_tokens}}
    spec, deltas = await svc.chat_stream(body.get("model"), body.get("messages"), _options(body), who)
    stream_options = body.get("stream_options") or {}
    if not isinstance(stream_options, dict):
        raise InvalidRequestError("stream_options must be an object", hint='e.g. {"include_usage": true}')
    include_usage = bool(stream_options.get("include_usage"))

    def chunk(delta: dict, finish=None, usage=None) -> str:
        obj = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": spec.model_id,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
        if usage is not None:
            obj["usage"], obj["choices"] = usage, []
        return "data: " + json.dumps(obj, ensure_ascii=False) + "\n\n"

    async def events():
        yield chunk({"role": "assistant", "content": ""})
        try:
            async for d in deltas:
                if d.content:
                    yield chunk({"content": d.content})
                if d.finish_reason:
                    yield chunk({}, d.finish_reason)
                    if include_usage:
                        yield chunk({}, usage={"prompt_tokens": d.input_tokens or 0,
                                               "completion_tokens": d.output_tokens or 0,
                                               "total_tokens": (d.input_tokens or 0) + (d.output_tokens or 0)})
        except PgmindError as e:  # headers are sent: report the error as an event, as OpenAI does
            yield "data: " + json.dumps(e.to_dict(), ensure_ascii=False) + "\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


@router.get("/v1/models", tags=["openai"])
async def list_models(request: Request):
    specs = await service(request).registry.list()
    return {"object": "list", "data": [
        {"id": s.model_id, "object": "model", "created": 0, "owned_by": s.provider,
         "type": s.model_type, "dimensions": s.dimensions,
         # what a client (or another pgmind's vectorizer) needs to size its chunks
         "max_tokens": s.options.get("max_tokens")} for s in specs]}
