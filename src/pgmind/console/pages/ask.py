"""Ask: the answer streams as the model writes it, after the sources; a decline says why.  The same
steps as POST /v1/ask with stream (server/search_api.py): ai.rag_prompt as the signed-in role, the
chat model through the model service, the draft checked against the sources (checked_reply).  The
events are JSON lines of a text/event-stream that static/ask.js reads and renders with textContent.
Feedback (thumbs, a corrected answer) goes to ai.feedback as the role; its owner exports it as a
`pgmind eval` questions file."""
from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from psycopg.types.json import Jsonb

from ...errors import InvalidRequestError, PgmindError
from ...evaluation import key_text
from ...rag.grounding import checked_reply, why_declined
from ...rag.text import language
from ...server import search_api
from ...server.deps import caller, service
from .. import i18n
from ..db import as_role, rows
from ..web import PREFIX, check_csrf, integer, page, render, secure, signed_in, text
from .kbs import image_collection, kb_name, visible
from .search import act_as

router = APIRouter()


def _event(obj: dict) -> str:
    return "data: " + json.dumps(obj, ensure_ascii=False, default=str) + "\n\n"


@router.get(PREFIX + "/kbs/{name}/ask")
@page
async def ask_page(request: Request, name: str):
    session = await signed_in(request)
    name = kb_name(request, name)
    async with as_role(request, session.role) as conn:
        image_kb = await image_collection(conn, await visible(conn, request, name))
    return render(request, "ask.html", session=session, name=name, image_kb=image_kb)


@router.post(PREFIX + "/kbs/{name}/ask")
@page
async def ask(request: Request, name: str):
    session = await signed_in(request)
    data = await check_csrf(request, session)
    name = kb_name(request, name)
    question = text(data.get("question"), "question", limit=2000)
    k = integer(data.get("k"), "k", 0, 0, 50) or None
    act_as(request, session.role)
    (row,) = await search_api._query(request, "select ai.rag_prompt(%s, %s, %s)", (name, question, k), name)
    prompt = row[0]
    if not prompt["answered"]:
        reason = _decline(name, question, prompt)

        async def declined():
            yield _event({"type": "sources", "sources": []})
            yield _event({"type": "done", "answered": False, "answer": prompt["answer"], "reason": reason,
                          "sources": []})
        return _stream(declined())
    sources = [{"n": i, "key": s.get("key"), "key_text": key_text(s["key"]) if isinstance(s.get("key"), dict)
                else str(s.get("key")), "chunk_seq": s.get("chunk_seq"), "chunk": (s.get("chunk") or "")[:600],
                "similarity": s.get("similarity"),
                "url": _doc_url(name, s.get("key"), s.get("chunk_seq"))}
               for i, s in enumerate(prompt["sources"], 1)]
    svc, who = service(request), caller(request, "pgmind-console")
    spec, deltas = await svc.chat_stream(prompt["model"], prompt["messages"], prompt["options"], who)

    async def events():
        yield _event({"type": "sources", "sources": sources})
        parts = []
        try:
            async for d in deltas:
                if d.content:
                    parts.append(d.content)
                    yield _event({"type": "delta", "content": d.content})
        except PgmindError as e:
            yield _event({"type": "error", "message": e.message, "hint": e.hint, "sqlstate": e.sqlstate})
            return
        answer = "".join(parts)
        checked = checked_reply(question, answer, prompt)
        yield _event({"type": "done", "answered": True, "answer": checked.get("answer", answer),
                      "confidence": checked.get("confidence"), "model": spec.model_id, "sources": sources})
    return _stream(events())


def _doc_url(name: str, key, chunk_seq) -> str:
    return (f"{PREFIX}/kbs/{name}/doc?key=" + _q(json.dumps(key, ensure_ascii=False))
            + f"&chunk={chunk_seq}#chunk-{chunk_seq}")


