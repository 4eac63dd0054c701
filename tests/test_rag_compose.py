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


def test_labelled_sentences_for_quote_first_answers():
    """answer_style "quote": every sentence shown stands on its own line after a label S1, S2, …
    numbered across the sources, and each shown sentence carries its label (what grounding.quoted
    maps the model's choice back with)."""
    import numpy as np

    from pgmind.rag.compose import compose, plan, render
    chunks = ["## VACUUM\nVACUUM reclaims storage. It can run in parallel. FULL rewrites the table.",
              "## ANALYZE\nANALYZE collects statistics."]
    p = plan(chunks, [2, 2])
    vectors = np.eye(len(p.texts), 4, dtype=np.float32) + 0.1
    query = np.array([[1, 0, 0, 0]], dtype=np.float32)
    text, shown = render(p, vectors, query, labelled=True)
    assert [s["label"] for s in shown] == [1, 2, 3]
    assert text.startswith("[1] ## VACUUM\nS1 VACUUM reclaims storage.\nS2 ")
    assert "[2] ## ANALYZE\nS3 ANALYZE collects statistics.\n\n" in text
    plain, shown_plain = render(p, vectors, query)
    assert "S1" not in plain and all("label" not in s for s in shown_plain)
    prompt = compose({"answer_style": "quote", "quote_prompt_en": "{sources}Q: {question}", "prompt_en": "free"},
                     "kb", "What does VACUUM do?", [{"n": 1, "chunk": chunks[0]}], text, shown)
    assert prompt["answer_style"] == "quote" and prompt["messages"][-1]["content"].startswith("[1] ## VACUUM\nS1 ")
    assert compose({"prompt_en": "free"}, "kb", "What does VACUUM do?", [{"n": 1, "chunk": chunks[0]}], text,
                   shown)["answer_style"] == "free"
