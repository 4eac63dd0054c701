"""The model server's HTTP app: wires the database pool, the registry, the model hub and the call
log, mounts one router per protocol, and turns library errors into each protocol's error shape."""
from __future__ import annotations

import asyncio
import json
import logging
import uuid
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from prometheus_client import generate_latest
from psycopg_pool import AsyncConnectionPool

from .. import __version__, console
from ..config import Settings
from ..db.connection import GATEWAY_ROLE, service_dsn
from ..errors import InvalidRequestError, PermissionDeniedError, PgmindError
from ..models.hub import ModelHub
from ..models.outbound import OutboundPolicy
from ..models.registry import Registry
from ..images.loader import Loader, load_allow_list
from . import dashscope_api, images_api, openai_api, pgmind_api, rag_api, search_api
from .call_log import CallLog
from .deps import ClientGone, authenticate
from .metrics import BATCH_SIZE, REGISTRY, VECTORIZER_QUERY, set_vectorizer_gauges
from .service import ModelService

log = logging.getLogger(__name__)


class BodyLimit:
    """Refuses request bodies over the limit (413) before they are read into memory, whether the
    client sends Content-Length or streams the body chunked."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await self._too_large(send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge()
            return message
        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._too_large(send)

    async def _too_large(self, send):
        err = PgmindError(f"the request body is over {self.max_bytes // (1024 * 1024)} MB",
                          hint="send fewer or shorter inputs per request (PGMIND_MAX_BODY_MB sets the limit)")
        body = json.dumps({"error": {**err.to_dict()["error"], "type": "invalid_request_error",
                                     "code": "request_too_large"}}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


def _start_worker(settings: Settings, hub: ModelHub):
    """The in-process vectorizer worker, on the server's own hub: one copy of each local model."""
    import threading
    from ..vectorizer.embedder import Embedder
    from ..vectorizer.worker import Worker
    stop = threading.Event()
    dsn = service_dsn(settings)
    w = Worker(settings, dsn, embedder=Embedder(settings, dsn, hub=hub, loop=asyncio.get_running_loop()))
    thread = threading.Thread(target=w.run, args=(stop,), name="vectorizer-worker", daemon=True)
    thread.start()
    return stop, thread


def _start_trainer(settings: Settings):
    """Runs queued training jobs (ai.finetune) one at a time, in a thread of the server that also
    runs the vectorizer worker; a job whose worker died is taken over here too (training.jobs)."""
    import threading
    from ..training.jobs import run_next
    stop = threading.Event()

    def loop():
        dsn = service_dsn(settings)
        while not stop.is_set():
            try:
                if run_next(settings, dsn) is not None:
                    continue
            except Exception:       # (a job's own errors are in its row: this is the database gone)
                log.exception("training runner")
            stop.wait(5.0)
    thread = threading.Thread(target=loop, name="trainer", daemon=True)
    thread.start()
    return stop, thread


async def _reset_gateway(conn) -> None:
    """Back to the gateway's own state before the pool hands the connection to the next request.
    RESET ALL leaves the role as it is: a role set for the session (set_config('role', …, false) in
    code that ran there) is reset by name, and a connection still not the gateway's own is dropped
    (the pool discards one whose reset fails)."""
    async with conn.pipeline():        # (one round trip: it runs after every request)
        await conn.execute("reset role")
        await conn.execute("reset all")
        (own,) = await (await conn.execute("select current_user = session_user")).fetchone()
    if not own:
        raise RuntimeError("a gateway connection still acts as another role: dropped")


