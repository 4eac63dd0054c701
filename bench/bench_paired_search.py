"""Search per-call cost of two source trees side by side, request by request: each tree runs its
own sandbox (PostgreSQL, model server, the same knowledge base of manual pages), both at once, and
one client alternates between them, so a busy moment of the machine falls on both alike (run
after run, this machine's timings drift ±30%; alternating the trees within one run is what makes
their ratio steady).  Measured: /v1/search over HTTP with an API key, and ai.search from SQL as a
role granted the chunks (not the superuser), keyword and hybrid; ai.embed of the question as that role.

    .venv/bin/python bench/bench_paired_search.py --baseline /tmp/a427 [--tree .] [--pages 10] [--rounds 150] [--cache]

(``git worktree add /tmp/a427 a427c08`` makes a baseline tree.)  Prints, per measure, both medians
(ms) and baseline / tree (above 1: the tree is faster)."""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

QUERIES = ["vacuum full locks", "create index concurrently", "jsonb operators", "how to kill a query",
           "怎样查看表的大小", "default port", "wal archiving", "row level security policies"]

SERVE = r'''
import json, sys
sys.path.insert(0, sys.argv[1])
from corpus import MANUAL
from pgmind.db import connect
from pgmind.devserver import Sandbox
from pgmind.documents import html_to_text
from pgmind.vectorizer.worker import Worker
with Sandbox() as sb, connect(sb.dsn, autocommit=True) as conn:
    conn.execute("create table bench_docs (id int primary key, body text)")
    conn.execute("select ai.create_vectorizer('bench_docs'::regclass, content => 'body', model => 'minilm')")
    pages = sorted(MANUAL.glob("*.html"))[:int(sys.argv[2])]
    with conn.cursor() as cur:
        cur.executemany("insert into bench_docs values (%s, %s)",
                        [(i, html_to_text(p.read_text(errors="replace")).text) for i, p in enumerate(pages)])
    Worker(sb.settings, sb.dsn, names=["bench_docs"], poll_interval=0.1).drain(timeout=1200)
    conn.execute("create role bench_reader")
    conn.execute("grant select on bench_docs, bench_docs_chunks_v1 to bench_reader")
    key = conn.execute("select ai.create_api_key('bench_reader')").fetchone()[0]
    print(json.dumps({"url": sb.settings.effective_server_url, "key": key, "dsn": sb.dsn}), flush=True)
    sys.stdin.read()          # until the bench is done
'''


def start(tree: Path, pages: int, cache: bool) -> tuple[subprocess.Popen, dict]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    if not cache:
        env["PGMIND_EMBED_CACHE"] = "0"
    proc = subprocess.Popen([sys.executable, "-c", SERVE, str(Path(__file__).parent), str(pages)], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"the sandbox of {tree} did not start")
    return proc, json.loads(line)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", type=Path, required=True)
    ap.add_argument("--tree", type=Path, default=Path(__file__).resolve().parent.parent)
    ap.add_argument("--pages", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=150)
    ap.add_argument("--cache", action="store_true",
                    help="keep the model server's embedding cache on (the default of a real server): the "
                         "eight questions are then embedded once, and the per-call plumbing weighs more")
    args = ap.parse_args()
    import httpx
    import psycopg
    arms = {}
    procs = []
    try:
        for name, tree in (("baseline", args.baseline), ("tree", args.tree)):
            proc, info = start(tree.resolve(), args.pages, args.cache)
            procs.append(proc)
            conn = psycopg.connect(info["dsn"], autocommit=True)
            conn.execute("set role bench_reader")
            http = httpx.Client(base_url=info["url"], timeout=60, headers={"Authorization": f"Bearer {info['key']}"})
            arms[name] = (http, conn)

        def http_search(arm, q, mode):
            r = arms[arm][0].post("/v1/search", json={"name": "bench_docs", "query": q, "k": 5, "mode": mode})
            assert r.status_code == 200, r.text

        def sql_search(arm, q, mode):
            arms[arm][1].execute("select * from ai.search('bench_docs', %s, k => 5, mode => %s)", (q, mode)).fetchall()

        def sql_embed(arm, q, mode):
            arms[arm][1].execute("select ai.embed('minilm', %s)", (q,)).fetchall()

        measures = {f"{kind}_{mode}": (fn, mode) for kind, fn in (("http", http_search), ("sql", sql_search))
                    for mode in ("keyword", "hybrid")}
        measures["sql_embed"] = (sql_embed, None)
        times = {(m, arm): [] for m in measures for arm in arms}
        for i in range(args.rounds + 5):
            q = QUERIES[i % len(QUERIES)]
            for m, (fn, mode) in measures.items():
                for arm in (("baseline", "tree") if i % 2 else ("tree", "baseline")):
                    t = time.perf_counter()
                    fn(arm, q, mode)
                    if i >= 5:                  # (the first rounds warm both)
                        times[(m, arm)].append((time.perf_counter() - t) * 1000)
        out = {}
        for m in measures:
            b, t = statistics.median(times[(m, "baseline")]), statistics.median(times[(m, "tree")])
            out[m] = {"baseline_ms": round(b, 2), "tree_ms": round(t, 2), "ratio": round(b / t, 3)}
        print(json.dumps(out))
    finally:
        for http, conn in arms.values():
            http.close()
            conn.close()
        for proc in procs:
            proc.stdin.close()
            proc.wait(timeout=120)


if __name__ == "__main__":
    main()
