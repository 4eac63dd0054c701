"""Chinese questions against English ones on an English knowledge base: `ai.search` p50 per mode and
language, the first time a question is asked and when it is asked again, and the ratio zh/en.

A Chinese question is translated by the chat model before it is searched (410_query.sql); the
model server keeps each role's translations (models/local/reply_cache.py), so a question asked again
skips the model.  The honest figure is the first time: each mode runs as a role of its own
(``bench_zh_<mode>``, made here), so no mode finds what another mode's search left in a per-role
cache, and the embedding cache should be off in the server measured (PGMIND_EMBED_CACHE=0), else a
later mode finds the question's vector made by an earlier one.  English and Chinese questions are
interleaved, so a busy moment of the machine falls on both alike.

    PGMIND_EMBED_CACHE=0 pgmind serve --no-worker &     # (a server of its own: see docs/benchmarks.md)
    nice -n 10 .venv/bin/python bench/bench_zh_search.py pg_docs eval/dev2.jsonl \\
        --dsn 'host=/tmp/p40home/run port=54340 dbname=pgmind user=pgmind'
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_rag_latency import cpu, pct  # noqa: E402
from pgmind.evaluation import load_questions  # noqa: E402

MODES = ("keyword", "vector", "hybrid")


def setup_roles(conn, name: str) -> dict[str, str]:
    """One role per mode, allowed to search the knowledge base and use its models (the DSN's role
    must be able to create roles and grant on the knowledge base)."""
    store, source, model = conn.execute(
        "select format('%%I.%%I', v.dest_schema, ver.store_table), v.source::text, ver.model from ai.vectorizers v "
        "join ai.vectorizer_versions ver on ver.vectorizer_id = v.id and ver.status = 'active' where v.name = %s",
        (name,)).fetchone()
    (settings,) = conn.execute("select ai.configure_rag(%s, '{}')", (name,)).fetchone()
    roles = {}
    for mode in MODES:
        role = f"bench_zh_{mode}"
        if not conn.execute("select 1 from pg_roles where rolname = %s", (role,)).fetchone():
            conn.execute(sql.SQL("create role {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("grant {} to current_user").format(sql.Identifier(role)))
        conn.execute(sql.SQL("grant select on {}, {} to {}").format(
            sql.SQL(store), sql.SQL(source), sql.Identifier(role)))
        for m in {model, settings.get("translate_model")} - {None}:
            conn.execute("select ai.grant_model(%s, %s)", (m, role))
        roles[mode] = role
    return roles


def search(conn, role: str, name: str, question: str, mode: str) -> float:
    conn.execute(sql.SQL("set role {}").format(sql.Identifier(role)))
    try:
        t0 = time.perf_counter()
        conn.execute("select count(*) from ai.search(%s, %s, k => 10, mode => %s)", (name, question, mode)).fetchone()
        return time.perf_counter() - t0
    finally:
        conn.execute("reset role")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("questions")
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--repeats", type=int, default=2, help="times each question is asked again")
    args = ap.parse_args()
    conn = psycopg.connect(args.dsn, autocommit=True)
    roles = setup_roles(conn, args.name)
    qs = load_questions(args.questions)
    en, zh = [q for q in qs if q.lang == "en"], [q for q in qs if q.lang == "zh"]
    pairs = [q for pair in itertools.zip_longest(en, zh) for q in pair if q is not None]
    # (loads the models: a question of no role's set, translated once for the keyword role only)
    search(conn, roles["keyword"], args.name, "预热一下模型", "hybrid")
    times: dict = {(m, lang, when): [] for m in MODES for lang in ("en", "zh") for when in ("first", "again")}
    for mode in MODES:
        for round_ in range(1 + args.repeats):
            for q in pairs:
                times[(mode, q.lang, "first" if round_ == 0 else "again")].append(
                    search(conn, roles[mode], args.name, q.question, mode))
            print(f"{mode} round {round_} done", file=sys.stderr, flush=True)
    print(f"\n{cpu()}; {len(en)} English and {len(zh)} Chinese questions of {args.questions}; "
          f"each asked once, then {args.repeats}× again, per mode (one role per mode)\n")
    print("| mode | asked | en p50 | zh p50 | **zh/en** | en p95 | zh p95 |")
    print("|---|---|---|---|---|---|---|")
    for mode in MODES:
        for when in ("first", "again"):
            e, z = times[(mode, "en", when)], times[(mode, "zh", when)]
            print(f"| {mode} | {'first time' if when == 'first' else 'again'} | {statistics.median(e) * 1000:.0f} ms | "
                  f"{statistics.median(z) * 1000:.0f} ms | **{statistics.median(z) / statistics.median(e):.2f}** | "
                  f"{pct(e, 0.95) * 1000:.0f} ms | {pct(z, 0.95) * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
