"""Any OpenAI-compatible service: OpenAI, Ollama, vLLM, llama.cpp server, DashScope compatible mode."""
from __future__ import annotations

from typing import AsyncIterator

import numpy as np

from .base import ChatDelta, ChatResult, Embeddings, RemoteChatModel, RemoteEmbeddingModel
from .spec import ModelSpec
from .transport import Endpoint, Transport, field


class _OpenAIBase:
    def __init__(self, spec: ModelSpec, transport: Transport, timeout: float, max_retries: int):
        self.spec, self.transport = spec, transport
        self.base = (spec.url or "https://api.openai.com/v1").rstrip("/")
        self.timeout = spec.timeout or timeout
        self.max_retries = max_retries

    def endpoint(self, path: str) -> Endpoint:
        return Endpoint(self.base + path, {**self.spec.auth_headers(self.transport.secret_env), **self.spec.options.get("headers", {})},
                        self.timeout, self.max_retries)


class OpenAIEmbedding(_OpenAIBase, RemoteEmbeddingModel):
    async def embed(self, texts, input_type="query", truncate=False) -> Embeddings:
        ep = self.endpoint("/embeddings")
        body = {"model": self.spec.model_name, "input": texts, "encoding_format": "float"}
        if self.spec.options.get("dimensions") and self.spec.options.get("send_dimensions", False):
            body["dimensions"] = self.spec.options["dimensions"]
        data = await self.transport.post_json(ep, body)
        items = field(data, "data", url=ep.url)
        if not isinstance(items, list) or len(items) != len(texts):
            from ..errors import ProviderResponseError
            raise ProviderResponseError(f"{ep.url} returned {len(items) if isinstance(items, list) else 'no'} "
                                        f"embeddings for {len(texts)} inputs")
        items = sorted(items, key=lambda d: d.get("index", 0))
        vectors = np.asarray([field(d, "embedding", url=ep.url) for d in items], dtype=np.float32)
        usage = data.get("usage") or {}
        return Embeddings(vectors, int(usage.get("prompt_tokens") or usage.get("total_tokens") or 0))


class OpenAIChat(_OpenAIBase, RemoteChatModel):
    def _body(self, messages, options, stream):
        body = {"model": self.spec.model_name, "messages": messages, **options, "stream": stream}
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    async def chat(self, messages, options) -> ChatResult:
        ep = self.endpoint("/chat/completions")
        data = await self.transport.post_json(ep, self._body(messages, options, False))
        choice = field(data, "choices", 0, url=ep.url)
        usage = data.get("usage") or {}
        return ChatResult(field(choice, "message", "content", url=ep.url) or "", choice.get("finish_reason") or "stop",
                          int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))

    async def stream(self, messages, options) -> AsyncIterator[ChatDelta]:
        ep = self.endpoint("/chat/completions")
        finish, usage = "stop", {}
        async for event in self.transport.post_sse(ep, self._body(messages, options, True)):
            if event.get("usage"):
                usage = event["usage"]
            for choice in event.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    yield ChatDelta(piece)
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
        yield ChatDelta("", finish, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
