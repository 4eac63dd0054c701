"""Models: the registry as the signed-in role sees it (ai.models: the models it may use, every model
for an administrator; secrets masked by the view), "test this model" (one call through SQL as the
role, timed — what `pgmind models test` does), and for administrators registering a model and
granting / revoking it (ai.create_model, ai.grant_model, ai.revoke_model as the role: the same
functions as psql, which check the role themselves).

A model's transform functions (header, input, output: ai.call_model runs them) are SQL functions of
whoever wrote them.  The console's sessions are the gateway's, which is a member of every API key's
role, so such a function run there could SET ROLE to any of them (docs/security.md, "No role's code
in the gateway's session").  The test therefore refuses a model whose transforms are not owned by a
trusted role (a superuser, or the install role that owns the ai schema): it is tested from psql, in
the role's own session, where SET ROLE can reach only the role's own memberships."""
from __future__ import annotations

import json
import time

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse
from psycopg.types.json import Jsonb

from ... import errors
from ...client import DEFAULT_TEST_TEXT
from .. import i18n
from ..db import as_role, rows
from ..web import PREFIX, check_csrf, page, render, secure, signed_in, text
from .health import require_admin

router = APIRouter()
TYPES = ("embedding", "chat", "image_embedding", "rerank")
AUTH_KINDS = ("none", "token", "env")


async def _models(conn) -> list[dict]:
    return await rows(conn, "select model_id, provider, model_type, model_name, url, auth, dimensions, owner, "
                            "granted_to, usable, header_fn::text as header_fn, in_fn::text as in_fn, "
                            "out_fn::text as out_fn from ai.models order by model_id")


async def _page(request: Request, session, status: int = 200, **extra):
    async with as_role(request, session.role) as conn:
        models = await _models(conn)
        providers = [r["name"] for r in await rows(conn, "select name from ai.providers order by name")]
    notice = request.query_params.get("notice")
    return render(request, "models.html", status=status, session=session, models=models, providers=providers,
                  types=TYPES, auth_kinds=AUTH_KINDS,
                  notice=notice if notice in ("registered", "granted", "revoked") else None,
                  notice_model=text(request.query_params.get("model"), "model", limit=200, required=False),
                  **{"tested": None, **extra})


@router.get(PREFIX + "/models")
@page
async def models_page(request: Request):
    session = await signed_in(request)
    return await _page(request, session)


async def untrusted_transforms(conn, model: str) -> list[tuple[str, str]]:
    """(function, owner) of each of the model's transform functions that no trusted role owns: a
    superuser, or the role that owns the ai schema (the install role)."""
    found = await rows(conn, """
        select p.oid::regprocedure::text as fn, pg_get_userbyid(p.proowner) as owner
        from ai.models m
        cross join lateral unnest(array[m.header_fn, m.in_fn, m.out_fn]::oid[]) as f(oid)
        join pg_proc p on p.oid = f.oid
        left join pg_roles r on r.oid = p.proowner
        where m.model_id = %s
          and not (coalesce(r.rolsuper, false)
                   or p.proowner = (select n.nspowner from pg_namespace n where n.nspname = 'ai'))""", (model,))
    return [(r["fn"], r["owner"]) for r in found]


