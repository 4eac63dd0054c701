"""Request plumbing shared by the protocol modules: who is calling, JSON bodies.

Two kinds of credential (docs/security.md):
- the server's own token (``server.token``, shared with the database by ``pgmind install``): the
  database and the operator.  Only requests with it may say which database role they act for
  (``X-Pgmind-Caller``, from the SQL functions); without that header they act as the operator.
- API keys (``ai.create_api_key(role)``): an HTTP user, who acts as the key's role, whatever the
  headers say, so the role's model grants apply to SDK users too."""
from __future__ import annotations

import asyncio
import json
import secrets
import threading
import urllib.parse
from dataclasses import dataclass

from fastapi import Request, Response

from ..errors import AuthenticationError, InvalidRequestError, PermissionDeniedError
from .service import Caller, ModelService


@dataclass(frozen=True)
class Principal:
    internal: bool          # the server's own token
    role: str | None        # the API key's role (None for the server's token)


def service(request: Request) -> ModelService:
    return request.app.state.service


async def authenticate(request: Request) -> None:
    """async, so FastAPI does not hand it to a thread pool on every request."""
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        raise AuthenticationError("missing or wrong bearer token" if header else "no Authorization header")
    if secrets.compare_digest(given.encode(), request.app.state.token.encode()):
        request.state.principal = Principal(True, None)
        return
    role = await service(request).registry.api_key_role(given)
    if role is None:
        raise AuthenticationError("missing or wrong bearer token")
    request.state.principal = Principal(False, role)


async def internal_only(request: Request) -> None:
    """Routes the database itself uses (probe, call): the server's token only."""
    await authenticate(request)
    if not request.state.principal.internal:
        raise PermissionDeniedError("this route is for the database's own calls",
                                    hint="use the OpenAI or DashScope routes with an API key")


def caller(request: Request, client: str) -> Caller:
    """The database role the request acts for: an API key's role, or, with the server's own token,
    the role the SQL functions name (percent-encoded, so any role name travels in a header)."""
    principal: Principal = request.state.principal
    if not principal.internal:
        return Caller(principal.role, client)
    role = request.headers.get("x-pgmind-caller") or None
    if role is not None:
        role = urllib.parse.unquote(role, errors="strict")
    return Caller(role, request.headers.get("x-pgmind-client") or client)


async def while_connected(request: Request, work):
    """Runs ``work(cancel)`` (a coroutine function taking a threading.Event); when the client goes
    away (a cancelled SQL statement closes its connection), sets the event, so a local model stops
    generating for nobody, and gives up on the result."""
    cancel = threading.Event()
    task = asyncio.ensure_future(work(cancel))
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=0.25)
            if not task.done() and await request.is_disconnected():
                cancel.set()
                task.cancel()
                raise ClientGone()
        return task.result()
    finally:
        if not task.done():        # this request itself was cancelled: stop the work too
            cancel.set()
            task.cancel()


class ClientGone(Exception):
    """The client closed the connection: nothing to answer."""


def json_response(obj) -> Response:
    """Serialises with json directly: FastAPI's jsonable_encoder walks every float of every
    embedding and cost more than the model call itself on short texts."""
    return Response(json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8"),
                    media_type="application/json")


async def json_body(request: Request) -> dict:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidRequestError(f"the request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise InvalidRequestError("the request body must be a JSON object")
    return body
