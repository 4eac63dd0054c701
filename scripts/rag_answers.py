"""Answer every question of an eval file as ai.rag does and keep everything a reader needs to grade
them: the answer shown, the model's draft when the check against the sources changed it, the
confidence, the sources.  Grading is by reading (eval/README.md, "Grading answers by reading").

    .venv/bin/python scripts/rag_answers.py eval/dev.jsonl /tmp/answers-dev.jsonl [--kb pg_docs]"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("questions")
    ap.add_argument("out")
    ap.add_argument("--kb", default="pg_docs")
    args = ap.parse_args()
    dsn = subprocess.run([str(ROOT / ".venv/bin/pgmind"), "db", "url"], check=True, capture_output=True, text=True,
                         cwd=ROOT).stdout.strip()
    done = set()
    out_path = Path(args.out)
    if out_path.exists():          # (a re-run goes on where it stopped)
        done = {json.loads(line)["question"] for line in out_path.read_text(encoding="utf-8").splitlines() if line}
    with psycopg.connect(dsn, autocommit=True) as conn, out_path.open("a", encoding="utf-8") as out:
        for line in Path(args.questions).read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            q = json.loads(line)
            if q["question"] in done:
                continue
            started = time.monotonic()
            # ai.rag's own steps, one by one, to keep what the check chose its quote from (the
            # sentences the prompt showed): scripts can check drafts again with a changed rule
            p = conn.execute("select ai.rag_prompt(%s, %s)", (args.kb, q["question"])).fetchone()[0]
            r = {"answered": False, "answer": p["answer"], "sources": []}
            if p["answered"]:
                reply = conn.execute("select ai.chat(%s, %s, %s)", (p["model"], json.dumps(p["messages"]),
                                                                     json.dumps(p["options"]))).fetchone()[0]
                draft = reply["message"]["content"] or ""
                g = conn.execute("select ai_internal._json_request('/pgmind/v1/rag/ground', %s)",
                                 (json.dumps({"question": q["question"], "answer": draft, "hits": p["sources"],
                                              "sentences": p["sentences"],
                                              "answer_style": p.get("answer_style")}),)).fetchone()[0]
                r = {"answered": True, "answer": g["answer"], "draft": draft, "confidence": g["confidence"],
                     "grounding": g["grounding"], "sources": p["sources"], "sentences": p["sentences"]}
            q.update(seconds=round(time.monotonic() - started, 1), answered=r["answered"], answer=r["answer"],
                     draft=r.get("draft"), confidence=r.get("confidence"), grounding=r.get("grounding"),
                     sentences=r.get("sentences"),
                     sources=[{"n": s["n"], "page": (s["key"] or {}).get("path"), "chunk": s["chunk"]}
                              for s in r.get("sources") or []])
            out.write(json.dumps(q, ensure_ascii=False) + "\n")
            out.flush()
            print(f"{q['seconds']:5.1f}s {r['answered']!s:5} {r.get('confidence')} {q['question'][:60]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
