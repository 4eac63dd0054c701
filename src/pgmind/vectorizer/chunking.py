"""Chunking that respects the text.

Every chunk is a slice ``text[start:end]`` of the original, in order, with no gap between one
chunk and the next but whitespace (the next one may start earlier: that is the overlap).  So
nothing is lost or reordered, and the source position of every chunk is known.

``recursive`` splits by paragraph, then line, then sentence (English and Chinese punctuation:
。！？；.!?;), then clause, then word, then character, until each piece fits, and merges pieces
greedily up to ``max_tokens``.  ``markdown`` first cuts at headings, so a heading starts the chunk
of its section, and keeps a markdown table's rows ("| a | b |" lines) together and apart from
the prose around them, each chunk of them starting with the table's header row; ``html``
renders HTML to that markdown-like text first (see documents.py); ``none`` keeps the whole text
as one chunk.

The one addition to a slice: a chunk of table rows starts with its table's header line (when its
slice does not already hold it), and with ``title`` a chunk starts with the document's title.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from ..errors import InvalidRequestError

TokenCounter = Callable[[str], int]

# Each level: a regex whose matches END a piece (the separator stays with the text before it).
_LEVELS = [
    re.compile(r"\n[ \t]*\n+"),                                   # paragraphs
    re.compile(r"\n"),                                            # lines
    re.compile(r"[。！？；!?;]+[”’」』）)\"']*|\.(?=\s)[”’)\"']*\s*"),  # sentences
    re.compile(r"[，、,：:]+\s*"),                                 # clauses
    re.compile(r"\s+"),                                           # words
]
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_HEADING = re.compile(r"^#{1,6} ", re.M)
# a markdown table: two or more consecutive "| … |" lines; the header row is the line before a
# "| --- | --- |" line
_TABLE = re.compile(r"(?:^[ \t]*\|[^\n]*\|[ \t]*(?:\n|\Z)){2,}", re.M)
_RULE = re.compile(r"^[ \t]*\|(?:[ \t]*:?-{3,}:?[ \t]*\|)+[ \t]*$")
METHODS = ("recursive", "markdown", "html", "none")


def estimate_tokens(text: str) -> int:
    """One token per CJK character, about four characters per token otherwise."""
    cjk = len(_CJK.findall(text))
    return cjk + (len(text) - cjk + 3) // 4


def conservative_tokens(text: str) -> int:
    """An upper estimate, for models whose tokenizer is not known here: one token per CJK character
    and one per three other characters.  Real tokenizers give 3.5-4.5 characters per token on
    prose, fewer on code, numbers and rare words (the remote chunk of issue 13 counted 279 tokens
    where four characters a token said 200): a chunk sized with this is not refused for length."""
    cjk = len(_CJK.findall(text))
    return cjk + (len(text) - cjk + 2) // 3


@dataclass(frozen=True)
class Chunk:
    seq: int
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class ChunkingConfig:
    method: str = "recursive"
    max_tokens: int = 256
    overlap: int = 32
    title: bool = False      # every chunk starts with the document's title (its first line, a heading)

    @classmethod
    def from_json(cls, spec) -> "ChunkingConfig":
        """The one rule SQL's ai_internal._check_chunking also applies (one table of cases runs through
        both: tests/security/test_vectorizer_isolation.py): an object with only method, max_tokens,
        overlap, title; method one of METHODS;
        max_tokens an integer 8..8192; overlap an integer with 0 <= 2 * overlap < max_tokens; title a boolean."""
        hint = 'e.g. {"method": "recursive", "max_tokens": 256, "overlap": 32}'
        if spec is None:
            spec = {}
        if not isinstance(spec, dict):
            raise InvalidRequestError(f"chunking must be a JSON object, got {type(spec).__name__}", hint=hint)
        unknown = sorted(set(spec) - {"method", "max_tokens", "overlap", "title"})
        if unknown:
            raise InvalidRequestError(f"unknown chunking settings: {', '.join(unknown)}", hint=hint)
        method = spec.get("method", "recursive")
        if not isinstance(method, str) or method not in METHODS:
            raise InvalidRequestError(f"unknown chunking method {method!r}",
                                      hint=f"method is one of {', '.join(METHODS)}")
        max_tokens, overlap = spec.get("max_tokens", 256), spec.get("overlap", 32)
        sizes_ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer()
                       for v in (max_tokens, overlap))
        if not sizes_ok or not 8 <= max_tokens <= 8192 or overlap < 0 or overlap * 2 >= max_tokens:
            raise InvalidRequestError(f"invalid chunk sizes: max_tokens {max_tokens!r} and overlap {overlap!r}",
                                      hint="max_tokens is an integer from 8 to 8192, overlap an integer under half of it")
        title = spec.get("title", False)
        if not isinstance(title, bool):
            raise InvalidRequestError(f"chunking title must be true or false, got {title!r}", hint=hint)
        return cls(method, int(max_tokens), int(overlap), title)


def _split_at(text: str, start: int, end: int, pattern: re.Pattern) -> list[tuple[int, int]]:
    spans, pos = [], start
    for m in pattern.finditer(text, start, end):
        if m.end() > pos and m.end() < end:
            spans.append((pos, m.end()))
            pos = m.end()
    spans.append((pos, end))
    return [s for s in spans if s[1] > s[0]]


class _Splitter:
    def __init__(self, text: str, max_tokens: int, overlap: int, count: TokenCounter):
        self.text, self.max, self.overlap, self.count = text, max_tokens, overlap, count
        self._cache: dict[tuple[int, int], int] = {}

    def tokens(self, span: tuple[int, int]) -> int:
        n = self._cache.get(span)
        if n is None:
            n = self._cache[span] = self.count(self.text[span[0]:span[1]])
        return n

    def pieces(self, start: int, end: int, level: int = 0) -> list[tuple[int, int]]:
        """Spans covering [start, end), each within max_tokens, splitting as coarsely as possible."""
        if self.tokens((start, end)) <= self.max:
            return [(start, end)]
        if level >= len(_LEVELS):
            return self._by_characters(start, end)
        out = []
        for span in _split_at(self.text, start, end, _LEVELS[level]):
            if self.tokens(span) <= self.max:
                out.append(span)
            else:
                out.extend(self.pieces(span[0], span[1], level + 1))
        return out

    def _by_characters(self, start: int, end: int) -> list[tuple[int, int]]:
        out, pos = [], start
        while pos < end:
            lo, hi = pos + 1, end          # the longest prefix that fits, by bisection
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if self.tokens((pos, mid)) <= self.max:
                    lo = mid
                else:
                    hi = mid - 1
            out.append((pos, lo))
            pos = lo
        return out

    def merge(self, pieces: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Greedy merge of consecutive pieces up to max_tokens; each new chunk starts with the
        last pieces of the previous one, up to ``overlap`` tokens."""
        chunks: list[tuple[int, int]] = []
        chunk_first = -1          # index of the first piece of the previous chunk
        i = 0
        while i < len(pieces):
            start_i = i
            if chunks and self.overlap:
                # step back over pieces of the previous chunk while they fit in the overlap
                j, size = i, 0
                while j - 1 > chunk_first and size + self.tokens(pieces[j - 1]) <= self.overlap:
                    j -= 1
                    size += self.tokens(pieces[j])
                start_i = j
            end_i = start_i
            size = 0
            while end_i < len(pieces):
                n = self.tokens(pieces[end_i])
                if end_i > start_i and size + n > self.max:
                    break
                size += n
                end_i += 1
            if end_i <= i:           # the overlap left no room for new text: drop it
                start_i, end_i, size = i, i + 1, self.tokens(pieces[i])
                while end_i < len(pieces) and size + self.tokens(pieces[end_i]) <= self.max:
                    size += self.tokens(pieces[end_i])
                    end_i += 1
            # the joined span must fit too (sum of piece counts is an estimate for real tokenizers)
            while end_i - start_i > 1 and self.tokens((pieces[start_i][0], pieces[end_i - 1][1])) > self.max:
                if start_i < i:
                    start_i += 1
                else:
                    end_i -= 1
            chunk_first = start_i
            chunks.append((pieces[start_i][0], pieces[end_i - 1][1]))
            i = end_i
        return chunks


