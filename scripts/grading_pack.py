"""Blind grading by reading: from scripts/rag_answers.py's output, a shuffled pack of the answers a
user is shown and the model's drafts (each graded on its own, the grader not told which is which),
and the key that maps them back.

    .venv/bin/python scripts/grading_pack.py answers.jsonl pack.jsonl key.json
    .venv/bin/python scripts/grading_pack.py --tally answers.jsonl grades.jsonl key.json"""
from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from pathlib import Path


def pack(answers: Path, out: Path, key_path: Path) -> None:
    rows = [json.loads(x) for x in answers.read_text(encoding="utf-8").splitlines() if x.strip()]
    items, key = [], {}
    for i, r in enumerate(rows):
        versions = {"shown": r["answer"]}
        if r.get("draft") and r["draft"].strip() != (r["answer"] or "").strip():
            versions["draft"] = r["draft"]
        for kind, text in versions.items():
            items.append({"question": r["question"], "facts": r["facts"], "answerable": bool(r["gold"]),
                          "answer": text, "sources": [{"n": s["n"], "page": s["page"], "chunk": s["chunk"]}
                                                      for s in r.get("sources") or []],
                          "_key": (i, kind)})
    random.Random(37).shuffle(items)
    with out.open("w", encoding="utf-8") as f:
        for n, item in enumerate(items, start=1):
            key[str(n)] = item.pop("_key")
            f.write(json.dumps({"id": n, **item}, ensure_ascii=False) + "\n")
    key_path.write_text(json.dumps(key), encoding="utf-8")


def tally(answers: Path, grades: Path, key_path: Path) -> None:
    rows = [json.loads(x) for x in answers.read_text(encoding="utf-8").splitlines() if x.strip()]
    key = json.loads(key_path.read_text(encoding="utf-8"))
    by = {}
    for line in grades.read_text(encoding="utf-8").splitlines():
        if line.strip():
            g = json.loads(line)
            i, kind = key[str(g["id"])]
            by[(i, kind)] = g["grade"]
    for kind in ("draft", "shown"):
        for answerable in (True, False):
            c = Counter()
            for i, r in enumerate(rows):
                if bool(r["gold"]) != answerable:
                    continue
                # an answer the check did not change is its own draft
                c[by.get((i, kind)) or by.get((i, "shown"))] += 1
            print(f"{kind:5} {'answerable' if answerable else 'unanswerable':12} {dict(c)}")
    conf = Counter((r.get("confidence"), by.get((i, "shown"))) for i, r in enumerate(rows) if r["gold"])
    print("confidence × grade (answerable):", dict(conf))
    # the mechanical measure beside the reading: every key fact present as a substring
    for kind in ("draft", "shown"):
        answerable = [r for r in rows if r["gold"]]
        ok = sum(1 for r in answerable if r["answered"] and all(
            f.lower() in ((r.get("draft") if kind == "draft" else None) or r["answer"] or "").lower() for f in r["facts"]))
        print(f"{kind:5} facts present (mechanical): {ok} of {len(answerable)}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--tally", action="store_true")
    ap.add_argument("answers")
    ap.add_argument("second")
    ap.add_argument("key")
    a = ap.parse_args()
    (tally if a.tally else pack)(Path(a.answers), Path(a.second), Path(a.key))
    sys.exit(0)
