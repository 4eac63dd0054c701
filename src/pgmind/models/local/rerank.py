"""Cross-encoder rerankers (sentence-transformers CrossEncoder): a local directory, or a hub id
where the machine has internet.  Scores (query, passage) pairs; higher is more relevant."""
from __future__ import annotations

from ...errors import InvalidRequestError, ModelLoadError


class CrossEncoderReranker:
    def __init__(self, name_or_path: str, max_length: int = 512, device: str = "cpu"):
        try:
            from sentence_transformers import CrossEncoder
            self._model = CrossEncoder(name_or_path, max_length=max_length, device=device)
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"cannot load the cross-encoder {name_or_path!r}: {e}",
                                 hint="pass a local model directory in options.path") from None

    def score(self, query: str, documents: list[str]) -> list[float]:
        if not isinstance(query, str) or not query.strip():
            raise InvalidRequestError("the rerank query is empty")
        if not documents or not all(isinstance(d, str) for d in documents):
            raise InvalidRequestError("rerank needs a non-empty list of texts")
        scores = self._model.predict([(query, d) for d in documents], convert_to_numpy=True, show_progress_bar=False)
        return [float(s) for s in scores.reshape(len(documents), -1)[:, -1]]
