"""Benchmark texts: real sentences from the PostgreSQL 15 manual (Debian postgresql-doc-15)."""
from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

MANUAL = Path("/usr/share/doc/postgresql-doc-15/html")


class _Text(HTMLParser):
    def __init__(self):
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "pre"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style", "pre") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def manual_sentences(n: int, min_len: int = 40, max_len: int = 240) -> list[str]:
    """The first n sentences of a readable length, in a fixed page order (repeatable)."""
    out: list[str] = []
    for page in sorted(MANUAL.glob("*.html")):
        p = _Text()
        p.feed(page.read_text(errors="replace"))
        text = re.sub(r"\s+", " ", " ".join(p.parts))
        for s in re.split(r"(?<=[.!?])\s+", text):
            if min_len <= len(s) <= max_len:
                out.append(s)
                if len(out) == n:
                    return out
    return out
