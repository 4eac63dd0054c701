"""Health, for pgmind administrators only (others get "not found", and see no link): the database,
the model server (this process), the vectorizer workers' heartbeats, each knowledge base's queue and
its oldest item's age beside a chart of the rows written per minute over the last hour (per
vectorizer, from ai_internal._throughput_minutes: ai.vectorizer_progress is internal), and the training jobs with their progress — all read as the signed-in
administrator (ai.vectorizer_worker_status, ai.vectorizer_status, ai.training_jobs), nothing more."""
from __future__ import annotations

from fastapi import APIRouter, Request

from ... import __version__, errors
from .. import i18n
from ..charts import last_minutes, minute_chart
from ..db import as_role, rows
from ..web import PREFIX, page, render, signed_in

router = APIRouter()


def require_admin(request: Request, session) -> None:
    if not session.admin:
        t = i18n.translator(i18n.language(request))
        err = errors.PgmindError(t("page_not_found"), hint=t("not_found_hint"))
        err.http_status, err.sqlstate = 404, "42704"
        raise err


@router.get(PREFIX + "/health")
@page
async def health(request: Request):
    session = await signed_in(request)
    require_admin(request, session)
    async with as_role(request, session.role) as conn:
        database = (await rows(conn, "select version() as version, pg_postmaster_start_time() as started, "
                                     "now() - pg_postmaster_start_time() as up"))[0]
        workers = await rows(conn, "select worker_id, hostname, pid, started_at, heartbeat_at, silent_for, rows_done, "
                                   "chunks_done, errors, last_error from ai.vectorizer_worker_status "
                                   "order by heartbeat_at desc limit 100")
        queues = await rows(conn, "select name, version, status, pending, leased, errors, lag, rows_per_second "
                                  "from ai.vectorizer_status order by lag desc nulls last, name limit 200")
        jobs = await rows(conn, "select id, kind, source, base_model, new_model, state, progress, step, error, owner, "
                                "created_at, heartbeat_at from ai.training_jobs order by id desc limit 50")
        written = await rows(conn, "select vectorizer, minute, rows from ai_internal._throughput_minutes(60)")
    t = i18n.translator(i18n.language(request))
    series: dict[str, dict] = {}
    for w in written:
        series.setdefault(w["vectorizer"], {})[w["minute"]] = float(w["rows"])
    throughput = minute_chart(t("rows_per_minute"), t("rows"), last_minutes(60), series, missing=0.0)
    return render(request, "health.html", session=session, database=database, version=__version__,
                  workers=workers, queues=queues, jobs=jobs,
                  throughput=throughput)
