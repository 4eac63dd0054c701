"""What the heading list costs ai.search: the same retrieval (`ai_internal._search_run`, the four
ranked lists of RAG's hybrid search with a kept expansion) with and without the expansion's headings,
interleaved per question, on an ingested knowledge base (run `make demo` first).  Reports p50 / p95
and the ratio.

    .venv/bin/python bench/bench_heading_list.py [--name pg_docs] [--questions eval/dev3.jsonl] [--reps 3]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from pgmind.client import Pgmind  # noqa: E402
from pgmind.evaluation import load_questions  # noqa: E402

RUN = """select count(*) from ai_internal._search_target(%(name)s, current_user) t,
    lateral ai_internal._search_run(t.store, t.key_json, t.key_cols, t.source, t.source_key_cols, null,
        array[%(qv)s, %(ev)s], array[ai.keyword_query(%(q)s), ai.keyword_query(ai_internal._expansion_names(%(ex)s))],
        'hybrid', 40, 5, 1.0, 1.0, 60, 'document', 2, %(heads)s)"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", default="pg_docs")
    ap.add_argument("--questions", default="eval/dev3.jsonl")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    with Pgmind() as db:
        conn = db.conn
        model = conn.execute("select model from ai_internal._search_target(%s, current_user)", (args.name,)).fetchone()[0]
        cfg = conn.execute("select ai_internal._kb_settings((ai_internal._search_target(%s, current_user)).config)",
                           (args.name,)).fetchone()[0]
        cases = []
        for q in load_questions(args.questions):
            if not q.gold:
                continue
            # the expansion and the vectors once (not timed): only the retrieval is compared
            ex = conn.execute("select ai_internal._expand(%s, %s, %s)", (json.dumps(cfg), args.name, q.question)).fetchone()[0]
            tr = conn.execute("select ai_internal._translate(%s, %s)", (json.dumps(cfg), q.question)).fetchone()[0]
            qv, ev = (conn.execute("select ai.embed(%s, %s, 'query')::text", (model, t)).fetchone()[0] for t in (tr, ex))
            heads = conn.execute("select ai_internal._expansion_headings(%s)", (ex,)).fetchone()[0]
            cases.append({"name": args.name, "q": q.question if tr == q.question else f"{q.question} {tr}",
                          "ex": ex, "qv": qv, "ev": ev, "heads": heads})
        times = {"without": [], "with": []}
        for _ in range(args.reps):
            for c in cases:
                for label, heads in (("without", []), ("with", c["heads"])):
                    started = time.perf_counter()
                    conn.execute(RUN, {**c, "heads": heads})
                    times[label].append(time.perf_counter() - started)
    for label, t in times.items():
        print(f"{label:8s} headings: p50 {np.percentile(t, 50) * 1000:.1f} ms  p95 {np.percentile(t, 95) * 1000:.1f} ms")
    print(f"ratio with / without (p50): {np.percentile(times['with'], 50) / np.percentile(times['without'], 50):.2f}"
          f"  ({len(cases)} questions × {args.reps})")


if __name__ == "__main__":
    main()
