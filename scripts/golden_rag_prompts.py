"""Record, or compare against a record, the prompts ai.rag_prompt builds for every question of the
tuning sets (issue 36's guard: moving RAG's text rules out of SQL must not change one prompt).

    .venv/bin/python scripts/golden_rag_prompts.py record /tmp/golden.jsonl [--kb pg_docs]
    .venv/bin/python scripts/golden_rag_prompts.py compare /tmp/golden.jsonl

Each record holds the question, ai.rag_prompt's whole result, and what composing the prompt starts
from (the knowledge base's settings, the expansion, the hits of the search before the threshold and
the token budget), so tests/test_rag_compose.py can replay a sample without the database."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent


def _dsn() -> str:
    return subprocess.run([str(ROOT / ".venv/bin/pgmind"), "db", "url"], check=True, capture_output=True,
                          text=True, cwd=ROOT).stdout.strip()


def questions(every: int = 1):
    """The tuning sets' questions; with ``every`` n, each set's 1st, (n+1)th, … (a sample that keeps
    each set's mix of English, Chinese and unanswerable questions)."""
    for path in sorted((ROOT / "eval").glob("dev*.jsonl")):
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        for line in lines[::every]:
            yield path.name, json.loads(line)["question"]


def record_one(conn, kb: str, question: str) -> dict:
    cfg, model = conn.execute(
        "select ai_internal._kb_settings(t.config), t.model from ai_internal._search_target(%s, current_user) t",
        (kb,)).fetchone()
    topic = conn.execute("select ai.topic_score(%s, %s)", (kb, question)).fetchone()[0]
    ex = None
    hits = []
    if not (topic is not None and topic < float(cfg["topic_threshold"])):
        if cfg.get("expand"):
            ex = conn.execute("select ai_internal._expand(%s, %s, %s)", (json.dumps(cfg), kb, question)).fetchone()[0]
        hits = [dict(zip(("key", "chunk_seq", "chunk", "score", "similarity"), r)) for r in conn.execute(
            "select key, chunk_seq, chunk, score, similarity from ai.search(%s, %s, k => %s, mode => 'hybrid', "
            "chunks_per_source => %s, rerank => %s, expansion => %s, candidates => %s)",
            (kb, question, int(cfg["k"]), int(cfg["chunks_per_source"]), cfg.get("rerank"), ex,
             int(cfg["rerank_candidates"]) if cfg.get("rerank") else None)).fetchall()]
    prompt = conn.execute("select ai.rag_prompt(%s, %s)", (kb, question)).fetchone()[0]
    return {"question": question, "kb": kb, "model": model, "settings": cfg, "topic_score": topic,
            "expansion": ex, "hits": hits, "rag_prompt": prompt}


def differences(was: dict, now: dict) -> list[tuple[str, object, object]]:
    """What differs between two rag_prompt results: every key the recorded one has (keys added
    since are not differences), the prompt's text to the character, the sources' scores to 1e-6
    (the same vectors from another process differ in float32's last digits)."""
    out = []
    for key, old in was.items():
        new = now.get(key)
        if key == "sources":
            same = len(old) == len(new or []) and all(
                {k: v for k, v in a.items() if k not in ("score", "similarity")}
                == {k: v for k, v in b.items() if k not in ("score", "similarity")}
                and all(a.get(k) == b.get(k) or (a.get(k) is not None and b.get(k) is not None
                                                 and abs(a[k] - b[k]) < 1e-6) for k in ("score", "similarity"))
                for a, b in zip(old, new))
        elif key == "topic_score":
            same = old == new or (old is not None and new is not None and abs(old - new) < 1e-6)
        else:
            same = old == new
        if not same:
            out.append((key, old, new))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("record", "compare"))
    ap.add_argument("file")
    ap.add_argument("--kb", default="pg_docs")
    ap.add_argument("--every", type=int, default=1, help="record every n-th question of each set")
    args = ap.parse_args()
    with psycopg.connect(_dsn(), autocommit=True) as conn:
        if args.mode == "record":
            path = Path(args.file)
            done = {json.loads(x)["question"] for x in path.read_text(encoding="utf-8").splitlines()} \
                if path.exists() else set()
            with path.open("a", encoding="utf-8") as out:
                for i, (name, q) in enumerate(questions(args.every)):
                    if q in done:
                        continue
                    rec = record_one(conn, args.kb, q)
                    rec["set"] = name
                    out.write(json.dumps(rec, ensure_ascii=False) + "\n")
                    out.flush()
                    print(f"{i + 1} {name} {q[:60]}", file=sys.stderr)
            return 0
        bad = 0
        for line in Path(args.file).read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            now = conn.execute("select ai.rag_prompt(%s, %s)", (rec["kb"], rec["question"])).fetchone()[0]
            diffs = differences(rec["rag_prompt"], now)
            if diffs:
                bad += 1
                print(f"DIFFERS: {rec['question']}")
                for key, was, is_ in diffs:
                    print(f"  {key}:\n    was {json.dumps(was, ensure_ascii=False)[:800]}"
                          f"\n    now {json.dumps(is_, ensure_ascii=False)[:800]}")
        print(f"{bad} of the recorded prompts differ")
        return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
