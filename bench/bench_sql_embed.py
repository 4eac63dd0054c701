"""ai.embed from SQL vs the same model in-process (issue: SQL call overhead, batched throughput,
concurrency). Starts its own cluster and model server; prints a markdown table.

    .venv/bin/python bench/bench_sql_embed.py [--model e5-small] [--n 300]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402

from corpus import manual_sentences  # noqa: E402
from pgmind.db import connect  # noqa: E402
from pgmind.devserver import Sandbox  # noqa: E402
from pgmind.models.local.loader import load_local_embedding  # noqa: E402
from pgmind.models.spec import ModelSpec  # noqa: E402


def pct(values, q):
    return float(np.percentile(np.asarray(values) * 1000.0, q))


def local_model(dsn: str, model: str):
    with connect(dsn) as conn:
        row = conn.execute("select provider, model_type, model_name, options from ai.model_registry "
                           "where model_id = %s", (model,)).fetchone()
    return load_local_embedding(ModelSpec(model, row[0], row[1], row[2], options=row[3]))


def single_calls(dsn, model, texts, local):
    sql_t, local_t = [], []
    with connect(dsn, autocommit=True) as conn:
        conn.execute("select ai.embed(%s, 'warm up')", (model,))
        local.embed(["warm up"])
        for t in texts:     # interleaved, so both see the same machine load
            s = time.perf_counter()
            conn.execute("select ai.embed(%s, %s)", (model, t)).fetchone()
            sql_t.append(time.perf_counter() - s)
            s = time.perf_counter()
            local.embed([t])
            local_t.append(time.perf_counter() - s)
    return sql_t, local_t


def batched(dsn, model, texts, local, batch=64, rounds=3):
    sql_best = local_best = float("inf")
    with connect(dsn, autocommit=True) as conn:
        for _ in range(rounds):
            s = time.perf_counter()
            for i in range(0, len(texts), batch):
                conn.execute("select count(*) from ai.embed(%s, %s::text[], 'document')",
                             (model, texts[i:i + batch])).fetchone()
            sql_best = min(sql_best, time.perf_counter() - s)
            s = time.perf_counter()
            for i in range(0, len(texts), batch):
                local.embed(texts[i:i + batch], "document")
            local_best = min(local_best, time.perf_counter() - s)
    return len(texts) / sql_best, len(texts) / local_best


def concurrent(dsn, model, texts, sessions):
    """Each session embeds its share of the texts one row at a time; returns texts/s overall."""
    shares = [texts[i::sessions] for i in range(sessions)]
    conns = [connect(dsn, autocommit=True) for _ in range(sessions)]
    for c in conns:
        c.execute("select ai.embed(%s, 'warm up')", (model,))
    barrier = threading.Barrier(sessions + 1)

    def work(conn, share):
        barrier.wait()
        for t in share:
            conn.execute("select ai.embed(%s, %s)", (model, t)).fetchone()

    threads = [threading.Thread(target=work, args=(c, s)) for c, s in zip(conns, shares)]
    for th in threads:
        th.start()
    barrier.wait()
    s = time.perf_counter()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - s
    for c in conns:
        c.close()
    return len(texts) / elapsed


def plumbing(dsn, n=300):
    """The whole path without model work: SQL → plpython → HTTP → model server → back, for a model
    the server rejects at lookup; and a bare `select 1` for the client's own round trip."""
    out = {}
    with connect(dsn, autocommit=True) as conn:
        for name, query in (("path", "select ai.embed('no-such-model', 'x')"), ("select1", "select 1")):
            times = []
            for _ in range(n):
                s = time.perf_counter()
                try:
                    conn.execute(query).fetchone()
                except Exception:
                    pass
                times.append(time.perf_counter() - s)
            out[name] = times
    return out


def run_model(dsn, model, texts):
    local = local_model(dsn, model)
    sql_t, local_t = single_calls(dsn, model, texts, local)
    overhead = [a - b for a, b in zip(sql_t, local_t)]
    sql_rate, local_rate = batched(dsn, model, texts, local)
    one = concurrent(dsn, model, texts, 1)
    eight = concurrent(dsn, model, texts, 8)
    print(f"| `{model}` | one text per call, latency p50 / p95 | {pct(sql_t, 50):.2f} / {pct(sql_t, 95):.2f} ms "
          f"| {pct(local_t, 50):.2f} / {pct(local_t, 95):.2f} ms "
          f"| overhead p50 {pct(overhead, 50):.2f} ms, p95 {pct(overhead, 95):.2f} ms; "
          f"ratio {np.median(sql_t) / np.median(local_t):.2f}× |")
    print(f"| `{model}` | batches of 64 (`ai.embed(m, text[])`), texts/s | {sql_rate:.1f} | {local_rate:.1f} "
          f"| {sql_rate / local_rate:.2f}× of in-process |")
    print(f"| `{model}` | 8 sessions vs 1, one text per call, texts/s | {eight:.1f} (8) | {one:.1f} (1) "
          f"| {eight / one:.2f}× |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="e5-small,minilm")
    ap.add_argument("--n", type=int, default=300)
    args = ap.parse_args()
    texts = manual_sentences(args.n)
    print(f"{len(texts)} sentences of the PostgreSQL manual (mean {statistics.mean(map(len, texts)):.0f} "
          "characters); SQL and in-process calls interleaved\n")
    print("| model | measure | SQL (`ai.embed`) | in-process | figure |")
    print("|---|---|---|---|---|")
    with Sandbox() as sb:
        for model in args.models.split(","):
            run_model(sb.dsn, model, texts)
        fixed = plumbing(sb.dsn)
    print(f"\nThe path without model work (SQL → plpython → HTTP → model server → error back): "
          f"p50 {pct(fixed['path'], 50):.2f} ms, p95 {pct(fixed['path'], 95):.2f} ms; "
          f"a bare `select 1` round trip: p50 {pct(fixed['select1'], 50):.3f} ms.")


if __name__ == "__main__":
    main()
