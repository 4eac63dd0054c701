"""A RAG prompt from the hits of the caller's own search: which hits fit the token budget, which
sentences of each the prompt carries, and the messages for the chat model.

With ``source_sentences`` (per_source) each source is its title line and its per_source[n]
sentences closest to the question and to its expansion (a source past the list's end takes its
last count), in their order; a chunk of no more sentences stays whole.  With 3 sentences each the
chat model read ~40% fewer tokens before its first than with whole chunks, for the same facts named;
lower-ranked sources get fewer (3, 3, 2, 1, 1 by default: ~22% fewer prompt tokens, same facts)
(docs/experiments, "Sources as their best sentences").  Each source's "chunk" in the result stays
whole.

The embedding calls are the caller's (the server makes them with the caller's rights): ``plan``
says which texts need vectors, ``render`` takes them."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .text import estimate_tokens, fill, language, sentence_units

__all__ = ["STYLES", "Plan", "budget", "compose", "plan", "render", "style"]


def budget(hits: list[dict], context_tokens: int) -> list[dict]:
    """The hits, in their order, numbered from 1, while their chunks fit ``context_tokens`` (the
    first always does)."""
    sources, used = [], 0
    for hit in hits:
        cost = estimate_tokens(hit["chunk"])
        if sources and used + cost > context_tokens:
            break
        used += cost
        sources.append({"n": len(sources) + 1, "key": hit.get("key"), "chunk_seq": hit.get("chunk_seq"),
                        "chunk": hit["chunk"], "score": hit.get("score"), "similarity": hit.get("similarity")})
    return sources


@dataclass
class _Source:
    n: int
    chunk: str
    title: str | None
    want: int | None
    units: list[str] = field(default_factory=list)
    first: int = 0        # index of its first unit in Plan.texts


@dataclass
class Plan:
    sources: list[_Source]
    texts: list[str]      # every unit to embed, in order (empty: no model call is needed)


def plan(chunks: list[str], per_source: list[int] | None) -> Plan:
    out, texts = [], []
    for i, chunk in enumerate(chunks):
        want = per_source[min(i, len(per_source) - 1)] if per_source else None
        title, units = sentence_units(chunk) if want is not None else (None, [])
        out.append(_Source(i + 1, chunk, title, want, units, len(texts)))
        texts.extend(units)
    return Plan(out, texts)


def _cosines(vectors: np.ndarray, query: np.ndarray) -> list[float | None]:
    """Cosine similarity of each row to ``query``, summed in float64 one term after another (as
    SQL's sum() did, so near-ties rank as they did)."""
    out = []
    q = query.astype(np.float64)
    qq = np.cumsum(q * q)[-1]
    for v in vectors.astype(np.float64):
        norm = np.sqrt(np.cumsum(v * v)[-1]) * np.sqrt(qq)
        out.append(None if norm == 0 else float(np.cumsum(v * q)[-1] / norm))
    return out


def _order(values: list[float | None]) -> list[int]:
    """Positions by value, highest first, missing values last (ties in their order)."""
    return sorted(range(len(values)), key=lambda i: (values[i] is None, -(values[i] or 0.0), i))


def render(p: Plan, unit_vectors: np.ndarray | None, query_vectors: np.ndarray | None,
           labelled: bool = False) -> tuple[str, list[dict]]:
    """The sources' text for the prompt: "[n] …" blocks.  A chunk's sentences are taken by turns:
    its best by the question, its best by the expansion, its second by the question, …  The
    question's best always stays (an expansion from the model's prior may be wrong), and the
    expansion adds the sentence that names the command where the question only describes the task.
    ``query_vectors``: the question's, then the expansion's when there is one.  Also returns the
    sentences shown, each with its similarity to the question ({"n", "text", "similarity"}): the
    candidates an answer's quote is chosen from (pgmind.rag.grounding).

    ``labelled`` (quote-first answers): each sentence shown stands on its own line after a label,
    S1, S2, … across the sources, for the model to choose by (each shown sentence carries its
    "label"); a source's sentences are then all shown when it has no more than it may show."""
    sq = se = []
    if p.texts:
        sq = _cosines(unit_vectors, query_vectors[0])
        se = _cosines(unit_vectors, query_vectors[1]) if len(query_vectors) > 1 else sq
    parts, shown = [], []
    for s in p.sources:
        if s.want is None or len(s.units) <= s.want:
            chosen = list(range(s.first, s.first + len(s.units)))
        else:
            idx = range(s.first, s.first + len(s.units))
            rq = {idx[j]: r for r, j in enumerate(_order([sq[i] for i in idx]))}
            re_ = {idx[j]: r for r, j in enumerate(_order([se[i] for i in idx]))}
            chosen = sorted(sorted(idx, key=lambda i: (min(rq[i], re_[i]), rq[i]))[:s.want])
        title = s.title + "\n" if s.title is not None else ""
        if labelled and chosen:
            lines = []
            for i in chosen:
                label = len(shown) + 1
                shown.append({"n": s.n, "text": p.texts[i], "similarity": sq[i], "label": label})
                lines.append(f"S{label} {p.texts[i]}")
            body = title + "\n".join(lines)
        elif s.want is None or len(s.units) <= s.want:
            body = s.chunk
            shown.extend({"n": s.n, "text": p.texts[i], "similarity": sq[i]} for i in chosen)
        else:
            body = title + " … ".join(p.texts[i] for i in chosen)
            shown.extend({"n": s.n, "text": p.texts[i], "similarity": sq[i]} for i in chosen)
        parts.append(f"[{s.n}] {body}\n\n")
    return "".join(parts), shown


STYLES = ("free", "brief", "quote")


def style(settings: dict) -> str:
    """How the model answers (the setting "answer_style"): "free", in its own words, checked
    afterwards; "brief", the same prompt, and the answer shown is its first sentence that names
    something the sources hold (with its example), then the quote (pgmind.rag.grounding); or
    "quote", choosing the sentence that answers by its label first and adding one sentence of its
    own (pgmind.rag.grounding.quoted)."""
    value = settings.get("answer_style") or "free"
    return value if value in STYLES else "free"


def compose(settings: dict, name: str, question: str, sources: list[dict], context: str,
            sentences: list[dict] | None = None) -> dict:
    """ai.rag_prompt's answer: the decline when no source passed, else the messages.  (Small models
    follow one user message better than a system prompt: both are settings.)"""
    lang = language(question)
    if not sources:
        return {"answered": False, "answer": settings.get(f"decline_{lang}"), "sources": [], "messages": None,
                "sentences": [], "answer_style": style(settings)}
    system = settings.get(f"system_{lang}")
    system = system if isinstance(system, str) else ""
    messages = [{"role": "system", "content": system}] if system else []
    topic = settings.get("topic") if isinstance(settings.get("topic"), str) else None
    template = settings.get(f"quote_prompt_{lang}") if style(settings) == "quote" else None
    messages.append({"role": "user", "content": fill(template or settings.get(f"prompt_{lang}"),
                                                     {"sources": context, "question": question,
                                                      "topic": name if topic is None else topic})})
    return {"answered": True, "answer": None, "sources": sources, "messages": messages, "sentences": sentences or [],
            "answer_style": style(settings)}
