"""A folder of documents, and web pages, into a table with a vectorizer of the same name.

The table: ``path`` (relative to the folder, or a page's URL; the primary key), ``title``,
``section`` (a page's host), ``body``
(text; HTML, Word .docx, CSV and .xlsx rendered to markdown-like text, PDF pages as text),
``mtime``, ``sha256``.  Text files (.txt, .md, .html, .csv, .tsv) are read in the encoding they were
written in — UTF-8, UTF-16 with a byte order mark, GB18030/GBK, Big5, an HTML page's declared
charset — or refused (documents.decode_text).  With ``rows``, each row of a CSV file or a workbook's
sheet is a document of its own, its path ``file.csv#7`` or ``book.xlsx#Sheet1!7`` (row 7, as a
spreadsheet numbers it), its body "column: value" lines.

Re-running updates only the documents whose row would change — their bytes, or how this version
reads them (an HTML page's rendering; a PDF is read again only when its bytes change: OCR is
slow) — and removes the rows of files that are gone; the vectorizer's triggers turn that into
exactly the re-embedding needed.  Every file found is accounted for: read, or skipped (an unsupported
type, no text) or failed (undecodable text, a broken or password-protected PDF, a broken .docx), each
with the reason.  A failed file does not stop the others, and its rows keep their last readable
version.  Hidden files and folders (a name starting with '.') are not looked at.

A web page (an http(s) URL) is fetched only under a prefix an administrator allowed for loading
(urlfetch: ai.allow_load_from, public addresses only unless listed, redirects checked, size and time
capped), one page a URL (links are not followed); its Content-Type decides how it is read, as the
file of that type would be (a page sent as application/octet-stream, by its name's suffix), in the
charset the server declares.  A URL that is not allowed, or of a type that is not read, is skipped
with why; one that fails (HTTP 404, an error status, too big, too slow) is failed with why, and its
row kept — but a page that is gone (404, 410) has its row removed.  A run with a folder removes
the rows of files no longer in it, never a page's row; a run of URLs alone removes nothing else.
"""
from __future__ import annotations

import hashlib
import re
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Sequence

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from .documents import (csv_rows, decode_text, docx_to_text, html_to_text, markdown_table, pdf_to_text,
                        xlsx_sheets)
from .errors import InvalidRequestError, PermissionDeniedError, PgmindError

TEXT_SUFFIXES = {".html", ".htm", ".md", ".markdown", ".txt", ".csv", ".tsv"}
SUFFIXES = TEXT_SUFFIXES | {".pdf", ".docx", ".xlsx"}
# formats read in their newer form only
_SAVE_AS = {".doc": ".docx", ".wps": ".docx", ".rtf": ".docx", ".xls": ".xlsx", ".et": ".xlsx"}
# how a web page is read, by its Content-Type: as the file of this suffix
MEDIA_TYPES = {"text/html": ".html", "application/xhtml+xml": ".html", "text/markdown": ".md",
               "text/x-markdown": ".md", "text/plain": ".txt", "application/pdf": ".pdf", "text/csv": ".csv",
               "text/tab-separated-values": ".tsv",
               "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
               "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx"}
# types that say nothing: such a page is read by its name's suffix
_UNTYPED = {"", "application/octet-stream", "binary/octet-stream"}
# what is embedded: the body, under its title as a heading unless it already starts with one
CONTENT = "case when body ~ '^\\s*#' then body else '# ' || title || E'\\n\\n' || body end"


@dataclass(frozen=True)
class SourceFile:
    path: str
    title: str
    section: str
    body: str
    mtime: datetime
    sha256: str


