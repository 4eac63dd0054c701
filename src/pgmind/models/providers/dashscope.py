"""Alibaba DashScope's native APIs (Qwen): text-generation, text-embedding and multimodal-embedding,
in the request and response shapes of its documentation (input.messages / parameters;
output.choices[0].message; output.embeddings[i].embedding; input.contents [{"text"} | {"image"}])."""
from __future__ import annotations

from typing import AsyncIterator

import numpy as np

from ...errors import ProviderResponseError
from ...images.codec import data_uri
from ..types import ChatDelta, ChatResult, Embeddings
from .base import Provider
from .transport import field

GENERATION = "/services/aigc/text-generation/generation"
EMBEDDING = "/services/embeddings/text-embedding/text-embedding"
MULTIMODAL = "/services/embeddings/multimodal-embedding/multimodal-embedding"


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


class DashScopeProvider(Provider):
    name = "dashscope"
    description = "Alibaba Cloud DashScope (Qwen): native text-generation, text-embedding, multimodal-embedding"
    default_url = "https://dashscope.aliyuncs.com/api/v1"
    call_paths = {"embedding": EMBEDDING, "chat": GENERATION, "image_embedding": MULTIMODAL}

    def _stream_endpoint(self):
        return self.endpoint(GENERATION, {"X-DashScope-SSE": "enable"})

    async def embed(self, texts, input_type="query", truncate=False) -> Embeddings:
        if self.spec.model_type == "image_embedding":
            return await self._multimodal([{"text": t} for t in texts])
        ep = self.endpoint(EMBEDDING)
        params = {"text_type": "query" if input_type == "query" else "document"}
        if self.spec.options.get("dimensions") and self.spec.options.get("send_dimensions", False):
            params["dimension"] = self.spec.options["dimensions"]
        data = await self.context.transport.post_json(ep, {"model": self.spec.model_name, "input": {"texts": texts},
                                                       "parameters": params})
        return self._vectors(ep, data, len(texts), "text_index")

    async def has_text_tower(self) -> bool:
        return self.spec.model_type == "image_embedding"

    async def embed_images(self, images) -> Embeddings:
        return await self._multimodal([{"image": data_uri(img)} for img in images])

    async def _multimodal(self, contents) -> Embeddings:
        ep = self.endpoint(MULTIMODAL)
        data = await self.context.transport.post_json(ep, {"model": self.spec.model_name, "input": {"contents": contents},
                                                       "parameters": {}})
        return self._vectors(ep, data, len(contents), "index", normalise=True)

    @staticmethod
    def _vectors(ep, data, n, index_key, normalise=False) -> Embeddings:
        items = field(data, "output", "embeddings", url=ep.url)
        if not isinstance(items, list) or len(items) != n:
            raise ProviderResponseError(f"{ep.url} returned {len(items) if isinstance(items, list) else 'no'} "
                                        f"embeddings for {n} inputs")
        items = sorted(items, key=lambda d: d.get(index_key, 0))
        vectors = np.asarray([field(d, "embedding", url=ep.url) for d in items], dtype=np.float32)
        if normalise:     # multimodal vectors are compared by cosine, like every image model's here
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.where(norms == 0, 1, norms)
        usage = data.get("usage") or {}
        return Embeddings(vectors, int(usage.get("total_tokens") or usage.get("input_tokens") or 0))

    async def chat(self, messages, options, cancel=None) -> ChatResult:
        ep = self.endpoint(GENERATION)
        data = await self.context.transport.post_json(ep, {"model": self.spec.model_name, "input": {"messages": messages},
                                                       "parameters": _parameters(options, False)})
        choice = field(data, "output", "choices", 0, url=ep.url)
        usage = data.get("usage") or {}
        return ChatResult(field(choice, "message", "content", url=ep.url) or "", choice.get("finish_reason") or "stop",
                          int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0))

    async def stream(self, messages, options) -> AsyncIterator[ChatDelta]:
        ep = self._stream_endpoint()
        finish, usage = "stop", {}
        async for event in self.context.transport.post_sse(ep, {"model": self.spec.model_name,
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
