"""Images: search an image collection (a vectorizer with modality image) by words or by an uploaded
picture, through ai.search_images as the signed-in role (the same discipline as the hit test); a
grid of hits, each its picture, key and text (file name, labels and OCR, as the vectorizer stored
them).

The pictures are served by /kbs/<name>/picture?key=…, which reads the hit's row as the role: the
collection must be one the role sees (kbs.visible), its content one column of the source (bytes, or
a path/URL then loaded by ai.load_file, as the role, under the administrators' allow-list — the
location comes from the row, never from the request, so there is no path to traverse), the source a
plain table whose reading runs none of its owner's code.  The picture is decoded and re-encoded as a
small PNG or JPEG (what is sent is always an image this server made, never the stored bytes)."""
from __future__ import annotations

import asyncio
import io
import json

from fastapi import APIRouter, Request
from fastapi.responses import Response
from psycopg import sql
from psycopg.types.json import Jsonb

from ... import errors
from ...images import codec
from ...server import search_api
from .. import i18n
from ..db import as_role
from ..web import PREFIX, integer, page, render, require_token, secure, signed_in, text
from .kbs import _cursor, _key_match, hides_rows, image_collection, kb_name, not_found, visible
from .search import act_as, marked, terms

router = APIRouter()
MAX_PICTURE = 10 * 1024 * 1024
THUMBNAIL = 256
# what an uploaded picture may be, by its first bytes (a name or a Content-Type says nothing)
MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
         (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"))


def picture_type(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return next((kind for magic, kind in MAGIC if data.startswith(magic)), None)


async def _check(request: Request, role: str, name: str) -> bool:
    """Visible (else not found); True when it is an image collection."""
    async with as_role(request, role) as conn:
        return await image_collection(conn, await visible(conn, request, name))


def _grid(name: str, rows_, words: list[str]) -> list[dict]:
    out = []
    for i, (r,) in enumerate(rows_, 1):
        key_text = json.dumps(r.get("key"), ensure_ascii=False, sort_keys=True)
        lines = (r.get("chunk") or "").split("\n")
        out.append({"rank": i, "key_text": key_text, "title": lines[0],
                    "pieces": marked("\n".join(lines[1:]), words), "title_pieces": marked(lines[0], words),
                    "score": r.get("score"), "similarity": r.get("similarity")})
    return out


@router.get(PREFIX + "/kbs/{name}/images")
@page
async def images_page(request: Request, name: str):
    session = await signed_in(request)
    name = kb_name(request, name)
    q = request.query_params
    words = text(q.get("q"), "words", limit=2000, required=False)
    k = integer(q.get("k"), "k", 12, 1, 100)
    is_images = await _check(request, session.role, name)
    hits = None
    if words.strip() and is_images:
        act_as(request, session.role)
        found = await search_api._query(request, "select to_jsonb(s) from ai.search_images(%s, %s, k => %s) s",
                                        (name, words, k), name)
        hits = _grid(name, found, terms(words))
    return render(request, "images.html", session=session, name=name, words=words, k=k, hits=hits,
                  is_images=is_images, image_kb=is_images, max_mb=MAX_PICTURE >> 20)


@router.post(PREFIX + "/kbs/{name}/images")
@page
async def search_by_picture(request: Request, name: str):
    session = await signed_in(request)
    name = kb_name(request, name)
    t = i18n.translator(i18n.language(request))
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_PICTURE + 64 * 1024:
        raise errors.InvalidRequestError(t("picture_too_big", mb=MAX_PICTURE >> 20), hint=t("picture_hint"))
    form = await request.form(max_files=1, max_fields=10, max_part_size=64 * 1024)
    require_token(request, session.csrf, form)
    k = integer(form.get("k"), "k", 12, 1, 100)
    upload = form.get("picture")
    if upload is None or not hasattr(upload, "read"):
        raise errors.InvalidRequestError(t("no_picture"), hint=t("picture_hint"))
    data = await upload.read(MAX_PICTURE + 1)
    if len(data) > MAX_PICTURE:
        raise errors.InvalidRequestError(t("picture_too_big", mb=MAX_PICTURE >> 20), hint=t("picture_hint"))
    if not data or picture_type(data) is None:
        raise errors.InvalidRequestError(t("not_a_picture"), hint=t("picture_hint"))
    if not await _check(request, session.role, name):
        raise errors.InvalidRequestError(t("not_images"), hint=t("not_images_hint"))
    act_as(request, session.role)
    # (the model server decodes it: a broken picture is the database's error, SQLSTATE 22023, shown)
    found = await search_api._query(request, "select to_jsonb(s) from ai.search_images(%s, %s::bytea, k => %s) s",
                                    (name, data, k), name)
    return render(request, "images.html", session=session, name=name, words="", k=k, hits=_grid(name, found, []),
                  by_picture=True, is_images=True, image_kb=True, max_mb=MAX_PICTURE >> 20)


async def _picture_bytes(conn, request: Request, name: str, key) -> bytes:
    """The row's picture, read as the role (see the module's comment for what is checked)."""
    t = i18n.translator(i18n.language(request))
    await visible(conn, request, name)
    vid = (await (await conn.execute("select ai_internal._vectorizer_id(%s)", (name,))).fetchone())[0]
    source, content, key_cols, kfj = await (await conn.execute(
        "select source::text, content, ai_internal._key_cols(%s, 's'), ai_internal._key_from_json(%s, 'k') "
        "from ai_internal._vectorizer_info(%s)", (vid, vid, vid))).fetchone()
    await conn.execute(sql.SQL("lock table {} in access share mode").format(sql.SQL(source)))
    # one column of a built-in type; key columns of built-in types (their casts are PostgreSQL's)
    column = (await (await conn.execute("""
        select a.attname, a.atttypid::regtype::text
        from pg_attribute a join pg_class c on c.oid = a.attrelid
        where c.oid = %s::regclass and a.attnum > 0 and not a.attisdropped
          and %s in (a.attname::text, quote_ident(a.attname))
          and a.atttypid in ('text'::regtype, 'varchar'::regtype, 'bytea'::regtype)
          and c.relkind = 'r' and not c.relhasrules and not c.relhassubclass and ai_internal._planner_safe(c.oid)
          and not exists (select 1 from pg_attribute k join ai_internal._vectorizer_info(%s) i
                                 on k.attname = any (i.key_columns)
                          where k.attrelid = c.oid and k.atttypid >= 16384)""",
        (source, content, vid))).fetchone())
    if column is None:
        raise errors.PermissionDeniedError(t("picture_not_column", source=source), hint=t("picture_not_column_hint"))
    if await hides_rows(conn, source):
        raise errors.PermissionDeniedError(t("rls_hidden"), hint=t("rls_hidden_hint"))
    # (the size first: a picture over the limit is never read into this process)
    found = await (await conn.execute(
        sql.SQL("select case when octet_length(s.{0}) <= %s then s.{0} end, octet_length(s.{0}) from only {1} s where ")
        .format(sql.Identifier(column[0]), sql.SQL(source)) + _key_match(key_cols, kfj, "="),
        (codec.MAX_BYTES, Jsonb(key)))).fetchone()
    if found is None or found[1] is None:
        raise not_found(request)
    codec.check_size(found[1], "the picture")
    if column[1] == "bytea":
        return bytes(found[0])
    # a location: ai.load_file as the role (the model server checks it against the allow-list)
    (data,) = await (await conn.execute("select ai.load_file(%s)", (found[0],))).fetchone()
    return bytes(data)


def thumbnail(data: bytes) -> tuple[bytes, str]:
    """A small copy the server made: PNG where the picture has transparency or few colours, else JPEG."""
    img = codec.open_image(data, "the picture")
    img.thumbnail((THUMBNAIL, THUMBNAIL))
    fmt = "PNG" if img.mode in ("RGBA", "L") or img.format in ("PNG", "GIF") else "JPEG"
    out = io.BytesIO()
    (img if fmt == "PNG" or img.mode == "RGB" else img.convert("RGB")).save(out, format=fmt, quality=85)
    return out.getvalue(), "image/png" if fmt == "PNG" else "image/jpeg"


@router.get(PREFIX + "/kbs/{name}/picture")
@page
async def picture(request: Request, name: str):
    session = await signed_in(request)
    name = kb_name(request, name)
    key = _cursor(request.query_params.get("key"))
    if not isinstance(key, dict):
        t = i18n.translator(i18n.language(request))
        raise errors.InvalidRequestError(t("which_picture"), hint=t("which_picture_hint"))
    async with as_role(request, session.role) as conn:
        data = await _picture_bytes(conn, request, name, key)
    # (decoding is CPU work: off the event loop)
    body, media = await asyncio.to_thread(thumbnail, data)
    response = secure(Response(body, media_type=media))
    response.headers["Content-Security-Policy"] = "default-src 'none'; frame-ancestors 'none'"
    response.headers["Content-Disposition"] = "inline"
    return response
