"""The model server's HTTP app: wires the database pool, the registry, the model hub and the call
log, mounts one router per protocol, and turns library errors into each protocol's error shape."""
from __future__ import annotations

import asyncio
import logging
import uuid
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import generate_latest
from psycopg_pool import AsyncConnectionPool

from .. import __version__
from ..config import Settings
from ..db.connection import resolve_dsn
from ..errors import InvalidRequestError, PgmindError
from ..models.hub import ModelHub
from ..models.registry import Registry
from . import dashscope_api, openai_api, pgmind_api, search_api
from .call_log import CallLog
from .metrics import BATCH_SIZE, REGISTRY, VECTORIZER_QUERY, set_vectorizer_gauges
from .service import ModelService

log = logging.getLogger(__name__)


def create_app(settings: Settings, token: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        pool = AsyncConnectionPool(resolve_dsn(settings), min_size=1, max_size=8, open=False,
                                   kwargs={"application_name": "pgmind serve", "autocommit": True})
        await pool.open(wait=True, timeout=30)
        call_log = CallLog(pool)
        call_log.start()
        hub = ModelHub(settings, on_batch=lambda model, n: BATCH_SIZE.labels(model).observe(n))
        registry = Registry(pool)
        listener = asyncio.get_running_loop().create_task(registry.listen(resolve_dsn(settings)))
        app.state.service = ModelService(registry, hub, call_log, settings.log_payloads)
        app.state.pool = pool
        try:
            yield
        finally:
            listener.cancel()
            await call_log.aclose()
            await hub.aclose()
            await pool.close()

    app = FastAPI(title="pgmind model server", version=__version__, lifespan=lifespan,
                  description="Local and remote models behind the OpenAI, DashScope and pgmind protocols.")
    app.state.token = token
    app.state.settings = settings

    @app.exception_handler(PgmindError)
    async def pgmind_error(request: Request, exc: PgmindError):
        if request.url.path.startswith("/api/v1/"):   # DashScope's error shape
            return JSONResponse({"code": exc.error_type, "message": exc.message, "request_id": str(uuid.uuid4()),
                                 "sqlstate": exc.sqlstate, "hint": exc.hint}, status_code=exc.http_status)
        return JSONResponse(exc.to_dict(), status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors())
        return await pgmind_error(request, InvalidRequestError(f"invalid request: {problems}",
                                                                hint="see the OpenAPI spec at /docs"))

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception):
        log.exception("unexpected error on %s", request.url.path)
        err = PgmindError(f"internal error: {type(exc).__name__}: {exc}", hint="see the model server's log")
        return JSONResponse(err.to_dict(), status_code=500)

    @app.get("/health", tags=["ops"])
    async def health(request: Request):
        async with request.app.state.pool.connection() as conn:
            await conn.execute("select 1")
        return {"status": "ok", "version": __version__}

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    async def metrics(request: Request):
        try:
            async with request.app.state.pool.connection() as conn:
                set_vectorizer_gauges(await (await conn.execute(VECTORIZER_QUERY)).fetchall())
        except Exception as e:  # the model metrics are still worth serving
            log.warning("vectorizer metrics unavailable: %s", e)
        return PlainTextResponse(generate_latest(REGISTRY).decode(), media_type="text/plain; version=0.0.4")

    app.include_router(openai_api.router)
    app.include_router(dashscope_api.router)
    app.include_router(pgmind_api.router)
    app.include_router(search_api.router)
    return app
