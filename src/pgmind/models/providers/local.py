"""Provider "pgmind": models that run in this process — text embedders, chat (llama.cpp),
cross-encoders and image models.  The hub loads each once per process and runs it behind one
batcher, which the model server's routes and the in-process vectorizer worker share; this class
reaches them through its context's ``local`` and ``chat_executor``."""
from __future__ import annotations

import asyncio
import contextvars
from typing import AsyncIterator

from ...errors import InvalidRequestError
from ..local.base import LocalChatModel, LocalImageModel
from ..spec import ModelSpec
from ..types import ChatDelta, ChatResult, Embeddings, chat_completion
from ..validation import chat_call, check_chat_features, normalize_input_type
from .base import Provider


class LocalProvider(Provider):
    name = "pgmind"
    in_process = True
    chat_features = frozenset({"tools", "response_format", "logprobs"})   # (llama.cpp grammars)
    description = "models in the model server's own process: embeddings, chat (llama.cpp), rerank, images"

    async def _image_model(self) -> LocalImageModel:
        return (await self.context.local(self.spec)).model.model     # (batcher → ImageBatchModel → model)

    async def embed(self, texts, input_type="query", truncate=False) -> Embeddings:
        batcher = await self.context.local(self.spec)
        if self.spec.model_type == "image_embedding":
            if not await self.has_text_tower():
                batcher.model.model.embed_texts([])     # raises the model's own clear error
            return await batcher.embed(texts, "text", False)
        return await batcher.embed(texts, input_type, truncate)

    async def embed_images(self, images) -> Embeddings:
        batcher = await self.context.local(self.spec)
        return await batcher.embed(images, "image", False)

    async def has_text_tower(self) -> bool:
        return self.spec.model_type == "image_embedding" and (await self._image_model()).has_text_tower

    async def label_names(self) -> list[str]:
        if self.spec.model_type != "image_embedding":
            return []
        return list((await self._image_model()).labels or [])

    async def classify_images(self, images, k) -> list[list[tuple[str, float]]]:
        batcher = await self.context.local(self.spec)
        decoded, _ = batcher.model.check(images)
        return await batcher.run(batcher.model.model.classify, decoded, k)

    async def chat(self, messages, options, cancel=None) -> ChatResult:
        model: LocalChatModel = await self.context.local(self.spec)
        # (in the caller's context: the model's prefix cache is kept per caller, types.CALLER)
        return await asyncio.get_running_loop().run_in_executor(self.context.chat_executor, contextvars.copy_context().run,
                                                                model.chat, messages, options, cancel)

    async def stream(self, messages, options) -> AsyncIterator[ChatDelta]:
        model: LocalChatModel = await self.context.local(self.spec)
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

        loop.run_in_executor(self.context.chat_executor, contextvars.copy_context().run, produce)
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
            judge = await self.context.local(ModelSpec(self.spec.model_id, self.spec.provider, "chat",
                                                   self.spec.model_name, options=self.spec.options))
            return await asyncio.get_running_loop().run_in_executor(self.context.chat_executor, contextvars.copy_context().run,
                                                                    judge.relevance, query, documents)
        model = await self.context.local(self.spec)
        return await asyncio.get_running_loop().run_in_executor(self.context.chat_executor, model.score, query, documents)

    async def call(self, body, headers) -> dict:
        """A local model called with an OpenAI-shaped body (ai.call_model)."""
        if self.spec.model_type == "chat":
            messages, options = chat_call(self.spec.model_id, body)
            check_chat_features(self.spec, self.chat_features, messages, options)
            return chat_completion(self.spec.model_id, await self.chat(messages, options))
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
        raise self._cannot("take raw calls")
