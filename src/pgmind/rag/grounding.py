"""An answer checked against the sources it was written from, mechanically.

A small chat model writes fluent answers with a wrong value, a function that does not exist, or a
citation that points at the wrong source, almost always with the right page among its sources.
What can be checked without a model is checked here:

- **claims**: what a reader would act on — identifiers (anything in backticks, snake_case names,
  function calls, upper-case keywords, settings, file names, psql's backslash commands, command
  options), numbers (with their unit) and short quoted values.  A claim is supported by a source
  that holds it (identifiers ignoring case, numbers as whole numbers).
- **citations**: each ``[n]`` must point at a source that holds the claims of its sentence; one that
  does not is moved to the source that does.
- **sentences** with a claim no source holds are taken out of the answer and listed, so the answer
  never states an unsupported value or name; what is left is shown with the source sentence that
  best answers the question, verbatim (the quote a reader checks it against).
- **confidence**: ``supported`` (every claim found), ``partly`` (something was taken out, or nothing
  could be checked), ``not_confirmed`` (nothing of the answer could be confirmed).

Pure functions: the model server runs them for ai.rag and /v1/ask (``/pgmind/v1/rag/ground``)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .text import CITATION, CODE_BLOCK, CODE_SPAN, language, sentence_units

__all__ = ["QUOTE_LINE", "Claim", "Grounded", "checked", "checked_reply", "claims", "ground", "label", "quoted",
           "split_sentences", "why_declined"]

_CITE = re.compile(r"\s*(?:" + CITATION.pattern + ")")     # (with the space before it)
# identifiers outside code: snake_case names (pg_total_relation_size, shared_buffers), calls
# (now()), psql commands (\timing), file names (pg_hba.conf), options (--jobs), upper-case words of
# three letters or more (CONCURRENTLY, SIGHUP, VACUUM FULL's words)
_IDENT = re.compile(r"\\[a-zA-Z][a-zA-Z+]*"                                # \timing, \dt+
                    r"|(?<![\w-])--[a-z][a-z0-9-]{1,40}\b"                  # --jobs
                    r"|\b[A-Za-z][A-Za-z0-9]*(?:[_.][A-Za-z0-9]+)+\b"       # pg_hba.conf, shared_buffers
                    r"|\b[A-Za-z_][A-Za-z0-9_]*(?=\()"                     # now(
                    r"|\b[A-Z][A-Z0-9]{2,}\b")                              # CONCURRENTLY
_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?:\s*(%|[kMGT]i?B|bytes?|ms|s|seconds?|minutes?|hours?|days?"
                     r"|秒|毫秒|分钟|小时|天|字节|个|次))?(?![\w.]*\d)")
_QUOTED = re.compile(r"'([^'\n]{2,60})'|\"([^\"\n]{2,60})\"|“([^”\n]{2,60})”|「([^」\n]{2,60})」")
# names an answer makes up for an example, not claims about the documents
_PLACEHOLDER = re.compile(r"^(?:my|your|some|example|sample|new|old|foo|bar|baz|test|tmp|temp|target|source)_|"
                          r"_(?:name|path|file|dir|table|tbl|column|col|value|id|index|idx|db|schema|list|data)$|"
                          r"^t\d*$|^(?:table|column|index|idx|tbl|col|db|database|schema|user|role|mytable|users|"
                          r"orders|employees|products|customers?|sales|items|log|logs|accounts)$", re.I)
# in code an answer writes (an example statement), its own table and column names are not claims:
# the names that are the documents' are calls, psql commands, options and upper-case keywords
_CODE_IDENT = re.compile(r"\\[a-zA-Z][a-zA-Z+]*|(?<![\w-])--[a-z][a-z0-9-]{1,40}\b|\b[A-Za-z_][A-Za-z0-9_]*(?=\s*\()"
                         r"|\b[A-Z][A-Z0-9]{2,}\b")
# words every SQL answer writes, true whatever the sources: not claims worth checking
_COMMON = frozenset("""select from where and or not null table index insert update delete create drop alter into values
set the sql psql postgresql postgres pg json jsonb text int integer true false on off yes no use using with as is
in by to of for all any order group limit default role user database schema column view function type key""".split())
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z`\"'(\[\u4e00-\u9fff])|(?<=[。！？；])|\n+")


@dataclass
class Claim:
    text: str                 # as the answer writes it
    kind: str                 # identifier | number | quote
    sentence: int             # which sentence of the answer
    sources: list[int] = field(default_factory=list)    # the sources that hold it

    @property
    def supported(self) -> bool:
        return bool(self.sources)


@dataclass
class Grounded:
    answer: str               # what the user is shown
    confidence: str           # supported | partly | not_confirmed
    claims: list[Claim]
    removed: list[str]        # sentences taken out: a claim no source holds
    citations_fixed: int
    quote: dict | None        # {"n", "text"}: the source sentence that best answers the question
    style: str = "free"       # free | quote (the model chose the quote: ``chosen`` its labels)
    chosen: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"confidence": self.confidence,
                "claims": [{"text": c.text, "kind": c.kind, "sources": c.sources, "supported": c.supported}
                           for c in self.claims],
                "removed": self.removed, "citations_fixed": self.citations_fixed, "quote": self.quote,
                "style": self.style, "chosen": self.chosen}


def split_sentences(answer: str) -> list[str]:
    """An answer's sentences (English ones end with . ! ? before a capital, Chinese ones with 。！？；),
    lines, and code blocks kept whole."""
    out, pos = [], 0
    for m in CODE_BLOCK.finditer(answer):
        out.extend(_split_prose(answer[pos:m.start()]))
        out.append(m.group(0))
        pos = m.end()
    out.extend(_split_prose(answer[pos:]))
    return [s for s in out if s.strip()]


def _split_prose(text: str) -> list[str]:
    parts, start = [], 0
    for m in _SENTENCE.finditer(text):
        cut, resume = m.start(), m.end()
        # a citation after the sentence's end belongs to it ("… 90。[1] 下一句")
        cite = _CITE.match(text, resume)
        if cite and cite.end() > resume:
            cut = resume = cite.end()
        if cut <= start:
            continue
        parts.append(text[start:cut])
        start = resume
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _cited(sentence: str) -> list[int]:
    out = []
    for m in _CITE.finditer(sentence):
        out.extend(int(x) for x in re.findall(r"\d+", m.group(1) or m.group(2)))
    return out


def claims(sentence: str, index: int = 0) -> list[Claim]:
    """The checkable claims of one sentence, once each."""
    text = _CITE.sub(" ", sentence)
    found: dict[tuple[str, str], Claim] = {}

    def add(value: str, kind: str) -> None:
        value = value.strip().rstrip(".,;:，。")
        if not value or (kind == "identifier" and (value.lower() in _COMMON or _PLACEHOLDER.search(value))):
            return
        found.setdefault((kind, value.lower()), Claim(value, kind, index))

    code = [m.group(1) for m in CODE_BLOCK.finditer(text)] + [m.group(1) for m in CODE_SPAN.finditer(text)]
    prose = CODE_SPAN.sub(" ", CODE_BLOCK.sub(" ", text))
    for span in code:
        # code is checked by the names that must be the documents' (functions, commands, options,
        # keywords); a one-word span is a name itself (`shared_buffers`, `\timing`)
        for m in _CODE_IDENT.finditer(span):
            add(m.group(0), "identifier")
        if len(span) <= 40 and not re.search(r"\s", span.strip()):
            add(re.sub(r"\(\)$", "", span), "identifier")   # `\timing`, `fillfactor`, `now()`: the span itself
    for m in _IDENT.finditer(prose):
        add(m.group(0), "identifier")
    for m in _QUOTED.finditer(prose):
        add(next(g for g in m.groups() if g), "quote")
    for m in _NUMBER.finditer(prose):
        add(m.group(1), "number")
    return list(found.values())


def _holds(source: str, claim: Claim) -> bool:
    if claim.kind == "number":
        return re.search(rf"(?<![\d.]){re.escape(claim.text)}(?![\d]|\.\d)", source) is not None
    low = source.lower()
    text = claim.text.lower().rstrip("(")
    if claim.kind == "quote":
        return " ".join(text.split()) in " ".join(low.split())
    return re.search(rf"(?<![\w\\]){re.escape(text)}(?!\w)", low) is not None


def _without_dangling_intros(kept: list[str], sentences: list[str], removed: list[str]) -> list[str]:
    """An intro ("The command is:", "具体命令如下：") whose next sentence was taken out goes too."""
    gone = set(removed)
    out = []
    for s in kept:
        i = next((j for j, t in enumerate(sentences) if _flat(t) == _flat(s) or _recite(t, None) == _recite(s, None)),
                 None)
        nxt = sentences[i + 1] if i is not None and i + 1 < len(sentences) else None
        if re.search(r"[:：]\s*$", _CITE.sub("", s)) and nxt is not None and _flat(nxt) in gone:
            removed.append(_flat(s))
            continue
        out.append(s)
    return out


def _recite(sentence: str, n: int | None) -> str:
    """The sentence citing source n (or nothing) where it cited before."""
    marks = iter([f" [{n}]" if n else ""])
    return _CITE.sub(lambda m: next(marks, ""), sentence).strip()


def _join(sentences: list[str], lang: str) -> str:
    out = ""
    for s in sentences:
        if s.startswith("```") or out.endswith("```") or not out:
            sep = "\n" if out else ""
        else:
            sep = "" if lang == "zh" and re.search(r"[\u3000-\u9fff\uff00-\uffef]$", out) else " "
        out += sep + s
    return out


def _flat(sentence: str) -> str:
    return " ".join(_CITE.sub(" ", sentence).split())


def _quote(question: str, candidates: list[dict], sources: list[str], supported: list[Claim],
           cited: set[int]) -> dict | None:
    """The source sentence that best answers the question: the closest to the question (the
    similarities compose measured), raised by the answer's confirmed claims it holds (a rare one
    more than a common one), then one of a cited source, then the first source's."""
    pool = [c for c in candidates if isinstance(c.get("text"), str) and 1 <= int(c.get("n", 0)) <= len(sources)]
    if not pool:
        pool = [{"n": i + 1, "text": u, "similarity": None}
                for i, chunk in enumerate(sources) for u in sentence_units(chunk)[1]]
    if not pool:
        return None

    # a claim found in few of the sentences says more than one in many (VACUUM, CSV)
    weight = {id(claim): 1.0 / max(1, sum(1 for c in pool if _holds(c["text"], claim))) for claim in supported}

    def score(c):
        held = sum(weight[id(claim)] for claim in supported if _holds(c["text"], claim))
        sim = c.get("similarity") if c.get("similarity") is not None else 0.0
        return (sim + 0.15 * min(held, 3.0), int(c["n"]) in cited, -int(c["n"]))

    best = max(pool, key=score)
    return {"n": int(best["n"]), "text": best["text"]}


