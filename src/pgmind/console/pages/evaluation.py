"""Evaluation: `pgmind eval` on an uploaded questions file or on the knowledge base's own feedback
(its export), as the signed-in role — the retrieval scores (pgmind.evaluation.evaluate_retrieval:
recall@1/5/10, MRR, nDCG@10 per mode and language, every search through the hit test's query) and,
when asked, the answers (evaluate_answers: RAG as the role, then the chat model, as the Ask page
does; answers with the facts, unanswerable questions declined, answerable ones declined, per
language).  Runs are kept in the pgmind home (console/eval_store.py) and shown side by side: a
table, and charts of recall@5, MRR and the answers per run."""
from __future__ import annotations

import asyncio
import json
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone

from fastapi import APIRouter, Request

from ... import errors
from ...evaluation import evaluate_answers, evaluate_retrieval, load_questions
from ...rag.grounding import checked_reply
from ...server import search_api
from ...server.deps import caller, service
from .. import i18n
from ..charts import group_chart
from ..db import as_role, rows
from ..eval_store import EvalStore
from ..web import PREFIX, page, render, require_token, signed_in
from .ask import eval_line
from .kbs import image_collection, kb_name, visible
from .search import act_as

router = APIRouter()
MODES = ("vector", "keyword", "hybrid", "hybrid+expand")
MAX_QUESTIONS = 500
MAX_ANSWERED = 20           # a model call each, in one request (a local 1.5B model: ~10 s an answer on 2 cores)
SHOWN_ANSWERS = 50


@dataclass
class _Hit:
    key: dict
    score: float


@dataclass
class _Answer:
    answer: str
    sources: list
    answered: bool


class _RoleDb:
    """What the evaluation needs of a Pgmind (search, ask), answered as the signed-in role on the
    server's event loop (the evaluation runs in a thread): search by the hit test's query, ask as
    the Ask page does (ai.rag_prompt as the role, then the chat model through the model service)."""

    def __init__(self, request: Request, loop: asyncio.AbstractEventLoop):
        self.request, self.loop = request, loop

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def search(self, name, query, *, k=10, mode="hybrid", expand=False, chunks_per_source=None, **_):
        found = self._run(search_api._query(
            self.request, "select key, score from ai.search(%s, %s, k => %s, mode => %s, expand => %s, "
                          "chunks_per_source => %s)", (name, query, k, mode, expand, chunks_per_source), name))
        return [_Hit(key, score) for key, score in found]

    def ask(self, name, question, model=None):
        return self._run(self._ask(name, question, model))

    async def _ask(self, name, question, model):
        ((prompt,),) = await search_api._query(self.request, "select ai.rag_prompt(%s, %s, null, %s)",
                                               (name, question, model), name)
        if not prompt["answered"]:
            return _Answer(prompt["answer"], [], False)
        _, reply = await service(self.request).chat(prompt["model"], prompt["messages"], prompt["options"],
                                                    caller(self.request, "pgmind-console"))
        answer = checked_reply(question, reply.content, prompt).get("answer", reply.content)
        return _Answer(answer, prompt["sources"], True)


def _store(request: Request) -> EvalStore:
    return EvalStore(request.app.state.settings.home)


async def _who(conn, name: str) -> tuple[int, int]:
    """The role's OID and the knowledge base's id: what the kept runs are filed under."""
    row = await (await conn.execute("select (select oid from pg_roles where rolname = current_user)::bigint, "
                                    "ai_internal._vectorizer_id(%s)", (name,))).fetchone()
    return int(row[0]), int(row[1])


def _charts(request: Request, runs: list[dict]) -> list:
    t = i18n.translator(i18n.language(request))
    shown = runs[-10:]
    groups = [f"#{r['n']}" for r in shown]
    modes = [m for m in MODES if any(m in r["scores"] for r in shown)]

    def per_mode(metric):
        return {m: [((r["scores"].get(m) or {}).get("all") or {}).get(metric) for r in shown] for m in modes}
    out = [group_chart(t("chart_recall5"), "", groups, per_mode("recall@5"), y_max=1.0),
           group_chart(t("chart_mrr"), "", groups, per_mode("mrr"), y_max=1.0)]
    if any(r.get("answers") for r in shown):
        def share(key):
            return [((r.get("answers") or {}).get("all") or {}).get(key) for r in shown]
        out.append(group_chart(t("chart_answers"), "", groups,
                               {t("facts"): share("facts"), t("declined_right"): share("declined"),
                                t("answerable_declined"): share("answerable_declined")}, y_max=1.0))
    return out