def _decline(name: str, question: str, prompt: dict) -> dict:
    """What the page shows of a decline: ai.rag_prompt's own "decline" (its reason, what it measured,
    the nearest passages as links to their documents) and why_declined's sentence for it, in the
    question's language.  Nothing is measured here: a database whose rag_prompt gives no "decline"
    shows the decline without a reason."""
    decline = prompt.get("decline") if isinstance(prompt.get("decline"), dict) else {}
    nearest = [{"key_text": key_text(c["key"]) if isinstance(c.get("key"), dict) else str(c.get("key")),
                "chunk_seq": c.get("chunk_seq"), "similarity": c.get("similarity"), "score": c.get("score"),
                "url": _doc_url(name, c.get("key"), c.get("chunk_seq"))}
               for c in decline.get("nearest") or [] if isinstance(c, dict)]
    return {"code": decline.get("reason"), "why": why_declined(decline or None, question),
            "topic_score": decline.get("topic_score"), "topic_threshold": decline.get("topic_threshold"),
            "best": decline.get("best", prompt.get("best_similarity")),
            "threshold": decline.get("threshold", prompt.get("threshold")),
            "measure": decline.get("measure"), "nearest": nearest}


def _q(s: str) -> str:
    from urllib.parse import quote
    return quote(s, safe="")


def _stream(gen) -> Response:
    response = StreamingResponse(gen, media_type="text/event-stream")
    secure(response)
    response.headers["X-Accel-Buffering"] = "no"
    return response


@router.post(PREFIX + "/kbs/{name}/feedback")
@page
async def feedback(request: Request, name: str):
    session = await signed_in(request)
    data = await check_csrf(request, session)
    name = kb_name(request, name)
    t = i18n.translator(i18n.language(request))
    question = text(data.get("question"), "question", limit=2000)
    answer = text(data.get("answer"), "answer", limit=20000, required=False)
    correction = text(data.get("correction"), "correction", limit=20000, required=False).strip() or None
    rating = {"up": 1, "down": -1}.get(data.get("rating") or "")
    if rating is None and correction is None:
        raise InvalidRequestError("give a thumb or a corrected answer", hint="choose good or bad, or write one")
    raw_sources = text(data.get("sources"), "sources", limit=20000, required=False) or "[]"
    try:
        sources = [str(s) for s in json.loads(raw_sources)][:50]
    except (ValueError, TypeError):
        raise InvalidRequestError("the sources field is not a JSON list", hint="use the page's form") from None
    answered = data.get("answered") == "true"
    async with as_role(request, session.role, write=True) as conn:
        await visible(conn, request, name)
        await conn.execute(
            """insert into ai.feedback (vectorizer_id, vectorizer, question, answer, answered, rating, correction,
                                        sources, lang)
               values (ai_internal._vectorizer_id(%s), %s, %s, %s, %s, %s, %s, %s, %s)""",
            (name, name, question, answer or None, answered, rating, correction, Jsonb(sources), language(question)))
    return render(request, "feedback_saved.html", session=session, message=t("feedback_saved"))


def eval_line(r: dict) -> dict | None:
    """A feedback row as a `pgmind eval` question (evaluation.load_questions): a good answer's
    sources are its gold keys; a good decline has none (the right answer declines); a corrected
    answer is kept beside it (eval reads question, lang, gold, facts and ignores the rest)."""
    if r["rating"] == 1:
        gold = r["sources"] if r["answered"] else []
    elif r["correction"]:
        gold = r["sources"]
    else:
        return None          # a bad answer with no correction says what is wrong, not what is right
    line = {"question": r["question"], "lang": r["lang"] or "?", "gold": gold, "facts": []}
    if r["correction"]:
        line["answer"] = r["correction"]
    return line


@router.get(PREFIX + "/kbs/{name}/feedback.jsonl")
@page
async def export(request: Request, name: str):
    session = await signed_in(request)
    name = kb_name(request, name)
    async with as_role(request, session.role) as conn:
        await visible(conn, request, name)
        found = await rows(conn, "select question, answer, answered, rating, correction, sources, lang "
                                 "from ai.feedback where vectorizer = %s order by id limit 100000", (name,))
    lines = [json.dumps(x, ensure_ascii=False) for x in map(eval_line, found) if x is not None]
    response = Response("".join(line + "\n" for line in lines), media_type="application/x-ndjson")
    response.headers["Content-Disposition"] = f'attachment; filename="{name}-feedback.jsonl"'
    return secure(response)
