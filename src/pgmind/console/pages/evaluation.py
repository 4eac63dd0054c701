"""Evaluation: `pgmind eval`'s retrieval scores (pgmind.evaluation.evaluate_retrieval: recall@1/5/10,
MRR, nDCG@10 per mode and language) on an uploaded questions file or on the knowledge base's own
feedback (its export), with every search run as the signed-in role through the same query as the
hit test.  Runs are kept in the server's memory (the last 20 per knowledge base, until a restart)
and shown side by side, recall@5 per mode as bars."""
from __future__ import annotations

import asyncio
import json
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone

from fastapi import APIRouter, Request

from ... import errors
from ...evaluation import evaluate_retrieval, load_questions
from ..db import as_role, rows
from ..web import PREFIX, page, render, require_token, signed_in, state
from .ask import eval_line
from .kbs import kb_name, visible
from .search import act_as
from ...server import search_api

router = APIRouter()
MODES = ("vector", "keyword", "hybrid", "hybrid+expand")
MAX_QUESTIONS = 500
KEPT = 20


@dataclass
class _Hit:
    key: dict
    score: float


class _RoleSearch:
    """What evaluate_retrieval needs of a Pgmind (search), answered by the console's search query
    as the signed-in role, on the server's event loop (evaluate_retrieval runs in a thread)."""

    def __init__(self, request: Request, loop: asyncio.AbstractEventLoop):
        self.request, self.loop = request, loop

    def search(self, name, query, *, k=10, mode="hybrid", expand=False, chunks_per_source=None, **_):
        coro = search_api._query(
            self.request, "select key, score from ai.search(%s, %s, k => %s, mode => %s, expand => %s, "
                          "chunks_per_source => %s)", (name, query, k, mode, expand, chunks_per_source), name)
        return [_Hit(key, score) for key, score in asyncio.run_coroutine_threadsafe(coro, self.loop).result()]


def _runs(request: Request, role: str, name: str) -> list[dict]:
    st = state(request)
    if not hasattr(st, "eval_runs"):
        st.eval_runs = {}
    return st.eval_runs.setdefault((role, name), [])


@router.get(PREFIX + "/kbs/{name}/eval")
@page
async def eval_page(request: Request, name: str):
    session = await signed_in(request)
    name = kb_name(request, name)
    async with as_role(request, session.role) as conn:
        await visible(conn, request, name)
    return render(request, "eval.html", session=session, name=name, modes=MODES,
                  runs=_runs(request, session.role, name))


@router.post(PREFIX + "/kbs/{name}/eval")
@page
async def run_eval(request: Request, name: str):
    session = await signed_in(request)
    name = kb_name(request, name)
    form = await request.form(max_files=1, max_fields=20, max_part_size=64 * 1024)
    require_token(request, session.csrf, form)
    modes = [m for m in form.getlist("mode") if m in MODES] or ["hybrid"]
    source = form.get("source")
    if source == "file":
        upload = form.get("questions")
        if upload is None or not hasattr(upload, "read"):
            raise errors.InvalidRequestError("no questions file was sent", hint="choose a JSONL file")
        raw = await upload.read(5 * 1024 * 1024 + 1)
        if len(raw) > 5 * 1024 * 1024:
            raise errors.InvalidRequestError("the questions file is over 5 MB", hint="send fewer questions")
        label = getattr(upload, "filename", None) or "questions.jsonl"
    else:
        async with as_role(request, session.role) as conn:
            await visible(conn, request, name)
            found = await rows(conn, "select question, answer, answered, rating, correction, sources, lang "
                                     "from ai.feedback where vectorizer = %s order by id limit 100000", (name,))
        raw = "".join(json.dumps(x, ensure_ascii=False) + "\n"
                      for x in map(eval_line, found) if x is not None).encode()
        label = "feedback"
    with tempfile.NamedTemporaryFile(suffix=".jsonl") as f:
        f.write(raw)
        f.flush()
        try:
            questions = load_questions(f.name)
        except UnicodeDecodeError:
            raise errors.InvalidRequestError("the questions file is not UTF-8 text", hint="save it as UTF-8") from None
    if not questions:
        raise errors.InvalidRequestError("no questions to evaluate",
                                         hint="give feedback on answers first, or upload a questions file")
    if len(questions) > MAX_QUESTIONS:
        raise errors.InvalidRequestError(f"{len(questions)} questions; the console runs at most {MAX_QUESTIONS}",
                                         hint="run pgmind eval for more")
    async with as_role(request, session.role) as conn:
        await visible(conn, request, name)
    act_as(request, session.role)
    loop = asyncio.get_running_loop()
    scores = await loop.run_in_executor(None, evaluate_retrieval, _RoleSearch(request, loop), name, questions,
                                        tuple(modes))
    runs = _runs(request, session.role, name)
    runs.append({"n": len(runs) + 1, "at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
                 "source": label, "questions": len(questions),
                 "answerable": sum(1 for q in questions if q.gold), "scores": scores})
    del runs[:-KEPT]
    return render(request, "eval.html", session=session, name=name, modes=MODES, runs=runs)
