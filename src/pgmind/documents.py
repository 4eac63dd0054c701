"""Documents to text: HTML becomes markdown-like text (headings as '#' lines, paragraphs separated
by blank lines, code kept verbatim, a table as markdown table rows: one line a row, its header
row first), so chunking can keep headings with their sections and a table's rows with its header."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

_BLOCK = {"p", "div", "section", "article", "table", "tr", "ul", "ol", "dl", "dt", "dd", "li", "blockquote",
          "pre", "h1", "h2", "h3", "h4", "h5", "h6", "br", "hr", "figure", "caption", "td", "th"}
_SKIP = {"script", "style", "noscript", "template", "head", "nav", "svg"}
# navigation blocks of generated manuals (DocBook: the PostgreSQL manual's header and footer)
_SKIP_CLASSES = {"navheader", "navfooter", "navigation", "toc-nav"}
# a table nested deeper is text of the cell that holds it (each level joins its cells' text again)
_TABLE_DEPTH = 8


@dataclass(frozen=True)
class Document:
    title: str
    text: str


@dataclass
class _Table:
    outer: list[str]                  # where the table's text goes when it ends
    rows: list[tuple[bool, list[str]]] = field(default_factory=list)   # (a header row?, its cells)
    stray: list[str] = field(default_factory=list)   # text in the table outside any cell (a caption)
    cells: list[str] | None = None    # the open row's closed cells
    header: bool = True               # every cell of the open row so far is a <th> or in <thead>
    cell_open: bool = False
    in_head: bool = False


def _cell_text(parts: list[str]) -> str:
    return re.sub(r"\s+", " ", "".join(parts)).strip()


def _table_text(t: _Table) -> str:
    """The table as markdown rows: "| a | b |" a line, the header rows (those before the first body
    row) followed by the "| --- |" line.  A cell's paragraphs join into one line, so a row is a line
    and chunking can keep each row whole, with its header (vectorizer/chunking.py)."""
    lines = []
    caption = _cell_text(t.stray)
    if caption:
        lines.append(caption)
    rows = [(h, cells) for h, cells in t.rows if any(cells)]
    n_head = next((i for i, (h, _) in enumerate(rows) if not h), len(rows))
    if n_head == len(rows):            # only header cells: a table of headings, rows all the same
        n_head = 0
    for i, (_, cells) in enumerate(rows):
        lines.append("| " + " | ".join(cells) + " |")
        if i == n_head - 1:
            lines.append("|" + " --- |" * len(cells))
    return "\n\n" + "\n".join(lines) + "\n\n" if lines else ""


class _Renderer(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.title: list[str] = []
        # open elements: (tag, skips, kind) — kind "table" for a table rendered as rows, "deep" for
        # one nested too deep to be (read as its cell's text), else None
        self.stack: list[tuple[str, bool, str | None]] = []
        # (counts kept with the stack, so a deeply nested page costs no scan of it per tag)
        self.skips = 0                               # entries that skip
        self.deep = 0                                # entries of kind "deep"
        self.open: dict[str, int] = {}               # entries by tag
        self.in_title = False
        self.pre = 0
        self.heading: str | None = None
        self.tables: list[_Table] = []               # the stack's "table" entries, in order

    @property
    def skipping(self) -> bool:
        return self.skips > 0

    def _push(self, tag: str, skip: bool, kind: str | None) -> None:
        self.stack.append((tag, skip, kind))
        self.skips += skip
        self.deep += kind == "deep"
        self.open[tag] = self.open.get(tag, 0) + 1

    def _pop_to(self, i: int) -> None:
        """Closes the open elements from the i-th on, innermost first: a table closes with its
        element, whether its own end tag or an enclosing one's closes it."""
        for tag, skip, kind in reversed(self.stack[i:]):
            self.skips -= skip
            self.deep -= kind == "deep"
            self.open[tag] -= 1
            if kind == "table":
                self._close_table()
        del self.stack[i:]

    # Tables: a cell's text is collected apart (self.out is the cell's while it is open), a row's
    # cells when it closes, the whole table when it does.  HTML may leave out </td> and </tr>: a new
    # cell or row closes the open one.
    def _close_cell(self, t: _Table) -> None:
        if t.cell_open:
            t.cells.append(_cell_text(self.out))
            self.out = t.stray
            t.cell_open = False

    def _close_row(self, t: _Table) -> None:
        self._close_cell(t)
        if t.cells is not None:
            t.rows.append((t.header, t.cells))
            t.cells = None

    def _close_table(self) -> None:
        t = self.tables.pop()
        self._close_row(t)
        self.out = t.outer
        self.out.append(_table_text(t))

    def close(self):
        super().close()
        self._pop_to(0)

    def _table_tag(self, tag: str) -> bool:
        """A table's own start tag (row, cell, head, body) handled; False for any other tag."""
        if tag not in ("tr", "td", "th", "thead", "tbody", "tfoot") or not self.tables or self.deep:
            return False
        t = self.tables[-1]
        if tag in ("td", "th"):
            if t.cells is None:
                t.cells, t.header = [], True
            self._close_cell(t)
            t.cell_open, t.header = True, t.header and (tag == "th" or t.in_head)
            self.out = []
        else:
            self._close_row(t)
            if tag == "tr":
                t.cells, t.header = [], True
            else:
                t.in_head = tag == "thead"
        return True

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = set((attrs.get("class") or "").split())
        skip = tag in _SKIP or bool(classes & _SKIP_CLASSES)
        kind = None
        if tag == "table" and not skip and not self.skipping:
            kind = "table" if len(self.tables) < _TABLE_DEPTH and not self.deep else "deep"
        if tag not in ("br", "hr", "img", "meta", "link", "input"):
            self._push(tag, skip, kind)
        if tag == "title":
            self.in_title = True
        if self.skipping:
            return
        if kind == "table":
            self.tables.append(_Table(outer=self.out))
            self.out = self.tables[-1].stray
            return
        if self._table_tag(tag):
            return
        if tag in _BLOCK:
            self.out.append("\n\n" if tag not in ("br", "td", "th", "li", "dt", "dd", "tr") else "\n")
        if tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self.out.append("#" * int(tag[1]) + " ")
            self.heading = tag
        elif tag == "li":
            self.out.append("- ")
        elif tag == "pre":
            self.pre += 1

    def handle_endtag(self, tag):
        if tag == "title":
            self.in_title = False
        if not self.open.get(tag):                   # nothing to close
            return
        # pop to the matching tag (HTML in the wild is not always well nested)
        i = next(i for i in range(len(self.stack) - 1, -1, -1) if self.stack[i][0] == tag)
        was_skipping, kind = self.skipping, self.stack[i][2]
        self._pop_to(i)
        if was_skipping and self.skipping:
            return
        if tag == "pre":
            self.pre = max(0, self.pre - 1)
        if kind == "table" or (was_skipping and tag == "table"):
            return
        if self.tables and not self.deep and not was_skipping and tag in ("td", "th", "tr", "thead"):
            t = self.tables[-1]
            if tag in ("td", "th"):
                self._close_cell(t)
            else:
                self._close_row(t)
                t.in_head = t.in_head and tag != "thead"
            return
        if tag in _BLOCK and not self.skipping:
            self.out.append("\n\n")
        if tag == self.heading:
            self.heading = None

    def handle_data(self, data):
        if self.in_title:
            self.title.append(data)
            return
        if self.skipping:
            return
        if self.pre:
            self.out.append(data)
        else:
            text = re.sub(r"\s+", " ", data)
            if self.heading:
                text = text.replace("\n", " ")
            self.out.append(text)