# the quote line an answer ends with (_WORDS' "quote"): the source's words, verbatim on purpose
QUOTE_LINE = re.compile(r'^(?:Source \[\d+\]: ".*"|原文 \[\d+\]：“.*”)[ \t]*$', re.M)

_WORDS = {
    "en": {"none": "The sources do not confirm the model's answer; the passage closest to the question is quoted below.",
           "quote": 'Source [{n}]: "{text}"', "removed": "({k} sentence(s) the sources do not confirm left out.)"},
    "zh": {"none": "资料中无法确认模型的回答；下面引用与问题最接近的原文。",
           "quote": "原文 [{n}]：“{text}”", "removed": "（已删去 {k} 句资料中无法确认的内容。）"},
}


def _first_answer(kept: list[str], sources: list[str]) -> tuple[list[str], list[str]]:
    """A brief answer (answer_style "brief"): the sentences up to the first that names something the
    sources hold (with the code block it introduces), and the rest.  The prompt asks for the answer
    first; what a small model adds after it is where most of its wrong values and made-up
    requirements were (eval/grades)."""
    def intro(s: str) -> bool:
        return bool(re.search(r"[:：]\s*$", _CITE.sub("", s)))

    for i, sentence in enumerate(kept):
        if any(_holds(src, c) for c in claims(sentence) for src in sources):
            end = i + 1
            # its example: a code block right after it, or after one sentence that introduces it
            if end < len(kept) and kept[end].startswith("```") and intro(sentence):
                end += 1
            elif end + 1 < len(kept) and intro(kept[end]) and kept[end + 1].startswith("```"):
                end += 2
            return kept[:end], kept[end:]
    return kept, []


