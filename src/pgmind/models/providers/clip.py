"""clip-as-service (jina-ai/clip-as-service) over HTTP: ``POST /post`` with
``{"data": [{"text": …} | {"blob": base64 of the image file}], "execEndpoint": "/"}``; the answer
``{"header": {…}, "data": [{"embedding": […]}, …]}`` comes in request order, not L2-normalised
(normalised here, so cosine and ``<->`` rank alike)."""
from __future__ import annotations

import base64

import numpy as np

from ...errors import ProviderResponseError
from ..types import Embeddings
from .base import Provider
from .transport import field


class ClipAsServiceProvider(Provider):
    name = "clip"
    description = "clip-as-service (Jina CLIP server) over HTTP: POST /post, text and image towers"
    call_paths = {"embedding": "/post", "image_embedding": "/post"}

    @property
    def base(self) -> str:
        url = (self.spec.url or "").rstrip("/")
        return url[: -len("/post")] if url.endswith("/post") else url

    async def _post(self, docs: list[dict]) -> Embeddings:
        ep = self.endpoint("/post")
        body = {"data": docs, "execEndpoint": "/"}
        if self.spec.options.get("remote_model"):
            body["parameters"] = {"model": self.spec.options["remote_model"]}
        data = await self.context.transport.post_json(ep, body)
        items = field(data, "data", url=ep.url)
        if not isinstance(items, list) or len(items) != len(docs):
            raise ProviderResponseError(f"{ep.url} returned {len(items) if isinstance(items, list) else 'no'} "
                                        f"documents for {len(docs)} inputs")
        vectors = np.asarray([field(d, "embedding", url=ep.url) for d in items], dtype=np.float32)
        if vectors.ndim != 2:
            raise ProviderResponseError(f"{ep.url} returned embeddings of different lengths")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return Embeddings(vectors / np.where(norms == 0, 1, norms))

    async def has_text_tower(self) -> bool:
        return True

    async def embed(self, texts, input_type="query", truncate=False) -> Embeddings:
        return await self._post([{"text": t} for t in texts])

    async def embed_images(self, images) -> Embeddings:
        return await self._post([{"blob": base64.b64encode(img).decode("ascii")} for img in images])