def html_to_text(html: str) -> Document:
    r = _Renderer()
    r.feed(html)
    r.close()
    text = "".join(r.out)
    text = re.sub(r"[ \t]+\n", "\n", text)          # trailing spaces
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    title = re.sub(r"\s+", " ", "".join(r.title)).strip()
    if not title:
        m = re.search(r"^#{1,6} (.+)$", text, re.M)
        title = m.group(1).strip() if m else ""
    return Document(title, text)


def _ocr_page(page) -> str:
    """A page without a text layer (a scan): the text of its images, by OCR (Chinese and English).
    Without the OCR engine installed, the page stays empty, as before."""
    try:
        from .images.ocr import read_text
        images = list(page.images)
    except Exception:  # noqa: BLE001 - an image pypdf cannot decode leaves the page without text
        return ""
    texts = []
    for img in images:
        try:
            texts.append(read_text(img.data)["text"])
        except Exception:  # noqa: BLE001 - one unreadable image does not lose the page's others
            continue
    return "\n".join(t for t in texts if t).strip()


def pdf_to_text(raw: bytes) -> Document:
    """The text of a PDF's pages (pypdf, pure Python), pages separated by blank lines; the title
    from the document's metadata, else its first line.  Raises ValueError for a PDF that cannot be
    read (broken, or encrypted with a password)."""
    import logging
    from io import BytesIO

    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    logging.getLogger("pypdf").setLevel(logging.ERROR)    # its warnings repeat the error raised below
    try:
        reader = PdfReader(BytesIO(raw))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ValueError("the PDF is encrypted with a password")
        pages = [(page.extract_text() or "").strip() or _ocr_page(page) for page in reader.pages]
        meta_title = (reader.metadata.title if reader.metadata else None) or ""
    except (PyPdfError, OSError, KeyError, TypeError, AttributeError) as e:
        # pypdf reports damaged files with several exception types
        raise ValueError(f"not a readable PDF ({type(e).__name__}: {e})") from None
    text = re.sub(r"[ \t]+\n", "\n", "\n\n".join(p for p in pages if p))
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    title = re.sub(r"\s+", " ", str(meta_title)).strip()
    if not title and text:
        title = text.splitlines()[0].strip()[:200]
    return Document(title, text)