@dataclass
class IngestResult:
    files: int = 0                                          # files found (hidden ones aside)
    urls: int = 0                                           # web pages asked for
    changed: int = 0                                        # documents (rows) new or changed
    unchanged: int = 0
    removed: int = 0
    # (path or URL, why): unsupported type, no text, a URL not allowed
    skipped: list[tuple[str, str]] = field(default_factory=list)
    not_allowed: int = 0                                    # of the skipped: URLs the allow-list refused
    # (path or URL, why) of unreadable files and pages that could not be fetched
    failed: list[tuple[str, str]] = field(default_factory=list)
    encodings: dict[str, str] = field(default_factory=dict)  # text file's path -> the encoding it was read in
    language: str | None = None                             # the corpus language, when this run set it


def section_of(rel: Path) -> str:
    """The first folder, or for a flat folder the file name's prefix (the PostgreSQL manual's
    'sql-createindex.html' is in section 'sql')."""
    if len(rel.parts) > 1:
        return rel.parts[0]
    return rel.stem.split("-")[0].split("_")[0].split(".")[0]


def skip_reason(file: Path) -> str | None:
    """Why a file is not read at all, or None when it is."""
    suffix = file.suffix.lower()
    if file.name.startswith("~$"):
        return "an Office lock file (the document is open in Word or Excel)"
    if suffix not in SUFFIXES:
        why = f"unsupported file type {suffix or '(no suffix)'}"
        return why + (f"; save it as {_SAVE_AS[suffix]}" if suffix in _SAVE_AS else "")
    return None


def _content_hash(title: str, section: str, body: str) -> str:
    return hashlib.sha256("\0".join((title, section, body)).encode()).hexdigest()


def _row_documents(path: str, stem: str, section: str, sheets: list[tuple[str | None, list[list[str]]]],
                   mtime: datetime | None) -> list[SourceFile]:
    """One document a row: the first non-empty row is the header naming the fields; the path names
    the row as a spreadsheet numbers it; the sha256 is the row's own (its title, section and body)."""
    docs = []
    for sheet, table in sheets:
        head = next((i for i, r in enumerate(table) if any(r)), None)
        if head is None:
            continue
        names = table[head]
        for i in range(head + 1, len(table)):
            row = table[i]
            fields = [(names[j] if j < len(names) and names[j] else f"column {j + 1}", v)
                      for j, v in enumerate(row) if v]
            if not fields:
                continue
            row_path = f"{path}#{i + 1}" if sheet is None else f"{path}#{sheet}!{i + 1}"
            title = f"{stem}: {' '.join(fields[0][1].split())}"[:200]
            body = "\n".join(f"{' '.join(k.split())}: {v}" for k, v in fields)
            docs.append(SourceFile(row_path, title, section, body, mtime, _content_hash(title, section, body)))
    return docs


def read_file(root: Path, file: Path, raw: bytes, sha256: str, *,
              rows: bool = False) -> tuple[list[SourceFile], str | None]:
    """The file (its bytes already read and hashed) as rows — none when it has no text; more than one
    for a table file read with ``rows`` — and, for a text file, the encoding it was read in.
    Raises ValueError, saying why, when it cannot be read."""
    rel = file.relative_to(root)
    mtime = datetime.fromtimestamp(file.stat().st_mtime, timezone.utc)
    return read_document(rel.as_posix(), rel.stem, section_of(rel), file.suffix.lower(), raw, sha256, mtime,
                         rows=rows)


