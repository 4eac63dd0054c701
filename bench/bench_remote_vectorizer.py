"""A vectorizer on a remote model, pgmind against pgai's worker (issue 13).  Same rows, same model
(`minilm`, max 256 tokens) behind the same OpenAI-compatible endpoint (`pgmind serve`'s
/v1/embeddings), in the same run; the corpus holds rows whose chunks overflow the model when
counted as four characters a token (Chinese text, lists of numbers), as real tables do.

- pgai 0.12.1 (`pgai vectorizer worker --once`, in its own database, since it also uses the `ai`
  schema): recursive character splitter, 800 characters, overlap 80 — its documented default shape;
- pgmind, the model registered as a remote OpenAI provider (`options.max_tokens` 256): chunks counted
  with the upper estimate; and again naming the tokenizer (`options.tokenizer` 'minilm').

Reported: seconds until the worker stops, chunks/s, rows embedded, rows quarantined (with the
provider's reason), rows left neither.  pgai is installed into .bench-venvs/pgai on first use (its
vectorizer-worker extra pulls torch with CUDA: about 6.5 GB; PGAI_VENV names another virtualenv).

    .venv/bin/python bench/bench_remote_vectorizer.py [--pages 150]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).parent))

from corpus import MANUAL  # noqa: E402
from pgmind.db import connect  # noqa: E402
from pgmind.devserver import Sandbox  # noqa: E402
from pgmind.documents import html_to_text  # noqa: E402
from pgmind.vectorizer.worker import Worker  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PGAI_VENV = Path(os.environ.get("PGAI_VENV") or ROOT / ".bench-venvs" / "pgai")
PGAI = "pgai[vectorizer-worker]==0.12.1"


def corpus(pages: int) -> list[tuple[int, str]]:
    files = sorted(MANUAL.glob("*.html"))[100:100 + pages]
    rows = [(i, html_to_text(f.read_text(errors="replace")).text) for i, f in enumerate(files)]
    n = len(rows)
    # rows that overflow a 256-token model at four characters a token
    for j in range(10):
        rows.append((n + j, "PostgreSQL 支持多种索引类型,例如 B 树、哈希、GiST 和 GIN。每种索引适合不同的查询。" * (8 + j)))
    for j in range(10):
        rows.append((n + 10 + j, "Port numbers in use: " + ", ".join(str(5400 + k) for k in range(300 + 10 * j)) + "."))
    return rows


def pgai_bin() -> Path:
    exe = PGAI_VENV / "bin" / "pgai"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PGAI_VENV)], check=True)
        subprocess.run([str(PGAI_VENV / "bin" / "pip"), "install", "-q", PGAI], check=True)
    return exe


def load(dsn: str, rows, table: str = "docs") -> None:
    with connect(dsn, autocommit=True, register_vector=False) as conn:
        conn.execute(f"drop table if exists {table} cascade")
        conn.execute(f"create table {table} (id int primary key, body text)")
        with conn.cursor().copy(f"copy {table} (id, body) from stdin") as copy:
            for r in rows:
                copy.write_row(r)


def run_pgai(sb: Sandbox, rows, base_url: str, key: str, limit: float) -> dict:
    exe = pgai_bin()
    with connect(sb.dsn, autocommit=True, register_vector=False) as conn:
        conn.execute("drop database if exists pgai_bench with (force)")
        conn.execute("create database pgai_bench")
    dsn = psycopg.conninfo.make_conninfo(sb.dsn, dbname="pgai_bench")
    url = "postgresql://{user}@/{dbname}?host={host}&port={port}".format(**psycopg.conninfo.conninfo_to_dict(dsn))
    subprocess.run([str(exe), "install", "-d", url], check=True, capture_output=True)
    load(dsn, rows)
    with connect(dsn, autocommit=True, register_vector=False) as conn:
        conn.execute("""select ai.create_vectorizer('docs'::regclass, loading => ai.loading_column('body'),
                            embedding => ai.embedding_openai('minilm', 384, base_url => %s),
                            chunking => ai.chunking_recursive_character_text_splitter(800, 80),
                            destination => ai.destination_table('docs_embeddings'))""", (base_url,))
    env = {**os.environ, "OPENAI_API_KEY": key}
    start = time.perf_counter()
    deadline = start + limit
    finished = False
    while time.perf_counter() < deadline:   # --once processes what is queued; repeat until the queue is empty
        try:
            subprocess.run([str(exe), "vectorizer", "worker", "-d", url, "--once"], env=env, capture_output=True,
                           timeout=max(1, deadline - time.perf_counter()))
        except subprocess.TimeoutExpired:
            break
        with connect(dsn, autocommit=True, register_vector=False) as conn:
            pending = conn.execute("select ai.vectorizer_queue_pending(1, true)").fetchone()[0]
        if pending == 0:
            finished = True
            break
    elapsed = time.perf_counter() - start
    with connect(dsn, autocommit=True, register_vector=False) as conn:
        done = conn.execute("select count(distinct id), count(*) from docs_embeddings_store").fetchone()
        errors = conn.execute("select count(*) from ai.vectorizer_errors").fetchone()[0]
        pending = conn.execute("select ai.vectorizer_queue_pending(1, true)").fetchone()[0]
    return {"seconds": elapsed, "rows": done[0], "chunks": done[1], "quarantined": None, "errors_logged": errors,
            "left": pending, "finished": finished}


def run_pgmind(sb: Sandbox, rows, base_url: str, key: str, tokenizer: str | None, limit: float) -> dict:
    options = {"dimensions": 384, "max_tokens": 256, **({"tokenizer": tokenizer} if tokenizer else {})}
    import json
    with connect(sb.dsn, autocommit=True) as conn:
        conn.execute("select ai.drop_model('remote-minilm', if_exists => true)")
        conn.execute("select ai.create_model('remote-minilm', %s, 'openai', 'embedding', 'minilm', %s::jsonb, "
                     "options => %s::jsonb)", (base_url, json.dumps({"author_type": "token", "token": key}),
                                              json.dumps(options)))
    load(sb.dsn, rows)
    with connect(sb.dsn, autocommit=True) as conn:
        conn.execute("select ai.create_vectorizer('docs'::regclass, content => 'body', model => 'remote-minilm', "
                     "chunking => '{\"method\": \"recursive\", \"max_tokens\": 256, \"overlap\": 20}', backfill => true)")
    w = Worker(sb.settings, sb.dsn, names=["docs"], batch_rows=16, poll_interval=0.05)
    start = time.perf_counter()
    try:
        w.drain(timeout=limit)
        finished = True
    except TimeoutError:
        finished = False
    elapsed = time.perf_counter() - start
    with connect(sb.dsn, autocommit=True) as conn:
        done = conn.execute("select count(distinct id), count(*) from docs_chunks").fetchone()
        q = conn.execute("select count(*), min(error) from ai.vectorizer_errors where vectorizer = 'docs'").fetchone()
        pending = conn.execute("select pending + leased from ai.vectorizer_status where name = 'docs'").fetchone()[0]
        conn.execute("select ai.drop_vectorizer('docs')")
    return {"seconds": elapsed, "rows": done[0], "chunks": done[1], "quarantined": q[0], "reason": q[1],
            "left": pending, "finished": finished}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=150)
    ap.add_argument("--limit", type=float, default=180.0, help="seconds each pipeline may take")
    args = ap.parse_args()
    rows = corpus(args.pages)
    with Sandbox() as sb:
        base_url = sb.settings.effective_server_url + "/v1"
        with connect(sb.dsn, autocommit=True) as conn:
            conn.execute("select ai.allow_outbound('127.0.0.1')")       # the model server is on loopback
            conn.execute("create role bench_reader")
            key = conn.execute("select ai.create_api_key('bench_reader')").fetchone()[0]
        # warm the model in the server
        subprocess.run([sys.executable, "-c", "import httpx,sys; httpx.post(sys.argv[1] + '/embeddings', "
                        "json={'model': 'minilm', 'input': 'warm'}, headers={'Authorization': 'Bearer ' + sys.argv[2]}, "
                        "timeout=120)", base_url, key], check=True)
        results = {"pgai 0.12.1 worker (800-character chunks)": run_pgai(sb, rows, base_url, key, args.limit),
                   "pgmind worker, upper-estimate token counts": run_pgmind(sb, rows, base_url, key, None, args.limit),
                   "pgmind worker, options.tokenizer = minilm": run_pgmind(sb, rows, base_url, key, "minilm",
                                                                           args.limit)}
    print(f"\n{len(rows)} rows ({args.pages} manual pages + 20 that overflow at four characters a token); "
          f"model `minilm` (256 tokens) behind `pgmind serve` /v1/embeddings\n")
    print("| pipeline | finished | seconds | chunks/s | rows embedded | rows quarantined | rows left |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        q = "—" if r["quarantined"] is None else r["quarantined"]
        print(f"| {name} | {'yes' if r['finished'] else 'no (limit)'} | {r['seconds']:.1f} | "
              f"{r['chunks'] / r['seconds']:.1f} | {r['rows']} / {len(rows)} | {q} | {r['left']} |")
    for name, r in results.items():
        if r.get("reason"):
            print(f"\n{name}: quarantined because: {r['reason'][:200]}")
        if r.get("errors_logged"):
            print(f"\n{name}: {r['errors_logged']} errors in pgai's ai.vectorizer_errors")


if __name__ == "__main__":
    main()
