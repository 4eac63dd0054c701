"""A folder of documents into a table with a vectorizer of the same name.

The table: ``path`` (relative to the folder; the primary key), ``title``, ``section``, ``body``
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
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from .documents import (csv_rows, decode_text, docx_to_text, html_to_text, markdown_table, pdf_to_text,
                        xlsx_sheets)
from .errors import InvalidRequestError

TEXT_SUFFIXES = {".html", ".htm", ".md", ".markdown", ".txt", ".csv", ".tsv"}
SUFFIXES = TEXT_SUFFIXES | {".pdf", ".docx", ".xlsx"}
# formats read in their newer form only
_SAVE_AS = {".doc": ".docx", ".wps": ".docx", ".rtf": ".docx", ".xls": ".xlsx", ".et": ".xlsx"}
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
    changed: int = 0                                        # documents (rows) new or changed
    unchanged: int = 0
    removed: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why): unsupported type, no text
    failed: list[tuple[str, str]] = field(default_factory=list)   # (path, why) of unreadable files
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


def _row_documents(rel: Path, sheets: list[tuple[str | None, list[list[str]]]], mtime: datetime) -> list[SourceFile]:
    """One document a row: the first non-empty row is the header naming the fields; the path names
    the row as a spreadsheet numbers it; the sha256 is the row's own (its title, section and body)."""
    section, docs = section_of(rel), []
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
            path = f"{rel.as_posix()}#{i + 1}" if sheet is None else f"{rel.as_posix()}#{sheet}!{i + 1}"
            title = f"{rel.stem}: {' '.join(fields[0][1].split())}"[:200]
            body = "\n".join(f"{' '.join(k.split())}: {v}" for k, v in fields)
            docs.append(SourceFile(path, title, section, body, mtime, _content_hash(title, section, body)))
    return docs


def read_file(root: Path, file: Path, raw: bytes, sha256: str, *,
              rows: bool = False) -> tuple[list[SourceFile], str | None]:
    """The file (its bytes already read and hashed) as rows — none when it has no text; more than one
    for a table file read with ``rows`` — and, for a text file, the encoding it was read in.
    Raises ValueError, saying why, when it cannot be read."""
    rel = file.relative_to(root)
    suffix = file.suffix.lower()
    mtime = datetime.fromtimestamp(file.stat().st_mtime, timezone.utc)
    encoding = None
    sheets: list[tuple[str | None, list[list[str]]]] | None = None
    if suffix == ".pdf":
        doc = pdf_to_text(raw)
        title, body = doc.title or rel.stem, doc.text
    elif suffix == ".docx":
        doc = docx_to_text(raw)
        title, body = doc.title or rel.stem, doc.text
    elif suffix == ".xlsx":
        sheets = list(xlsx_sheets(raw))
    else:
        text, encoding = decode_text(raw, html=suffix in (".html", ".htm"))
        if suffix in (".html", ".htm"):
            doc = html_to_text(text)
            title, body = doc.title or rel.stem, doc.text
        elif suffix in (".csv", ".tsv"):
            sheets = [(None, csv_rows(text, tab=suffix == ".tsv"))]
        else:
            body = text
            first = next((line[2:].strip() for line in body.splitlines() if line.startswith("# ")), None)
            title = first or rel.stem
    if sheets is not None:
        if rows:
            return _row_documents(rel, sheets, mtime), encoding
        tables = [(name, markdown_table(t)) for name, t in sheets]
        tables = [(name, t) for name, t in tables if t]
        body = tables[0][1] if len(tables) == 1 else "\n\n".join(f"## {name}\n\n{t}" for name, t in tables)
        title = rel.stem
    if not body.strip():
        return [], encoding
    return [SourceFile(rel.as_posix(), title, section_of(rel), body, mtime, sha256)], encoding


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


def ingest(conn: psycopg.Connection, folder: str | Path, name: str, *, model: str = "e5-small",
           chunking: str = CHUNKING,
           progress: Callable[[int, int], None] | None = None, topic: str | None = None,
           rows: bool = False, schema: str | None = None) -> IngestResult:
    """Loads a folder into table ``name`` (in ``schema``, else the first of the search path) with a vectorizer.  ``topic`` (e.g. "PostgreSQL") tells the
    chat model what the documents are about when it expands questions (RAG setting "topic").
    ``rows``: each row of a .csv, .tsv or .xlsx file is a document (else each file is one)."""
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise InvalidRequestError(f"{root} is not a folder",
                                  hint="pass a folder of documents (.html, .md, .txt, .pdf, .docx, .csv, .xlsx)")
    if not name.replace("_", "").isalnum() or not name[0].isalpha() or name.lower() != name:
        raise InvalidRequestError(f"invalid table name {name!r}", hint="use lower-case letters, digits and _")
    files = list(walk(root))
    result = IngestResult(files=len(files))
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

    def flush():
        if batch:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(upsert, [(f.path, f.title, f.section, f.body, f.mtime, f.sha256) for f in batch])
            batch.clear()

    for i, file in enumerate(files, 1):
        rel = file.relative_to(root).as_posix()
        if progress:
            progress(i - 1, len(files))
        why = skip_reason(file)
        if why:
            result.skipped.append((rel, why))
            continue
        raw = file.read_bytes()
        digest = hashlib.sha256(raw).hexdigest()
        if known.get(rel) == digest and file.suffix.lower() == ".pdf":
            seen.add(rel)
            result.unchanged += 1
            continue
        try:
            docs, encoding = read_file(root, file, raw, digest, rows=rows)
        except ValueError as e:
            # its rows, if any, keep the last readable version
            result.failed.append((rel, str(e)))
            seen.add(rel)
            seen.update(p for p in known if p.startswith(rel + "#"))
            continue
        if encoding:
            result.encodings[rel] = encoding
        if not docs:
            # (as before: the rows of a file that has lost its text stay)
            result.skipped.append((rel, "an empty file" if not raw else "no text in it"))
            seen.add(rel)
            seen.update(p for p in known if p.startswith(rel + "#"))
            continue
        for doc in docs:
            seen.add(doc.path)
            if known.get(doc.path) == doc.sha256 and (
                    doc.path != rel or conn.execute(stored, (rel,)).fetchone() == (doc.title, doc.section, doc.body)):
                result.unchanged += 1                  # (a row's sha256 is of its text: equal, it is the same)
                continue
            batch.append(doc)
            if len(sample) < 10000:
                sample.append(doc.body[:2000])
            result.changed += 1
            if len(batch) >= 100:
                flush()
    if progress:
        progress(len(files), len(files))
    flush()
    gone = [p for p in known if p not in seen]
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
