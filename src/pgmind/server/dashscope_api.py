"""DashScope's native protocol: text-generation and text-embedding, so the dashscope SDK
(Generation.call, TextEmbedding.call) works against local models by changing only the base URL."""
from __future__ import annotations

import json
import uuid

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from ..errors import InvalidRequestError, PgmindError
from .deps import authenticate, caller, json_body, service, vectors_response

router = APIRouter(dependencies=[Depends(authenticate)])


@router.post("/api/v1/services/embeddings/text-embedding/text-embedding", tags=["dashscope"])
async def text_embedding(request: Request):
    body = await json_body(request)
    texts = (body.get("input") or {}).get("texts") if isinstance(body.get("input"), dict) else None
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise InvalidRequestError("input.texts must be a non-empty list of texts")
    params = _parameters(body)
    truncate = params.get("truncate", True)     # DashScope cuts over-long texts too
    if not isinstance(truncate, bool):
        raise InvalidRequestError("parameters.truncate must be true or false")
    spec, result = await service(request).embed(body.get("model"), texts, caller(request, "dashscope-api"),
                                                params.get("text_type") or "document", truncate,
                                                params.get("dimension"))
    return vectors_response({"output": {"embeddings": [{"text_index": i, "embedding": v} for i, v in
                                                      enumerate(np.ascontiguousarray(result.vectors, dtype="<f4"))]},
                          "usage": {"total_tokens": result.input_tokens}, "request_id": str(uuid.uuid4())})


def _parameters(body: dict) -> dict:
    params = body.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidRequestError("parameters must be an object", hint='e.g. {"result_format": "message"}')
    return params


def _messages(body: dict) -> list:
    inp = body.get("input") or {}
    if not isinstance(inp, dict):
        raise InvalidRequestError("input must be an object with messages or prompt")
    if inp.get("messages"):
        return inp["messages"]
    if isinstance(inp.get("prompt"), str):
        return [{"role": "user", "content": inp["prompt"]}]
    raise InvalidRequestError("input.messages or input.prompt is required")


def _options(params: dict) -> dict:
    opts = {k: params[k] for k in ("temperature", "top_p", "top_k", "seed", "stop", "max_tokens", "presence_penalty")
            if params.get(k) is not None}
    if params.get("repetition_penalty") is not None:
        opts["repeat_penalty"] = params["repetition_penalty"]
    return opts


@router.post("/api/v1/services/aigc/text-generation/generation", tags=["dashscope"])
async def generation(request: Request):
    body = await json_body(request)
    params = _parameters(body)
    messages = _messages(body)       # (checks the input's shape before anything reads it)
    message_format = params.get("result_format") == "message" or bool(body["input"].get("messages"))
    rid = str(uuid.uuid4())
    svc, who = service(request), caller(request, "dashscope-api")
    stream = request.headers.get("x-dashscope-sse", "").lower() == "enable" or \
        "text/event-stream" in request.headers.get("accept", "")

    def output(text: str, finish: str) -> dict:
        if message_format:
            return {"choices": [{"finish_reason": finish, "message": {"role": "assistant", "content": text}}]}
        return {"text": text, "finish_reason": finish}

    if not stream:
        _, result = await svc.chat(body.get("model"), messages, _options(params), who)
        return {"output": output(result.content, result.finish_reason), "request_id": rid,
                "usage": {"input_tokens": result.input_tokens, "output_tokens": result.output_tokens,
                          "total_tokens": result.input_tokens + result.output_tokens}}

    _, deltas = await svc.chat_stream(body.get("model"), messages, _options(params), who)
    incremental = bool(params.get("incremental_output"))

    async def events():
        text, n = "", 0
        try:
            async for d in deltas:
                text += d.content
                if not d.content and not d.finish_reason:
                    continue
                n += 1
                usage = {"input_tokens": d.input_tokens or 0, "output_tokens": d.output_tokens or 0,
                         "total_tokens": (d.input_tokens or 0) + (d.output_tokens or 0)}
                event = {"output": output(d.content if incremental else text, d.finish_reason or "null"),
                         "usage": usage, "request_id": rid}
                yield f"id:{n}\nevent:result\n:HTTP_STATUS/200\ndata:{json.dumps(event, ensure_ascii=False)}\n\n"
        except PgmindError as e:
            err = {"code": e.error_type, "message": e.message, "request_id": rid}
            yield f"id:{n + 1}\nevent:error\n:HTTP_STATUS/{e.http_status}\ndata:{json.dumps(err, ensure_ascii=False)}\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")
