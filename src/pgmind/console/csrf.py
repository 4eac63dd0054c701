"""CSRF protection for every state-changing console request: the request must carry the session's
token (htmx sends it as the X-CSRF-Token header from the page's meta tag; plain forms as a hidden
``csrf`` field), and where the browser says where the request comes from (Origin, else Referer),
that must be this console's own origin.  A page of another site can send neither."""
from __future__ import annotations

import secrets
import urllib.parse

from fastapi import Request

HEADER = "x-csrf-token"
FIELD = "csrf"


def own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


def same_origin(request: Request) -> bool:
    """False when Origin or Referer names another origin ("null" included: a sandboxed frame or a
    data: URL); True when they match, or when neither is sent (a non-browser client, which has no
    cookies of a victim to ride on and must still present the token)."""
    origin = request.headers.get("origin")
    if origin is not None:
        return origin == own_origin(request)
    referer = request.headers.get("referer")
    if referer is not None:
        parts = urllib.parse.urlsplit(referer)
        return f"{parts.scheme}://{parts.netloc}" == own_origin(request)
    return True


def token_matches(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and secrets.compare_digest(expected.encode(), given.encode())
