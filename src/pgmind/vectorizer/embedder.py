"""How a worker embeds: through a model hub — the model server's own when the worker runs inside
`pgmind serve` (one copy of each local model, one batcher), else a hub of its own on a private
event loop.  Local models run in-process (no network hop); remote providers are called directly
when the worker may use their key (stored in the registry, or an environment variable the worker
may lend), through the same provider classes, transport, retries and outbound allow-list as the
model server; otherwise through the model server (one more hop, for keys only its environment
holds)."""
from __future__ import annotations

import asyncio
import base64
import time

import httpx
import numpy as np

from ..config import Settings
from ..db import connect, service_dsn
from ..errors import (REFUSED_INPUT, InvalidRequestError, ModelServerUnavailableError, PgmindError, ProviderError,
                      UnknownModelError)
from ..models.hub import ModelHub
from ..models.outbound import OutboundPolicy
from ..models.providers import in_process
from ..models.spec import SPEC_QUERY, ModelSpec, spec_from_row
from ..models.types import Embeddings
from .chunking import conservative_tokens


class Embedder:
    def __init__(self, settings: Settings, dsn: str, *, hub: ModelHub | None = None,
                 loop: asyncio.AbstractEventLoop | None = None):
        """``hub`` and ``loop``: the model server's, when the worker runs in its process."""
        self.settings, self.dsn = settings, service_dsn(settings, dsn)   # (reads the registry as the service)
        self._specs: dict[str, tuple[float, ModelSpec]] = {}
        self._http: httpx.Client | None = None
        self._loader = None
        self._shared = hub is not None
        if hub is None:
            loop = asyncio.new_event_loop()
            hub = ModelHub(settings, batching=False)      # one caller: nothing to batch
            hub.transport.policy = OutboundPolicy(self._allowed_hosts)
        self.hub, self._loop = hub, loop

    SPEC_TTL = 60.0   # seconds: a changed registration (URL, key, options) reaches a running worker

    def spec(self, model_id: str) -> ModelSpec:
        hit = self._specs.get(model_id)
        if hit is None or time.monotonic() - hit[0] > self.SPEC_TTL:
            with connect(self.dsn, register_vector=False, application_name="pgmind worker") as conn:
                row = conn.execute(SPEC_QUERY, (model_id,)).fetchone()
            if row is None:
                raise UnknownModelError(f'model "{model_id}" is not registered')
            hit = self._specs[model_id] = (time.monotonic(), spec_from_row(row))
        return hit[1]

    def _run(self, coro):
        if self._shared:
            return asyncio.run_coroutine_threadsafe(coro, self._loop).result()
        return self._loop.run_until_complete(coro)

    def local(self, model_id: str):
        """The local text model (for its tokenizer), or None for a remote one."""
        spec = self.spec(model_id)
        if not in_process(spec.provider) or spec.model_type != "embedding":
            return None
        return self.hub.local_model(spec).model

    def token_counter(self, model_id: str):
        """The model's own tokenizer; for a remote model, the tokenizer of the local model its
        options name ({"tokenizer": "minilm"}, e.g. when it is a pgmind server's), else an upper
        estimate, so chunks are never refused for length."""
        model = self.local(model_id)
        if model is not None:
            return model.count_tokens
        tokenizer = self.spec(model_id).options.get("tokenizer")
        if tokenizer:
            local = self.local(tokenizer)
            if local is None:
                raise InvalidRequestError(f"model {model_id} names tokenizer {tokenizer!r}, which is not a local model",
                                          hint="name a local model (select model_id from ai.models where provider = 'pgmind')")
            return local.count_tokens
        return conservative_tokens

    def max_tokens(self, model_id: str) -> int | None:
        model = self.local(model_id)
        if model is not None:
            return model.max_tokens
        return self.spec(model_id).options.get("max_tokens")

    def _mine(self, spec: ModelSpec) -> bool:
        """Whether this process may call the model itself (local, or a key it holds)."""
        try:
            spec.auth_headers(self.settings.secret_env_names)
            return True
        except PgmindError:
            return False   # its key is not this process's to use: the model server's environment has it

    def embed_documents(self, model_id: str, texts: list[str]) -> np.ndarray:
        spec = self.spec(model_id)
        if self._mine(spec):
            return self._run(self.hub.embed(spec, texts, "document")).vectors
        return self._remote(model_id, texts)

    def embed_images(self, model_id: str, images: list[bytes]) -> Embeddings:
        """Vectors, and the labels of a classifier (from the same pass) when it gives them."""
        spec = self.spec(model_id)
        if self._mine(spec):
            return self._run(self.hub.embed_images(spec, images))
        raise InvalidRequestError(f"model {model_id} takes its key from the model server's environment",
                                  hint="image vectorizers call their model themselves: store its key with the model")

    def load_file(self, location: str) -> bytes:
        """An image file of a row, under the administrators' allow-list (the same rule as ai.load_file)."""
        if self._loader is None:
            from ..images.loader import LOAD_ALLOW_QUERY, Allowed, Loader

            async def allowed():
                with connect(self.dsn, register_vector=False, application_name="pgmind worker") as conn:
                    return [Allowed(p, o or {}, a or {}, s) for p, o, a, s in conn.execute(LOAD_ALLOW_QUERY)]
            self._loader = Loader(allowed, self.settings.secret_env_names)
        return self._run(self._loader.load(location))

    async def _allowed_hosts(self) -> list[str]:
        with connect(self.dsn, register_vector=False, application_name="pgmind worker") as conn:
            return [r[0] for r in conn.execute("select pattern from ai.outbound_allow")]

    def _remote(self, model_id: str, texts: list[str]) -> np.ndarray:
        if self._http is None:
            self._http = httpx.Client(base_url=self.settings.effective_server_url, timeout=300,
                                      headers={"Authorization": f"Bearer {self.settings.server_token()}",
                                               "X-Pgmind-Client": "worker"})
        try:
            r = self._http.post("/v1/embeddings", json={"model": model_id, "input": texts, "input_type": "document",
                                                        "encoding_format": "base64"})
        except httpx.TransportError as e:
            raise ModelServerUnavailableError(f"cannot reach the model server at {self.settings.effective_server_url}: "
                                              f"{type(e).__name__}") from None
        if r.status_code >= 400:
            try:
                err = r.json()["error"]
                message, hint = err.get("message", r.text), err.get("hint")
            except (ValueError, KeyError, TypeError):
                message, hint = r.text[:300], None
            if r.status_code in (400, 413, 422):   # the input itself was refused: that row is poison
                raise InvalidRequestError(message, hint=hint)
            raise ProviderError(message, status=r.status_code, retryable=True, hint=hint)
        data = sorted(r.json()["data"], key=lambda d: d["index"])
        return np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in data])

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
        if self._loader is not None:
            self._run(self._loader.aclose())
        if not self._shared:
            self._loop.run_until_complete(self.hub.aclose())
            self._loop.close()


def is_permanent(e: Exception) -> bool:
    """A row that fails like this will fail again: quarantine it.  Anything else (429, 5xx,
    timeouts, the model server down, a host not on the allow-list yet): retry later."""
    return isinstance(e, InvalidRequestError) or (
        isinstance(e, ProviderError) and e.status in REFUSED_INPUT and not e.retryable)


__all__ = ["Embedder", "is_permanent", "PgmindError"]
