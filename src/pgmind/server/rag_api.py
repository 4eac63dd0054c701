"""RAG's text rules for the SQL functions (``/pgmind/v1/rag/*``, the database's own routes: a role's
SQL token, acting as that role).  SQL keeps rows, rights and settings — it searches, checks the
threshold and passes what the caller's own search returned; the rules that read and write text
(pgmind.rag) run here, and every model call they need is the caller's, checked and logged as any."""
from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request

from ..errors import InvalidRequestError
from ..models.validation import check_text
from ..rag import compose as rag_compose
from ..rag import grounding as rag_grounding
from ..rag import query as rag_query
from ..rag.text import expansion_headings, expansion_names
from .deps import caller, internal_only, json_body, json_response, service, while_connected

router = APIRouter(dependencies=[Depends(internal_only)], tags=["pgmind"], include_in_schema=False)

_MAX_HITS = 1000          # ai.search's largest k
_MAX_GROUND_CHARS = 2_000_000   # the sources an answer is checked against (a prompt holds far less)
# settings that name a model, a language or a topic: texts (or null), as ai.configure_rag keeps them
_NAMES = ("model", "translate_model", "expand_model", "topic_model", "rerank", "language", "topic")


def _text(body: dict, key: str, required: bool = True, limit: int = 10000) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise InvalidRequestError(f'"{key}" must be a text', hint="these routes are the SQL functions' own calls")
    check_text(value, key, limit)
    return value


def _settings(body: dict) -> dict:
    settings = body.get("settings")
    if not isinstance(settings, dict):
        raise InvalidRequestError('"settings" must be a JSON object (the knowledge base\'s RAG settings)',
                                  hint="see ai.rag_defaults()")
    for key, value in settings.items():
        if isinstance(value, str):
            check_text(value, f"setting {key}", 100000)
        elif key in _NAMES and value is not None:
            raise InvalidRequestError(f"the setting {key} must be a text or null", hint="see ai.rag_defaults()")
    return settings


async def _chat(request: Request, call: rag_query.ChatCall):
    """Query understanding's calls are greedy: a question this role asked before is answered from
    its own kept replies (models.local.reply_cache), not translated or expanded again."""
    who = caller(request, "sql")
    svc = service(request)
    _, result = await while_connected(request, lambda cancel: svc.chat(call.model, call.messages, call.options,
                                                                        who, cancel, reuse=True))
    return result


async def _understand(request: Request, field: str, build, read):
    """One step of query understanding: the chat call ``build(settings, body)`` asks for (None: the
    setting turns the step off, ``read(None, …)`` answers), made as the caller, its reply read."""
    body = await json_body(request)
    settings, question = _settings(body), _text(body, "question")
    call = build(settings, question, body)
    reply = None
    if call is not None:
        reply = await _chat(request, call)
    return json_response({field: read(reply, call, settings, question)})


@router.post("/pgmind/v1/rag/translate")
async def translate(request: Request):
    return await _understand(request, "text", lambda s, q, _: rag_query.translate_request(s, q),
                             lambda r, call, s, q: q if call is None else rag_query.read_translation(r.content, s, q))


@router.post("/pgmind/v1/rag/expand")
async def expand(request: Request):
    return await _understand(request, "expansion",
                             lambda s, q, body: rag_query.expand_request(s, _text(body, "name", limit=200), q),
                             lambda r, call, s, q: None if call is None else rag_query.read_expansion(r.content))


@router.post("/pgmind/v1/rag/topic")
async def topic(request: Request):
    return await _understand(request, "score", lambda s, q, _: rag_query.topic_request(s, q),
                             lambda r, call, s, q: None if call is None
                             else rag_query.read_topic_score(r.logprobs, call.model))


@router.post("/pgmind/v1/rag/expansion-terms")
async def expansion_terms(request: Request):
    """What ai.search searches of an expansion: its names (a keyword list) and the headings they
    may be (a list of the pages titled so)."""
    body = await json_body(request)
    expansion = _text(body, "expansion", required=False)
    return json_response({"names": expansion_names(expansion), "headings": expansion_headings(expansion)})


