"""What every protocol front end calls: resolve the model, check the caller's grant, run it, and
record the call (metrics and ai.call_log).  The protocol modules only translate shapes."""
from __future__ import annotations

import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator

import numpy as np

from ..errors import InvalidRequestError, PermissionDeniedError, PgmindError
from ..models.hub import ModelHub
from ..models.registry import Registry
from ..models.spec import ModelSpec
from ..models.types import CALLER, ChatDelta, ChatResult, Embeddings
from ..models.validation import check_chat_options, check_messages, check_text, normalize_input_type
from .call_log import CallLog, CallRecord
from .metrics import LATENCY, REQUESTS, TOKENS


@dataclass(frozen=True)
class Caller:
    role: str | None      # the database role, when the call comes from SQL
    client: str           # sql | openai-api | dashscope-api | pgmind-api


class ModelService:
    def __init__(self, registry: Registry, hub: ModelHub, call_log: CallLog, log_payloads: bool = False):
        self.registry, self.hub, self.call_log = registry, hub, call_log
        self.log_payloads = log_payloads
        self.loader = None        # images.loader.Loader, set by the app

    async def resolve(self, model_id: str, caller: Caller) -> ModelSpec:
        spec = await self.registry.get(model_id)
        if caller.role and not await self.registry.can_use(caller.role, model_id):
            raise PermissionDeniedError(f'permission denied for model "{model_id}"',
                                        hint=f"select ai.grant_model('{model_id}', '{caller.role}')")
        return spec

    @asynccontextmanager
    async def _record(self, spec: ModelSpec, operation: str, caller: Caller, items: int | None, payload=None):
        """Times the call and logs it, however it ends. The body fills ``usage``."""
        CALLER.set(caller.role or caller.client)    # (for this request's task: caches kept per caller)
        usage = {"in": None, "out": None}
        start = time.perf_counter()
        status, http_status, error = "ok", 200, None
        try:
            yield usage
        except PgmindError as e:
            status, http_status, error = "error", getattr(e, "status", None) or e.http_status, e.message
            raise
        except Exception as e:
            status, http_status, error = "error", 500, f"{type(e).__name__}"
            raise
        except BaseException:    # the task was cancelled: the caller went away
            status, http_status, error = "error", 499, "cancelled: the caller went away"
            raise
        finally:
            elapsed = time.perf_counter() - start
            REQUESTS.labels(spec.model_id, operation, caller.client, status).inc()
            LATENCY.labels(spec.model_id, operation).observe(elapsed)
            if usage["in"]:
                TOKENS.labels(spec.model_id, "in").inc(usage["in"])
            if usage["out"]:
                TOKENS.labels(spec.model_id, "out").inc(usage["out"])
            self.call_log.record(CallRecord(
                spec.model_id, spec.provider, operation, caller.client, caller.role, items, usage["in"],
                usage["out"], elapsed * 1000.0, status, http_status, error,
                payload if self.log_payloads else None))

    async def embed(self, model_id: str, texts: list[str], caller: Caller, input_type: str | None = "query",
                    truncate: bool = False, dimensions=None) -> tuple[ModelSpec, Embeddings]:
        """``dimensions``: keep the first n of each vector and re-normalise them (Matryoshka-style,
        what OpenAI's ``dimensions`` and DashScope's ``dimension`` give), for every protocol alike."""
        if dimensions is not None and (isinstance(dimensions, bool) or not isinstance(dimensions, int)):
            raise InvalidRequestError(f"dimensions must be a whole number, got {dimensions!r}"[:200])
        if not isinstance(texts, list) or not texts:
            raise InvalidRequestError("input must be a text or a non-empty list of texts")
        limits = self.hub.settings
        if len(texts) > limits.max_inputs:
            raise InvalidRequestError(f"{len(texts)} inputs in one request; the limit is {limits.max_inputs}",
                                      hint="send them in several requests (PGMIND_MAX_INPUTS sets the limit)")
        for i, t in enumerate(texts):
            check_text(t, f"input {i}", limits.max_input_chars)
        input_type = normalize_input_type(input_type)
        spec = await self.resolve(model_id, caller)
        async with self._record(spec, "embed", caller, len(texts), {"input": texts}) as usage:
            result = await self.hub.embed(spec, texts, input_type, truncate)
            usage["in"] = result.input_tokens
        if dimensions is not None and dimensions != result.vectors.shape[1]:
            size = result.vectors.shape[1]
            if not 0 < dimensions < size:
                raise InvalidRequestError(f"model {spec.model_id} has {size} dimensions; {dimensions} were asked",
                                          hint=f"ask for 1 to {size} dimensions, or leave dimensions out")
            cut = result.vectors[:, :dimensions]
            norms = np.linalg.norm(cut, axis=1, keepdims=True)
            result.vectors = (cut / np.where(norms > 0, norms, 1.0)).astype(np.float32)
        return spec, result

    async def chat(self, model_id: str, messages, options: dict, caller: Caller,
                   cancel: threading.Event | None = None, reuse: bool = False) -> tuple[ModelSpec, ChatResult]:
        """``reuse``: a greedy reply the same caller got before may answer (hub.chat); the grant is
        checked and the call logged all the same."""
        messages, options = check_messages(messages), check_chat_options(options)
        spec = await self.resolve(model_id, caller)
        async with self._record(spec, "chat", caller, len(messages), {"messages": messages}) as usage:
            result = await self.hub.chat(spec, messages, options, cancel, reuse)
            usage["in"], usage["out"] = result.input_tokens, result.output_tokens
        return spec, result

    async def chat_stream(self, model_id: str, messages, options: dict, caller: Caller
                          ) -> tuple[ModelSpec, AsyncIterator[ChatDelta]]:
        """Checks everything before the first byte is sent, so errors still get a proper status."""
        messages, options = check_messages(messages), check_chat_options(options)
        spec = await self.resolve(model_id, caller)
        self.hub.check_chat(spec, messages, options)

        async def gen():
            async with self._record(spec, "chat", caller, len(messages), {"messages": messages}) as usage:
                async for delta in self.hub.chat_stream(spec, messages, options):
                    if delta.finish_reason:
                        usage["in"], usage["out"] = delta.input_tokens, delta.output_tokens
                    yield delta
        return spec, gen()

    async def rerank(self, model_id: str, query, documents, caller: Caller) -> list[float]:
        if not isinstance(query, str) or not query.strip():
            raise InvalidRequestError("query must be a non-empty text")
        if not isinstance(documents, list) or not documents or not all(isinstance(d, str) for d in documents):
            raise InvalidRequestError("documents must be a non-empty list of texts")
        spec = await self.resolve(model_id, caller)
        async with self._record(spec, "rerank", caller, len(documents)):
            return await self.hub.rerank(spec, query, documents)

    async def call(self, model_id: str, body, headers: dict, caller: Caller):
        """ai.call_model: send the body the model's input function built to the model's URL."""
        spec = await self.resolve(model_id, caller)
        async with self._record(spec, "call", caller, None, {"body": body}) as usage:
            result = await self.hub.call(spec, body, headers)
            counted = result.get("usage") if isinstance(result, dict) else None    # (OpenAI's shape, if any)
            if isinstance(counted, dict):
                usage["in"], usage["out"] = counted.get("prompt_tokens"), counted.get("completion_tokens")
            return result

    async def embed_images(self, model_id: str, images: list[bytes], caller: Caller) -> tuple[ModelSpec, Embeddings]:
        if not isinstance(images, list) or not images:
            raise InvalidRequestError("give at least one image")
        if len(images) > self.hub.settings.max_inputs:
            raise InvalidRequestError(f"{len(images)} images in one request; the limit is {self.hub.settings.max_inputs}",
                                      hint="send them in several requests (PGMIND_MAX_INPUTS sets the limit)")
        spec = await self.resolve(model_id, caller)
        async with self._record(spec, "embed_image", caller, len(images)):
            return spec, await self.hub.embed_images(spec, images)

    async def load_file(self, url) -> bytes:
        """ai.load_file: bytes from a location an administrator allowed (images.loader); the same
        for every caller, by design: the allow-list is what all of them may read."""
        if self.loader is None:
            raise InvalidRequestError("loading files is not set up in this process")
        return await self.loader.load(url)

    async def image_query(self, model_id: str, query, text_model: str, mode: str, caller: Caller) -> dict:
        """For ai.search_images: the query in the images' space (if the model has a text tower) and
        the image model's labels nearest to it in meaning (if it labels images)."""
        check_text(query, "the query", 2000)
        spec = await self.resolve(model_id, caller)
        vector = None
        if mode != "keyword" and await self.hub.has_text_tower(spec):
            vector = (await self.embed(model_id, [query], caller))[1].vectors[0].tolist()
        labels = []
        if mode != "vector" and await self.hub.label_names(spec):
            text_spec = await self.resolve(text_model, caller)
            async with self._record(text_spec, "embed", caller, 1):
                labels = await self.hub.nearest_labels(spec, text_spec, query)
        return {"vector": vector, "labels": [{"label": lab, "similarity": s} for lab, s in labels]}

    async def classify_images(self, model_id: str, images: list[bytes], k: int, caller: Caller):
        spec = await self.resolve(model_id, caller)
        async with self._record(spec, "classify_image", caller, len(images)):
            return await self.hub.classify_images(spec, images, k)

    async def probe(self, spec: ModelSpec) -> dict:
        """What create_model checks before it commits: an embedding model's dimension, by one call."""
        provider = self.hub.provider(spec)
        if spec.model_type == "chat" and provider.in_process:
            from ..models.local.loader import chat_model_path
            chat_model_path(spec, self.hub.settings)      # (a missing GGUF fails now, not at the first chat)
            return {"ok": True}
        if spec.model_type not in ("embedding", "image_embedding") or not provider.probe:
            return {"ok": True}
        if spec.model_type == "image_embedding":
            from ..images.probe import probe_png
            result = await self.hub.embed_images(spec, [probe_png()])
        else:
            result = await self.hub.embed(spec, ["pgmind dimension probe"], "query")
        return {"ok": True, "dimensions": int(result.vectors.shape[1])}


def vectors_to_base64(vectors: np.ndarray) -> list[str]:
    import base64
    return [base64.b64encode(np.ascontiguousarray(v, dtype="<f4").tobytes()).decode("ascii") for v in vectors]
