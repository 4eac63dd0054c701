"""Documents to text: HTML becomes markdown-like text (headings as '#' lines, paragraphs separated
by blank lines, code kept verbatim, a table as markdown table rows: one line a row, its header
row first), so chunking can keep headings with their sections and a table's rows with its header.
Word (.docx) documents, CSV files and .xlsx workbooks become the same markdown-like text; PDF pages,
their text.  Text files are decoded in the encoding they were written in (UTF-8, UTF-16, GB18030/GBK,
Big5, ...), or refused with the reason: never read as garbage (decode_text)."""
from __future__ import annotations

import codecs
import re
import unicodedata
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


# What one document may cost to read (red-team M3: an upload or a file in a folder must not hold a
# worker or the model server for hours, nor fill memory): a workbook's or a Word file's parts as
# unzipped, a PDF's pages, the pages read by OCR (~1 s each on one core), the text it yields.  Over
# a budget the document is refused with its reason (counted and named like any unreadable file),
# never read in part.
MAX_UNZIPPED_BYTES = 256 * 1024 * 1024
MAX_ZIP_MEMBERS = 20_000
MAX_PDF_PAGES = 5_000
MAX_OCR_PAGES = 100
MAX_OCR_IMAGES = 200           # in all: one page can hold thousands of images, each an OCR pass
MAX_TEXT_CHARS = 50_000_000


def _check_zip(raw: bytes, kind: str) -> None:
    """An Office file (a zip) whose parts unzip past the budget is refused before any is read."""
    import zipfile
    from io import BytesIO
    try:
        members = zipfile.ZipFile(BytesIO(raw)).infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        raise ValueError(f"not a readable {kind} ({type(e).__name__}: {e})") from None
    if len(members) > MAX_ZIP_MEMBERS:
        raise ValueError(f"the {kind} has {len(members)} parts; at most {MAX_ZIP_MEMBERS} are read")
    total = sum(m.file_size for m in members)
    if total > MAX_UNZIPPED_BYTES:
        raise ValueError(f"the {kind} unzips to {total // 2**20} MiB; at most {MAX_UNZIPPED_BYTES // 2**20} MiB "
                         "are read (split it into smaller files)")


def _has_images(page) -> bool:
    try:
        return len(page.images) > 0
    except Exception:  # noqa: BLE001 - an image pypdf cannot decode: nothing for OCR to read
        return False


def _ocr_page(page, done: list[int]) -> str:
    """A page without a text layer (a scan): the text of its images, by OCR (Chinese and English).
    Without the OCR engine installed, the page stays empty, as before."""
    try:
        from .images.ocr import read_text
        images = list(page.images)
    except Exception:  # noqa: BLE001 - an image pypdf cannot decode leaves the page without text
        return ""
    done[0] += len(images)      # (``done``: the document's images read by OCR so far)
    if done[0] > MAX_OCR_IMAGES:
        raise ValueError(f"the PDF's scanned pages hold more than {MAX_OCR_IMAGES} images to read by OCR "
                         "(split it into smaller files)")
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
        if len(reader.pages) > MAX_PDF_PAGES:
            raise ValueError(f"the PDF has {len(reader.pages)} pages; at most {MAX_PDF_PAGES} are read "
                             "(split it into smaller files)")
        pages, ocr, chars, images = [], 0, 0, [0]
        for page in reader.pages:
            text = (page.extract_text() or "").strip()
            if not text and _has_images(page):
                ocr += 1
                if ocr > MAX_OCR_PAGES:
                    raise ValueError(f"the PDF has more than {MAX_OCR_PAGES} scanned pages to read by OCR "
                                     "(split it into smaller files)")
                text = _ocr_page(page, images)
            chars += len(text)
            if chars > MAX_TEXT_CHARS:
                raise ValueError(f"the PDF's text is over {MAX_TEXT_CHARS:,} characters (split it into smaller files)")
            pages.append(text)
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



# -- text files: which encoding ----------------------------------------------------------------
# Bytes to text without a wrong guess in silence.  In order: a byte order mark (UTF-8, UTF-16,
# UTF-32); strict UTF-8 (legacy Chinese bytes are almost never valid UTF-8); an HTML page's declared
# charset (<meta charset>, or an XML declaration's encoding); then GB18030 (a superset of GBK and
# GB2312) and Big5 (as Windows writes it, cp950; else Big5-HKSCS), each decoded strictly and kept
# only when it reads as Chinese: no private-use, unassigned or control characters, and most of its
# Han characters common ones (GB2312's or Big5's first level: the 3,755 and 5,401 most used
# simplified and traditional characters; a wrong decoding of the other encoding's bytes lands mostly
# on rare characters and private-use codes); last, Windows-1252 (Western European) when all its
# non-ASCII characters are Latin letters or typographic marks, a few to a word.  Korean (EUC-KR) and
# Japanese (EUC-JP) bytes also decode as GB18030 into common characters, in an order no Chinese text
# has: a longer text whose Han characters are seldom the most frequent ones (的, 是, 這...), or one
# with kana, is given to charset-normalizer (its language models) for a second opinion, and refused
# when that reads Korean or Japanese.  Anything else is refused, saying why.

