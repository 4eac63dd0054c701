"""Two installs of pgmind side by side on the same knowledge base: search latency per mode and RAG
time to the first token, each question asked of both in turn (so a busy moment of the machine falls
on both alike), with the ratio before/after.  For a change that should not cost speed: install the
code before it from a git worktree into its own home, copy the database (pg_dump | pg_restore, then
that code's `pgmind install` puts its functions back), start its model server on another port:

    git worktree add /tmp/old <commit>
    export PYTHONPATH=/tmp/old/src PGMIND_HOME=/tmp/oldhome PGMIND_PG_PORT=54330 PGMIND_SERVER_PORT=8766
    python -m pgmind.cli db up && python -m pgmind.cli install     # the roles, then the copy:
    pg_dump -Fc -d "$(pgmind db url)" | pg_restore -d <old dsn> ; python -m pgmind.cli install
    python -m pgmind.cli serve --no-worker &
    .venv/bin/python bench/bench_versions.py pg_docs eval/dev2.jsonl \
        --target 'before=host=/tmp/oldhome/run port=54330 dbname=pgmind|http://127.0.0.1:8766|/tmp/oldhome/server.token' \
        --target 'after=host=.pgmind/run port=54329 dbname=pgmind|http://127.0.0.1:8765|.pgmind/server.token'

Only SQL and the OpenAI protocol are used (the same requests `pgmind ask` makes: ai.rag_prompt, then the
chat completion streamed), so either version's client code plays no part.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_rag_latency import cpu, pct  # noqa: E402
from pgmind.evaluation import load_questions  # noqa: E402

MODES = ("vector", "keyword", "hybrid")


def first_token(conn, url: str, token: str, name: str, question: str) -> tuple[float, float, float]:
    """(retrieval, first token, whole answer) in seconds, as `pgmind ask` streams it."""
    t0 = time.monotonic()
    (p,) = conn.execute("select ai.rag_prompt(%s, %s)", (name, question)).fetchone()
    t_prompt = time.monotonic() - t0
    if not p["answered"]:
        return t_prompt, t_prompt, t_prompt
    body = {"model": p["model"], "messages": p["messages"], "stream": True, **p["options"]}
    first = None
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=600,
                      headers={"Authorization": f"Bearer {token}"}) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if first is None and line.startswith("data: ") and line != "data: [DONE]":
                choices = json.loads(line[6:])["choices"]
                if choices and choices[0]["delta"].get("content"):
                    first = time.monotonic() - t0
    whole = time.monotonic() - t0
    return t_prompt, first or whole, whole


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("questions")
    ap.add_argument("--target", action="append", required=True, help="label=DSN|SERVER_URL|TOKEN_FILE (two)")
    ap.add_argument("--per-language", type=int, default=5, help="answerable questions per language for RAG")
    ap.add_argument("--search-rounds", type=int, default=3, help="times each question is searched per mode")
    ap.add_argument("--modes", default=",".join(MODES), help="search modes to time (comma-separated)")
    ap.add_argument("--languages", default="en,zh", help="question languages to time (comma-separated)")
    args = ap.parse_args()
    modes = [m for m in args.modes.split(",") if m in MODES]
    targets = []
    for t in args.target:
        label, rest = t.split("=", 1)
        dsn, url, token_file = rest.split("|")
        targets.append((label, psycopg.connect(dsn, autocommit=True), url, Path(token_file).read_text().strip()))
    qs = [q for q in load_questions(args.questions) if q.lang in args.languages.split(",")]
    # (per language too: a Chinese question is translated first, ~20x an English one's time, so the
    # median of both together falls between the two groups and says little)
    search: dict = {label: {(m, lang): [] for m in MODES for lang in ("en", "zh")} for label, *_ in targets}
    for _ in range(args.search_rounds):
        for q in qs:
            for mode in modes:
                for label, conn, *_ in targets:
                    t0 = time.perf_counter()
                    conn.execute("select count(*) from ai.search(%s, %s, k => 10, mode => %s)",
                                 (args.name, q.question, mode)).fetchone()
                    search[label][(mode, q.lang)].append(time.perf_counter() - t0)
    chosen = [q for lang in ("en", "zh") for q in [q for q in qs if q.gold and q.lang == lang][:args.per_language]]
    rag: dict = {label: {"prompt": [], "first": [], "whole": []} for label, *_ in targets}
    for q in chosen:
        for label, conn, url, token in targets:
            t = first_token(conn, url, token, args.name, q.question)
            for key, value in zip(("prompt", "first", "whole"), t):
                rag[label][key].append(value)
            print(f"{label:>8}  retrieval {t[0]:5.1f} s  first {t[1]:5.1f} s  whole {t[2]:5.1f} s  {q.question}",
                  flush=True)
    (a, *_), (b, *_) = targets[0], targets[1]
    print(f"\n{cpu()}; {len(qs)} questions of {args.questions} searched {args.search_rounds}× per mode; "
          f"RAG on {len(chosen)} answerable ones\n")
    print(f"| operation | {a} p50 | {b} p50 | {a}/{b} (≥1: {b} as fast or faster) | {a} p95 | {b} p95 |")
    print("|---|---|---|---|---|---|")
    rows = [(f"`ai.search` {m}, k=10, {lang}", search[a][(m, lang)], search[b][(m, lang)], 1000, "ms")
            for m in MODES for lang in ("en", "zh") if search[a][(m, lang)]]
    if chosen:
        rows += [("RAG retrieval (ai.rag_prompt)", rag[a]["prompt"], rag[b]["prompt"], 1, "s"),
                 ("RAG first token", rag[a]["first"], rag[b]["first"], 1, "s"),
                 ("RAG whole answer (model's draft)", rag[a]["whole"], rag[b]["whole"], 1, "s")]
    for what, xa, xb, scale, unit in rows:
        ma, mb = statistics.median(xa), statistics.median(xb)
        print(f"| {what} | {ma * scale:.1f} {unit} | {mb * scale:.1f} {unit} | **{ma / mb:.2f}** | "
              f"{pct(xa, 0.95) * scale:.1f} {unit} | {pct(xb, 0.95) * scale:.1f} {unit} |")


if __name__ == "__main__":
    main()