def ground(question: str, answer: str, sources: list[str], candidates: list[dict] | None = None,
           chosen: list[dict] | None = None, brief: bool = False) -> Grounded:
    """``sources``: the chunks the answer was written from, source n at position n - 1;
    ``candidates``: the sentences the prompt showed ({"n", "text", "similarity"}), from compose;
    ``chosen``: the sentences the model chose to quote (quote-first answers: ``quoted``), else the
    quote is chosen here."""
    lang = language(question)
    words = _WORDS[lang]
    sentences = split_sentences(answer or "")
    kept, removed, all_claims, fixed = [], [], [], 0
    for i, sentence in enumerate(sentences):
        found = claims(sentence, i)
        for c in found:
            c.sources = [n for n, src in enumerate(sources, start=1) if _holds(src, c)]
        all_claims.extend(found)
        if any(not c.supported for c in found):
            removed.append(_flat(sentence))
            continue
        cited = _cited(sentence)
        holders = set.intersection(*(set(c.sources) for c in found)) if found else set()
        if found and cited and not (set(cited) & holders):
            # the citation points at a source without the sentence's claims: cite one that holds
            # them all, else the one holding most of them
            best = min(holders) if holders else max(range(1, len(sources) + 1),
                                                    key=lambda n: (sum(n in c.sources for c in found), -n))
            sentence = _recite(sentence, best)
            fixed += 1
        elif any(n < 1 or n > len(sources) for n in cited):
            sentence = _recite(sentence, min(holders) if holders else None)
            fixed += 1
        kept.append(sentence)
    kept = _without_dangling_intros(kept, sentences, removed)
    if removed and not any(c.supported for c in all_claims if _flat(sentences[c.sentence]) not in removed):
        # what is left confirms nothing (glue between the sentences taken out): nothing to show of it
        removed.extend(_flat(k) for k in kept)
        kept = []
    trimmed = []
    if brief and kept:
        kept, trimmed = _first_answer(kept, sources)
    supported = [c for c in all_claims if c.supported]
    cited_all = {n for s in kept for n in _cited(s)}
    if chosen:
        quote = {"n": int(chosen[0]["n"]), "text": chosen[0]["text"]}
    else:
        quote = _quote(question, candidates or [], sources, supported, cited_all) if sources else None
        chosen = [quote] if quote else []
    if not all_claims:
        confidence = "partly"
    elif removed:
        confidence = "partly" if kept and supported else "not_confirmed"
    else:
        confidence = "supported"
    if not removed and not fixed and not trimmed:
        body = (answer or "").strip()
    else:
        body = _join(kept, lang) if kept else words["none"]
    if not kept and not quote:
        body = answer
    parts = [body]
    if removed and kept:
        parts.append(words["removed"].format(k=len(removed)))
    for q in chosen:
        if not any(q["text"] in s for s in kept):
            parts.append(words["quote"].format(n=q["n"], text=q["text"]))
    return Grounded("\n\n".join(p for p in parts if p and p.strip()), confidence, all_claims, removed, fixed, quote)