@router.post(PREFIX + "/models/test")
@page
async def test_model(request: Request):
    session = await signed_in(request)
    data = await check_csrf(request, session)
    model = text(data.get("model"), "model", limit=200)
    sample = text(data.get("text"), "text", limit=2000, required=False) or DEFAULT_TEST_TEXT
    t = i18n.translator(i18n.language(request))
    # (write: a role's first model call issues its SQL token)
    async with as_role(request, session.role, write=True) as conn:
        found = {m["model_id"]: m for m in await _models(conn)}
        if model not in found:
            raise errors.UnknownModelError(f"no model {model[:60]!r} that you may use",
                                           hint="the list shows every model your role may use")
        # (checked in the transaction that calls it; only the model's owner or an administrator could
        # swap its functions in between, with ai.alter_model)
        untrusted = await untrusted_transforms(conn, model)
        if untrusted:
            raise errors.PermissionDeniedError(
                t("untrusted_transform", fns=", ".join(f"{fn} ({owner})" for fn, owner in untrusted)),
                hint=t("untrusted_transform_hint", model=model))
        kind = found[model]["model_type"]
        query = {"embedding": "select ai.embed(%s, %s)::real[]",
                 "chat": "select ai.generate(%s, %s, options => '{\"max_tokens\": 64}')"}.get(
            kind, "select ai.call_model(%s, %s)::text")
        start = time.perf_counter()
        (value,) = await (await conn.execute(query, (model, sample))).fetchone()
        seconds = time.perf_counter() - start
    shown = (f"{len(value)} dimensions: " + ", ".join(f"{x:.4f}" for x in value[:6]) + " …"
             if isinstance(value, list) else str(value)[:2000])
    return await _page(request, session, tested={"model": model, "type": kind, "seconds": seconds, "result": shown})


def _back(notice: str, model: str):
    from urllib.parse import urlencode
    return secure(RedirectResponse(f"{PREFIX}/models?" + urlencode({"notice": notice, "model": model}),
                                   status_code=303))


def _auth(data, t) -> dict:
    """The credential as ai.create_model takes it; the secret goes to the database and nowhere else
    (not the page, not the log, not a redirect)."""
    kind = data.get("auth_kind") or "none"
    if kind not in AUTH_KINDS:
        raise errors.InvalidRequestError(t("bad_auth_kind", kind=str(kind)[:20]), hint=", ".join(AUTH_KINDS))
    if kind == "token":
        return {"author_type": "token", "token": text(data.get("token"), "token", limit=4000)}
    if kind == "env":
        return {"author_type": "env", "env": text(data.get("env"), "environment variable", limit=200).strip()}
    return {"author_type": "none"}


@router.post(PREFIX + "/models/register")
@page
async def register(request: Request):
    session = await signed_in(request)
    data = await check_csrf(request, session)
    require_admin(request, session)
    t = i18n.translator(i18n.language(request))
    model = text(data.get("model_id"), "model id", limit=200).strip()
    kind = text(data.get("type"), "type", limit=40)
    if kind not in TYPES:
        raise errors.InvalidRequestError(t("bad_model_type", kind=kind[:40]), hint=", ".join(TYPES))
    raw = text(data.get("options"), "options", limit=4000, required=False).strip()
    try:
        options = json.loads(raw) if raw else {}
    except ValueError:
        options = None
    if not isinstance(options, dict):
        raise errors.InvalidRequestError(t("bad_options"), hint='{"dimensions": 1024, "timeout": 30}')
    async with as_role(request, session.role, write=True) as conn:
        # ai.create_model checks the role (administrators only), the id, provider, URL and options
        await conn.execute("select ai.create_model(%s, %s, %s, %s, %s, %s, options => %s)",
                           (model, text(data.get("url"), "URL", limit=2000, required=False).strip() or None,
                            text(data.get("provider"), "provider", limit=100), kind,
                            text(data.get("name"), "name", limit=200).strip(), Jsonb(_auth(data, t)), Jsonb(options)))
    return _back("registered", model)


@router.post(PREFIX + "/models/grant")
@router.post(PREFIX + "/models/revoke")
@page
async def grant_revoke(request: Request):
    session = await signed_in(request)
    data = await check_csrf(request, session)
    require_admin(request, session)
    model = text(data.get("model"), "model", limit=200)
    role = text(data.get("role"), "role", limit=63).strip()
    granting = request.url.path.endswith("/grant")
    async with as_role(request, session.role, write=True) as conn:
        await conn.execute("select ai.grant_model(%s, %s)" if granting else "select ai.revoke_model(%s, %s)",
                           (model, role))
    return _back("granted" if granting else "revoked", model)
