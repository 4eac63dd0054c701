"""The console's plumbing: templates (Jinja2, autoescaped), the security headers every response
carries, the signed-in session of a request, CSRF checks, text checks, and error pages (a library
error shows its message, hint and SQLSTATE; anything else a plain "something went wrong", never
Python's text, which goes to the log)."""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import secrets
from pathlib import Path
from typing import Any, Awaitable, Callable

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import FormData

from ..errors import InvalidRequestError, PgmindError
from ..models.validation import check_text
from . import csrf, i18n
from .lag import LagHistory
from .sessions import COOKIE, PRE_COOKIE, Session, SessionStore, SignInLimiter

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
PREFIX = "/console"
MAX_FORM_BYTES = 64 * 1024       # a console form is a question or a few settings
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

templates = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                               autoescape=True)
templates.filters["tojson_attr"] = lambda v: json.dumps(v, ensure_ascii=False, sort_keys=True, default=str)


class SignInNeeded(Exception):
    """No live session: the sign-in page (or, for htmx, a redirect header)."""


class CsrfRefused(Exception):
    pass


def state(request: Request):
    """The console's per-app state, made on first use (the app only includes the router); the queue
    lag sampler starts with it."""
    st = getattr(request.app.state, "console", None)
    if st is None:
        st = request.app.state.console = _State()
        st.lag.start(request.app.state.pool)
    return st


class _State:
    def __init__(self):
        self.sessions = SessionStore()
        self.limiter = SignInLimiter()
        self.lag = LagHistory()


def secure(response: Response) -> Response:
    for k, v in SECURITY_HEADERS.items():
        response.headers[k] = v
    return response


def pre_token(request: Request) -> str:
    return request.cookies.get(PRE_COOKIE) or ""


def render(request: Request, template: str, status: int = 200, session: Session | None = None,
           **context: Any) -> HTMLResponse:
    lang = i18n.language(request)
    fresh_pre = None
    token = session.csrf if session else pre_token(request)
    if not token:                 # a signed-out visitor's first page: a token for the sign-in form
        token = fresh_pre = secrets.token_urlsafe(32)
    html = templates.get_template(template).render(
        t=i18n.translator(lang), lang=lang, session=session, csrf_token=token, prefix=PREFIX,
        path=request.url.path, **context)
    response = secure(HTMLResponse(html, status_code=status))
    if fresh_pre:
        response.set_cookie(PRE_COOKIE, fresh_pre, httponly=True, samesite="strict", path=PREFIX)
    return response


def error_page(request: Request, message: str, hint: str | None = None, sqlstate: str | None = None,
               status: int = 400, session: Session | None = None) -> HTMLResponse:
    return render(request, "error.html", status=status, session=session, message=message, hint=hint,
                  sqlstate=sqlstate)


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


async def live_role(request: Request, digest: str) -> tuple[str, bool] | None:
    """(role, is an administrator) of a live API key, by its sha256; None once revoked, its role
    dropped or made a superuser.  Read by the server's service role, as the key check of the HTTP
    API is (registry.credential_role)."""
    async with request.app.state.pool.connection() as conn:
        row = await (await conn.execute(
            """select r.rolname, ai_internal._is_admin(r.rolname) from ai.api_keys k
               join pg_roles r on r.oid = k.role_oid
               where k.key_sha256 = %s and k.revoked_at is null
                         and not ai_internal._reaches_superuser(r.oid)""", (digest,))).fetchone()
    return (row[0], bool(row[1])) if row else None


async def signed_in(request: Request) -> Session:
    st = state(request)
    s = st.sessions.get(request.cookies.get(COOKIE))
    if s is None:
        raise SignInNeeded()
    found = await live_role(request, s.key_sha256)
    if found is None or found[0] != s.role:
        st.sessions.delete_key(s.key_sha256)
        raise SignInNeeded()
    s.admin = found[1]
    return s


async def form(request: Request) -> FormData:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_FORM_BYTES:
        raise InvalidRequestError(f"the form is over {MAX_FORM_BYTES // 1024} KB", hint="send a shorter text")
    return await request.form(max_files=0, max_fields=100)


async def check_csrf(request: Request, session: Session | None) -> FormData:
    """The form of a state-changing request, once its origin and token are checked."""
    data = await form(request)
    require_token(request, session.csrf if session else pre_token(request), data)
    return data


def require_token(request: Request, expected: str | None, data: FormData) -> None:
    """A state-changing request's origin and CSRF token (header, else form field), checked: the one
    check for every form, multipart uploads (read with their own limits) included."""
    given = request.headers.get(csrf.HEADER) or data.get(csrf.FIELD)
    if not csrf.same_origin(request) or not csrf.token_matches(expected, given if isinstance(given, str) else None):
        raise CsrfRefused()


def text(value, where: str, limit: int = 2000, required: bool = True) -> str:
    """A text field that can reach PostgreSQL: valid Unicode, no NUL, under the limit."""
    if value is None or value == "":
        if required:
            raise InvalidRequestError(f"{where} is empty", hint=f"fill in {where}")
        return ""
    if not isinstance(value, str):
        raise InvalidRequestError(f"{where} is not a text", hint="send text")
    check_text(value, where, limit)
    if "\x00" in value:
        raise InvalidRequestError(f"{where} holds a NUL character", hint="PostgreSQL text cannot hold one")
    return value


def integer(value, where: str, default: int, low: int, high: int) -> int:
    if value in (None, ""):
        return default
    try:
        n = int(str(value))
    except ValueError:
        raise InvalidRequestError(f"{where} is not a whole number", hint=f"give a number from {low} to {high}") from None
    if not low <= n <= high:
        raise InvalidRequestError(f"{where} is {n}; it must be from {low} to {high}", hint=f"give a number from {low} to {high}")
    return n


def page(handler: Callable[..., Awaitable[Response]]):
    """Every console route: no session → the sign-in page; a refused CSRF check → 403; a library
    error → an error page with its SQLSTATE, message and hint; anything else → a plain 500 page
    (the details go to the server's log)."""
    @functools.wraps(handler)
    async def wrapped(request: Request, *args, **kwargs):
        t = i18n.translator(i18n.language(request))
        session = None
        try:
            return await handler(request, *args, **kwargs)
        except SignInNeeded:
            if request.headers.get("hx-request"):
                return secure(Response(status_code=204, headers={"HX-Redirect": f"{PREFIX}/signin"}))
            # (the cookie is left alone: a cross-site request arrives without it, and its response must
            # not sign the user out)
            return secure(RedirectResponse(f"{PREFIX}/signin?expired=1", status_code=303))
        except CsrfRefused:
            return error_page(request, t("csrf"), t("csrf_hint"), status=403)
        except PgmindError as e:
            try:
                session = state(request).sessions.get(request.cookies.get(COOKIE))
            except Exception:
                session = None
            return error_page(request, e.message, e.hint, e.sqlstate, status=e.http_status
                              if 400 <= e.http_status < 600 else 500, session=session)
        except Exception:
            log.exception("console: unexpected error on %s", request.url.path)
            return error_page(request, t("internal"), t("internal_hint"), status=500)
    return wrapped
