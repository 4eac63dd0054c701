"""A new knowledge base from uploaded files: the same code as `pgmind ingest` (pgmind.ingest), run as
the signed-in role on a connection of the gateway role, into a new table in a schema the role may
create in.  The files are written to a private temporary folder under their base names, within
count and size limits; ingest decides what it reads, and a file it cannot read (a broken PDF, text
in no known encoding, an unsupported type) is listed with its reason and stored nowhere.

Only a new table: ingest into an existing one would fire that table's triggers, which are its
owner's code, in a session that could become another role (the gateway's).

A new image collection from uploaded pictures: the same code as `pgmind ingest-images`
(pgmind.images.collection), under the same rules, with the images page's limits and its check of
each file's first bytes (a file that is no picture refuses the upload; a picture Pillow cannot
decode is listed with its reason and stored nowhere)."""
from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
from pathlib import Path

import psycopg
from fastapi import APIRouter, Request
from psycopg import sql

from ... import errors
from ...db.connection import GATEWAY_ROLE, from_sql_error, service_dsn
from ...images import collection
from ...ingest import CHUNKING, SUFFIXES, IngestResult, create_table, ingest
from .. import i18n
from ..db import as_role, rows
from ..web import PREFIX, page, render, require_token, signed_in, text
from .images import MAX_PICTURE, picture_type

router = APIRouter()
MAX_FILES = 50
MAX_FILE_BYTES = 20 * 1024 * 1024
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


# a picture's suffix by its first bytes (ingest-images reads files by suffix; a name may have none)
_PICTURE_SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp"}


async def _choices(request: Request, role: str, kind: str = "embedding") -> tuple[list[str], list[str]]:
    """The models of ``kind`` (embedding, image_embedding) the role may use, and the schemas it may
    create tables in."""
    async with as_role(request, role) as conn:
        models = [r["model_id"] for r in await rows(
            conn, "select model_id from ai.models where model_type = %s and usable order by model_id", (kind,))]
        schemas = [r["nspname"] for r in await rows(
            conn, """select nspname from pg_namespace where has_schema_privilege(oid, 'create')
                     and nspname not in ('ai', 'ai_internal', 'polar_ai', 'information_schema')
                     and not starts_with(nspname, 'pg_') order by nspname""")]
    return models, schemas


@router.get(PREFIX + "/new")
@page
async def new_form(request: Request):
    session = await signed_in(request)
    models, schemas = await _choices(request, session.role)
    image_models, _ = await _choices(request, session.role, "image_embedding")
    return render(request, "new.html", session=session, models=models, schemas=schemas, image_models=image_models,
                  suffixes=sorted(SUFFIXES), max_files=MAX_FILES, max_mb=MAX_FILE_BYTES // (1024 * 1024),
                  max_picture_mb=MAX_PICTURE >> 20)


def _safe_name(raw: str | None, n: int) -> str:
    """A file's base name as the browser sent it, made safe to write: no folders, not hidden, no NUL
    or control characters, at most 120 characters (ingest checks the type)."""
    name = Path((raw or "").replace("\\", "/")).name
    name = "".join(c for c in name if c.isprintable() and c not in "/\x00")[-120:]
    while len(name.encode()) > 240:      # (a file name is at most 255 bytes: 120 Chinese characters are 360)
        name = name[1:]
    return name.lstrip(". \t").rstrip() or f"file-{n}"


def _ingest_as(settings, role: str, schema: str, folder: Path, name: str, model: str) -> IngestResult:
    """ingest() on a connection of the gateway role that has SET ROLE to the signed-in role, into a
    new table of the chosen schema; refused when the table or knowledge base exists."""
    return _into_new_table(settings, role, schema, name, create_table,
                           lambda conn: ingest(conn, folder, name, model=model, chunking=CHUNKING, schema=schema),
                           "pgmind ingest")


def _ingest_images_as(settings, role: str, schema: str, folder: Path, name: str,
                      model: str) -> collection.ImageIngestResult:
    """ingest_images() as _ingest_as runs ingest().  The pictures are stored in the table (img), keyed
    by their names: the upload folder is deleted when this returns, and a path would make the
    vectorizer (and the picture view) load a file through ai.load_file, which needs the folder on the
    administrators' allow-list — a server folder that every role's rows could then name, and that
    this role may not add.  Bytes in the role's own table are read with the role's privileges only."""
    return _into_new_table(settings, role, schema, name, collection.create_table,
                           lambda conn: collection.ingest_images(conn, folder, name, model=model, store_bytes=True,
                                                                 relative=True, schema=schema),
                           "pgmind ingest-images")


