"""The model call log, for pgmind administrators only (others get "not found", and see no link): the
calls with filters (model, operation, caller role, errors only, a time range), newest first and paged
by id (keyset: the next page starts below the last id shown), charts of the last hour (calls per
minute, latency p50/p95) and the recent errors.  ai.call_log is the service role's; an administrator
reads it through ai_internal._call_log_page and _call_log_minutes (sql/functions/440_console.sql),
which check the role themselves and return no payloads."""
from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import urlencode

from fastapi import APIRouter, Request

from ...errors import InvalidRequestError
from .. import i18n
from ..charts import last_minutes, minute_chart
from ..db import as_role, rows
from ..web import PREFIX, integer, page, render, signed_in, text
from .health import require_admin

router = APIRouter()
PAGE = 50
OPERATIONS = ("embed", "chat", "call", "rerank", "image")


def _when(value, where: str) -> datetime | None:
    """A datetime-local field (2026-12-07T14:05, read as UTC) or an ISO time with its zone."""
    value = text(value, where, limit=40, required=False).strip()
    if not value:
        return None
    try:
        t = datetime.fromisoformat(value)
        # (in UTC: the page shows it so, and an offset that leaves the calendar is caught here)
        return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
    except (ValueError, OverflowError):
        raise InvalidRequestError(f"{where} is not a date and time: {value[:40]!r}",
                                  hint="give it as 2026-12-07T14:05 (UTC)") from None


def filters(params) -> dict:
    """The query string's filters, checked: anything else is a 400 page saying what is wrong."""
    operation = text(params.get("operation"), "operation", limit=40, required=False) or None
    if operation is not None and operation not in OPERATIONS:
        raise InvalidRequestError(f"unknown operation {operation[:40]!r}", hint="one of " + ", ".join(OPERATIONS))
    f = {"model": text(params.get("model"), "model", limit=200, required=False).strip() or None,
         "operation": operation,
         "caller": text(params.get("caller"), "caller", limit=63, required=False).strip() or None,
         "errors": params.get("errors") in ("1", "on", "true"),
         "since": _when(params.get("since"), "since"), "until": _when(params.get("until"), "until")}
    if f["since"] and f["until"] and f["since"] >= f["until"]:
        raise InvalidRequestError("the time range is empty: since is not before until",
                                  hint="give a since before the until")
    return f


@router.get(PREFIX + "/models/calls")
@page
async def calls_page(request: Request):
    session = await signed_in(request)
    require_admin(request, session)
    q = request.query_params
    f = filters(q)
    before = integer(q.get("before"), "before", 0, 1, 2 ** 63 - 1) or None
    t = i18n.translator(i18n.language(request))
    async with as_role(request, session.role) as conn:
        calls = await rows(conn, "select * from ai_internal._call_log_page(%s, %s, %s, %s, %s, %s, %s, %s)",
                           (f["model"], f["operation"], f["caller"], f["errors"], f["since"], f["until"], before,
                            PAGE + 1))
        minutes = await rows(conn, "select * from ai_internal._call_log_minutes(%s, %s, %s, 60)",
                             (f["model"], f["operation"], f["caller"]))
        recent_errors = await rows(conn, "select * from ai_internal._call_log_page(%s, %s, %s, true, null, null, "
                                         "null, 10)", (f["model"], f["operation"], f["caller"]))
        models = [r["model_id"] for r in await rows(conn, "select model_id from ai.models order by model_id")]
    more = len(calls) > PAGE
    calls = calls[:PAGE]
    shown = {k: ("1" if v is True else v.isoformat() if isinstance(v, datetime) else v)
             for k, v in f.items() if v not in (None, False)}
    next_url = (f"{PREFIX}/models/calls?" + urlencode({**shown, "before": calls[-1]["id"]})) if more else None
    axis = last_minutes(60)
    per_minute = minute_chart(t("calls_per_minute"), t("calls"), axis,
                              {t("calls"): {m["minute"]: float(m["calls"]) for m in minutes},
                               t("errors"): {m["minute"]: float(m["errors"]) for m in minutes}}, kind="bars")
    latency = minute_chart(t("latency"), "ms", axis,
                           {"p50": {m["minute"]: m["p50_ms"] for m in minutes},
                            "p95": {m["minute"]: m["p95_ms"] for m in minutes}})
    return render(request, "calls.html", session=session, calls=calls, f=f, next_url=next_url,
                  first_url=(f"{PREFIX}/models/calls?" + urlencode(shown)) if before else None,
                  operations=OPERATIONS, models=models, per_minute=per_minute, latency=latency,
                  recent_errors=recent_errors,
                  since_value=f["since"].astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M") if f["since"] else "",
                  until_value=f["until"].astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M") if f["until"] else "")