def create_app(settings: Settings, token: str, worker: bool = False) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # the server's own work (registry, call log, allow-lists) as pgmind's service role; HTTP search as
        # the gateway role, which only ever SETs ROLE to an API key's role (docs/security.md)
        pool = AsyncConnectionPool(service_dsn(settings), min_size=1, max_size=8, open=False,
                                   kwargs={"application_name": "pgmind serve", "autocommit": True})
        await pool.open(wait=True, timeout=30)
        # (the gateway's sessions act as many roles: names resolve in pg_catalog only, so no role's
        # function or operator can stand in for a built-in one a query calls, and what a request's
        # code set — a role, a setting — is reset before the connection serves the next request)
        search_pool = AsyncConnectionPool(service_dsn(settings, role=GATEWAY_ROLE), min_size=0, max_size=8,
                                          open=False, reset=_reset_gateway,
                                          kwargs={"application_name": "pgmind serve (search)", "autocommit": True,
                                                  "options": "-c search_path=pg_catalog,pg_temp"})
        await search_pool.open(wait=False)
        call_log = CallLog(pool)
        call_log.start()
        hub = ModelHub(settings, on_batch=lambda model, n: BATCH_SIZE.labels(model).observe(n))
        registry = Registry(pool)

        async def allowed_hosts() -> list[str]:
            async with pool.connection() as conn:
                return [r[0] for r in await (await conn.execute("select pattern from ai.outbound_allow")).fetchall()]
        # read on every outbound request (one small query beside a remote call): a change applies at once
        hub.transport.policy = OutboundPolicy(allowed_hosts, ttl=0)
        listener = asyncio.get_running_loop().create_task(registry.listen(service_dsn(settings)))
        app.state.service = ModelService(registry, hub, call_log, settings.log_payloads)
        # read on every load (one small query): a change by an administrator applies at once
        app.state.service.loader = Loader(lambda: load_allow_list(pool), settings.secret_env_names, ttl=0)
        app.state.pool = pool
        app.state.search_pool = search_pool
        app.state.hub = hub
        background = _start_worker(settings, hub) if worker else None
        trainer = _start_trainer(settings) if worker else None
        try:
            yield
        finally:
            if trainer is not None:
                trainer[0].set()        # (a job in progress is taken over by the next server: checkpoints)
            if background is not None:
                background[0].set()
                # the worker may be waiting on this loop (a model call): let it finish off the loop
                await asyncio.get_running_loop().run_in_executor(None, background[1].join, 30)
            listener.cancel()
            await call_log.aclose()
            await hub.aclose()
            await app.state.service.loader.aclose()
            await search_pool.close()
            await pool.close()

    # /docs and /openapi.json are not open: the schema lists every route (see the authenticated
    # /openapi.json below, and docs/http.md)
    app = FastAPI(title="pgmind model server", version=__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None,
                  description="Local and remote models behind the OpenAI, DashScope and pgmind protocols.")
    app.state.token = token
    app.state.settings = settings
    app.add_middleware(BodyLimit, max_bytes=int(settings.max_body_mb * 1024 * 1024))

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
                                                                hint="see docs/http.md, or the OpenAPI spec "
                                                                     "at GET /openapi.json (with a credential)"))

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, exc: ClientGone):
        return Response(status_code=499)     # nginx's "client closed request": nobody reads it

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception):
        log.exception("unexpected error on %s", request.url.path)
        # (the exception's text can hold anything, a provider's echo of a key included: it goes to the log)
        err = PgmindError(f"internal error ({type(exc).__name__})", hint="see the model server's log")
        return JSONResponse(err.to_dict(), status_code=500)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        """Unknown routes and wrong methods in the protocols' error shape, not FastAPI's."""
        err = InvalidRequestError(f"{request.method} {request.url.path}: {exc.detail}",
                                  hint="see docs/http.md for the routes the model server has")
        return await pgmind_error(request, err) if exc.status_code == 400 else JSONResponse(
            {"error": {**err.to_dict()["error"], "type": "invalid_request_error",
                       "code": "not_found" if exc.status_code == 404 else str(exc.status_code)}},
            status_code=exc.status_code)

    @app.get("/health", tags=["ops"])
    async def health(request: Request):
        async with request.app.state.pool.connection() as conn:
            await conn.execute("select 1")
        return {"status": "ok", "version": __version__}

    @app.get("/openapi.json", tags=["ops"], include_in_schema=False, dependencies=[Depends(authenticate)])
    async def openapi_schema():
        return app.openapi()

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    async def metrics(request: Request):
        if not settings.public_metrics:      # model ids and vectorizer names are not for everyone
            await authenticate(request)
            if not request.state.principal.internal:
                # every owner's vectorizer names are the operator's business, not an API key's
                raise PermissionDeniedError("/metrics is for the operator",
                                            hint="scrape it with the server's token (pgmind serve --show-token)")
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
    app.include_router(rag_api.router)
    app.include_router(images_api.router)
    app.include_router(images_api.internal)
    app.include_router(console.router)      # the web console at /console (docs/console.md)
    return app