def _into_new_table(settings, role: str, schema: str, name: str, create, fill, command: str):
    """``create(conn, name, schema)`` then ``fill(conn)`` in one transaction, on a connection of the
    gateway role that has SET ROLE to the signed-in role, with pg_catalog alone on the search path;
    refused when the table or knowledge base exists."""
    with psycopg.connect(service_dsn(settings, role=GATEWAY_ROLE), autocommit=True,
                         application_name="pgmind console (ingest)") as conn:
        # one transaction, and the table made by it: the role cannot put a trigger, rule or default of
        # its own (its code, run in this gateway session) on a table nobody else can see yet; the check
        # of the role is in it too, right before SET LOCAL ROLE
        with conn.transaction():
            conn.execute("select ai_internal._act_as(%s)", (role,))
            # (names resolve in pg_catalog only: no function or operator of the role's can stand in for a
            # built-in one ingest's SQL uses; the new table is named with its schema)
            conn.execute("set local search_path = pg_catalog, pg_temp")
            taken = conn.execute("select to_regclass(%s) is not null or exists (select 1 from ai.vectorizer_status "
                                 "where name = %s)", (sql.Identifier(schema, name).as_string(conn), name)).fetchone()[0]
            if not taken:
                create(conn, name, schema)
                taken = not conn.execute("select c.xmin = pg_current_xact_id()::xid from pg_class c "
                                         "where c.oid = %s::regclass",
                                         (sql.Identifier(schema, name).as_string(conn),)).fetchone()[0]
            if taken:
                raise errors.InvalidRequestError(f'a table or knowledge base named "{name}" exists already',
                                                 hint="choose another name (the console makes new knowledge bases "
                                                      f"only; add files to one with {command})")
            return fill(conn)


async def _form(request: Request, session, t, kind: str):
    """The form of a new knowledge base, its name, model and schema checked: (form, name, model, schema)."""
    form = await request.form(max_files=MAX_FILES + 1, max_fields=20, max_part_size=64 * 1024)
    require_token(request, session.csrf, form)
    name = text(form.get("name"), t("name"), limit=48)
    if not _NAME.match(name):
        raise errors.InvalidRequestError(f"invalid knowledge base name {name[:60]!r}",
                                         hint="lower-case letters, digits and _, starting with a letter, at most 48")
    model = text(form.get("model"), t("model"), limit=200)
    schema = text(form.get("schema"), "schema", limit=63)
    models, schemas = await _choices(request, session.role, kind)
    if model not in models:
        if kind == "image_embedding":
            raise errors.InvalidRequestError(t("not_an_image_model", model=repr(model[:60])),
                                             hint="choose one of the list")
        raise errors.InvalidRequestError(f"model {model[:60]!r} is not an embedding model you may use",
                                         hint="choose one of the list")
    if schema not in schemas:
        raise errors.InvalidRequestError(f"you may not create tables in schema {schema[:60]!r}",
                                         hint="choose one of the list")
    return form, name, model, schema


async def _upload_then(form, t, limit: int, hint: str, accept, ingest_into):
    """The form's files written to a fresh folder under safe, distinct names, each at most ``limit``
    bytes and renamed or refused by ``accept(name, data)``; then ``ingest_into(folder)`` in a thread
    (it blocks on the database and the model).  The folder is deleted whatever happens."""
    files = [f for f in form.getlist("files") if hasattr(f, "filename") and f.filename]
    if not files:
        raise errors.InvalidRequestError(t("no_files"), hint=hint)
    if len(files) > MAX_FILES:
        raise errors.InvalidRequestError(t("too_many_files", n=len(files), limit=MAX_FILES), hint=hint)
    folder = Path(tempfile.mkdtemp(prefix="pgmind-upload-"))
    try:
        used: set[str] = set()
        for n, f in enumerate(files, 1):
            base = _safe_name(f.filename, n)
            data = await f.read(limit + 1)
            if len(data) > limit:
                raise errors.InvalidRequestError(t("upload_file_too_big", file=base, mb=limit >> 20), hint=hint)
            base = accept(base, data)
            while base.lower() in used:
                base = f"{n}-{base}"
            used.add(base.lower())
            (folder / base).write_bytes(data)
        try:
            return await asyncio.get_running_loop().run_in_executor(None, ingest_into, folder)
        except psycopg.Error as e:
            raise from_sql_error(e) from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@router.post(PREFIX + "/new")
@page
async def create(request: Request):
    session = await signed_in(request)
    t = i18n.translator(i18n.language(request))
    form, name, model, schema = await _form(request, session, t, "embedding")
    settings = request.app.state.settings
    result = await _upload_then(
        form, t, MAX_FILE_BYTES, t("upload_files_hint", n=MAX_FILES, mb=MAX_FILE_BYTES >> 20),
        lambda base, data: base,                  # (ingest checks the type, and reports what it skips)
        lambda folder: _ingest_as(settings, session.role, schema, folder, name, model))
    return render(request, "created.html", session=session, name=name, result=result)


@router.post(PREFIX + "/new/images")
@page
async def create_images(request: Request):
    session = await signed_in(request)
    t = i18n.translator(i18n.language(request))
    hint = t("upload_pictures_hint", n=MAX_FILES, mb=MAX_PICTURE >> 20)
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_FILES * (MAX_PICTURE + 64 * 1024):
        raise errors.InvalidRequestError(t("upload_too_big", mb=(MAX_FILES * MAX_PICTURE) >> 20), hint=hint)
    form, name, model, schema = await _form(request, session, t, "image_embedding")

    def accept(base: str, data: bytes) -> str:
        # (by its first bytes, as the images page checks a picture: a name or a Content-Type says nothing;
        # one that starts as a picture and is broken is ingest-images' to report)
        kind = picture_type(data)
        if kind is None:
            raise errors.InvalidRequestError(t("upload_not_a_picture", file=base), hint=hint)
        return base if Path(base).suffix.lower() in collection.SUFFIXES else base[:115] + _PICTURE_SUFFIX[kind]

    settings = request.app.state.settings
    result = await _upload_then(form, t, MAX_PICTURE, hint, accept,
                                lambda folder: _ingest_images_as(settings, session.role, schema, folder, name, model))
    return render(request, "created.html", session=session, name=name, result=result, images=True)
