"""The OpenAI protocol: /v1/embeddings, /v1/chat/completions (streaming too), /v1/models.
The official openai SDK works against it by changing only base_url and api_key."""
from __future__ import annotations

import json
import time
import uuid

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from ..errors import InvalidRequestError, PgmindError, UnknownModelError
from ..models.types import chat_completion
from . import token_ids
from .deps import authenticate, caller, json_body, service, vectors_response, while_connected
from .service import vectors_to_base64

router = APIRouter(dependencies=[Depends(authenticate)])


def _texts(request: Request, value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    if isinstance(value, list) and value and all(isinstance(v, (int, list)) and not isinstance(v, bool) for v in value):
        # what LangChain's and LlamaIndex's OpenAI embeddings send by default: cl100k_base token ids
        return token_ids.decode(value, str(request.app.state.settings.models_dir))
    raise InvalidRequestError("input must be a text, a non-empty list of texts, or lists of token ids",
                              hint='e.g. {"input": ["first text", "second text"]}')


@router.post("/v1/embeddings", tags=["openai"])
async def embeddings(request: Request):
    body = await json_body(request)
    svc = service(request)
    texts = _texts(request, body.get("input"))
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise InvalidRequestError(f"unknown encoding_format {fmt!r}", hint="use float or base64")
    truncate = body.get("truncate", True)     # a client cannot know a local model's limit
    if not isinstance(truncate, bool):
        raise InvalidRequestError("truncate must be true or false",
                                  hint="true (the default) cuts an over-long input at the model's limit")
    spec, result = await svc.embed(body.get("model"), texts, caller(request, "openai-api"),
                                   body.get("input_type") or "query", truncate, body.get("dimensions"))
    vectors = result.vectors
    # (float: the numpy rows themselves, written by vectors_response)
    values = vectors_to_base64(vectors) if fmt == "base64" else list(np.ascontiguousarray(vectors, dtype="<f4"))
    return vectors_response({"object": "list", "model": spec.model_id,
                          "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(values)],
                          "usage": {"prompt_tokens": result.input_tokens, "total_tokens": result.input_tokens}})


# what OpenAI's clients send that changes nothing in the answer: accepted and not used
IGNORED = frozenset({"user", "store", "metadata", "service_tier", "parallel_tool_calls", "safety_identifier",
                     "prompt_cache_key"})


def chat_options(body: dict) -> dict:
    """The generation options of an OpenAI request, in pgmind's names (models.validation checks them
    for every protocol alike): the request's own fields and what OpenAI's clients send that changes
    nothing are left out; OpenAI's older names become the current ones (max_completion_tokens is
    max_tokens; functions and function_call, the legacy shape of tools, are tools and tool_choice)."""
    if body.get("n", 1) not in (1, None):
        raise InvalidRequestError("only n=1 is supported", hint="send n requests, each with a different seed")
    options = {k: v for k, v in body.items() if k not in ("model", "messages", "prompt", "stream", "stream_options",
                                                          "n", "echo", "suffix", "best_of") and k not in IGNORED}
    newer = options.pop("max_completion_tokens", None)
    if newer is not None and "max_tokens" not in options:
        options["max_tokens"] = newer
    functions, call = options.pop("functions", None), options.pop("function_call", None)
    if functions is not None:
        if options.get("tools") is not None:
            raise InvalidRequestError("give tools or functions, not both")
        options["tools"] = [{"type": "function", "function": f} for f in functions] \
            if isinstance(functions, list) else functions
        if call is not None:
            options["tool_choice"] = call if isinstance(call, str) else {"type": "function", "function": call}
    return options


def _stream_tool_calls(calls: list[dict], first: int) -> list[dict]:
    """Tool calls as stream deltas: each whole, with its index (clients join deltas by index)."""
    return [{"index": first + i, **c} if "index" not in c else c for i, c in enumerate(calls)]


@router.post("/v1/chat/completions", tags=["openai"])
async def chat_completions(request: Request):
    body = await json_body(request)
    svc = service(request)
    who = caller(request, "openai-api")
    cid, created = "chatcmpl-" + uuid.uuid4().hex[:24], int(time.time())
    if not body.get("stream"):
        spec, result = await while_connected(
            request, lambda cancel: svc.chat(body.get("model"), body.get("messages"), chat_options(body), who, cancel))
        return {"id": cid, "object": "chat.completion", "created": created, **chat_completion(spec.model_id, result)}
    spec, deltas = await svc.chat_stream(body.get("model"), body.get("messages"), chat_options(body), who)
    stream_options = body.get("stream_options") or {}
    if not isinstance(stream_options, dict):
        raise InvalidRequestError("stream_options must be an object", hint='e.g. {"include_usage": true}')
    include_usage = bool(stream_options.get("include_usage"))

    def chunk(delta: dict, finish=None, usage=None, logprobs=None) -> str:
        obj = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": spec.model_id,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                            "logprobs": {"content": logprobs} if logprobs is not None else None}]}
        if usage is not None:
            obj["usage"], obj["choices"] = usage, []
        return "data: " + json.dumps(obj, ensure_ascii=False) + "\n\n"

    async def events():
        yield chunk({"role": "assistant", "content": ""})
        calls = 0
        try:
            async for d in deltas:
                if d.content or d.logprobs:
                    yield chunk({"content": d.content}, logprobs=d.logprobs)
                if d.tool_calls:
                    yield chunk({"tool_calls": _stream_tool_calls(d.tool_calls, calls)})
                    calls += len(d.tool_calls)
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
    registry, who = service(request).registry, caller(request, "openai")
    # a role sees the models it may use (ai.models says the same); the operator sees them all
    specs = [s for s in await registry.list() if who.role is None or await registry.can_use(who.role, s.model_id)]
    return {"object": "list", "data": [
        {"id": s.model_id, "object": "model", "created": 0, "owned_by": s.provider,
         "type": s.model_type, "dimensions": s.dimensions,
         # what a client (or another pgmind's vectorizer) needs to size its chunks
         "max_tokens": s.options.get("max_tokens")} for s in specs]}


@router.get("/v1/models/{model_id:path}", tags=["openai"])
async def retrieve_model(request: Request, model_id: str):
    registry, who = service(request).registry, caller(request, "openai")
    s = await registry.get(model_id)      # (404 in OpenAI's shape if not registered)
    if who.role is not None and not await registry.can_use(who.role, model_id):
        raise UnknownModelError(f'model "{model_id}" is not registered')   # (as if absent: no probing)
    return {"id": s.model_id, "object": "model", "created": 0, "owned_by": s.provider, "type": s.model_type,
            "dimensions": s.dimensions, "max_tokens": s.options.get("max_tokens")}


def _prompt(request: Request, body: dict) -> str:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        prompt = token_ids.decode(prompt, str(request.app.state.settings.models_dir))[0]
    if not isinstance(prompt, str):
        raise InvalidRequestError("prompt must be one text (or one list of token ids)",
                                  hint="send several prompts as several requests")
    for key in ("echo", "suffix"):
        if body.get(key):
            raise InvalidRequestError(f"{key} is not supported", hint=f"leave {key} out")
    if body.get("best_of") not in (None, 1):
        raise InvalidRequestError("best_of is not supported", hint="leave best_of out")
    return prompt


def _completion_options(body: dict) -> dict:
    options = chat_options(body)
    n = options.pop("logprobs", None)      # the completions API's logprobs is a count
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 5:
            raise InvalidRequestError("logprobs must be a whole number from 0 to 5")
        options.update(logprobs=True, top_logprobs=n)
    return options


def _completion_logprobs(entries: list[dict] | None, start: int = 0) -> dict | None:
    if entries is None:
        return None
    offsets, at = [], start
    for e in entries:
        offsets.append(at)
        at += len(e["token"])
    return {"tokens": [e["token"] for e in entries], "token_logprobs": [e["logprob"] for e in entries],
            "top_logprobs": [{t["token"]: t["logprob"] for t in e["top_logprobs"]} for e in entries],
            "text_offset": offsets}


@router.post("/v1/completions", tags=["openai"])
async def completions(request: Request):
    """The legacy completions API (LlamaIndex's OpenAILike calls it by default).  As in Ollama, the
    prompt is the user's turn of the model's chat template: these are instruction-tuned models."""
    body = await json_body(request)
    svc, who = service(request), caller(request, "openai-api")
    messages = [{"role": "user", "content": _prompt(request, body)}]
    options = _completion_options(body)
    cid, created = "cmpl-" + uuid.uuid4().hex[:24], int(time.time())
    if not body.get("stream"):
        spec, result = await while_connected(request, lambda cancel: svc.chat(body.get("model"), messages, options,
                                                                              who, cancel))
        return {"id": cid, "object": "text_completion", "created": created, "model": spec.model_id,
                "choices": [{"index": 0, "text": result.content, "finish_reason": result.finish_reason,
                             "logprobs": _completion_logprobs(result.logprobs)}],
                "usage": {"prompt_tokens": result.input_tokens, "completion_tokens": result.output_tokens,
                          "total_tokens": result.input_tokens + result.output_tokens}}
    spec, deltas = await svc.chat_stream(body.get("model"), messages, options, who)

    def chunk(text: str, finish=None, logprobs=None, usage=None) -> str:
        obj = {"id": cid, "object": "text_completion", "created": created, "model": spec.model_id,
               "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": logprobs}]}
        if usage is not None:
            obj["usage"], obj["choices"] = usage, []
        return "data: " + json.dumps(obj, ensure_ascii=False) + "\n\n"

    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    async def events():
        at = 0
        try:
            async for d in deltas:
                if d.content or d.logprobs:
                    yield chunk(d.content, logprobs=_completion_logprobs(d.logprobs, at))
                    at += len(d.content)
                if d.finish_reason:
                    yield chunk("", d.finish_reason)
                    if include_usage:
                        yield chunk("", usage={"prompt_tokens": d.input_tokens or 0,
                                               "completion_tokens": d.output_tokens or 0,
                                               "total_tokens": (d.input_tokens or 0) + (d.output_tokens or 0)})
        except PgmindError as e:
            yield "data: " + json.dumps(e.to_dict(), ensure_ascii=False) + "\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")
