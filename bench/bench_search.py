"""Search and RAG figures on an ingested knowledge base (run `make demo` first, or
`pgmind ingest /usr/share/doc/postgresql-doc-15/html --into pg_docs --model use-m3`):

- retrieval quality per mode and language (the eval harness on eval/dev.jsonl);
- HNSW vs exact search on the same chunks: recall@10 of the index, and the query-time ratio;
- latency of ai.search per mode (p50/p95), and of RAG to the first token.

    .venv/bin/python bench/bench_search.py [--name pg_docs] [--questions eval/dev.jsonl]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from pgmind.client import Pgmind  # noqa: E402
from pgmind.evaluation import MODES, evaluate_answers, evaluate_retrieval, load_questions  # noqa: E402


def ms(values, q):
    return float(np.percentile(np.asarray(values) * 1000, q))


def hnsw_vs_exact(db: Pgmind, name: str, questions) -> tuple[float, float, float]:
    conn = db.conn
    store, model = conn.execute("""select destination, model from ai.vectorizer_status
                                   where name = %s and status = 'active'""", (name,)).fetchone()
    recalls, t_index, t_exact = [], [], []
    query = f"select chunk_seq, path from {store} order by embedding <=> %s::vector limit 10"
    for q in questions:
        v = conn.execute("select ai.embed(%s, %s, 'query')::text", (model, q.question)).fetchone()[0]
        with conn.transaction():
            conn.execute("set local hnsw.ef_search = 40")
            s = time.perf_counter()
            approx = conn.execute(query, (v,), prepare=False).fetchall()
            t_index.append(time.perf_counter() - s)
        with conn.transaction():
            conn.execute("set local enable_indexscan = off")
            conn.execute("set local enable_bitmapscan = off")
            s = time.perf_counter()
            # prepare=False: a prepared plan from before the settings would hide the difference
            exact = conn.execute(query, (v,), prepare=False).fetchall()
            t_exact.append(time.perf_counter() - s)
        recalls.append(len(set(approx) & set(exact)) / max(len(exact), 1))
    return float(np.mean(recalls)), float(np.median(t_index)), float(np.median(t_exact))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", default="pg_docs")
    ap.add_argument("--questions", default="eval/dev.jsonl")
    ap.add_argument("--answers", action="store_true", help="also score RAG answers (slow: one LLM call each)")
    args = ap.parse_args()
    qs = load_questions(args.questions)
    with Pgmind() as db:
        chunks = db.conn.execute("select sum(done) from ai.vectorizer_status where name = %s", (args.name,)).fetchone()
        n_chunks = db.conn.execute(f"select count(*) from {args.name}_chunks").fetchone()[0]
        model = db.conn.execute("select model from ai.vectorizer_status where name = %s", (args.name,)).fetchone()[0]
        print(f"knowledge base `{args.name}`: {chunks[0]} documents, {n_chunks} chunks, model `{model}`; "
              f"{len(qs)} questions ({sum(1 for q in qs if q.gold)} answerable)\n")
        report = evaluate_retrieval(db, args.name, qs, MODES)
        print("| mode | lang | n | recall@1 | recall@5 | recall@10 | MRR | nDCG@10 |")
        print("|---|---|---|---|---|---|---|---|")
        for mode, per in report.items():
            for lang in ("en", "zh", "all"):
                sc = per[lang]
                print(f"| {mode} | {lang} | {sc['n']} | {sc['recall@1']} | {sc['recall@5']} | {sc['recall@10']} "
                      f"| {sc['mrr']} | {sc['ndcg@10']} |")
        recall, t_idx, t_exact = hnsw_vs_exact(db, args.name, qs)
        print(f"\nHNSW (m=16, ef_construction=64, ef_search=40) vs exact search over {n_chunks} chunks: "
              f"recall@10 {recall:.3f}; median query {t_idx * 1000:.2f} ms vs {t_exact * 1000:.2f} ms "
              f"({t_exact / t_idx:.1f}× faster)\n")
        print("| operation | p50 | p95 |")
        print("|---|---|---|")
        for mode in MODES:
            times = []
            for q in qs:
                s = time.perf_counter()
                db.search(args.name, q.question, k=10, mode=mode)
                times.append(time.perf_counter() - s)
            print(f"| `ai.search` {mode}, k=10 | {ms(times, 50):.1f} ms | {ms(times, 95):.1f} ms |")
        ttft = []
        for q in [q for q in qs if q.gold][:10]:
            s = time.perf_counter()
            stream = db.ask(args.name, q.question, stream=True)
            for _ in stream:
                ttft.append(time.perf_counter() - s)
                break
            for _ in stream:
                pass
        print(f"| RAG to the first token (retrieval + prompt + model) | {ms(ttft, 50):.0f} ms | {ms(ttft, 95):.0f} ms |")
        if args.answers:
            summary = evaluate_answers(db, args.name, qs)["summary"]
            print("\n| lang | answers with the facts | unanswerable declined |\n|---|---|---|")
            for lang, sc in sorted(summary.items()):
                print(f"| {lang} | {sc['facts']} | {sc['declined']} |")


if __name__ == "__main__":
    main()