# A quote-first answer starts with the labels of the sentences it quotes ("S4", "S2, S5:", "**S3**");
# a label later in the text stands for its sentence's source
_LEAD_LABELS = re.compile(r"^[\s*_>#\[(（【]*S(\d{1,3})(?:[\s*_\])）】]*(?:[,，、和与]|and)?[\s*_\[(（【]*S(\d{1,3}))?[\s*_\])）】]*[:：.,，、。-]?\s*")
_LABEL = re.compile(r"[\[(（【]?\bS(\d{1,3})\b[\])）】]?")
_TOKEN = re.compile(r"[a-z0-9_]+|[\u4e00-\u9fff]", re.I)


def _copies(words: str, quote: str) -> bool:
    """Whether the model's words only repeat the sentence it quotes (most of their words are in it):
    the quote already says it."""
    w, q = _TOKEN.findall(words.lower()), set(_TOKEN.findall(quote.lower()))
    return bool(w) and sum(t in q for t in w) >= 0.8 * len(w) and len(w) >= 0.5 * len(q)


def quoted(question: str, answer: str, sources: list[str], candidates: list[dict]) -> Grounded:
    """A quote-first answer (the setting answer_style = "quote"): the model was shown the sources'
    sentences under labels (S1, S2, …: pgmind.rag.compose.render) and asked for the label of the one
    that answers, then a few words of its own.  Choosing is what a small model does well, and a
    verbatim sentence cannot state a wrong value: the answer is the model's words, checked as any
    answer is (``ground``), then the chosen sentence(s) quoted.  Words that only copy the sentence
    are left out (the quote says it); a reply without a label it was shown is checked as a free
    answer, with the quote chosen here."""
    by_label = {c["label"]: c for c in candidates if type(c.get("label")) is int and 1 <= int(c.get("n", 0)) <= len(sources)}
    text = answer or ""
    lead = _LEAD_LABELS.match(text)
    if lead:
        labels, words = [int(x) for x in lead.groups() if x], text[lead.end():]
    else:      # (a label later on: "Use CONCURRENTLY (S4).")
        labels, words = [int(m.group(1)) for m in _LABEL.finditer(text)], text
    chosen = [by_label[k] for k in dict.fromkeys(labels) if k in by_label][:2]
    if not chosen:
        g = ground(question, _LABEL.sub("", text).strip(), sources, candidates)
        g.style = "quote"
        return g
    # a label in the words: the citation of its sentence's source
    words = _LABEL.sub(lambda m: f"[{by_label[int(m.group(1))]['n']}]" if int(m.group(1)) in by_label else "", words)
    words = re.sub(r"[ \t]*(\[\d+\])", r" \1", words).strip()
    if words and _copies(_CITE.sub(" ", words), " ".join(c["text"] for c in chosen)):
        words = ""
    if words and not CITATION.search(words):
        words += f" [{chosen[0]['n']}]"
    g = ground(question, words, sources, candidates, chosen=chosen)
    g.style, g.chosen = "quote", [c["label"] for c in chosen]
    return g