async def _render(request: Request, session, name: str, runs: list[dict], image_kb: bool = False):
    return render(request, "eval.html", session=session, name=name, modes=MODES, runs=runs, image_kb=image_kb,
                  charts=_charts(request, runs) if runs else [], max_answered=MAX_ANSWERED)


@router.get(PREFIX + "/kbs/{name}/eval")
@page
async def eval_page(request: Request, name: str):
    session = await signed_in(request)
    name = kb_name(request, name)
    async with as_role(request, session.role) as conn:
        image_kb = await image_collection(conn, await visible(conn, request, name))
        oid, vid = await _who(conn, name)
    runs = await asyncio.to_thread(_store(request).runs, oid, session.role, vid)
    return await _render(request, session, name, runs, image_kb=image_kb)


@router.post(PREFIX + "/kbs/{name}/eval")
@page
async def run_eval(request: Request, name: str):
    session = await signed_in(request)
    name = kb_name(request, name)
    form = await request.form(max_files=1, max_fields=20, max_part_size=64 * 1024)
    require_token(request, session.csrf, form)
    modes = [m for m in form.getlist("mode") if m in MODES] or ["hybrid"]
    with_answers = form.get("answers") == "on"
    source = form.get("source")
    if source == "file":
        upload = form.get("questions")
        if upload is None or not hasattr(upload, "read"):
            raise errors.InvalidRequestError("no questions file was sent", hint="choose a JSONL file")
        raw = await upload.read(5 * 1024 * 1024 + 1)
        if len(raw) > 5 * 1024 * 1024:
            raise errors.InvalidRequestError("the questions file is over 5 MB", hint="send fewer questions")
        label = (getattr(upload, "filename", None) or "questions.jsonl")[:200]
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
            questions = load_questions(f.name) if raw.strip() else []
        except UnicodeDecodeError:
            raise errors.InvalidRequestError("the questions file is not UTF-8 text", hint="save it as UTF-8") from None
        except errors.InvalidRequestError as e:      # (its message names the temporary file: name the upload)
            raise errors.InvalidRequestError(e.message.replace(f.name, label), hint=e.hint) from None
    if not questions:
        raise errors.InvalidRequestError("no questions to evaluate",
                                         hint="give feedback on answers first, or upload a questions file")
    if len(questions) > MAX_QUESTIONS:
        raise errors.InvalidRequestError(f"{len(questions)} questions; the console runs at most {MAX_QUESTIONS}",
                                         hint="run pgmind eval for more")
    if with_answers and len(questions) > MAX_ANSWERED:
        t = i18n.translator(i18n.language(request))
        raise errors.InvalidRequestError(t("too_many_answers", n=len(questions), most=MAX_ANSWERED),
                                         hint=t("too_many_answers_hint"))
    async with as_role(request, session.role) as conn:
        await visible(conn, request, name)
        oid, vid = await _who(conn, name)
    act_as(request, session.role)
    loop = asyncio.get_running_loop()
    db = _RoleDb(request, loop)
    scores = await loop.run_in_executor(None, evaluate_retrieval, db, name, questions, tuple(modes))
    run = {"at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"), "source": label,
           "questions": len(questions), "answerable": sum(1 for q in questions if q.gold), "scores": scores}
    if with_answers:
        report = await loop.run_in_executor(None, evaluate_answers, db, name, questions)
        run["answers"] = report["summary"]
        run["answer_rows"] = [{**{k: r[k] for k in ("question", "ok", "answered", "seconds")},
                               "answer": (r["answer"] or "")[:600], "faults": r["faults"][:5]}
                              for r in report["answers"][:SHOWN_ANSWERS]]
    runs = await asyncio.to_thread(_store(request).add, oid, session.role, vid, run)
    return await _render(request, session, name, runs)