def _hits(body: dict) -> list[dict]:
    hits = body.get("hits")
    if not isinstance(hits, list) or len(hits) > _MAX_HITS:
        raise InvalidRequestError(f'"hits" must be a list of at most {_MAX_HITS} search results')
    for i, hit in enumerate(hits):
        if not isinstance(hit, dict) or not isinstance(hit.get("chunk"), str):
            raise InvalidRequestError(f"hit {i} must be an object with its chunk, as ai.search returns it")
        check_text(hit["chunk"], f"hit {i}'s chunk", 1_000_000)
    return hits


def _per_source(settings: dict) -> list[int] | None:
    """source_sentences: a number is every source's count, a list one per rank, null whole chunks
    (ai.configure_rag checked which)."""
    value = settings.get("source_sentences")
    values = value if isinstance(value, list) else None if value is None else [value]
    if values is not None and (not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                     and 1 <= v <= 100 for v in values)):
        raise InvalidRequestError("source_sentences must be 1..100, a list of them, or null",
                                  hint="ai.configure_rag(name, '{\"source_sentences\": [3, 3, 2, 1, 1]}')")
    return None if values is None else [int(round(v)) for v in values]


@router.post("/pgmind/v1/rag/compose")
async def compose(request: Request):
    """The prompt from the hits that passed the threshold, best first: the ones that fit the token
    budget as numbered sources, their best sentences (by the knowledge base's embedding model, one
    call for all), the messages.  Only what the caller's search returned is read."""
    body = await json_body(request)
    settings, question = _settings(body), _text(body, "question")
    name, expansion = _text(body, "name", limit=200), _text(body, "expansion", required=False)
    model = _text(body, "model", limit=200)
    try:
        context_tokens = int(settings.get("context_tokens"))
    except (TypeError, ValueError):
        raise InvalidRequestError("context_tokens must be a whole number", hint="see ai.rag_defaults()") from None
    sources = rag_compose.budget(_hits(body), context_tokens)
    context, sentences = "", []
    if sources:
        quote = rag_compose.style(settings) == "quote"
        per_source = _per_source(settings)
        # (a quote-first answer chooses among labelled sentences: whole chunks are shown as all of theirs)
        plan = rag_compose.plan([s["chunk"] for s in sources], per_source or ([100] if quote else None))
        units = queries = None
        if plan.texts:
            svc, who = service(request), caller(request, "sql")
            _, units = await svc.embed(model, plan.texts, who, "document")
            _, queries = await svc.embed(model, [t for t in (question, expansion) if t is not None], who, "query")
            units, queries = units.vectors, queries.vectors
        context, sentences = await asyncio.to_thread(rag_compose.render, plan, units, queries, quote)
    return json_response(rag_compose.compose(settings, name, question, sources, context, sentences))


@router.post("/pgmind/v1/rag/ground")
async def ground(request: Request):
    """An answer checked against its sources (pgmind.rag.grounding): the answer to show, its
    confidence, the claims and where each was found."""
    body = await json_body(request)
    question, answer = _text(body, "question"), _text(body, "answer", limit=100000)
    sources = _hits(body)
    sentences = body.get("sentences") or []
    if not isinstance(sentences, list) or len(sentences) > 10 * _MAX_HITS or not all(
            isinstance(s, dict) and isinstance(s.get("text"), str) and type(s.get("n")) is int
            and (s.get("similarity") is None or type(s.get("similarity")) in (int, float)) for s in sentences):
        raise InvalidRequestError('"sentences" must be the list rag_prompt returned')
    chunks = [s["chunk"] for s in sources]
    if sum(map(len, chunks)) > _MAX_GROUND_CHARS:
        raise InvalidRequestError(f"the sources hold over {_MAX_GROUND_CHARS} characters; an answer is checked "
                                  "against what its prompt held", hint="pass the sources rag_prompt returned")
    # (a thread: checking a long answer against many sources must not hold up the other requests)
    style = body.get("answer_style") or "free"
    if style not in rag_compose.STYLES:
        raise InvalidRequestError('"answer_style" must be "free", "brief" or "quote"', hint="pass what rag_prompt returned")
    return json_response(await asyncio.to_thread(rag_grounding.checked, question, answer, chunks, sentences, style))
