"""A sentence-transformers model at each precision (options.precision, models/local/st.py): fp32,
bf16 autocast over fp32 weights (the default on CPUs with native bf16), and the weights converted to
bf16 once.  Speed in the same run, batch by batch in turn, and how close each one's vectors are to
fp32's (cosine per text: mean, min), and whether the same pages come first (top-10 overlap of
each paragraph's nearest paragraphs, against fp32's).

    nice -n 10 .venv/bin/python bench/bench_st_precision.py [--texts 640] [--batch 32]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

os.environ.setdefault("GOMP_SPINCOUNT", "10000")     # (as `pgmind ingest` and `pgmind worker` run)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

from bench_embed_server import paragraphs  # noqa: E402
from bench_rag_latency import cpu  # noqa: E402
from pgmind.models.local.st import SentenceTransformerModel, packaged_minilm_path  # noqa: E402

PRECISIONS = ("fp32", "autocast", "bf16")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", type=int, default=640)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    texts = paragraphs(args.texts)
    models = {p: SentenceTransformerModel(packaged_minilm_path(), precision=p) for p in PRECISIONS}
    batches = [texts[i:i + args.batch] for i in range(0, len(texts), args.batch)]
    seconds = {p: 0.0 for p in PRECISIONS}
    vectors = {p: [] for p in PRECISIONS}
    for m in models.values():
        m.embed(batches[0], "document")                     # (warm)
    for i, batch in enumerate(batches):
        order = PRECISIONS[i % 3:] + PRECISIONS[:i % 3]
        for p in order:
            t = time.perf_counter()
            vectors[p].append(models[p].embed(batch, "document").vectors)
            seconds[p] += time.perf_counter() - t
    ref = np.concatenate(vectors["fp32"])
    ref_top = np.argsort(-(ref @ ref.T), axis=1)[:, 1:11]
    print(f"\n{cpu()}; all-MiniLM-L6-v2; {len(texts)} manual paragraphs in batches of {args.batch}, "
          f"precisions in turn batch by batch\n")
    print("| precision | texts/s | speed / autocast | cosine to fp32: mean | min | top-10 neighbours shared with fp32 |")
    print("|---|---|---|---|---|---|")
    for p in PRECISIONS:
        v = np.concatenate(vectors[p])
        cos = np.sum(v * ref, axis=1)
        top = np.argsort(-(v @ v.T), axis=1)[:, 1:11]
        shared = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top, ref_top)])
        print(f"| {p} | {len(texts) / seconds[p]:.1f} | **{seconds['autocast'] / seconds[p]:.2f}** | "
              f"{cos.mean():.5f} | {cos.min():.5f} | {shared:.3f} |")


if __name__ == "__main__":
    main()
