"""Any OpenAI-compatible service: OpenAI, Ollama, vLLM, llama.cpp server, DashScope compatible mode."""
from __future__ import annotations

from typing import AsyncIterator

import numpy as np

from ...errors import ProviderResponseError
from ..types import ChatDelta, ChatResult, Embeddings
from .base import Provider
from .transport import field


class OpenAIProvider(Provider):
    name = "openai"
    chat_features = frozenset({"tools", "response_format", "logprobs", "logit_bias", "images"})  # passed on
    description = "OpenAI and every OpenAI-compatible server (vLLM, Ollama, llama.cpp, DashScope compatible mode)"
    default_url = "https://api.openai.com/v1"
    call_paths = {"embedding": "/embeddings", "chat": "/chat/completions", "rerank": "/rerank"}

    async def embed(self, texts, input_type="query", truncate=False) -> Embeddings:
        ep = self.endpoint("/embeddings")
        body = {"model": self.spec.model_name, "input": texts, "encoding_format": "float"}
        if self.spec.options.get("dimensions") and self.spec.options.get("send_dimensions", False):
            body["dimensions"] = self.spec.options["dimensions"]
        data = await self.context.transport.post_json(ep, body)
        items = field(data, "data", url=ep.url)
        if not isinstance(items, list) or len(items) != len(texts):
            raise ProviderResponseError(f"{ep.url} returned {len(items) if isinstance(items, list) else 'no'} "
                                        f"embeddings for {len(texts)} inputs")
        items = sorted(items, key=lambda d: d.get("index", 0))
        vectors = np.asarray([field(d, "embedding", url=ep.url) for d in items], dtype=np.float32)
        usage = data.get("usage") or {}
        return Embeddings(vectors, int(usage.get("prompt_tokens") or usage.get("total_tokens") or 0))

    def _body(self, messages, options, stream):
        body = {"model": self.spec.model_name, "messages": messages, **options, "stream": stream}
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    async def chat(self, messages, options, cancel=None) -> ChatResult:
        ep = self.endpoint("/chat/completions")
        data = await self.context.transport.post_json(ep, self._body(messages, options, False))
        choice = field(data, "choices", 0, url=ep.url)
        usage = data.get("usage") or {}
        message = field(choice, "message", url=ep.url)
        return ChatResult(message.get("content") or "", choice.get("finish_reason") or "stop",
                          int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0),
                          message.get("tool_calls") or None, (choice.get("logprobs") or {}).get("content"))

    async def stream(self, messages, options) -> AsyncIterator[ChatDelta]:
        ep = self.endpoint("/chat/completions")
        finish, usage = "stop", {}
        async for event in self.context.transport.post_sse(ep, self._body(messages, options, True)):
            if event.get("usage"):
                usage = event["usage"]
            for choice in event.get("choices") or []:
                delta = choice.get("delta") or {}
                logprobs = (choice.get("logprobs") or {}).get("content")
                if delta.get("content") or delta.get("tool_calls") or logprobs:
                    # (tool-call deltas pass through as the provider streams them, index and all)
                    yield ChatDelta(delta.get("content") or "", tool_calls=delta.get("tool_calls"), logprobs=logprobs)
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
        yield ChatDelta("", finish, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))

    async def rerank(self, query, documents) -> list[float]:
        ep = self.endpoint("/rerank")
        data = await self.context.transport.post_json(ep, {"model": self.spec.model_name, "query": query,
                                                       "documents": documents})
        scores = [0.0] * len(documents)
        for r in field(data, "results", url=ep.url):   # Cohere / Jina / vLLM shape
            scores[int(field(r, "index", url=ep.url))] = float(field(r, "relevance_score", url=ep.url))
        return scores
