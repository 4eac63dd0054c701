"""A folder of documents into a table with a vectorizer of the same name.

The table: ``path`` (relative to the folder; the primary key), ``title``, ``section``, ``body``
(text; HTML rendered to markdown-like text, PDF pages as text), ``mtime``, ``sha256``.
Re-running updates only the files whose row would change — their bytes, or how this version
reads them (an HTML page's rendering; a PDF is read again only when its bytes change: OCR is
slow) — and removes the rows of files that are gone; the vectorizer's triggers turn that into
exactly the re-embedding needed.  A file that cannot be read (a broken or
password-protected PDF) is reported and left out; it does not stop the others.
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

from .documents import html_to_text, pdf_to_text
from .errors import InvalidRequestError

SUFFIXES = {".html", ".htm", ".md", ".markdown", ".txt", ".pdf"}
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
    files: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: int = 0                                        # files with no text
    failed: list[tuple[str, str]] = field(default_factory=list)   # (path, why) of unreadable files
    language: str | None = None                             # the corpus language, when this run set it


def section_of(rel: Path) -> str:
    """The first folder, or for a flat folder the file name's prefix (the PostgreSQL manual's
    'sql-createindex.html' is in section 'sql')."""
    if len(rel.parts) > 1:
        return rel.parts[0]
    return rel.stem.split("-")[0].split("_")[0].split(".")[0]


def read_file(root: Path, file: Path, raw: bytes, sha256: str) -> SourceFile | None:
    """The file (its bytes already read and hashed) as a row, or None when it has no text.
    Raises ValueError when it cannot be read."""
    rel = file.relative_to(root)
    if file.suffix.lower() == ".pdf":
        doc = pdf_to_text(raw)
        title, body = doc.title or rel.stem, doc.text
    elif file.suffix.lower() in (".html", ".htm"):
        doc = html_to_text(raw.decode("utf-8", errors="replace"))
        title, body = doc.title or rel.stem, doc.text
    else:
        body = raw.decode("utf-8", errors="replace").replace("\r\n", "\n")
        first = next((line[2:].strip() for line in body.splitlines() if line.startswith("# ")), None)
        title = first or rel.stem
    if not body.strip():
        return None
    return SourceFile(rel.as_posix(), title, section_of(rel), body,
                      datetime.fromtimestamp(file.stat().st_mtime, timezone.utc), sha256)


def walk(root: Path) -> Iterator[Path]:
    for f in sorted(root.rglob("*")):
        if f.is_file() and f.suffix.lower() in SUFFIXES and not any(p.startswith(".") for p in f.relative_to(root).parts):
            yield f


def ensure_table(conn: psycopg.Connection, name: str, model: str, chunking: str) -> None:
    table = sql.Identifier(name)
    conn.execute(sql.SQL("""create table if not exists {} (
        path text primary key, title text not null, section text, body text not null,
        mtime timestamptz, sha256 text not null)""").format(table))
    exists = conn.execute("select exists (select 1 from ai.vectorizer_status where name = %s)", (name,)).fetchone()[0]
    if not exists:
        conn.execute("select ai.create_vectorizer(%s::regclass, name => %s, content => %s, model => %s, "
                     "chunking => %s::jsonb, backfill => true)",
                     (name, name, CONTENT, model, chunking))


def ingest(conn: psycopg.Connection, folder: str | Path, name: str, *, model: str = "e5-small",
           chunking: str = '{"method": "markdown", "max_tokens": 256, "overlap": 32, "title": true}',
           progress: Callable[[int, int], None] | None = None, topic: str | None = None) -> IngestResult:
    """Loads a folder into table ``name`` with a vectorizer.  ``topic`` (e.g. "PostgreSQL") tells the
    chat model what the documents are about when it expands questions (RAG setting "topic")."""
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise InvalidRequestError(f"{root} is not a folder", hint="pass a folder of .html, .md or .txt files")
    if not name.replace("_", "").isalnum() or not name[0].isalpha() or name.lower() != name:
        raise InvalidRequestError(f"invalid table name {name!r}", hint="use lower-case letters, digits and _")
    files = list(walk(root))
    result = IngestResult(files=len(files))
    with conn.transaction():
        ensure_table(conn, name, model, chunking)
    known = dict(conn.execute(sql.SQL("select path, sha256 from {}").format(sql.Identifier(name))).fetchall())
    stored = sql.SQL("select title, section, body from {} where path = %s").format(sql.Identifier(name))
    seen = set()
    upsert = sql.SQL("""insert into {t} (path, title, section, body, mtime, sha256) values (%s, %s, %s, %s, %s, %s)
                        on conflict (path) do update set title = excluded.title, section = excluded.section,
                            body = excluded.body, mtime = excluded.mtime, sha256 = excluded.sha256""").format(
        t=sql.Identifier(name))
    batch: list[SourceFile] = []
    sample: list[str] = []

    def flush():
        if batch:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(upsert, [(f.path, f.title, f.section, f.body, f.mtime, f.sha256) for f in batch])
            batch.clear()

    for i, file in enumerate(files, 1):
        rel = file.relative_to(root).as_posix()
        seen.add(rel)
        raw = file.read_bytes()
        digest = hashlib.sha256(raw).hexdigest()
        same_bytes = known.get(rel) == digest
        if same_bytes and file.suffix.lower() == ".pdf":
            result.unchanged += 1
        else:
            try:
                doc = read_file(root, file, raw, digest)
            except ValueError as e:
                # its row, if any, keeps the last readable version
                result.failed.append((rel, str(e)))
            else:
                if doc is None:
                    result.skipped += 1
                elif same_bytes and conn.execute(stored, (rel,)).fetchone() == (doc.title, doc.section, doc.body):
                    result.unchanged += 1
                else:
                    batch.append(doc)
                    sample.append(doc.body[:2000])
                    result.changed += 1
                    if len(batch) >= 100:
                        flush()
        if progress:
            progress(i, len(files))
    flush()
    gone = [p for p in known if p not in seen]
    if gone:
        with conn.transaction():
            conn.execute(sql.SQL("delete from {} where path = any(%s)").format(sql.Identifier(name)), (gone,))
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
