"""llama.cpp's portable build against the one setup compiles for this CPU (AVX-512, or AVX-512 and
AMX), in the same run: each reads the same ~1,300-token RAG-sized prompt with qwen-1.5b and writes
33 tokens, in its own process (a process loads one build: PGMIND_LLAMA_BUILD names it).  Prints
prompt tokens/s per build, the ratios to the portable one and tokens written/s (medians of
--rounds, builds interleaved).  --extra NAME=DIR adds a build
compiled elsewhere (e.g. an AVX-512 build beside setup's AMX one, to see what AMX adds).

    .venv/bin/python bench/bench_llama_builds.py [--model qwen2.5-coder-1.5b-instruct-q4_k_m.gguf]
                                                 [--extra avx512=/tmp/llama-cpp-avx512]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import manual_sentences  # noqa: E402

CHILD = r"""
import json, os, sys, time
if len(sys.argv) > 3:    # a build from elsewhere (--extra)
    sys.path.insert(0, sys.argv[3])
from pgmind.models.local import llama as local_llama
from llama_cpp import Llama
path, prompt = sys.argv[1], sys.argv[2]
llm = Llama(model_path=path, n_ctx=4096, n_threads=os.cpu_count(), verbose=False)
toks = llm.tokenize(prompt.encode(), add_bos=False, special=True)
best = float("inf")
for _ in range(2):
    llm.reset(); t = time.perf_counter(); llm.eval(toks); best = min(best, time.perf_counter() - t)
llm.reset(); t = time.perf_counter()
for n, _ in enumerate(llm.generate(toks[:64], temp=0), 1):
    if n == 1:
        first = time.perf_counter()
    if n >= 33:
        break
end = time.perf_counter()
print(json.dumps({"build": sys.argv[4] if len(sys.argv) > 4 else local_llama.LLAMA_BUILD, "tokens": len(toks), "prompt_s": best,
                  "short_s": end - t, "write_tps": 32 / (end - first)}))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")
    ap.add_argument("--extra", action="append", default=[], metavar="NAME=DIR")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from pgmind.config import load_settings
    from pgmind.models.local import llama_build
    path = str(load_settings().models_dir / args.model)
    sources = " ".join(manual_sentences(60))
    prompt = f"<|im_start|>user\nSources:\n{sources}\nQuestion: what does VACUUM do?<|im_end|>\n<|im_start|>assistant\n"
    runs = [(name, [], dict(os.environ, PGMIND_LLAMA_BUILD=name)) for name, _ in llama_build.runnable()]
    runs += [(name, [folder, name], dict(os.environ, PGMIND_LLAMA_BUILD="portable"))
             for name, folder in (e.split("=", 1) for e in args.extra)]
    runs.append(("portable", [], dict(os.environ, PGMIND_LLAMA_BUILD="portable")))
    # rounds: every build once per round, so a busy moment of the machine falls on all of them alike
    results = {name: [] for name, _, _ in runs}
    for _ in range(args.rounds):
        for name, extra, env in runs:
            out = subprocess.run([sys.executable, "-c", CHILD, path, prompt, *extra], env=env, check=True,
                                 capture_output=True, text=True).stdout.strip().splitlines()[-1]
            results[name].append(json.loads(out))
    rows = [{"build": results[name][0]["build"], "tokens": results[name][0]["tokens"],
             **{k: statistics.median(r[k] for r in results[name]) for k in ("prompt_s", "short_s", "write_tps")}}
            for name, _, _ in runs]
    base = rows[-1]
    print(f"{base['tokens']}-token prompt, {os.cpu_count()} threads, median of {args.rounds} rounds\n")
    print("| llama.cpp build | prompt tokens/s | against portable | tokens written/s | 64-token prompt + 33 written |\n"
          "|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['build']} | {r['tokens'] / r['prompt_s']:.1f} | {base['prompt_s'] / r['prompt_s']:.2f}× "
              f"| {r['write_tps']:.1f} | {r['short_s']:.2f} s |")
    if len(rows) == 1:
        print("\n(this CPU or .venv has no build but the portable one)")


if __name__ == "__main__":
    main()