def _sections(text: str) -> list[tuple[int, int]]:
    """Markdown sections: each heading line starts a new section."""
    starts = sorted({0, *(m.start() for m in _HEADING.finditer(text))})
    return [(s, e) for s, e in zip(starts, starts[1:] + [len(text)]) if e > s]


_TITLE = re.compile(r"\A\s*(#{1,6})\s+([^\n]{1,200})\n")


def chunk_text(text: str, config: ChunkingConfig, count: TokenCounter = estimate_tokens) -> list[Chunk]:
    """Chunks of ``text`` (see the module docstring). An empty or blank text has no chunks.  With
    ``config.title``, a chunk that does not begin with the document's title (its first line, when
    that is a markdown heading) gets it as its first line (a passage that says "it" then says what "it" is), within the size limit."""
    if config.title and config.method != "none":
        m = _TITLE.match(text if config.method != "html" else "")
        if m:
            head = f"{m.group(1)} {m.group(2).strip()}\n"
            room = max(8, config.max_tokens - count(head))
            inner = ChunkingConfig(config.method, room, min(config.overlap, (room - 1) // 2))
            return [c if c.text.lstrip().startswith(head.strip()) else Chunk(c.seq, c.start, c.end, head + c.text)
                    for c in chunk_text(text, inner, count)]
    if config.method == "html":
        from ..documents import html_to_text
        text = html_to_text(text).text
    if not text or not text.strip():
        return []
    if config.method == "none":
        return [Chunk(0, 0, len(text), text)]
    splitter = _Splitter(text, config.max_tokens, config.overlap, count)
    spans: list[tuple[int, int, str]] = []        # (start, end, the header line that goes before)
    if config.method in ("markdown", "html"):
        # merge within a section only, and a table's rows only with each other: a heading always
        # starts a chunk, and a table's rows go with their header, not with the prose around them
        for s, e in _sections(text):
            for a, b, header in _prose_and_tables(text, s, e):
                if header is None:
                    spans.extend((x, y, "") for x, y in splitter.merge(splitter.pieces(a, b)))
                else:
                    spans.extend(_table_spans(text, a, b, header, config, count))
    else:
        spans = [(s, e, "") for s, e in splitter.merge(splitter.pieces(0, len(text)))]
    # a span of whitespace alone (between two sections, say) carries nothing to embed
    spans = [(s, e, h) for s, e, h in spans if text[s:e].strip()]
    return [Chunk(i, s, e, h + text[s:e]) for i, (s, e, h) in enumerate(spans)]


def _prose_and_tables(text: str, start: int, end: int) -> list[tuple[int, int, str | None]]:
    """[start, end) as prose spans (header None) and markdown tables, each with its header line ("" for
    a table without one)."""
    out, pos = [], start
    for m in _TABLE.finditer(text, start, end):
        lines = [(m.start() + x.start(), m.start() + x.end())
                 for x in re.finditer(r"[^\n]*\n?", text[m.start():m.end()]) if x.end() > x.start()]
        rule = next((i for i, (a, b) in enumerate(lines) if _RULE.match(text[a:b].rstrip("\n"))), None)
        if rule is not None and rule == len(lines) - 1:      # a header alone is prose
            continue
        header = text[lines[rule - 1][0]:lines[rule - 1][1]].rstrip("\n") + "\n" if rule else ""
        if m.start() > pos:
            out.append((pos, m.start(), None))
        out.append((m.start(), m.end(), header))
        pos = m.end()
    if end > pos:
        out.append((pos, end, None))
    return out


def _table_spans(text: str, start: int, end: int, header: str, config: ChunkingConfig,
                 count: TokenCounter) -> list[tuple[int, int, str]]:
    """A table's rows packed into chunks (a row is cut only when it alone is over the limit), each
    chunk after the first starting with the header line, so "| No |" says which column it is in
    (while the header takes at most half the room)."""
    if header and count(header) * 2 > config.max_tokens:
        header = ""
    splitter = _Splitter(text, config.max_tokens - (count(header) if header else 0), 0, count)
    pieces = splitter.pieces(start, end, level=1)
    # the header and rule lines go with the first row (a chunk of the header alone says nothing)
    if header and text.startswith(header, start) and len(pieces) > 2 \
            and count(text[pieces[0][0]:pieces[2][1]]) <= config.max_tokens:
        pieces[:3] = [(pieces[0][0], pieces[2][1])]
    return [(s, e, "" if text.startswith(header, s) else header) for s, e in splitter.merge(pieces)]
