"""Vectorizer throughput (issue: vectorizers). Same chunks, same model, same run:

- raw: the chunks embedded in-process, nothing else (the ceiling);
- vectorizer: insert the documents → the worker leases, reads, chunks, embeds, COPYs;
- naive: the loop people write: select a row without an embedding, embed it, insert it, commit, repeat;
- two workers vs one.

    .venv/bin/python bench/bench_vectorizer.py [--model minilm] [--pages 40]
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from corpus import MANUAL  # noqa: E402
from pgmind.db import connect  # noqa: E402
from pgmind.devserver import Sandbox  # noqa: E402
from pgmind.documents import html_to_text  # noqa: E402
from pgmind.vectorizer.chunking import ChunkingConfig, chunk_text  # noqa: E402
from pgmind.vectorizer.worker import Worker  # noqa: E402

CHUNKING = '{"method": "markdown", "max_tokens": 200, "overlap": 20}'


def load_docs(pages: int) -> list[tuple[int, str]]:
    files = sorted(MANUAL.glob("*.html"))[100:100 + pages]
    return [(i, html_to_text(f.read_text(errors="replace")).text) for i, f in enumerate(files)]


def setup_table(dsn, docs, model, name="docs"):
    with connect(dsn, autocommit=True) as conn:
        conn.execute(f"drop table if exists {name} cascade")
        conn.execute(f"create table {name} (id int primary key, body text)")
        conn.execute(f"select ai.create_vectorizer('{name}'::regclass, content => 'body', model => %s, "
                     f"chunking => %s::jsonb, backfill => false)", (model, CHUNKING))


def run_vectorizer(sb, docs, model, workers: int) -> float:
    setup_table(sb.dsn, docs, model)
    ws = [Worker(sb.settings, sb.dsn, names=["docs"], batch_rows=16, poll_interval=0.05) for _ in range(workers)]
    for w in ws:                                   # load the model before the clock starts
        w.embedder.embed_documents(model, ["warm up"])
    start = time.perf_counter()
    with connect(sb.dsn, autocommit=True) as conn:
        with conn.cursor().copy("copy docs (id, body) from stdin") as copy:
            for row in docs:
                copy.write_row(row)
    threads = [threading.Thread(target=w.drain) for w in ws]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    with connect(sb.dsn, autocommit=True) as conn:
        conn.execute("select ai.drop_vectorizer('docs')")
    return elapsed


def run_raw(worker: Worker, chunks: list[str], model: str) -> float:
    start = time.perf_counter()
    for i in range(0, len(chunks), 256):
        worker.embedder.embed_documents(model, chunks[i:i + 256])
    return time.perf_counter() - start


def run_naive(sb, docs, chunks_per_doc, model: str) -> float:
    """The loop people write today: find a row without an embedding, embed it (here with
    ai.embed, through the same model server), UPDATE it, commit; repeat."""
    with connect(sb.dsn, autocommit=True) as conn:
        conn.execute("drop table if exists naive")
        conn.execute("create table naive (id int, seq int, chunk text, embedding vector, primary key (id, seq))")
        with conn.cursor().copy("copy naive (id, seq, chunk) from stdin") as copy:
            for (doc_id, _), chunks in zip(docs, chunks_per_doc):
                for seq, text in enumerate(chunks):
                    copy.write_row((doc_id, seq, text))
        conn.execute("select ai.embed(%s, 'warm up')", (model,))
        start = time.perf_counter()
        while True:
            row = conn.execute("select id, seq from naive where embedding is null limit 1").fetchone()
            if row is None:
                break
            conn.execute("update naive set embedding = ai.embed(%s, chunk, 'document') where id = %s and seq = %s",
                         (model, *row))
        return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--pages", type=int, default=150)
    args = ap.parse_args()
    docs = load_docs(args.pages)
    with Sandbox() as sb:
        probe = Worker(sb.settings, sb.dsn)
        count = probe.embedder.token_counter(args.model)
        import json
        config = ChunkingConfig.from_json(json.loads(CHUNKING))
        chunks_per_doc = [[c.text for c in chunk_text(body, config, count)] for _, body in docs]
        chunks = [c for cs in chunks_per_doc for c in cs]
        probe.embedder.embed_documents(args.model, ["warm up"])
        raw = run_raw(probe, chunks, args.model)
        one = run_vectorizer(sb, docs, args.model, 1)
        two = run_vectorizer(sb, docs, args.model, 2)
        naive = run_naive(sb, docs, chunks_per_doc, args.model)
    n = len(chunks)
    print(f"model `{args.model}`, {len(docs)} pages of the PostgreSQL manual → {n} chunks "
          f"(markdown chunking, 200 tokens, overlap 20)\n")
    print("| pipeline | seconds | chunks/s | vs raw model |")
    print("|---|---|---|---|")
    for label, t in (("raw model in-process (ceiling)", raw), ("vectorizer, 1 worker", one),
                     ("vectorizer, 2 workers", two), ("naive loop (select, `ai.embed`, update, commit per chunk)", naive)):
        print(f"| {label} | {t:.1f} | {n / t:.1f} | {raw / t:.2f}× |")
    print(f"\nvectorizer vs naive loop: {naive / one:.2f}× faster; 2 workers vs 1: {one / two:.2f}×")


if __name__ == "__main__":
    main()
