"""A new knowledge base from uploaded files: the same code as `pgmind ingest` (pgmind.ingest), run as
the signed-in role on a connection of the gateway role, into a new table in a schema the role may
create in.  The files are written to a private temporary folder under their base names, within
count and size limits; ingest decides what it reads, and a file it cannot read (a broken PDF, text
in no known encoding, an unsupported type) is listed with its reason and stored nowhere.

Only a new table: ingest into an existing one would fire that table's triggers, which are its
owner's code, in a session that could become another role (the gateway's)."""
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
from ...ingest import CHUNKING, SUFFIXES, IngestResult, create_table, ingest
from .. import i18n
from ..db import as_role, rows
from ..web import PREFIX, page, render, require_token, signed_in, text

router = APIRouter()
MAX_FILES = 50
MAX_FILE_BYTES = 20 * 1024 * 1024
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


async def _choices(request: Request, role: str) -> tuple[list[str], list[str]]:
    async with as_role(request, role) as conn:
        models = [r["model_id"] for r in await rows(
            conn, "select model_id from ai.models where model_type = 'embedding' and usable order by model_id")]
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
    return render(request, "new.html", session=session, models=models, schemas=schemas,
                  suffixes=sorted(SUFFIXES), max_files=MAX_FILES, max_mb=MAX_FILE_BYTES // (1024 * 1024))


def _safe_name(raw: str | None, n: int) -> str:
    """A file's base name as the browser sent it, made safe to write: no folders, not hidden, no NUL
    or control characters, at most 120 characters (ingest checks the type)."""
    name = Path((raw or "").replace("\\", "/")).name
    name = "".join(c for c in name if c.isprintable() and c not in "/\x00").lstrip(".").strip()
    return name[-120:] or f"file-{n}"


def _ingest_as(settings, role: str, schema: str, folder: Path, name: str, model: str) -> IngestResult:
    """ingest() on a connection of the gateway role that has SET ROLE to the signed-in role, with the
    chosen schema alone on the search path; refused when the table or knowledge base exists."""
    with psycopg.connect(service_dsn(settings, role=GATEWAY_ROLE), autocommit=True,
                         application_name="pgmind console (ingest)") as conn:
        row = conn.execute("select rolsuper, pg_has_role(current_user, oid, 'MEMBER') from pg_roles "
                           "where rolname = %s", (role,)).fetchone()
        if row is None or row[0] or not row[1]:
            raise errors.PermissionDeniedError(f"the console cannot act as role {role}",
                                               hint="sign in with an API key of a role that is not a superuser")
        conn.execute(sql.SQL("set role {}").format(sql.Identifier(role)))
        # (names resolve in pg_catalog only: no function or operator of the role's can stand in for a
        # built-in one ingest's SQL uses; the new table is named with its schema)
        conn.execute("set search_path = pg_catalog, pg_temp")
        # one transaction, and the table made by it: the role cannot put a trigger, rule or default of
        # its own (its code, run in this gateway session) on a table nobody else can see yet
        with conn.transaction():
            taken = conn.execute("select to_regclass(%s) is not null or exists (select 1 from ai.vectorizer_status "
                                 "where name = %s)", (sql.Identifier(schema, name).as_string(conn), name)).fetchone()[0]
            if not taken:
                create_table(conn, name, schema)
                taken = not conn.execute("select c.xmin = pg_current_xact_id()::xid from pg_class c "
                                         "where c.oid = %s::regclass",
                                         (sql.Identifier(schema, name).as_string(conn),)).fetchone()[0]
            if taken:
                raise errors.InvalidRequestError(f'a table or knowledge base named "{name}" exists already',
                                                 hint="choose another name (the console makes new knowledge bases "
                                                      "only; add files to one with pgmind ingest)")
            return ingest(conn, folder, name, model=model, chunking=CHUNKING, schema=schema)


@router.post(PREFIX + "/new")
@page
async def create(request: Request):
    session = await signed_in(request)
    t = i18n.translator(i18n.language(request))
    form = await request.form(max_files=MAX_FILES + 1, max_fields=20, max_part_size=64 * 1024)
    require_token(request, session.csrf, form)
    name = text(form.get("name"), t("name"), limit=48)
    if not _NAME.match(name):
        raise errors.InvalidRequestError(f"invalid knowledge base name {name[:60]!r}",
                                         hint="lower-case letters, digits and _, starting with a letter, at most 48")
    model = text(form.get("model"), t("model"), limit=200)
    schema = text(form.get("schema"), "schema", limit=63)
    models, schemas = await _choices(request, session.role)
    if model not in models:
        raise errors.InvalidRequestError(f"model {model[:60]!r} is not an embedding model you may use",
                                         hint="choose one of the list")
    if schema not in schemas:
        raise errors.InvalidRequestError(f"you may not create tables in schema {schema[:60]!r}",
                                         hint="choose one of the list")
    files = [f for f in form.getlist("files") if hasattr(f, "filename") and f.filename]
    if not files:
        raise errors.InvalidRequestError("no files were sent", hint="choose or drop files")
    if len(files) > MAX_FILES:
        raise errors.InvalidRequestError(f"{len(files)} files; the limit is {MAX_FILES}", hint="send fewer at a time")
    folder = Path(tempfile.mkdtemp(prefix="pgmind-upload-"))
    try:
        used: set[str] = set()
        for n, f in enumerate(files, 1):
            data = await f.read(MAX_FILE_BYTES + 1)
            if len(data) > MAX_FILE_BYTES:
                raise errors.InvalidRequestError(f"{_safe_name(f.filename, n)} is over {MAX_FILE_BYTES >> 20} MB",
                                                 hint="send smaller files, or ingest a folder with pgmind ingest")
            base = _safe_name(f.filename, n)
            while base.lower() in used:
                base = f"{n}-{base}"
            used.add(base.lower())
            (folder / base).write_bytes(data)
        try:
            result = await asyncio.get_running_loop().run_in_executor(
                None, _ingest_as, request.app.state.settings, session.role, schema, folder, name, model)
        except psycopg.Error as e:
            raise from_sql_error(e) from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return render(request, "created.html", session=session, name=name, result=result)
