"""Dynamic batching: concurrent embedding requests for one local model run as one batch in the
model's own thread, so the event loop never blocks and many small callers (eight psql sessions,
say) share one forward pass.  An idle model starts at once (no added latency for a lone caller);
requests that arrive while it is busy queue up and form the next batch.  An optional wait window
(PGMIND_BATCH_WAIT_MS) trades latency for bigger batches."""
from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ...errors import InvalidRequestError, PgmindError
from ..types import Embeddings
from .base import LocalEmbeddingModel  # (or any model with check and embed: loader.ImageBatchModel)


@dataclass
class _Request:
    texts: list[str]
    input_type: str
    truncate: bool
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


class EmbeddingBatcher:
    def __init__(self, model: LocalEmbeddingModel, *, max_batch: int = 64, wait_ms: float = 0.0,
                 on_batch=None):
        self.model = model
        self.max_batch = max_batch
        self.wait = wait_ms / 1000.0
        self.on_batch = on_batch                 # callback(batch_size) for metrics
        self._queue: asyncio.Queue[_Request] | None = None
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed")

    async def embed(self, texts: list[str], input_type: str = "query", truncate: bool = False) -> Embeddings:
        if self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._run())
        fut = asyncio.get_running_loop().create_future()
        await self._queue.put(_Request(texts, input_type, truncate, fut))
        return await fut

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            batch, size = [first], len(first.texts)
            if self.wait > 0:     # optionally hold the first request a moment for company
                deadline = loop.time() + self.wait
                while size < self.max_batch and (timeout := deadline - loop.time()) > 0:
                    try:
                        req = await asyncio.wait_for(self._queue.get(), timeout)
                    except asyncio.TimeoutError:
                        break
                    batch.append(req)
                    size += len(req.texts)
            # everything that queued up while the model was busy joins this batch
            while size < self.max_batch and not self._queue.empty():
                req = self._queue.get_nowait()
                batch.append(req)
                size += len(req.texts)
            groups: dict[tuple[str, bool], list[_Request]] = {}
            for req in batch:
                groups.setdefault((req.input_type, req.truncate), []).append(req)
            for (input_type, truncate), reqs in groups.items():
                try:
                    results = await loop.run_in_executor(self._executor, self._embed_group, reqs, input_type,
                                                         truncate)
                except Exception as e:  # noqa: BLE001 - never let one batch end the loop every caller waits on
                    err = PgmindError(f"the model failed: {type(e).__name__}")
                    results = [err] * len(reqs)
                for req, result in zip(reqs, results):
                    if req.future.done():          # the caller went away
                        continue
                    if isinstance(result, BaseException):
                        req.future.set_exception(result)
                    else:
                        req.future.set_result(result)

    def _embed_group(self, reqs: list[_Request], input_type: str, truncate: bool) -> list:
        """Runs in the model's thread. A request with bad input fails alone; the others go on."""
        results: list = [None] * len(reqs)
        good, texts = [], []
        for i, req in enumerate(reqs):
            try:
                checked, tokens = self.model.check(req.texts, truncate)
            except PgmindError as e:
                results[i] = e
                continue
            except Exception as e:  # noqa: BLE001 - a tokenizer that chokes on one input fails that request
                results[i] = InvalidRequestError(f"the model cannot read this input: {type(e).__name__}")
                continue
            good.append((i, len(checked), tokens))
            texts.extend(checked)
        if texts:
            try:
                emb = self.model.embed(texts, input_type, validated=True)
            except Exception as e:  # a model failure fails every request of the batch, each told why
                err = e if isinstance(e, PgmindError) else PgmindError(f"the model failed: {type(e).__name__}: {e}")
                for i, _, _ in good:
                    results[i] = err
                return results
            if self.on_batch:
                self.on_batch(len(texts))
            start = 0
            for i, n, tokens in good:
                results[i] = Embeddings(emb.vectors[start:start + n], tokens,
                                        emb.labels[start:start + n] if emb.labels else None)
                start += n
        return results

    async def run(self, fn, *args):
        """Runs fn in the model's own thread (after the batches queued before it)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def aclose(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=False, cancel_futures=True)


class Unbatched:
    """The batcher's interface without its background task, for a hub with one caller (a worker's
    private hub): nothing is left pending on an event loop that may be dropped without closing."""

    def __init__(self, model):
        self.model = model

    async def embed(self, texts: list, input_type: str = "query", truncate: bool = False) -> Embeddings:
        checked, tokens = self.model.check(texts, truncate)
        result = self.model.embed(checked, input_type, validated=True)
        result.input_tokens = tokens
        return result

    async def run(self, fn, *args):
        return fn(*args)

    async def aclose(self) -> None:
        pass
