"""Text rules of query understanding and prompt building, each with one owner here.

They were PL/pgSQL regexes (sql/functions/400_search.sql until issue 36) and keep their behaviour
exactly: tests/test_rag_compose.py replays prompts recorded from the SQL version.  PostgreSQL's
``\\s`` (in the cluster's C.UTF-8 collation) is ASCII white space here (``_WS``), and ``btrim`` trims
spaces only."""
from __future__ import annotations

import re

from ..vectorizer.chunking import estimate_tokens

__all__ = ["estimate_tokens", "expansion_headings", "expansion_name_list", "expansion_names", "fill", "language",
           "sentence_units", "title_line"]

_WS = "[ \t\n\r\f\v]"
_HAN = re.compile("[\u4e00-\u9fff]")


def language(text: str) -> str:
    """'zh' when a text has a Chinese character, else 'en' (as the knowledge-base settings name
    languages).  (ai_internal._text_language in SQL is this rule's twin, for the decisions SQL makes
    before any call to the server; tests/test_search_rag.py checks the two agree.)"""
    return "zh" if _HAN.search(text) else "en"


_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def fill(template: str | None, values: dict) -> str:
    """A prompt template with its {placeholders} filled from ``values`` in one pass: a question or a
    source that itself holds "{sources}" is not filled again.  A placeholder ``values`` does not
    name stays as written; a value of None fills as ''."""
    if not isinstance(template, str) or not template:
        return ""

    def value(m: re.Match) -> str:
        if m.group(1) not in values:
            return m.group(0)
        v = values[m.group(1)]
        return "" if v is None else v if isinstance(v, str) else str(v)
    return _PLACEHOLDER.sub(value, template)


_TITLE = re.compile(f"#{{1,6}}{_WS}+[^\n]{{1,200}}\n")


def title_line(chunk: str) -> str | None:
    """A chunk's title line, as the chunker writes one (chunking._TITLE: "# Page title" first)."""
    return chunk.split("\n", 1)[0] if _TITLE.match(chunk) else None


# Pieces split at sentence ends (a Chinese one needs no space after it) and at line breaks.
_PIECES = re.compile(f"(?<=[.!?]){_WS}+|(?<=[\u3002\uff01\uff1f]){_WS}*|\n+")
_ENDS_SENTENCE = re.compile("[.!?;\u3002\uff01\uff1f\uff1b]\\Z")


def sentence_units(chunk: str) -> tuple[str | None, list[str]]:
    """A chunk's title line and its sentences.  A piece that does not end a sentence (a setting's name
    on its own line, "To build it without locks:") stays with what follows it, so a description keeps
    the name it describes and an example its intro (a statement's ";" ends it).  Units of two
    characters or fewer are left out."""
    title = title_line(chunk)
    body = chunk if title is None else chunk[len(title) + 1:]
    units: list[list[str]] = [[]]
    for piece in _PIECES.split(body):
        piece = piece.strip(" ")
        if not piece:
            continue
        units[-1].append(piece)
        if _ENDS_SENTENCE.search(piece):
            units.append([])
    joined = (" ".join(u) for u in units if u)
    return title, [u for u in joined if len(u) > 2]


# The markdown an answer or an expansion writes, one pattern each for every rule that reads it
# (grounding, the expansion's names, the evaluation's checks): fenced code (group 1 the code, without
# a language line; an unclosed fence runs to the end), inline code (group 1), citation markers ([1],
# [1, 2], 【1】; group 1 or 2 the numbers).
CODE_BLOCK = re.compile(r"```(?:[^\n`]*\n)?(.*?)(?:```|\Z)", re.S)
CODE_SPAN = re.compile(r"`([^`\n]{1,200})`")
CITATION = re.compile(r"\[(\d+(?:\s*[,，、]\s*\d+)*)\]|【(\d+)】")
_CODE_NAME = re.compile(r"`([^`\n]{1,60})`")      # (a name, not any code: 60 characters at most)


def expansion_name_list(expansion: str | None) -> list[str]:
    """The names an expansion writes as code (`pg_cancel_backend`, `COMMENT ON`), in order, once each.
    Code blocks (```…```) are left out: their table and column names are made up."""
    if not expansion:
        return []
    names: dict[str, None] = {}
    for m in _CODE_NAME.finditer(CODE_BLOCK.sub(" ", expansion)):
        if m.group(1).strip(" "):
            names.setdefault(m.group(1))
    return list(names)


def expansion_names(expansion: str | None) -> str | None:
    """What the expansion's keyword list searches: its names, else all its words.  Its other words
    ("table", "column", "value", "example") match most pages and drowned the names: "多行合并成一行
    逗号隔开" → `STRING_AGG` named, and functions-aggregate.html not among the 40 best keyword hits
    (docs/experiments, "The expansion's keyword list searches its names")."""
    names = " ".join(expansion_name_list(expansion))
    return names or expansion


def expansion_headings(expansion: str | None) -> list[str]:
    """The headings the expansion's names may be (lower case): each name without its arguments
    ("COALESCE(x, 0)" → "coalesce") and, of two or more words, also without its last one ("COMMENT
    ON" → "comment").  ai.search ranks the pages with such a heading as one more list: a name the
    model writes is often exactly the title of the page that documents it (`COMMENT ON`,
    `pg_indexes`, `COALESCE`).  The first 16 names only: a caller's 10,000-character expansion of
    names would otherwise cost a pattern scan for each."""
    order: dict[str, int] = {}
    for i, name in enumerate(expansion_name_list(expansion)[:16], start=1):
        base = re.sub(r"\(.*$", "", name, flags=re.S).strip(" ").lower()
        heads = [base]
        if re.search(_WS, base):
            heads.append(re.sub(f"{_WS}+[^ \t\n\r\f\v]+$", "", base).strip(" "))
        for j, head in enumerate(heads):
            if len(head) >= 2:
                order[head] = min(order.get(head, 1 << 30), i * 2 + j)
    return sorted(order, key=lambda h: order[h])
