"""Hit test: one question against a knowledge base in one or two configurations side by side, through
the same query as POST /v1/search (server/search_api.py, as the signed-in role).  Each hit shows
its document, chunk, fused score, similarity and the rank it had in the vector and keyword lists,
the question's words marked in it, and a link to the whole document with the chunk marked."""
from __future__ import annotations

import json
import re
from urllib.parse import urlencode

from fastapi import APIRouter, Request

from ...errors import InvalidRequestError
from ...server import search_api
from ...server.deps import Principal
from ..web import PREFIX, integer, page, render, signed_in, text
from .kbs import image_collection, kb_name, visible
from ..db import as_role

router = APIRouter()
MODES = ("vector", "keyword", "hybrid", "expand")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")


def act_as(request: Request, role: str) -> None:
    """The HTTP API's routes take the role from the request's principal: the session's role, as an
    API key's would be (never the server's own token)."""
    request.state.principal = Principal(False, role)


def parse_filter(raw: str) -> dict | None:
    """'column=value' lines as /v1/search's structured filter (values are compared as text)."""
    spec: dict = {}
    for line in raw.splitlines():
        if not line.strip():
            continue
        column, sep, value = line.partition("=")
        if not sep or not column.strip():
            raise InvalidRequestError(f"filter line {line.strip()[:40]!r} is not column=value",
                                      hint="write one column=value per line, e.g. lang=zh")
        spec[column.strip()] = value.strip()
    return spec or None


def terms(question: str) -> list[str]:
    """The words to mark in a hit: the question's words, and each pair of neighbouring CJK
    characters (how the keyword index splits Chinese, ai.fts_text)."""
    found: set[str] = set()
    for word in re.findall(r"\w+", question):
        if _CJK.search(word):
            chars = [c for c in word if _CJK.match(c)]
            found.update(a + b for a, b in zip(chars, chars[1:]))
            if len(chars) == 1:
                found.add(chars[0])
        elif len(word) > 2:
            found.add(word.lower())
    return sorted(found, key=len, reverse=True)[:50]


def marked(text_: str, words: list[str]) -> list[tuple[str, bool]]:
    """The text as (piece, is a match) pieces: the template escapes each piece and wraps matches in
    <mark>; no markup is built from the document's text.  Overlapping matches (a Chinese word's
    character pairs) join into one marked run."""
    if not words:
        return [(text_, False)]
    lower = text_.lower()
    if len(lower) != len(text_):        # (a few letters lower-case to two characters: match as written)
        lower = text_
    hit = [False] * len(text_)
    for w in words:
        at = lower.find(w.lower())
        while at >= 0:
            hit[at:at + len(w)] = [True] * len(w)
            at = lower.find(w.lower(), at + 1)
    pieces: list[tuple[str, bool]] = []
    start = 0
    for i in range(1, len(text_) + 1):
        if i == len(text_) or hit[i] != hit[start]:
            pieces.append((text_[start:i], hit[start]))
            start = i
    return pieces or [(text_, False)]


async def run_search(request: Request, name: str, question: str, mode: str, k: int, filter_spec: dict | None):
    expand = mode == "expand"
    # to_jsonb of the whole row: the columns this database's ai.search has (a newer one adds "lists",
    # each fused list's rank and score of the hit, which the page then shows)
    rows = await search_api._query(
        request, "select to_jsonb(s) from ai.search(%s, %s, k => %s, mode => %s, filter => %s, expand => %s) s",
        (name, question, k, "hybrid" if expand else mode, search_api.filter_sql(filter_spec), expand), name,
        list(filter_spec or ()))
    words = terms(question)
    hits = []
    for rank, (row,) in enumerate(rows, 1):
        key, seq = row.get("key"), row.get("chunk_seq")
        lists = row.get("lists") if isinstance(row.get("lists"), dict) else None
        hits.append({"rank": rank, "key": key, "key_text": json.dumps(key, ensure_ascii=False, sort_keys=True),
                     "chunk_seq": seq, "pieces": marked(row.get("chunk") or "", words), "score": row.get("score"),
                     "similarity": row.get("similarity"), "vector_rank": row.get("vector_rank"),
                     "keyword_rank": row.get("keyword_rank"),
                     "lists": sorted(lists.items()) if lists else None,
                     "doc_url": f"{PREFIX}/kbs/{name}/doc?" + urlencode(
                         {"key": json.dumps(key, ensure_ascii=False), "chunk": seq}) + f"#chunk-{seq}"})
    return hits


def _config(request: Request, prefix: str) -> dict:
    q = request.query_params
    mode = q.get(prefix + "mode") or "hybrid"
    if mode not in MODES:
        raise InvalidRequestError(f"unknown mode {mode[:20]!r}", hint="vector, keyword, hybrid or expand")
    return {"mode": mode, "k": integer(q.get(prefix + "k"), "k", 5, 1, 100),
            "filter": text(q.get(prefix + "filter"), "filter", limit=2000, required=False)}


@router.get(PREFIX + "/kbs/{name}/search")
@page
async def hit_test(request: Request, name: str):
    session = await signed_in(request)
    name = kb_name(request, name)
    q = request.query_params
    question = text(q.get("q"), "question", limit=2000, required=False)
    configs = [_config(request, "")]
    if q.get("compare"):
        configs.append(_config(request, "b_"))
    async with as_role(request, session.role) as conn:
        image_kb = await image_collection(conn, await visible(conn, request, name))
    results = []
    if question.strip() and not image_kb:
        act_as(request, session.role)
        for c in configs:
            results.append(await run_search(request, name, question, c["mode"], c["k"], parse_filter(c["filter"])))
    has_lists = any(h["lists"] for hits in results for h in hits)
    return render(request, "search.html", session=session, name=name, question=question, configs=configs,
                  results=results, modes=MODES, compare=bool(q.get("compare")), has_lists=has_lists,
                  image_kb=image_kb)
