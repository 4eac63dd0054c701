"""Time to the first token of a RAG answer, as `pgmind ask` streams it, for several RAG settings of
one knowledge base in the same run (each question asked once per setting, settings interleaved per
question so a busy moment of the machine falls on all of them alike).  Also reports how long the
retrieval (topic check, translation, expansion, search, choosing sentences: ai.rag_prompt) took and
how many tokens the answer model read.

    .venv/bin/python bench/bench_rag_latency.py pg_docs eval/dev2.jsonl --per-language 5 \
        --variant 'shipped={}' --variant 'whole chunks={"source_sentences": null}'

Each variant is a JSON object of RAG settings laid over the knowledge base's own for its turn
(ai.configure_rag); the knowledge base's settings are put back at the end, also on failure (directly in
ai.vectorizers: run it as the role that installed pgmind, as `make demo` does).  Needs
the model server running (`pgmind serve`) and a knowledge base owned by the connecting role.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from pgmind.client import AnswerStream, Pgmind  # noqa: E402
from pgmind.evaluation import load_questions  # noqa: E402


def cpu() -> str:
    try:
        names = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")]
        avx512 = " with AVX-512" if "avx512f" in open("/proc/cpuinfo").read() else ""
        return f"{names[0]}{avx512}, {len(names)} CPUs"
    except (OSError, IndexError):
        return platform.processor() or platform.machine()


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("questions")
    ap.add_argument("--per-language", type=int, default=5, help="answerable questions per language")
    ap.add_argument("--variant", action="append", default=[], help="label=JSON settings (repeatable)")
    args = ap.parse_args()
    variants = [(v.split("=", 1)[0], json.loads(v.split("=", 1)[1])) for v in args.variant] or [("shipped", {})]
    qs = load_questions(args.questions)
    chosen = [q for lang in ("en", "zh") for q in [q for q in qs if q.gold and q.lang == lang][:args.per_language]]
    times: dict[str, dict[str, list[float]]] = {label: {"prompt": [], "first": [], "whole": [], "tokens": []}
                                                for label, _ in variants}
    with Pgmind() as db:
        (saved,) = db.conn.execute("select v.config->'rag' from ai.vectorizers v where v.name = %s",
                                   (args.name,)).fetchone()
        (defaults,) = db.conn.execute("select ai.rag_defaults()").fetchone()
        # (configure_rag merges: every key a variant sets is set on every turn, to the variant's
        # value, else the knowledge base's own, else the default)
        touched = {k for _, settings in variants for k in settings}
        base = {k: (saved or {}).get(k, defaults.get(k)) for k in touched}
        try:
            for q in chosen:
                for label, settings in variants:
                    db.conn.execute("select ai.configure_rag(%s, %s)",
                                    (args.name, json.dumps({**(saved or {}), **base, **settings})))
                    t0 = time.monotonic()
                    (prompt,) = db.conn.execute("select ai.rag_prompt(%s, %s)", (args.name, q.question)).fetchone()
                    t_prompt = time.monotonic() - t0
                    first = None
                    stream = AnswerStream(db.settings, prompt)
                    for _ in stream:
                        first = first or time.monotonic() - t0
                    whole = time.monotonic() - t0
                    usage = (stream.result.usage or {}) if stream.result else {}
                    t = times[label]
                    t["prompt"].append(t_prompt)
                    t["first"].append(first or whole)
                    t["whole"].append(whole)
                    t["tokens"].append(usage.get("prompt_tokens") or 0)
                    print(f"{label:>16}  retrieval {t_prompt:5.1f} s  first {first or whole:5.1f} s  "
                          f"whole {whole:5.1f} s  {q.question}", flush=True)
        finally:
            db.conn.execute("update ai.vectorizers set config = case when %s::jsonb is null then config - 'rag' "
                            "else jsonb_set(config, '{rag}', %s::jsonb) end where name = %s",
                            (json.dumps(saved) if saved is not None else None,
                             json.dumps(saved) if saved is not None else None, args.name))
    print(f"\n{cpu()}; {len(chosen)} questions "
          f"({args.per_language} en + {args.per_language} zh, answerable) of {args.questions}\n")
    print("| settings | retrieval p50 | first token p50 | p95 | whole answer p50 | prompt tokens p50 |")
    print("|---|---|---|---|---|---|")
    for label, _ in variants:
        t = times[label]
        print(f"| {label} | {statistics.median(t['prompt']):.1f} s | **{statistics.median(t['first']):.1f} s** | "
              f"{pct(t['first'], 0.95):.1f} s | {statistics.median(t['whole']):.1f} s | "
              f"{statistics.median(t['tokens']):.0f} |")


if __name__ == "__main__":
    main()
