"""What moving RAG's text rules out of SQL costs (issue 36): the parts that moved, timed before
and after in the same run, interleaved per question.

- the expansion's terms (its names and the headings they may be): the SQL functions of a40b6f3
  against the model server's /pgmind/v1/rag/expansion-terms;
- the sources' text (each source's best sentences by the knowledge base's model): a40b6f3's
  ai_internal._source_text against /pgmind/v1/rag/compose (which also fills the prompt);
- beside them, ai.search with the expansion given and ai.rag_prompt end to end, to show the share.

The old functions are recreated from git (a40b6f3) in a scratch schema, bench_old, dropped at the
end.  Inputs: the golden records of scripts/golden_rag_prompts.py (question, expansion, hits).

    .venv/bin/python bench/bench_rag_text_move.py /tmp/golden.jsonl [--kb pg_docs] [--rounds 3]"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
OLD = "a40b6f3"
MOVED = ("_fill", "_estimate_tokens", "_expansion_name_list", "_expansion_names", "_expansion_headings",
         "_source_text")


def old_functions() -> str:
    text = subprocess.run(["git", "show", f"{OLD}:src/pgmind/sql/functions/400_search.sql"], cwd=ROOT,
                          check=True, capture_output=True, text=True).stdout
    out = []
    for name in MOVED:
        m = re.search(rf"create or replace function ai_internal\.{name}\(.*?\n\$\$;\n", text, re.S)
        out.append(m.group(0))
    sql = "\n".join(out)
    for name in MOVED:
        sql = sql.replace(f"ai_internal.{name}(", f"bench_old.{name}(")
    return "create schema if not exists bench_old;\n" + sql


def timed(conn, query: str, params) -> float:
    start = time.perf_counter()
    conn.execute(query, params).fetchall()
    return (time.perf_counter() - start) * 1000


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("golden")
    ap.add_argument("--kb", default="pg_docs")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    dsn = subprocess.run([str(ROOT / ".venv/bin/pgmind"), "db", "url"], check=True, capture_output=True, text=True,
                         cwd=ROOT).stdout.strip()
    recs = [json.loads(x) for x in Path(args.golden).read_text(encoding="utf-8").splitlines() if x.strip()]
    recs = [r for r in recs if r["rag_prompt"]["answered"] and r["expansion"]]
    times: dict[str, list[float]] = {k: [] for k in ("terms_sql", "terms_route", "text_sql", "compose_route",
                                                     "search_with_expansion")}
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(old_functions())
        try:
            for _ in range(args.rounds):
                for r in recs:
                    ex, cfg = r["expansion"], r["settings"]
                    per = cfg["source_sentences"] if isinstance(cfg["source_sentences"], list) else [cfg["source_sentences"]]
                    sources = r["rag_prompt"]["sources"]
                    times["terms_sql"].append(timed(conn, "select bench_old._expansion_names(%s), "
                                                          "bench_old._expansion_headings(%s)", (ex, ex)))
                    times["terms_route"].append(timed(conn, "select ai_internal._json_request("
                                                            "'/pgmind/v1/rag/expansion-terms', %s)",
                                                      (json.dumps({"expansion": ex}),)))
                    times["text_sql"].append(timed(conn, "select bench_old._source_text(%s, %s, %s, %s, %s)",
                                                   (r["model"], r["question"], ex, json.dumps(sources), per)))
                    body = {"settings": cfg, "name": args.kb, "question": r["question"], "expansion": ex,
                            "model": r["model"], "hits": sources}
                    times["compose_route"].append(timed(conn, "select ai_internal._json_request("
                                                              "'/pgmind/v1/rag/compose', %s)", (json.dumps(body),)))
                    times["search_with_expansion"].append(timed(
                        conn, "select * from ai.search(%s, %s, k => 5, chunks_per_source => 2, expansion => %s)",
                        (args.kb, r["question"], ex)))
        finally:
            conn.execute("drop schema bench_old cascade")
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{len(recs)} questions x {args.rounds} rounds, interleaved; medians in ms")
    for k, v in med.items():
        print(f"  {k:22} {v:8.2f}")
    print(f"  expansion terms: route / SQL = {med['terms_route'] / med['terms_sql']:.2f} "
          f"(+{med['terms_route'] - med['terms_sql']:.2f} ms on an ai.search of {med['search_with_expansion']:.0f} ms: "
          f"search speed ratio {med['search_with_expansion'] / (med['search_with_expansion'] + med['terms_route'] - med['terms_sql']):.3f} "
          "if the SQL rules had stayed)")
    print(f"  sources' text: compose route / SQL = {med['compose_route'] / med['text_sql']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
