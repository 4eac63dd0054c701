"""A folder of pictures as a searchable table: ``pgmind ingest-images`` and ``pgmind search-images``.

The table: ``path`` (absolute; the primary key), ``name``, ``width``, ``height``, ``bytes``,
``mtime``, ``sha256`` and, with ``store_bytes``, ``img`` (the file itself).  Its image vectorizer
embeds ``img``, or loads ``path`` through ai.load_file's allow-list: the folder must be on it, or
``allow_load`` adds it (an administrator's change, made only when asked for).  Re-running updates
changed files and removes gone ones; a file Pillow cannot read is reported and left out.

``schema`` names the table's schema (else the first of the search path); ``relative`` keys the rows
by the path within the folder, as ``pgmind ingest`` does (for a folder that is not kept, e.g. the
console's upload; the pictures must then be stored: ``store_bytes``)."""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import psycopg
from psycopg import sql

from ..errors import InvalidRequestError, PermissionDeniedError, PgmindError
from . import codec

SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


@dataclass
class ImageIngestResult:
    files: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    allowed: str | None = None          # the folder, when this run added it to the load allow-list (allow_load)


def create_table(conn: psycopg.Connection, name: str, schema: str | None = None) -> sql.Identifier:
    """The pictures table, if it does not exist; its name as SQL."""
    table = sql.Identifier(schema, name) if schema else sql.Identifier(name)
    conn.execute(sql.SQL("""create table if not exists {} (
        path text primary key, name text not null, width int not null, height int not null, bytes int not null,
        mtime timestamptz not null, sha256 text not null, img bytea)""").format(table))
    return table


def ingest_images(conn: psycopg.Connection, folder: str | Path, into: str, *, model: str = "image-features",
                  store_bytes: bool = False, ocr: bool = False, allow_load: bool = False,
                  progress: Callable[[int, int], None] | None = None, schema: str | None = None,
                  relative: bool = False) -> ImageIngestResult:
    """Without ``store_bytes`` the vectorizer reads the pictures by path, through ai.load_file: the
    folder must be on its allow-list, which changes only with ``allow_load`` (then the folder is
    added, by an administrator: ai.allow_load_from), never on its own."""
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise InvalidRequestError(f"{folder} is not a folder", hint="pass a folder of pictures")
    if relative and not store_bytes:
        raise InvalidRequestError("relative paths name no file the vectorizer could load",
                                  hint="store the pictures in the table (store_bytes)")
    result = ImageIngestResult()
    if not store_bytes:
        allowed = {r[0] for r in conn.execute("select prefix from ai.load_allow_list")}
        if not any(("file://" + str(root) + "/").startswith(p) for p in allowed):
            if not allow_load:
                raise PermissionDeniedError(
                    f"ai.load_file may not read {root}: the vectorizer could not load its pictures",
                    hint=f"add the folder to the allow-list (administrators): pgmind ingest-images --allow-load, "
                         f"or select ai.allow_load_from('{root}'); or store the pictures in the table: --bytes")
            conn.execute("select ai.allow_load_from(%s)", (str(root),))
            result.allowed = str(root)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    result.files = len(files)
    with conn.transaction():
        table = create_table(conn, into, schema)
        known = dict(conn.execute(sql.SQL("select path, sha256 from {}").format(table)).fetchall())
    for i, f in enumerate(files, 1):
        raw = f.read_bytes()
        digest = hashlib.sha256(raw).hexdigest()
        key = f.relative_to(root).as_posix() if relative else str(f)
        if known.pop(key, None) == digest:
            result.unchanged += 1
        else:
            try:
                img = codec.open_image(raw, key)
            except PgmindError as e:
                result.failed.append((str(f.relative_to(root)), e.message))
                continue
            with conn.transaction():
                conn.execute(sql.SQL("""insert into {} (path, name, width, height, bytes, mtime, sha256, img)
                    values (%s, %s, %s, %s, %s, %s, %s, %s)
                    on conflict (path) do update set name = excluded.name, width = excluded.width,
                        height = excluded.height, bytes = excluded.bytes, mtime = excluded.mtime,
                        sha256 = excluded.sha256, img = excluded.img""").format(table),
                    (key, f.name, img.width, img.height, len(raw),
                     datetime.fromtimestamp(f.stat().st_mtime, timezone.utc), digest, raw if store_bytes else None))
            result.changed += 1
        if progress:
            progress(i, len(files))
    with conn.transaction():
        if known:
            conn.execute(sql.SQL("delete from {} where path = any(%s)").format(table), (list(known),))
            result.removed = len(known)
        has = conn.execute("select 1 from ai.vectorizer_status where name = %s", (into,)).fetchone()
        if not has:
            conn.execute("select ai.create_vectorizer(%s::regclass, name => %s, content => %s, model => %s, "
                         "modality => 'image', ocr => %s)",
                         (table.as_string(conn), into, "img" if store_bytes else "path", model, ocr))
    return result


@dataclass(frozen=True)
class ImageHit:
    path: str
    score: float
    similarity: float | None
    description: str


def search_images(conn: psycopg.Connection, name: str, query: str | bytes, k: int = 10,
                  filter: str | None = None) -> list[ImageHit]:
    """Text → image (query a text) or image → image (query the bytes of a picture)."""
    rows = conn.execute("select key, score, similarity, chunk from ai.search_images(%s, %s, k => %s, filter => %s)",
                        (name, query, k, filter)).fetchall()
    return [ImageHit(next(iter(key.values())), score, sim, chunk) for key, score, sim, chunk in rows]


def contact_sheet(conn: psycopg.Connection, name: str, hits: list[ImageHit], out: str | Path, size: int = 160) -> Path:
    """A PNG grid of the hits' pictures (read from the table's img column, or their files)."""
    from PIL import Image, ImageDraw
    cols = min(5, max(1, len(hits)))
    rows = (len(hits) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * size, rows * (size + 18)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, hit in enumerate(hits):
        row = conn.execute(sql.SQL("select img from {} where path = %s").format(sql.Identifier(name)),
                           (hit.path,)).fetchone()
        data = row[0] if row and row[0] is not None else Path(hit.path).read_bytes()
        img = codec.open_image(data).convert("RGB")
        img.thumbnail((size - 8, size - 8))
        x, y = (i % cols) * size, (i // cols) * (size + 18)
        sheet.paste(img, (x + (size - img.width) // 2, y + 4))
        draw.text((x + 4, y + size), f"{i + 1}. {Path(hit.path).name[:22]}", fill="black")
    out = Path(out)
    buf = io.BytesIO()
    sheet.save(buf, "PNG")
    out.write_bytes(buf.getvalue())
    return out