_BOMS = ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe\x00\x00", "utf-32-le"), (b"\x00\x00\xfe\xff", "utf-32-be"),
         (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))
# C0 controls but tab, newline, vertical tab, form feed, carriage return; DEL; the C1 controls
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")
_MAX_CONTROL_SHARE = 0.01          # more control characters than this: not a text file
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
_DECLARED = (re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I),
             re.compile(rb"""<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9_.:-]+)""", re.I))
# labels pages declare, read as browsers read them (the WHATWG Encoding Standard): as the superset
_LABELS = {"gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "chinese": "gb18030", "csgb2312": "gb18030",
           "gb_2312-80": "gb18030", "big5": "big5hkscs", "x-x-big5": "big5hkscs", "cn-big5": "big5hkscs",
           "iso-8859-1": "cp1252", "latin1": "cp1252", "l1": "cp1252", "us-ascii": "cp1252", "ascii": "cp1252"}
# Windows-1252's non-ASCII characters a Western text is made of: Latin letters and typographic marks
_NOT_WESTERN = re.compile(r"[^\x00-\x7f\u00a0-\u00ff\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc"
                          r"\u2013\u2014\u2018-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2122]")
# how much of a decoding's Han text must be common characters for it to count as Chinese
_COMMON_SHARE = 0.8
# the most frequent Chinese characters (simplified, then the traditional forms that differ): real text
# has 10-40% of them (the share falls in lists of names); a wrong decoding of Korean or Japanese, ~0
_FREQUENT = frozenset("的一是不了在人有我他这个们中来上大为和国地到以说时要就出会可也你对生能而子那得于着下自之年过发"
                      "后作里用道行所然家种事成方多经么去法学如都同现当没动面起看定天分还进好小部其些主样理心她本前开"
                      "但因只从想实日這個們來為國時說會對於過發後裡麼學現當沒動還進從實經種樣開體長見頭關點業將兩間問"
                      "應戰產內給東聲員條氣題總電數報結場計資區達變與")
_FREQUENT_SHARE, _FREQUENT_MIN = 0.08, 30
# kana: EUC-JP's hiragana and katakana rows are GB2312's, so Japanese keeps them when read as GB18030
_KANA = re.compile(r"[\u3041-\u3096\u30a1-\u30fa]")
_KANA_SHARE = 0.1
_COMMON: dict[str, bool] = {}


def _is_common_han(ch: str) -> bool:
    known = _COMMON.get(ch)
    if known is None:
        try:
            gb = ch.encode("gb2312")
            known = 0xB0 <= gb[0] <= 0xD7                               # GB2312 level 1: B0A1..D7F9
        except UnicodeEncodeError:
            known = False
        if not known:
            try:
                known = 0xA440 <= int.from_bytes(ch.encode("big5"), "big") <= 0xC67E   # Big5 level 1
            except UnicodeEncodeError:
                pass
        _COMMON[ch] = known
    return known


def _common_share(text: str) -> tuple[int, float]:
    """How many Han characters the text has, and the share of them that are common ones."""
    han = _HAN.findall(text)
    return len(han), (sum(map(_is_common_han, han)) / len(han) if han else 0.0)


def _odd_char(text: str) -> str | None:
    """The first character of a wrong decoding: a control character, a private-use code (a byte pair
    no standard assigns), an unassigned code point."""
    m = _CONTROL.search(text)
    if m:
        return m.group()
    return next((ch for ch in set(text) if ord(ch) >= 0x80 and unicodedata.category(ch) in ("Co", "Cn")), None)


def _strict(raw: bytes, codec: str) -> str | None:
    try:
        return raw.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return None


def declared_charset(raw: bytes) -> str | None:
    """The Python codec of the charset an HTML page declares in its first 4 KiB, if Python knows it
    (an UTF-16 declaration in a page that reads as ASCII is a mistake, and browsers ignore it)."""
    head = raw[:4096]
    for pattern in _DECLARED:
        m = pattern.search(head)
        if m:
            return charset_codec(m.group(1).decode("ascii"))
    return None


def charset_codec(label: str) -> str | None:
    """The Python codec of a charset label (as a page or an HTTP Content-Type names it), read as
    browsers read it; None for a label Python does not know, or UTF-16/32 (a page that reads as
    ASCII and declares it is mistaken, and browsers ignore it)."""
    label = label.strip().lower()
    try:
        name = codecs.lookup(_LABELS.get(label, label)).name
    except LookupError:
        return None
    return None if name.startswith(("utf-16", "utf-32")) else name


