"""Models: the registry as the signed-in role sees it (ai.models: the models it may use, every model
for an administrator; secrets masked by the view), and "test this model": one call through SQL as
the role, timed — what `pgmind models test` (Pgmind.test_model) does."""
from __future__ import annotations

import time

from fastapi import APIRouter, Request

from ... import errors
from ...client import DEFAULT_TEST_TEXT
from ..db import as_role, rows
from ..web import PREFIX, check_csrf, page, render, signed_in, text

router = APIRouter()


async def _models(request: Request, role: str) -> list[dict]:
    async with as_role(request, role) as conn:
        return await rows(conn, "select model_id, provider, model_type, model_name, url, auth, dimensions, owner, "
                                "granted_to, usable from ai.models order by model_id")


@router.get(PREFIX + "/models")
@page
async def models_page(request: Request):
    session = await signed_in(request)
    return render(request, "models.html", session=session, models=await _models(request, session.role), tested=None)


@router.post(PREFIX + "/models/test")
@page
async def test_model(request: Request):
    session = await signed_in(request)
    data = await check_csrf(request, session)
    model = text(data.get("model"), "model", limit=200)
    sample = text(data.get("text"), "text", limit=2000, required=False) or DEFAULT_TEST_TEXT
    found = {m["model_id"]: m for m in await _models(request, session.role)}
    if model not in found:
        raise errors.UnknownModelError(f"no model {model[:60]!r} that you may use",
                                       hint="the list shows every model your role may use")
    kind = found[model]["model_type"]
    query = {"embedding": "select ai.embed(%s, %s)::real[]",
             "chat": "select ai.generate(%s, %s, options => '{\"max_tokens\": 64}')"}.get(
        kind, "select ai.call_model(%s, %s)::text")
    # (write: a role's first model call issues its SQL token)
    async with as_role(request, session.role, write=True) as conn:
        start = time.perf_counter()
        (value,) = await (await conn.execute(query, (model, sample))).fetchone()
        seconds = time.perf_counter() - start
    shown = (f"{len(value)} dimensions: " + ", ".join(f"{x:.4f}" for x in value[:6]) + " …"
             if isinstance(value, list) else str(value)[:2000])
    return render(request, "models.html", session=session, models=list(found.values()),
                  tested={"model": model, "type": kind, "seconds": seconds, "result": shown})
