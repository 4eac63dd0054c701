"""Query understanding: the requests RAG makes of the chat model before it searches, and how their
replies are read.  Translation (a question in the knowledge base's language), expansion (HyDE: a
short answer from what the model already knows, naming the terms the documents would use) and the
topic check (is the question about the knowledge base's subject at all).  Each ``*_request`` gives
the chat call to make (model, messages, options) or None when the setting turns it off; the server
makes the call with the asker's rights and logs it like any other."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import InvalidRequestError
from .text import fill, language

__all__ = ["ChatCall", "expand_request", "read_expansion", "read_topic_score", "read_translation",
           "topic_request", "translate_request"]


@dataclass(frozen=True)
class ChatCall:
    model: str
    messages: list[dict]
    options: dict


def _name(settings: dict, key: str) -> str | None:
    """A setting that names a model (or a language, a topic): a text or null."""
    value = settings.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidRequestError(f"the setting {key} must be a text or null, got {value!r}"[:200],
                                  hint="see ai.rag_defaults()")
    return value


def _text(settings: dict, key: str) -> str:
    value = settings.get(key)
    return value if isinstance(value, str) else ""


def _count(value, name: str) -> int:
    """A whole number from a setting (ai.configure_rag checked it is one; SQL rounded numerics)."""
    try:
        return int(round(float(value)))
    except (TypeError, ValueError, OverflowError):
        raise InvalidRequestError(f"the setting {name} must be a whole number, got {value!r}"[:200],
                                  hint="see ai.rag_defaults()") from None


def translate_request(settings: dict, question: str) -> ChatCall | None:
    """A question in the knowledge base's language: the question itself, or, when the knowledge base
    has a language ("language", set by ingest) and a translation model ("translate_model", null to
    turn translation off) and the question is in the other language, its translation.  A model
    matches a question to passages best in their own language (e5-small: MRR 0.30 → 0.70 for
    Chinese questions on the English manual), and words only match words of the same language."""
    target, model = _name(settings, "language"), _name(settings, "translate_model")
    if target is None or model is None or language(question) == target:
        return None
    if target not in ("en", "zh"):
        raise InvalidRequestError(f'cannot translate questions into "{target}"',
                                  hint="set the knowledge base's language to en or zh, or turn translation off: "
                                       "ai.configure_rag(name, '{\"translate_model\": null}')")
    return ChatCall(model,
                    [{"role": "user", "content": fill(settings.get(f"translate_prompt_{target}"), {"question": question})}],
                    {"max_tokens": 64, "temperature": 0})


_QUOTES = ' \t"\'“”「」'


def read_translation(reply: str | None, settings: dict, question: str) -> str:
    """Small models sometimes wrap the answer in quotes or add a line: the first line, unquoted.  A
    reply not in the target language is no translation (the 0.5B model sometimes echoes words)."""
    line = (reply or "").strip(" ").split("\n", 1)[0].strip(_QUOTES)
    return line if line and language(line) == settings.get("language") else question


def expand_request(settings: dict, name: str, question: str) -> ChatCall | None:
    """The expansion, in the knowledge base's language (else the question's).  Searched beside the
    question it finds pages that share none of the question's words ("kill a query that runs too
    long" → pg_cancel_backend); a wrong detail in it costs little, since the question's own lists
    are fused with its lists.  The topic (a setting, else the knowledge base's name) tells the model
    what the documents are about.  ``expand_tokens``, 64 by default: cut at 32 the pages rank as
    well but the prompt holds the key facts a little less often (docs/experiments)."""
    model = _name(settings, "expand_model")
    if model is None:
        return None
    lang = _name(settings, "language") or language(question)
    if lang not in ("en", "zh"):
        lang = language(question)
    topic = _name(settings, "topic")
    return ChatCall(model,
                    [{"role": "user", "content": fill(settings.get(f"expand_prompt_{lang}"),
                                                      {"topic": name if topic is None else topic,
                                                       "question": question})}],
                    {"max_tokens": _count(settings.get("expand_tokens"), "expand_tokens"), "temperature": 0})


def read_expansion(reply: str | None) -> str | None:
    return (reply or "").strip(" ") or None


def topic_request(settings: dict, question: str) -> ChatCall | None:
    """Whether a question is about the knowledge base's topic at all: the chat model's log-odds of
    "yes" against "no" as its first token (one token generated).  Similarity alone cannot decline
    "the default port of MySQL" on a PostgreSQL manual: its best chunks are as close as a real
    question's (docs/experiments, "Declines").  None when the knowledge base names no topic or turns
    the check off."""
    topic, model = _name(settings, "topic"), _name(settings, "topic_model")
    if topic is None or model is None:
        return None
    return ChatCall(model,
                    [{"role": "system", "content": _text(settings, "topic_system")},
                     {"role": "user", "content": fill(settings.get("topic_prompt"),
                                                      {"topic": topic, "question": question})}],
                    {"max_tokens": 1, "temperature": 0, "logprobs": True, "top_logprobs": 10})


def read_topic_score(logprobs: list[dict] | None, model: str) -> float:
    """log P(yes) - log P(no) over the first token's alternatives; a word missing from the list is
    no likelier than the least likely one in it."""
    first = logprobs[0] if isinstance(logprobs, list) and logprobs else None
    top = first.get("top_logprobs") if isinstance(first, dict) else None
    if not isinstance(top, list) or not top:
        raise InvalidRequestError(f'the topic model "{model}" returned no logprobs',
                                  hint="choose a topic_model that returns logprobs, or turn the check off: "
                                       "ai.configure_rag(name, '{\"topic_model\": null}')")

    try:
        pairs = [(str(e.get("token", "")).strip(" ").lower(), float(e["logprob"])) for e in top]
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError):
        pairs = []
    if not pairs or any(math.isnan(lp) for _, lp in pairs):
        raise InvalidRequestError(f'the topic model "{model}" returned logprobs that cannot be read',
                                  hint="choose a topic_model that returns OpenAI's logprobs, or turn the check "
                                       "off: ai.configure_rag(name, '{\"topic_model\": null}')")

    def log_sum(word: str) -> float | None:
        ps = [math.exp(max(lp, -700.0)) for token, lp in pairs if token == word]
        return math.log(sum(ps)) if ps else None

    least = min(lp for _, lp in pairs)
    yes, no = log_sum("yes"), log_sum("no")
    return (least if yes is None else yes) - (least if no is None else no)