def read_document(path: str, stem: str, section: str, suffix: str, raw: bytes, sha256: str,
                  mtime: datetime | None, *, rows: bool = False,
                  charset: str | None = None) -> tuple[list[SourceFile], str | None]:
    """A document's bytes, read as a file with this suffix would be (read_file); ``stem`` is the
    title when the document has none, ``charset`` what a web server declared for a text page."""
    encoding = None
    sheets: list[tuple[str | None, list[list[str]]]] | None = None
    if suffix == ".pdf":
        doc = pdf_to_text(raw)
        title, body = doc.title or stem, doc.text
    elif suffix == ".docx":
        doc = docx_to_text(raw)
        title, body = doc.title or stem, doc.text
    elif suffix == ".xlsx":
        sheets = list(xlsx_sheets(raw))
    else:
        text, encoding = decode_text(raw, html=suffix in (".html", ".htm"), charset=charset)
        if suffix in (".html", ".htm"):
            doc = html_to_text(text)
            title, body = doc.title or stem, doc.text
        elif suffix in (".csv", ".tsv"):
            sheets = [(None, csv_rows(text, tab=suffix == ".tsv"))]
        else:
            body = text
            first = next((line[2:].strip() for line in body.splitlines() if line.startswith("# ")), None)
            title = first or stem
    if sheets is not None:
        if rows:
            return _row_documents(path, stem, section, sheets, mtime), encoding
        tables = [(name, markdown_table(t)) for name, t in sheets]
        tables = [(name, t) for name, t in tables if t]
        body = tables[0][1] if len(tables) == 1 else "\n\n".join(f"## {name}\n\n{t}" for name, t in tables)
        title = stem
    if not body.strip():
        return [], encoding
    return [SourceFile(path, title, section, body, mtime, sha256)], encoding


def walk(root: Path) -> Iterator[Path]:
    """Every file under root but the hidden ones (a name starting with '.', or in such a folder)."""
    for f in sorted(root.rglob("*")):
        if f.is_file() and not any(p.startswith(".") for p in f.relative_to(root).parts):
            yield f


CHUNKING = '{"method": "markdown", "max_tokens": 256, "overlap": 32, "title": true}'


def create_table(conn: psycopg.Connection, name: str, schema: str | None = None) -> sql.Identifier:
    """The documents table, if it does not exist; its name as SQL."""
    table = sql.Identifier(schema, name) if schema else sql.Identifier(name)
    conn.execute(sql.SQL("""create table if not exists {} (
        path text primary key, title text not null, section text, body text not null,
        mtime timestamptz, sha256 text not null)""").format(table))
    return table


def ensure_table(conn: psycopg.Connection, name: str, model: str, chunking: str, schema: str | None = None) -> None:
    table = create_table(conn, name, schema)
    exists = conn.execute("select exists (select 1 from ai.vectorizer_status where name = %s)", (name,)).fetchone()[0]
    if not exists:
        conn.execute("select ai.create_vectorizer(%s::regclass, name => %s, content => %s, model => %s, "
                     "chunking => %s::jsonb, backfill => true)",
                     (table.as_string(conn), name, CONTENT, model, chunking))


def _is_url(source: str | Path) -> bool:
    return isinstance(source, str) and source[:8].lower().startswith(("http://", "https://"))


def _sources(sources: str | Path | Sequence[str | Path]) -> tuple[Path | None, list[str]]:
    """The folder (at most one: paths are relative to it) and the URLs, in the order given."""
    if isinstance(sources, (str, Path)):
        sources = [sources]
    folder, urls = None, []
    for source in sources:
        if _is_url(source):
            if source not in urls:
                urls.append(source)
            continue
        if isinstance(source, str) and "://" in source:
            raise InvalidRequestError(f"cannot ingest {source[:200]!r}: only folders and http(s) URLs are read",
                                      hint="pass a folder of documents or https://host/page")
        root = Path(source).expanduser().resolve()
        if not root.is_dir():
            raise InvalidRequestError(f"{root} is not a folder",
                                      hint="pass a folder of documents (.html, .md, .txt, .pdf, .docx, .csv, .xlsx) "
                                           "or an http(s) URL")
        if folder is not None and root != folder:
            raise InvalidRequestError("ingest reads one folder at a time (a document's path is relative to it)",
                                      hint="run ingest once per folder, each into its own knowledge base, or put "
                                           "the folders under one")
        folder = root
    if folder is None and not urls:
        raise InvalidRequestError("nothing to ingest", hint="pass a folder of documents or http(s) URLs")
    return folder, urls


