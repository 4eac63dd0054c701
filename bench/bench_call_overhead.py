"""What a release's per-call plumbing costs: ai.embed, ai.search (three modes) from SQL and
/v1/search over HTTP with an API key, on a small knowledge base of manual pages, in a fresh
sandbox.  Run it under two source trees and compare (docs/benchmarks.md, "Per-call overhead"):

    PYTHONPATH=<tree>/src .venv/bin/python bench/bench_call_overhead.py [--pages 30] [--rounds 40]

Prints one JSON line of medians (ms)."""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import httpx  # noqa: E402

from corpus import MANUAL  # noqa: E402
from pgmind.db import connect  # noqa: E402
from pgmind.devserver import Sandbox  # noqa: E402
from pgmind.documents import html_to_text  # noqa: E402
from pgmind.vectorizer.worker import Worker  # noqa: E402

QUERIES = ["vacuum full locks", "create index concurrently", "jsonb operators", "how to kill a query",
           "怎样查看表的大小", "default port", "wal archiving", "row level security policies"]


def timed(fn, rounds: int) -> float:
    fn()                                  # warm
    out = []
    for i in range(rounds):
        t = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(out), 2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=40)
    args = ap.parse_args()
    pages = sorted(MANUAL.glob("*.html"))[:args.pages]
    with Sandbox() as sb, connect(sb.dsn, autocommit=True) as conn:
        conn.execute("create table bench_docs (id int primary key, body text)")
        conn.execute("select ai.create_vectorizer('bench_docs'::regclass, content => 'body', model => 'minilm')")
        with conn.cursor() as cur:
            cur.executemany("insert into bench_docs values (%s, %s)",
                            [(i, html_to_text(p.read_text(errors="replace")).text) for i, p in enumerate(pages)])
        t = time.perf_counter()
        Worker(sb.settings, sb.dsn, names=["bench_docs"], poll_interval=0.1).drain(timeout=1200)
        ingest_s = time.perf_counter() - t
        chunks = conn.execute("select count(*) from bench_docs_chunks").fetchone()[0]
        conn.execute("create role bench_reader")
        conn.execute("grant select on bench_docs, bench_docs_chunks_v1 to bench_reader")
        key = conn.execute("select ai.create_api_key('bench_reader')").fetchone()[0]
        q = lambda i=0: QUERIES[i % len(QUERIES)]  # noqa: E731
        out = {"pages": len(pages), "chunks": chunks, "ingest_rows_per_s": round(len(pages) / ingest_s, 2),
               "embed_ms": timed(lambda i=0: conn.execute("select ai.embed('minilm', %s)", (q(i),)), args.rounds)}
        for mode in ("vector", "keyword", "hybrid"):
            out[f"search_{mode}_ms"] = timed(lambda i=0, m=mode: conn.execute(
                "select * from ai.search('bench_docs', %s, k => 5, mode => %s)", (q(i), m)).fetchall(), args.rounds)
        with httpx.Client(base_url=sb.settings.effective_server_url, timeout=60,
                          headers={"Authorization": f"Bearer {key}"}) as http:
            def http_search(i=0):
                r = http.post("/v1/search", json={"name": "bench_docs", "query": q(i), "k": 5})
                assert r.status_code == 200, r.text
            out["http_search_hybrid_ms"] = timed(http_search, args.rounds)
        print(json.dumps(out))


if __name__ == "__main__":
    main()
