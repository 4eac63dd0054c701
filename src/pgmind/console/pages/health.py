"""Health, for pgmind administrators only (others get "not found", and see no link): the database,
the model server (this process), the vectorizer workers' heartbeats, each knowledge base's queue and
its oldest item's age, charts of the last hour: the rows written per minute (per vectorizer, from
ai_internal._throughput_minutes: ai.vectorizer_progress is internal) and the queue lag over time (the
console's own samples, console/lag.py), and the training jobs with their progress — read as the
signed-in administrator (ai.vectorizer_worker_status, ai.vectorizer_status, ai.training_jobs), but for
the lag samples, which the server takes as its service role."""
from __future__ import annotations

from fastapi import APIRouter, Request

from ... import __version__, errors
from .. import i18n
from ..charts import last_minutes, minute_chart
from ..db import as_role, rows
from ..web import PREFIX, page, render, signed_in, state

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
    axis = last_minutes(60)
    throughput = minute_chart(t("rows_per_minute"), t("rows"), axis, series, missing=0.0)
    # the lag's history is the console's own samples (console/lag.py); this minute's is taken now
    history = state(request).lag
    await history.sample(request.app.state.pool)
    lag = minute_chart(t("lag_over_time"), "s", axis, history.series(), missing=None)
    return render(request, "health.html", session=session, database=database, version=__version__,
                  workers=workers, queues=queues, jobs=jobs, throughput=throughput, lag=lag)