LABELS = {
    "en": {"supported": "(checked against the sources: supported)",
           "partly": "(checked against the sources: partly supported)",
           "not_confirmed": "(checked against the sources: not confirmed)"},
    "zh": {"supported": "（已与资料核对：有依据）", "partly": "（已与资料核对：部分有依据）",
           "not_confirmed": "（已与资料核对：无法确认）"},
}


def label(confidence: str, question: str) -> str:
    """The confidence in words, in the question's language (what the CLI and the console show)."""
    return LABELS[language(question)].get(confidence, confidence)


WHY_DECLINED = {
    "en": {"off_topic": "(declined: the question is not about this knowledge base's topic; topic score {topic_score:.2f}, "
                        "below {topic_threshold:.2f})",
           "nothing_found": "(declined: the search found nothing)",
           "below_threshold": "(declined: the nearest passage's {measure} {best:.3f} is below the threshold "
                              "{threshold:.3f}; nearest: {nearest})"},
    "zh": {"off_topic": "（已拒答：问题与知识库的主题无关；主题得分 {topic_score:.2f}，低于 {topic_threshold:.2f}）",
           "nothing_found": "（已拒答：没有检索到任何内容）",
           "below_threshold": "（已拒答：最相近段落的{measure} {best:.3f} 低于阈值 {threshold:.3f}；最相近：{nearest}）"},
}


def why_declined(decline: dict | None, question: str) -> str | None:
    """Why ai.rag declined (its "decline"), in words, in the question's language: an off-topic
    question, nothing found, or a best passage below the threshold with the nearest ones named (a
    threshold too high for the model shows as near misses, not silence)."""
    if not isinstance(decline, dict) or not isinstance(decline.get("reason"), str) \
            or decline["reason"] not in WHY_DECLINED["en"]:
        return None
    lang = language(question)
    measure = decline.get("measure")
    if lang == "zh":
        measure = {"similarity": "相似度", "rerank score": "相关性得分"}.get(measure, measure)
    near = decline.get("nearest") if isinstance(decline.get("nearest"), list) else []
    nearest = ("、" if lang == "zh" else ", ").join(
        f"{', '.join(str(v) for v in n['key'].values())} #{n.get('chunk_seq')}"
        for n in near if isinstance(n, dict) and isinstance(n.get("key"), dict))
    try:
        return WHY_DECLINED[lang][decline["reason"]].format(**{**decline, "measure": measure, "nearest": nearest})
    except (KeyError, TypeError, ValueError):        # (a field missing or null: say no more than that)
        return None


def checked(question: str, answer: str, sources: list[str], candidates: list[dict] | None = None,
            style: str = "free") -> dict:
    """What ai.rag, /v1/ask and the Python API return of a checked answer: the answer to show, the
    model's own words ("draft") when the check changed them, the confidence, and the details.
    ``style``: the knowledge base's answer_style ("quote": ``quoted``)."""
    g = quoted(question, answer, sources, candidates or []) if style == "quote" else \
        ground(question, answer, sources, candidates, brief=style == "brief")
    details = g.to_dict()
    return {"answer": g.answer, "draft": answer if g.answer != answer else None,
            "confidence": details.pop("confidence"), "grounding": details}


def checked_reply(question: str, draft: str, prompt: dict) -> dict:
    """``checked`` for a draft written from ai.rag_prompt's result (what the Python API and /v1/ask
    do after streaming it): against the prompt's sources and sentences, unless the knowledge base
    turned the check off (then only {"confidence": None})."""
    if prompt.get("ground") is False:
        return {"confidence": None}
    return checked(question, draft, [s["chunk"] for s in prompt["sources"]], prompt.get("sentences") or [],
                   prompt.get("answer_style") or "free")