def decode_text(raw: bytes, *, html: bool = False, charset: str | None = None) -> tuple[str, str]:
    """The text of a text file (line ends as "\n") and the encoding it was read in: 'utf-8',
    'utf-16-le', 'utf-16-be', 'utf-32-le', 'utf-32-be', 'gb18030', 'big5', 'big5-hkscs', 'cp1252', or
    the Python name of the charset declared: by a web server (``charset``, from its Content-Type),
    else for HTML by the page.  A byte order mark, then valid UTF-8, come before either declaration
    (a page re-saved as UTF-8 often still declares its old charset).  Raises ValueError, saying why,
    for bytes that are not text, or not in an encoding recognized with confidence."""
    for bom, name in _BOMS:
        if raw.startswith(bom):
            text = _strict(raw[len(bom):], name)
            if text is None:
                raise ValueError(f"starts with a {name.upper()} byte order mark but is not {name.upper()} text")
            break
    else:
        name, text = "utf-8", _strict(raw, "utf-8")
        if text is None and b"\x00" in raw:
            raise ValueError("not text: it has NUL bytes (a binary file, or UTF-16 without a byte order mark)")
        declared, by = None, "the page"
        if text is None and charset:
            declared, by = charset_codec(charset), "the server"
        if text is None and declared is None and html:
            declared, by = declared_charset(raw), "the page"
        if declared:
            name, text = declared, _strict(raw, declared)
            if text is None:
                raise ValueError(f"not {declared} text, the charset {by} declares")
        if text is None:
            text, name = _legacy(raw)
    if "\x00" in text:
        raise ValueError(f"not text: it has NUL characters (read as {name}; a binary file?)")
    controls = len(_CONTROL.findall(text))
    if controls > _MAX_CONTROL_SHARE * len(text):
        raise ValueError(f"not text: {controls} of its {len(text)} characters are control characters "
                         f"(read as {name}; a binary file?)")
    return text.replace("\r\n", "\n"), name


def _legacy(raw: bytes) -> tuple[str, str]:
    """Text that is not UTF-8: Chinese in GB18030 or Big5, else Western European in Windows-1252."""
    best: tuple[float, str, str] | None = None
    for codec in ("gb18030", "big5", "big5-hkscs"):
        if codec == "big5-hkscs" and best is not None and best[2] == "big5":
            break                                      # Big5-HKSCS only where Windows' Big5 does not read
        text = _strict(raw, "cp950" if codec == "big5" else codec)
        if text is None or _odd_char(text) is not None:
            continue
        n, share = _common_share(text)
        share = share if n else 1.0                    # symbols only (box drawing, full-width marks)
        if share >= _COMMON_SHARE and (best is None or share > best[0]):
            best = (share, text, codec)
    if best is not None:
        _not_korean_or_japanese(raw, best[1])
        return best[1], best[2]
    text = _strict(raw, "cp1252")
    if text is not None and _odd_char(text) is None and _western(text):
        return text, "cp1252"
    raise ValueError("not in an encoding recognized with confidence (not UTF-8, nor UTF-16 with a byte "
                     "order mark, nor plausible GB18030/GBK, Big5 or Windows-1252 text); save it as UTF-8")


def _western(text: str) -> bool:
    """Whether Windows-1252 text reads as Western European: its non-ASCII characters Latin letters or
    typographic marks, at most two in a row, and few beside its ASCII letters."""
    ascii_letters = sum(c.isascii() and c.isalpha() for c in text)
    other = sum(not c.isascii() for c in text)
    return (not _NOT_WESTERN.search(text) and other <= 0.5 * ascii_letters
            and not re.search(r"[^\x00-\x7f]{3}", text))


def _not_korean_or_japanese(raw: bytes, text: str) -> None:
    """Raises ValueError when a text read as Chinese is Korean or Japanese (module comment above)."""
    han = _HAN.findall(text)
    kana = len(_KANA.findall(text))
    rare = len(han) >= _FREQUENT_MIN and sum(c in _FREQUENT for c in han) < _FREQUENT_SHARE * len(han)
    if not rare and not (kana and kana >= _KANA_SHARE * (len(han) + kana)):
        return
    try:
        from charset_normalizer import from_bytes
    except ImportError:                                # not installed: the first reading stands
        return
    guess = from_bytes(raw).best()
    if guess is not None and (guess.language in ("Korean", "Japanese") or guess.encoding in (
            "cp949", "euc_kr", "johab", "euc_jp", "euc_jis_2004", "euc_jisx0213", "shift_jis", "cp932")):
        raise ValueError(f"reads as {guess.language or 'another language'} ({guess.encoding}) rather than "
                         f"Chinese; save it as UTF-8")


