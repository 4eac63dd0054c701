"""What the prompt-prefix cache (pgmind.models.local.llama_prefix) saves RAG before its first token: the
three prompts RAG gives its chat model per question — topic check, expansion, answer — read by two
copies of the model in this process, taking turns per prompt (who goes first alternates), each timed
to its first token: "whole" reads every prompt in one go with nothing kept (as before the cache;
PGMIND_PREFIX_CACHE_MB=0),
"cached" with the cache.  The first tokens are compared too: they must be the same.

    .venv/bin/python bench/bench_prefix_cache.py pg_docs eval/dev2.jsonl --per-language 5

The prompts are RAG's own (its settings for the knowledge base, `ai.rag_prompt` for the answer's),
so it needs the database and the model server (`pgmind serve`) up; the timing uses neither.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_rag_latency import cpu  # noqa: E402
from pgmind.client import Pgmind  # noqa: E402
from pgmind.evaluation import load_questions  # noqa: E402


def prompts(db, name: str, question: str) -> dict[str, list[dict]]:
    """RAG's messages for each of its three chat calls on this question."""
    (cfg,) = db.conn.execute("select ai_internal._kb_settings(v.config) from ai.vectorizers v where v.name = %s",
                             (name,)).fetchone()
    fill = {"topic": cfg.get("topic") or name, "question": question}
    (lang,) = db.conn.execute("select ai_internal._text_language(%s)", (question,)).fetchone()
    lang = cfg.get("language") or lang

    def filled(key: str) -> str:
        return db.conn.execute("select ai_internal._fill(%s, %s)", (cfg[key], json.dumps(fill))).fetchone()[0]
    (rag,) = db.conn.execute("select ai.rag_prompt(%s, %s)", (name, question)).fetchone()
    out = {"topic": [{"role": "system", "content": cfg["topic_system"]}, {"role": "user", "content": filled("topic_prompt")}],
           "expansion": [{"role": "user", "content": filled(f"expand_prompt_{lang if lang in ('en', 'zh') else 'en'}")}]}
    if rag.get("messages"):
        out["answer"] = rag["messages"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("questions")
    ap.add_argument("--per-language", type=int, default=5)
    ap.add_argument("--model", default="Qwen2.5-Coder-1.5B-Instruct-Q4_K_M")
    args = ap.parse_args()
    from pgmind.models.local.assets import MODELS, gguf_path
    from pgmind.models.local.llama import LLAMA_BUILD, LlamaCppChat
    qs = load_questions(args.questions)
    chosen = [q for lang in ("en", "zh") for q in [q for q in qs if q.gold and q.lang == lang][:args.per_language]]
    with Pgmind() as db:
        asked = [(q.question, prompts(db, args.name, q.question)) for q in chosen]
        path = str(gguf_path(MODELS[args.model], db.settings.models_dir))
    labels = ("whole", "cached")
    models = {"cached": LlamaCppChat(path), "whole": LlamaCppChat(path, prefix_cache_mb=0)}
    times = {kind: {label: [] for label in labels} for kind in ("topic", "expansion", "answer")}
    per_question = {label: [] for label in labels}
    tokens = {kind: [] for kind in times}
    same = 0
    for i, (question, calls) in enumerate(asked):
        total = {label: 0.0 for label in labels}
        for j, (kind, messages) in enumerate(calls.items()):
            first = {}
            for label in labels[(i + j) % 2:] + labels[:(i + j) % 2]:
                model = models[label]
                t0 = time.monotonic()
                reply = model.chat(messages, {"max_tokens": 1, "temperature": 0})
                dt = time.monotonic() - t0
                times[kind][label].append(dt)
                total[label] += dt
                first[label] = reply.content
            tokens[kind].append(reply.input_tokens)
            same += len(set(first.values())) == 1
        for label in total:
            per_question[label].append(total[label])
        print("  ".join(f"{label} {total[label]:5.2f} s" for label in labels) + f"  {question}", flush=True)
    n_calls = sum(len(c) for _, c in asked)
    print(f"\n{cpu()}; llama.cpp build {LLAMA_BUILD}; {args.model}; {len(chosen)} questions of {args.questions}; "
          f"first tokens the same in {same} of {n_calls} calls; cache {models['cached']._prefixes.stats()}\n")
    print("| RAG's call | prompt tokens p50 | first token p50, nothing kept | with the cache | saved |")
    print("|---|---|---|---|---|")
    rows = [(kind, t, statistics.median(tokens[kind])) for kind, t in times.items() if t["whole"]]
    rows.append(("all three, per question", per_question, None))
    for kind, t, n in rows:
        w, c = (statistics.median(t[label]) for label in labels)
        print(f"| {kind} | {'' if n is None else f'{n:.0f}'} | {w:.2f} s | **{c:.2f} s** | "
              f"{w - c:.2f} s ({1 - c / w:.0%}) |")


if __name__ == "__main__":
    main()
