"""Runs registered models: finds each one's provider class (providers.PROVIDERS), and holds what
providers share — the HTTP transport to remote services and the local models, each loaded once
per process behind one dynamic batcher — and hands each provider a ProviderContext of those, not
itself.  The model server holds one hub; the vectorizer worker in the same process uses that same
hub (so a local model is in memory once)."""
from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import AsyncIterator

import numpy as np

from ..config import Settings
from ..errors import DimensionMismatchError, InvalidRequestError
from .local.batching import EmbeddingBatcher, Unbatched
from .local.embed_cache import EmbedCache
from .local.loader import load_identity
from .local.reply_cache import ReplyCache
from .providers import Provider, ProviderContext, provider_class
from .providers.transport import Transport
from .spec import ModelSpec
from .types import ChatDelta, ChatResult, Embeddings
from .validation import check_chat_features

EMBEDDING_TYPES = ("embedding", "image_embedding")


class ModelHub:
    def __init__(self, settings: Settings, transport: Transport | None = None, on_batch=None,
                 batching: bool = True):
        """``batching``: concurrent callers share forward passes (the model server); a hub with one
        caller (a standalone worker's) runs each call directly."""
        self.settings = settings
        self.embed_cache = EmbedCache(settings.embed_cache)
        self.reply_cache = ReplyCache()
        self.batching = batching
        self.transport = transport or Transport(secret_env=settings.secret_env_names)
        self._local: dict[tuple, object] = {}
        self._load_lock = threading.Lock()
        self._loader = ThreadPoolExecutor(max_workers=2, thread_name_prefix="load")
        self.chat_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="chat")
        # what providers get: not the hub, only what they use
        self.context = ProviderContext(settings, self.transport, self.local, self.chat_executor)
        self._on_batch = on_batch
        self._label_vectors: dict[tuple, object] = {}
        from ..images import codec
        codec.configure(settings.max_image_mb * 1024 * 1024, settings.max_image_pixels)

    def provider(self, spec: ModelSpec) -> Provider:
        return provider_class(spec.provider)(spec, self.context)

    # -- local models: loaded once per process ------------------------------------------------
    def local_model(self, spec: ModelSpec):
        """The loaded model (an embedding or image model behind its batcher); thread-safe."""
        key = load_identity(spec)
        if key in self._local:
            return self._local[key]
        with self._load_lock:
            if key not in self._local:
                from .local.loader import load
                model = load(spec, self.settings)
                if spec.model_type in EMBEDDING_TYPES and not self.batching:
                    model = Unbatched(model)
                elif spec.model_type in EMBEDDING_TYPES:
                    model = EmbeddingBatcher(
                        model, max_batch=self.settings.max_batch_size, wait_ms=self.settings.batch_wait_ms,
                        on_batch=(lambda n, m=spec.model_id: self._on_batch(m, n)) if self._on_batch else None)
                self._local[key] = model
            return self._local[key]

    async def local(self, spec: ModelSpec):
        key = load_identity(spec)
        if key in self._local:
            return self._local[key]
        return await asyncio.get_running_loop().run_in_executor(self._loader, self.local_model, spec)

    # -- operations: the model type is checked here, the provider does the rest ----------------
    @staticmethod
    def _need(spec: ModelSpec, types: tuple[str, ...], what: str) -> None:
        if spec.model_type not in types:
            raise InvalidRequestError(f"model {spec.model_id} is a {spec.model_type} model, not {what}",
                                      hint="pick a model of the right type from ai.models")

    async def embed(self, spec: ModelSpec, texts: list[str], input_type: str = "query",
                    truncate: bool = False) -> Embeddings:
        self._need(spec, EMBEDDING_TYPES, "an embedding model")
        for i, t in enumerate(texts):
            if isinstance(t, str) and not t.strip():
                raise InvalidRequestError(f"input {i} is empty", hint="pass NULL to get NULL, or filter out empty texts")
        if not EmbedCache.applies(spec):
            return self._check_dims(spec, await self.provider(spec).embed(texts, input_type, truncate))
        keys = EmbedCache.keys(spec, texts, input_type, truncate)
        cached = self.embed_cache.get(keys)
        todo = [i for i, v in enumerate(cached) if v is None]
        if not todo:
            return Embeddings(np.stack(cached).astype(np.float32), 0)
        fresh = self._check_dims(spec, await self.provider(spec).embed([texts[i] for i in todo], input_type, truncate))
        self.embed_cache.put([keys[i] for i in todo], fresh.vectors)
        if len(todo) == len(texts):
            return fresh
        for i, v in zip(todo, fresh.vectors):
            cached[i] = v
        # (input_tokens: what the model read; cached texts cost nothing)
        return Embeddings(np.stack(cached).astype(np.float32), fresh.input_tokens)

    async def embed_images(self, spec: ModelSpec, images: list[bytes]) -> Embeddings:
        self._need(spec, ("image_embedding",), "an image model")
        return self._check_dims(spec, await self.provider(spec).embed_images(images))

    async def classify_images(self, spec: ModelSpec, images: list[bytes], k: int = 5):
        self._need(spec, ("image_embedding",), "an image model")
        return await self.provider(spec).classify_images(images, k)

    async def has_text_tower(self, spec: ModelSpec) -> bool:
        self._need(spec, ("image_embedding",), "an image model")
        return await self.provider(spec).has_text_tower()

    async def label_names(self, spec: ModelSpec) -> list[str]:
        self._need(spec, ("image_embedding",), "an image model")
        return await self.provider(spec).label_names()

    async def nearest_labels(self, spec: ModelSpec, text_spec: ModelSpec, query: str, k: int = 3,
                             min_similarity: float = 0.3) -> list[tuple[str, float]]:
        """The image model's labels closest in meaning to the query, by a text model (multilingual:
        a Chinese query finds English labels).  The labels' vectors are made once per process."""
        labels = await self.label_names(spec)
        if not labels:
            return []
        key = (load_identity(spec), text_spec.model_id)
        if key not in self._label_vectors:
            self._label_vectors[key] = (await self.embed(text_spec, list(labels), "document")).vectors
        q = (await self.embed(text_spec, [query], "query")).vectors[0]
        sims = self._label_vectors[key] @ q
        top = sims.argsort()[::-1][:k]
        return [(labels[i], float(sims[i])) for i in top if sims[i] >= min_similarity]

    @staticmethod
    def _check_dims(spec: ModelSpec, result: Embeddings) -> Embeddings:
        if spec.dimensions and result.vectors.shape[1] != spec.dimensions:
            raise DimensionMismatchError(
                f"model {spec.model_id} returned {result.vectors.shape[1]} dimensions, registered as {spec.dimensions}",
                hint="fix the registration: select ai.alter_model(..., options => '{\"dimensions\": N}')")
        return result

    async def rerank(self, spec: ModelSpec, query: str, documents: list[str]) -> list[float]:
        """Relevance scores of documents for the query, in document order."""
        self._need(spec, ("rerank",), "a rerank model")
        return await self.provider(spec).rerank(query, documents)

    def check_chat(self, spec: ModelSpec, messages: list[dict], options: dict) -> None:
        """A chat model, asked only for what its provider can do (an option it would drop is a 400)."""
        self._need(spec, ("chat",), "a chat model")
        check_chat_features(spec, self.provider(spec).chat_features, messages, options)

    async def chat(self, spec: ModelSpec, messages: list[dict], options: dict,
                   cancel: threading.Event | None = None, reuse: bool = False) -> ChatResult:
        """``reuse``: a greedy reply this caller got before for the same call may answer
        (local.reply_cache: query understanding asks for it)."""
        self.check_chat(spec, messages, options)
        if not (reuse and ReplyCache.applies(spec, options)):
            return await self.provider(spec).chat(messages, options, cancel)
        key = ReplyCache.key(spec, messages, options)
        found = self.reply_cache.get(key)
        if found is not None:
            return found
        result = await self.provider(spec).chat(messages, options, cancel)
        self.reply_cache.put(key, result)
        return result

    async def chat_stream(self, spec: ModelSpec, messages: list[dict], options: dict) -> AsyncIterator[ChatDelta]:
        self.check_chat(spec, messages, options)
        async for delta in self.provider(spec).stream(messages, options):
            yield delta

    async def call(self, spec: ModelSpec, body, headers: dict):
        return await self.provider(spec).call(body, headers)

    async def aclose(self) -> None:
        for obj in self._local.values():
            if isinstance(obj, (EmbeddingBatcher, Unbatched)):
                await obj.aclose()
        await self.transport.aclose()
        self.chat_executor.shutdown(wait=False, cancel_futures=True)
        self._loader.shutdown(wait=False, cancel_futures=True)