# -- tables (CSV, spreadsheets) and Word documents -----------------------------------------------
def _plain_cell(value: str) -> str:
    return _cell_text([value]).replace("|", "\\|")


def markdown_table(rows: list[list[str]]) -> str:
    """Rows as markdown table rows, as HTML tables are rendered: the first row the header, each row
    one line (a cell's lines joined), rows with no text left out."""
    t = _Table(outer=[], rows=[(i == 0, [_plain_cell(c) for c in r]) for i, r in enumerate(rows)])
    return _table_text(t).strip()


def csv_rows(text: str, *, tab: bool = False) -> list[list[str]]:
    """The records of a CSV text (its delimiter ',', tab, ';' or '|', sniffed; tab for .tsv), each a
    list of cells; empty records stay (they keep the row numbers)."""
    import csv
    import io
    try:
        dialect = csv.excel_tab if tab else csv.Sniffer().sniff(text[:65536], delimiters=",\t;|")
    except csv.Error:
        dialect = csv.excel
    try:
        return [[c.strip() for c in r] for r in csv.reader(io.StringIO(text, newline=""), dialect)]
    except csv.Error as e:
        raise ValueError(f"not readable CSV ({e})") from None


def _cell_value(v) -> str:
    from datetime import datetime
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, datetime) and not (v.hour or v.minute or v.second or v.microsecond):
        return v.date().isoformat()
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return str(v).strip()


def xlsx_sheets(raw: bytes) -> list[tuple[str, list[list[str]]]]:
    """An .xlsx workbook's sheets: (name, rows of cell texts), rows numbered as in Excel (the first
    list is row 1), formulas as the values Excel last computed.  Raises ValueError for a file that is
    not a readable workbook."""
    import zipfile
    from io import BytesIO

    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException
    _check_zip(raw, ".xlsx workbook")
    try:
        wb = load_workbook(BytesIO(raw), read_only=True, data_only=True)
        sheets = []
        for ws in wb.worksheets:
            rows = [[_cell_value(v) for v in row] for row in ws.iter_rows(values_only=True)]
            width = max((j + 1 for r in rows for j, v in enumerate(r) if v), default=0)
            sheets.append((ws.title, [r[:width] + [""] * (width - len(r)) for r in rows]))
        wb.close()
    except (InvalidFileException, zipfile.BadZipFile, KeyError, ValueError, TypeError, OSError) as e:
        raise ValueError(f"not a readable .xlsx workbook ({type(e).__name__}: {e})") from None
    return sheets


_DOCX_HEADING = re.compile(r"^(?:heading|标题|標題)\s*([1-6])$", re.I)


def docx_to_text(raw: bytes) -> Document:
    """A Word .docx document as markdown-like text, in document order: headings ("Heading 1".."6",
    Chinese Word's "标题 1") as '#' lines, the "Title" paragraph as '#', list paragraphs as '- '
    items, tables as markdown rows (header row first); the title from the document's properties,
    else its Title paragraph or first heading.  Text boxes, headers, footers, footnotes and comments
    are not read.  Raises ValueError for a file that is not a readable .docx."""
    import zipfile
    from io import BytesIO

    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from docx.table import Table
    try:
        from lxml.etree import XMLSyntaxError
    except ImportError:                                # python-docx depends on lxml: not reached
        XMLSyntaxError = ValueError                    # noqa: N806
    _check_zip(raw, ".docx document")
    try:
        d = docx.Document(BytesIO(raw))
        blocks, headings = [], []
        for item in d.iter_inner_content():
            if isinstance(item, Table):
                rows = []
                for row in item.rows:
                    cells, last = [], None
                    for cell in row.cells:             # a merged cell repeats: once is its text
                        if cell._tc is not last:
                            cells.append(cell.text)
                        last = cell._tc
                    rows.append(cells)
                table = markdown_table(rows)
                if table:
                    blocks.append(table)
                continue
            text = item.text.strip()
            if not text:
                continue
            style = (item.style.name if item.style is not None else "") or ""
            m = _DOCX_HEADING.match(style)
            if m or style == "Title":
                text = " ".join(text.split())
                headings.append(text)
                blocks.append("#" * (int(m.group(1)) if m else 1) + " " + text)
            elif style.startswith("List"):
                blocks.append("- " + text)
            else:
                blocks.append(text)
        meta_title = d.core_properties.title or ""
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError, XMLSyntaxError, AttributeError) as e:
        raise ValueError(f"not a readable .docx document ({type(e).__name__}: {e})") from None
    text = re.sub(r"\n{3,}", "\n\n", "\n\n".join(blocks)).strip()
    title = " ".join(meta_title.split()) or (headings[0] if headings else "")
    return Document(title, text)
