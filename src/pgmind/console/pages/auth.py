"""Sign in with an API key, sign out, switch the language, and the static files."""
from __future__ import annotations

import mimetypes

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from .. import i18n
from ..sessions import COOKIE, IDLE_SECONDS, PRE_COOKIE
from ..web import (HERE, PREFIX, check_csrf, error_page, key_digest, live_role, page, render, secure, signed_in,
                   state, text)

router = APIRouter()
STATIC = HERE / "static"


@router.get(PREFIX)
@router.get(PREFIX + "/")
@page
async def home(request: Request):
    await signed_in(request)
    return secure(RedirectResponse(f"{PREFIX}/kbs", status_code=303))


@router.get(PREFIX + "/signin")
@page
async def signin_form(request: Request):
    t = i18n.translator(i18n.language(request))
    notice = t("session_gone") if request.query_params.get("expired") else (
        t("signed_out") if request.query_params.get("out") else None)
    return render(request, "signin.html", notice=notice)


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.post(PREFIX + "/signin")
@page
async def signin(request: Request):
    t = i18n.translator(i18n.language(request))
    st = state(request)
    client = _client(request)
    if not st.limiter.allowed(client):
        response = error_page(request, t("too_many"), t("too_many_hint", seconds=st.limiter.retry_after(client)),
                              status=429)
        response.headers["Retry-After"] = str(st.limiter.retry_after(client))
        return response
    data = await check_csrf(request, None)
    key = text(data.get("key"), t("api_key"), limit=200).strip()
    # only API keys sign in: not the server's token, not a role's SQL token
    found = await live_role(request, key_digest(key)) if key.startswith("pgmk-") else None
    if found is None:
        st.limiter.failed(client)
        return render(request, "signin.html", status=401, error=t("bad_key"), hint=t("bad_key_hint"))
    st.limiter.succeeded(client)
    # a new id at every sign-in, and the session this browser had before is ended: an id someone
    # planted or saw before the sign-in is worth nothing after it
    st.sessions.delete(request.cookies.get(COOKIE))
    session = st.sessions.create(found[0], key_digest(key), admin=found[1])
    response = secure(RedirectResponse(f"{PREFIX}/kbs", status_code=303))
    response.set_cookie(COOKIE, session.id, httponly=True, samesite="strict", path=PREFIX,
                        secure=request.url.scheme == "https", max_age=IDLE_SECONDS * 24)
    response.delete_cookie(PRE_COOKIE, path=PREFIX)
    return response


@router.post(PREFIX + "/signout")
@page
async def signout(request: Request):
    session = await signed_in(request)
    await check_csrf(request, session)
    state(request).sessions.delete(session.id)
    response = secure(RedirectResponse(f"{PREFIX}/signin?out=1", status_code=303))
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


@router.post(PREFIX + "/lang")
@page
async def switch_language(request: Request):
    session = state(request).sessions.get(request.cookies.get(COOKIE))
    data = await check_csrf(request, session)
    lang = data.get("lang") if data.get("lang") in i18n.LANGUAGES else "en"
    back = data.get("next")
    # only a path of the console itself (no open redirect)
    if not isinstance(back, str) or not back.startswith(PREFIX + "/") or back.startswith("//") or "\\" in back:
        back = f"{PREFIX}/kbs"
    response = secure(RedirectResponse(back, status_code=303))
    response.set_cookie(i18n.COOKIE, lang, samesite="strict", path=PREFIX, max_age=365 * 86400)
    return response


@router.get(PREFIX + "/static/{name:path}")
async def static(name: str):
    """The console's own files and the vendored libraries: nothing is fetched from elsewhere."""
    target = (STATIC / name).resolve()
    if STATIC.resolve() not in target.parents or not target.is_file():
        return secure(Response("not found", status_code=404, media_type="text/plain"))
    kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    if target.suffix == ".js":
        kind = "text/javascript"
    response = Response(target.read_bytes(), media_type=kind)
    secure(response)
    response.headers["Cache-Control"] = "no-cache"
    return response


@router.get(PREFIX + "/{rest:path}")
@page
async def not_found_page(request: Request, rest: str):
    """Any other console address: the console's own "not found" page (registered last)."""
    t = i18n.translator(i18n.language(request))
    session = await signed_in(request)
    return error_page(request, t("page_not_found"), t("not_found_hint"), status=404, session=session)
