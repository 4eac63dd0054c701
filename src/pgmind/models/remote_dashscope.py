"""Alibaba DashScope's native APIs (Qwen): text-generation and text-embedding, in the request and
response shapes of its documentation (input.messages / parameters; output.choices[0].message,
output.embeddings[i].embedding, usage)."""
from __future__ import annotations

from typing import AsyncIterator

import numpy as np

from ..errors import ProviderResponseError
from .base import ChatDelta, ChatResult, Embeddings, RemoteChatModel, RemoteEmbeddingModel
from .spec import ModelSpec
from .transport import Endpoint, Transport, field

GENERATION = "/services/aigc/text-generation/generation"
EMBEDDING = "/services/embeddings/text-embedding/text-embedding"


class _DashScopeBase:
    def __init__(self, spec: ModelSpec, transport: Transport, timeout: float, max_retries: int):
        self.spec, self.transport = spec, transport
        self.base = (spec.url or "https://dashscope.aliyuncs.com/api/v1").rstrip("/")
        self.timeout = spec.timeout or timeout
        self.max_retries = max_retries

    def endpoint(self, path: str, stream: bool = False) -> Endpoint:
        headers = dict(self.spec.auth_headers(self.transport.secret_env))
        if stream:
            headers["X-DashScope-SSE"] = "enable"
        return Endpoint(self.base + path, headers, self.timeout, self.max_retries)


class DashScopeEmbedding(_DashScopeBase, RemoteEmbeddingModel):
    async def embed(self, texts, input_type="query", truncate=False) -> Embeddings:
        ep = self.endpoint(EMBEDDING)
        params = {"text_type": "query" if input_type == "query" else "document"}
        if self.spec.options.get("dimensions") and self.spec.options.get("send_dimensions", False):
            params["dimension"] = self.spec.options["dimensions"]
        data = await self.transport.post_json(ep, {"model": self.spec.model_name, "input": {"texts": texts},
                                                   "parameters": params})
        items = field(data, "output", "embeddings", url=ep.url)
        if not isinstance(items, list) or len(items) != len(texts):
            raise ProviderResponseError(f"{ep.url} returned {len(items) if isinstance(items, list) else 'no'} "
                                        f"embeddings for {len(texts)} inputs")
        items = sorted(items, key=lambda d: d.get("text_index", 0))
        vectors = np.asarray([field(d, "embedding", url=ep.url) for d in items], dtype=np.float32)
        return Embeddings(vectors, int((data.get("usage") or {}).get("total_tokens") or 0))


def _parameters(options: dict, stream: bool) -> dict:
    params = {"result_format": "message"}
    for key in ("temperature", "top_p", "top_k", "seed", "stop", "max_tokens", "presence_penalty"):
        if key in options:
            params[key] = options[key]
    if "repeat_penalty" in options:
        params["repetition_penalty"] = options["repeat_penalty"]
    if stream:
        params["incremental_output"] = True
    return params


class DashScopeChat(_DashScopeBase, RemoteChatModel):
    async def chat(self, messages, options) -> ChatResult:
        ep = self.endpoint(GENERATION)
        data = await self.transport.post_json(ep, {"model": self.spec.model_name, "input": {"messages": messages},
                                                   "parameters": _parameters(options, False)})
        choice = field(data, "output", "choices", 0, url=ep.url)
        usage = data.get("usage") or {}
        return ChatResult(field(choice, "message", "content", url=ep.url) or "", choice.get("finish_reason") or "stop",
                          int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0))

    async def stream(self, messages, options) -> AsyncIterator[ChatDelta]:
        ep = self.endpoint(GENERATION, stream=True)
        finish, usage = "stop", {}
        async for event in self.transport.post_sse(ep, {"model": self.spec.model_name,
                                                        "input": {"messages": messages},
                                                        "parameters": _parameters(options, True)}):
            usage = event.get("usage") or usage
            for choice in (event.get("output") or {}).get("choices") or []:
                piece = (choice.get("message") or {}).get("content")
                if piece:
                    yield ChatDelta(piece)
                if choice.get("finish_reason") not in (None, "null"):
                    finish = choice["finish_reason"]
        yield ChatDelta("", finish, int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0))
