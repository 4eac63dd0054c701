"""The prompts RAG builds are the ones it built before its text rules moved out of SQL (issue 36):
a sample of the prompts ai.rag_prompt wrote for the tuning questions over the PostgreSQL manual
(recorded with scripts/golden_rag_prompts.py, from what the search returned), composed again by
the model server's route from the same hits, must be identical — to the character."""
from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

GOLDEN = Path(__file__).parent / "golden" / "rag_prompts.jsonl"


def _records():
    return [json.loads(line) for line in GOLDEN.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize("rec", _records(), ids=lambda r: r["question"][:40])
def test_golden_prompt(server, token, rec):
    want = rec["rag_prompt"]
    body = {"settings": rec["settings"], "name": rec["kb"], "question": rec["question"],
            "expansion": rec["expansion"], "model": rec["model"],
            # (SQL passes the hits only when the best of them passed the threshold)
            "hits": rec["hits"] if want["answered"] else []}
    r = httpx.post(server + "/pgmind/v1/rag/compose", json=body, headers={"Authorization": f"Bearer {token}"},
                   timeout=120)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["messages"] == want["messages"]
    assert got["answered"] == want["answered"] and got["answer"] == want["answer"]
    assert [(s["n"], s["key"], s["chunk_seq"], s["chunk"]) for s in got["sources"]] == \
        [(s["n"], s["key"], s["chunk_seq"], s["chunk"]) for s in want["sources"]]