def page_suffix(content_type: str, url: str) -> tuple[str | None, str | None]:
    """How a web page is read (the suffix of the file it is read as), or None and why it is not."""
    suffix = MEDIA_TYPES.get(content_type)
    if suffix:
        return suffix, None
    if content_type in _UNTYPED:
        name = urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1]
        guess = ("." + name.rsplit(".", 1)[-1].lower()) if "." in name else ""
        if guess in SUFFIXES:
            return guess, None
        return None, (f"sent as {content_type or 'no content type'}, and its name has no suffix of a document "
                      f"type (.html, .md, .txt, .pdf, ...)")
    return None, f"unsupported content type {content_type} (read: HTML, markdown, plain text, PDF, CSV, .docx, .xlsx)"


def _page_names(url: str) -> tuple[str, str]:
    """A page's stem (its title when it has none: the last part of its path, else its host) and its
    section (its host)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    last = urllib.parse.unquote(parts.path.rstrip("/").rsplit("/", 1)[-1])
    return (last.rsplit(".", 1)[0] if "." in last[1:] else last) or host, host


def ingest(conn: psycopg.Connection, sources: str | Path | Sequence[str | Path], name: str, *,
           model: str = "e5-small", chunking: str = CHUNKING,
           progress: Callable[[int, int], None] | None = None, topic: str | None = None,
           rows: bool = False, schema: str | None = None, fetcher=None) -> IngestResult:
    """Loads a folder and/or web pages (``sources``: a folder, an http(s) URL, or a list of them with
    at most one folder) into table ``name`` (in ``schema``, else the first of the search path) with a
    vectorizer.  ``topic`` (e.g. "PostgreSQL") tells the chat model what the documents are about
    when it expands questions (RAG setting "topic").  ``rows``: each row of a .csv, .tsv or .xlsx
    file (or page) is a document (else each file is one).  ``fetcher``: a urlfetch.Fetcher to fetch
    pages with (its allow-list and limits); by default one over the allow-list as this connection's
    role reads it."""
    root, urls = _sources(sources)
    if not name.replace("_", "").isalnum() or not name[0].isalpha() or name.lower() != name:
        raise InvalidRequestError(f"invalid table name {name!r}", hint="use lower-case letters, digits and _")
    files = list(walk(root)) if root is not None else []
    total = len(files) + len(urls)
    result = IngestResult(files=len(files), urls=len(urls))
    with conn.transaction():
        ensure_table(conn, name, model, chunking, schema)
    table = sql.Identifier(schema, name) if schema else sql.Identifier(name)
    known = dict(conn.execute(sql.SQL("select path, sha256 from {}").format(table)).fetchall())
    stored = sql.SQL("select title, section, body from {} where path = %s").format(table)
    seen = set()
    upsert = sql.SQL("""insert into {t} (path, title, section, body, mtime, sha256) values (%s, %s, %s, %s, %s, %s)
                        on conflict (path) do update set title = excluded.title, section = excluded.section,
                            body = excluded.body, mtime = excluded.mtime, sha256 = excluded.sha256""").format(
        t=table)
    batch: list[SourceFile] = []
    sample: list[str] = []
    gone: list[str] = []

    def flush():
        if batch:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(upsert, [(f.path, f.title, f.section, f.body, f.mtime, f.sha256) for f in batch])
            batch.clear()

    def keep(key: str) -> None:
        """A document that could not be read this time keeps its rows' last readable version."""
        seen.add(key)
        seen.update(p for p in known if p.startswith(key + "#"))

    def take(key: str, suffix: str, raw: bytes, read: Callable[[str], tuple[list[SourceFile], str | None]]) -> None:
        """A file's or page's bytes into the batch: read (``read(sha256)``), compared, queued."""
        digest = hashlib.sha256(raw).hexdigest()
        if known.get(key) == digest and suffix == ".pdf":
            seen.add(key)
            result.unchanged += 1
            return
        try:
            docs, encoding = read(digest)
        except ValueError as e:
            result.failed.append((key, str(e)))
            keep(key)
            return
        if encoding:
            result.encodings[key] = encoding
        if not docs:
            # (as before: the rows of a file that has lost its text stay)
            result.skipped.append((key, "an empty file" if not raw else "no text in it"))
            keep(key)
            return
        for doc in docs:
            seen.add(doc.path)
            if known.get(doc.path) == doc.sha256 and (
                    doc.path != key or conn.execute(stored, (key,)).fetchone() == (doc.title, doc.section, doc.body)):
                result.unchanged += 1                  # (a row's sha256 is of its text: equal, it is the same)
                continue
            batch.append(doc)
            if len(sample) < 10000:
                sample.append(doc.body[:2000])
            result.changed += 1
            if len(batch) >= 100:
                flush()

    for i, file in enumerate(files, 1):
        rel = file.relative_to(root).as_posix()
        if progress:
            progress(i - 1, total)
        why = skip_reason(file)
        if why:
            result.skipped.append((rel, why))
            continue
        raw = file.read_bytes()
        take(rel, file.suffix.lower(), raw, lambda digest: read_file(root, file, raw, digest, rows=rows))

    if urls:
        from .urlfetch import AllowList, Fetcher, PageGoneError   # (httpx: only when pages are asked for)
        own = fetcher is None
        if own:
            fetcher = Fetcher(AllowList.read(conn))
        try:
            for i, url in enumerate(urls, len(files) + 1):
                if progress:
                    progress(i - 1, total)
                try:
                    page = fetcher.fetch(url)
                except PermissionDeniedError as e:         # the allow-list's word: skipped, like a .png
                    result.skipped.append((url, str(e)))
                    result.not_allowed += 1
                    continue
                except PageGoneError as e:                 # no page any more: its rows go
                    result.failed.append((url, str(e)))
                    gone += [p for p in known if p == e.url or p.startswith(e.url + "#")]
                    continue
                except PgmindError as e:                   # its rows, if any, keep their last version
                    result.failed.append((url, str(e)))
                    continue
                suffix, why = page_suffix(page.content_type, page.final_url)
                if suffix is None:
                    result.skipped.append((url, why))
                    continue
                stem, section = _page_names(page.final_url)
                take(page.url, suffix, page.data,
                     lambda digest: read_document(page.url, stem, section, suffix, page.data, digest,
                                                  page.last_modified, rows=rows, charset=page.charset))
        finally:
            if own:
                fetcher.close()
    if progress:
        progress(total, total)
    flush()
    if root is not None:                # the files no longer in the folder (a page's row is not a file's)
        gone += [p for p in known if p not in seen and not _is_url(p)]
    if gone:
        with conn.transaction():
            conn.execute(sql.SQL("delete from {} where path = any(%s)").format(table), (gone,))
        result.removed = len(gone)
    result.language = _set_language(conn, name, sample)
    if topic is not None:
        with conn.transaction():
            conn.execute("select ai.configure_rag(%s, %s)", (name, Jsonb({"topic": topic})))
    return result


_CJK_CHAR = re.compile(r"[\u4e00-\u9fff]")
_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")


def corpus_language(texts: list[str]) -> str:
    """'zh' when Chinese carries the text (a Chinese character is about a word), else 'en'."""
    joined = "\n".join(texts)
    return "zh" if len(_CJK_CHAR.findall(joined)) > len(_LATIN_WORD.findall(joined)) else "en"


def _set_language(conn: psycopg.Connection, name: str, sample: list[str]) -> str | None:
    """Record the corpus language in the knowledge base's settings the first time, so that
    questions in the other language are translated before searching (ai.translate_query; its
    switch is the setting translate_model)."""
    if not sample:
        return None
    with conn.transaction():
        settings = conn.execute("select ai.configure_rag(%s, '{}')", (name,)).fetchone()[0]
        if settings.get("language"):
            return None
        lang = corpus_language(sample)
        conn.execute("select ai.configure_rag(%s, %s)", (name, Jsonb({"language": lang})))
    return lang
