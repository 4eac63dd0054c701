"""A first ingest against the loop a careful engineer writes by hand (issue 40): the same rows, the
same local model object, the same chunker, the same kind of table, on the same machine, in paired
rounds (loop, pgmind, loop, pgmind, ...), with OpenMP waiting passively in both.

- loop: read every row in one query, chunk them all, embed every chunk in one call (the model sorts
  all of them by length, so batches pad least), COPY chunks and vectors into a table of the store's
  shape (the keyword column included) in one transaction, then build the HNSW and GIN indexes;
- pgmind: the same rows already in a table, then `ai.create_vectorizer(...)` (it queues them) and one
  worker draining the queue (what `pgmind worker` runs: leases, the owner's content and write
  functions, per-batch transactions, the store's indexes kept current).

The model is loaded before either clock starts, and the embedding cache is off (each round embeds
the same text again: a first ingest's text is new); the sandbox's model server is idle.

    .venv/bin/python bench/bench_ingest_loop.py [--pages 300] [--rounds 3] [--batch-rows 32]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")      # (as pgmind's commands set it, for both)
os.environ.setdefault("GOMP_SPINCOUNT", "10000")
sys.path.insert(0, str(Path(__file__).parent))

from corpus import MANUAL  # noqa: E402
from pgmind.db import connect  # noqa: E402
from pgmind.devserver import Sandbox  # noqa: E402
from pgmind.documents import html_to_text  # noqa: E402
from pgmind.vectorizer.chunking import ChunkingConfig, chunk_text  # noqa: E402
from pgmind.vectorizer.worker import Worker  # noqa: E402

CHUNKING = {"method": "markdown", "max_tokens": 200, "overlap": 20}


def load_source(dsn: str, pages: int) -> int:
    files = sorted(MANUAL.glob("*.html"))[:pages]
    with connect(dsn, autocommit=True) as conn:
        conn.execute("drop table if exists src cascade")
        conn.execute("create table src (id int primary key, body text)")
        with conn.cursor().copy("copy src (id, body) from stdin") as copy:
            for i, f in enumerate(files):
                copy.write_row((i, html_to_text(f.read_text(errors="replace")).text))
        conn.execute("vacuum analyze src")
    return len(files)


def run_loop(dsn: str, model, count, dims: int) -> tuple[float, int]:
    config = ChunkingConfig.from_json(CHUNKING)
    start = time.perf_counter()
    with connect(dsn) as conn:
        conn.execute("drop table if exists loop_chunks")
        rows = conn.execute("select id, body from src order by id").fetchall()
        chunks = [(i, c.seq, c.text) for i, body in rows for c in chunk_text(body or "", config, count)]
        vectors = model.embed([c[2] for c in chunks], "document", truncate=True).vectors
        conn.execute(f"""create table loop_chunks (id int not null, chunk_seq int not null, chunk text not null,
                         embedding vector({dims}) not null,
                         fts tsvector generated always as (to_tsvector('english'::regconfig, ai.fts_text(chunk))) stored,
                         primary key (id, chunk_seq))""")
        with conn.cursor().copy("copy loop_chunks (id, chunk_seq, chunk, embedding) from stdin") as copy:
            for (i, seq, text), vec in zip(chunks, vectors):
                copy.write_row((i, seq, text, vec))
        conn.execute("create index on loop_chunks using hnsw (embedding vector_cosine_ops) with (m = 16, ef_construction = 64)")
        conn.execute("create index on loop_chunks using gin (fts)")
        conn.commit()
    return time.perf_counter() - start, len(chunks)


def run_pgmind(sb, batch_rows: int, model_id: str, worker: Worker | None) -> tuple[float, int, Worker]:
    with connect(sb.dsn, autocommit=True) as conn:
        conn.execute("select ai.drop_vectorizer('src') where exists (select 1 from ai.vectorizer_status "
                     "where name = 'src')")
    start = time.perf_counter()
    with connect(sb.dsn, autocommit=True) as conn:
        conn.execute("select ai.create_vectorizer('src'::regclass, content => 'body', model => %s, "
                     "chunking => %s::jsonb)", (model_id, json.dumps(CHUNKING)))
    worker = worker or Worker(sb.settings, sb.dsn, names=["src"], batch_rows=batch_rows)
    worker.names = ["src"]
    worker.drain(timeout=None)
    elapsed = time.perf_counter() - start
    with connect(sb.dsn, autocommit=True) as conn:
        n = conn.execute("select count(*) from src_chunks").fetchone()[0]
    return elapsed, n, worker


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--pages", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-rows", type=int, default=32, help="the worker's rows per batch (pgmind worker's default)")
    args = ap.parse_args()
    with Sandbox() as sb:
        n_rows = load_source(sb.dsn, args.pages)
        # one worker for every round: its model (and the loop's: the same object) loads before any clock;
        # no embedding cache, or every round after the first would find the last round's vectors
        worker = Worker(replace(sb.settings, embed_cache=0), sb.dsn, names=["src"], batch_rows=args.batch_rows)
        model = worker.embedder.local(args.model)
        count = worker.embedder.token_counter(args.model)
        model.embed(["warm up"], "document")
        loop_t, pg_t = [], []
        for r in range(args.rounds):
            t, n_loop = run_loop(sb.dsn, model, count, model.dimensions)
            loop_t.append(t)
            t, n_pg, worker = run_pgmind(sb, args.batch_rows, args.model, worker)
            pg_t.append(t)
            print(f"round {r + 1}: loop {loop_t[-1]:.1f} s ({n_loop} chunks), pgmind {pg_t[-1]:.1f} s "
                  f"({n_pg} chunks): {pg_t[-1] / loop_t[-1]:.2f}x", flush=True)
    ratios = [p / q for p, q in zip(pg_t, loop_t)]
    print(json.dumps({"rows": n_rows, "chunks": n_loop, "model": args.model, "batch_rows": args.batch_rows,
                      "loop_s": [round(x, 1) for x in loop_t], "pgmind_s": [round(x, 1) for x in pg_t],
                      "pgmind_over_loop": [round(x, 3) for x in ratios],
                      "median_ratio": round(statistics.median(ratios), 3)}))


if __name__ == "__main__":
    main()
