"""Images: search an image collection (a vectorizer with modality image) by words or by an uploaded
picture, through ai.search_images as the signed-in role (the same discipline as the hit test); a
grid of hits, each with its key and its text (labels and OCR, as the vectorizer stored them).
The pictures themselves are not shown yet (serving them means reading the source's files or
bytes as the role: future work)."""
from __future__ import annotations

import json

from fastapi import APIRouter, Request

from ... import errors
from ...server import search_api
from ..db import as_role
from ..web import PREFIX, integer, page, render, require_token, signed_in, text
from .kbs import kb_name, visible
from .search import act_as, marked, terms

router = APIRouter()
MAX_PICTURE = 10 * 1024 * 1024


async def _check(request: Request, role: str, name: str) -> None:
    async with as_role(request, role) as conn:
        await visible(conn, request, name)


def _grid(rows, words: list[str]) -> list[dict]:
    return [{"rank": i, "key_text": json.dumps(r.get("key"), ensure_ascii=False, sort_keys=True),
             "pieces": marked(r.get("chunk") or "", words), "score": r.get("score"),
             "similarity": r.get("similarity")} for i, (r,) in enumerate(rows, 1)]


@router.get(PREFIX + "/kbs/{name}/images")
@page
async def images_page(request: Request, name: str):
    session = await signed_in(request)
    name = kb_name(request, name)
    q = request.query_params
    words = text(q.get("q"), "words", limit=2000, required=False)
    k = integer(q.get("k"), "k", 12, 1, 100)
    await _check(request, session.role, name)
    hits = None
    if words.strip():
        act_as(request, session.role)
        rows = await search_api._query(request, "select to_jsonb(s) from ai.search_images(%s, %s, k => %s) s",
                                       (name, words, k), name)
        hits = _grid(rows, terms(words))
    return render(request, "images.html", session=session, name=name, words=words, k=k, hits=hits)


@router.post(PREFIX + "/kbs/{name}/images")
@page
async def search_by_picture(request: Request, name: str):
    session = await signed_in(request)
    name = kb_name(request, name)
    form = await request.form(max_files=1, max_fields=10, max_part_size=64 * 1024)
    require_token(request, session.csrf, form)
    k = integer(form.get("k"), "k", 12, 1, 100)
    upload = form.get("picture")
    if upload is None or not hasattr(upload, "read"):
        raise errors.InvalidRequestError("no picture was sent", hint="choose a picture")
    data = await upload.read(MAX_PICTURE + 1)
    if not data or len(data) > MAX_PICTURE:
        raise errors.InvalidRequestError(f"the picture is empty or over {MAX_PICTURE >> 20} MB",
                                         hint="send a smaller picture")
    await _check(request, session.role, name)
    act_as(request, session.role)
    # (the database checks the bytes: a broken picture is its error, SQLSTATE 22023, shown on the page)
    rows = await search_api._query(request, "select to_jsonb(s) from ai.search_images(%s, %s::bytea, k => %s) s",
                                   (name, data, k), name)
    return render(request, "images.html", session=session, name=name, words="", k=k, hits=_grid(rows, []),
                  by_picture=True)
