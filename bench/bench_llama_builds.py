"""llama.cpp's portable build against the AVX-512 one setup compiles on such CPUs, in the same run:
each reads the same ~1,000-token RAG-sized prompt with qwen-1.5b and writes 32 tokens, in its own
process (a process loads one build: pgmind.models.llama_build picks it, PGMIND_LLAMA_BUILD=portable
forces the other).  Prints prompt tokens/s per build and the ratio.

    .venv/bin/python bench/bench_llama_builds.py [--model qwen2.5-coder-1.5b-instruct-q4_k_m.gguf]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import manual_sentences  # noqa: E402

CHILD = r"""
import json, os, sys, time
from pgmind.models import local_llama
from llama_cpp import Llama
path, prompt = sys.argv[1], sys.argv[2]
llm = Llama(model_path=path, n_ctx=4096, n_threads=os.cpu_count(), verbose=False)
toks = llm.tokenize(prompt.encode(), add_bos=False, special=True)
best = float("inf")
for _ in range(2):
    llm.reset(); t = time.perf_counter(); llm.eval(toks); best = min(best, time.perf_counter() - t)
llm.reset(); t = time.perf_counter()
for n, _ in enumerate(llm.generate(toks[:64], temp=0), 1):
    if n >= 32:
        break
print(json.dumps({"build": local_llama.LLAMA_BUILD, "tokens": len(toks), "prompt_s": best,
                  "short_s": time.perf_counter() - t}))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")
    args = ap.parse_args()
    from pgmind.config import load_settings
    path = str(load_settings().models_dir / args.model)
    sources = " ".join(manual_sentences(60))
    prompt = f"<|im_start|>user\nSources:\n{sources}\nQuestion: what does VACUUM do?<|im_end|>\n<|im_start|>assistant\n"
    rows = []
    for build in ("auto", "portable"):
        env = dict(os.environ, PGMIND_LLAMA_BUILD=build)
        out = subprocess.run([sys.executable, "-c", CHILD, path, prompt], env=env, check=True,
                             capture_output=True, text=True).stdout.strip().splitlines()[-1]
        rows.append(json.loads(out))
    print(f"{rows[0]['tokens']}-token prompt, {os.cpu_count()} threads\n")
    print("| llama.cpp build | prompt tokens/s | 64-token prompt + 32 written |\n|---|---|---|")
    for r in rows:
        print(f"| {r['build']} | {r['tokens'] / r['prompt_s']:.1f} | {r['short_s']:.2f} s |")
    if rows[0]["build"] == rows[1]["build"]:
        print("\n(this CPU or .venv has no AVX-512 build: both rows ran the portable one)")
    else:
        print(f"\nAVX-512 / portable: {rows[1]['prompt_s'] / rows[0]['prompt_s']:.2f}× prompt reading")


if __name__ == "__main__":
    main()
