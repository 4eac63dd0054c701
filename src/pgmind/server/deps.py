"""Request plumbing shared by the protocol modules: who is calling, JSON bodies.

Three kinds of credential (docs/security.md):
- the server's own token (``server.token``, an owner-only file; never in the database): pgmind's own
  services and the operator.  Only requests with it may say which database role they act for
  (``X-Pgmind-Caller``); without that header they act as the operator.
- a role's SQL token (``ai_internal._role_token()``, which row-level security lets only that role
  read): the SQL functions, acting as the role that ran them.  It may use the database's routes.
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
    role: str | None        # the API key's or SQL token's role (None for the server's token)
    sql: bool = False       # a role's SQL token: the database's own routes are open to it


def service(request: Request) -> ModelService:
    return request.app.state.service


async def authenticate(request: Request) -> None:
    """async, so FastAPI does not hand it to a thread pool on every request."""
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    given = given.strip()
    if not header:
        raise AuthenticationError("no Authorization header")
    if scheme.lower() != "bearer" or not given:
        raise AuthenticationError("the Authorization header is not 'Bearer <API key>'")
    if secrets.compare_digest(given.encode(), request.app.state.token.encode()):
        request.state.principal = Principal(True, None)
        return
    found = await service(request).registry.credential_role(given)
    if found is None:
        if given.startswith("pgmk-"):
            raise AuthenticationError("this API key is unknown or revoked",
                                      hint="ask an administrator for a new one: select ai.create_api_key('<role>') "
                                           "(select * from ai.api_key_list shows the live keys' prefixes)")
        raise AuthenticationError("the bearer token is not an API key of this server")
    request.state.principal = Principal(False, *found)


async def internal_only(request: Request) -> None:
    """Routes the database itself uses (probe, call): the server's token or a role's SQL token."""
    await authenticate(request)
    if not (request.state.principal.internal or request.state.principal.sql):
        raise PermissionDeniedError("this route is for the database's own calls",
                                    hint="use the OpenAI or DashScope routes with an API key")


def caller(request: Request, client: str) -> Caller:
    """The database role the request acts for: an API key's role, or, with the server's own token,
    the role the SQL functions name (percent-encoded, so any role name travels in a header)."""
    principal: Principal = request.state.principal
    if principal.sql:
        return Caller(principal.role, "sql")
    if not principal.internal:
        return Caller(principal.role, client)
    role = request.headers.get("x-pgmind-caller") or None
    if role is not None:
        try:
            role = urllib.parse.unquote(role, errors="strict")
        except UnicodeDecodeError:
            raise InvalidRequestError("X-Pgmind-Caller is not a percent-encoded UTF-8 role name",
                                      hint="percent-encode the role name's UTF-8 bytes") from None
        if not role or len(role.encode()) > 63 or "\x00" in role:
            raise InvalidRequestError("X-Pgmind-Caller is not a role name", hint="name a database role")
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


try:
    import orjson as _orjson
except ImportError:        # (not a dependency of pgmind's own: json does the same, slower)
    _orjson = None


def vectors_response(obj) -> Response:
    """json_response for a body whose vectors are float32 numpy rows.  Python's json writes each
    float as the float64 it widens to (0.012345679104328156): for 32 vectors of 384 that took 15 ms
    of CPU and the client 8 ms more to read, a tenth of a 32-text request on 2 cores
    (bench/bench_embed_server.py).  orjson, where installed, writes each as its shortest float32
    text (0.012345679) in under 1 ms, 40% fewer bytes; parsed back, every value is the same float32."""
    if _orjson is not None:
        return Response(_orjson.dumps(obj, option=_orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")
    return Response(json.dumps(obj, ensure_ascii=False, separators=(",", ":"),
                               default=lambda o: o.tolist()).encode("utf-8"), media_type="application/json")


async def json_body(request: Request) -> dict:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as e:        # (its text says where: "Expecting value: line 1 column 1 (char 0)")
        raise InvalidRequestError(f"the request body is not valid JSON: {e}",
                                  hint="send one JSON object, UTF-8 encoded") from None
    except UnicodeDecodeError:
        raise InvalidRequestError("the request body is not valid JSON: it is not UTF-8 (or UTF-16/32) text",
                                  hint="send one JSON object, UTF-8 encoded") from None
    except RecursionError:                   # [[[[...]]]] deeper than the parser goes
        raise InvalidRequestError("the request body is not valid JSON: it nests arrays or objects too deeply",
                                  hint="send one JSON object nested at most a few hundred levels") from None
    except ValueError:                       # e.g. a number too long to convert
        raise InvalidRequestError("the request body is not valid JSON: a value cannot be read",
                                  hint="send one JSON object, UTF-8 encoded") from None
    if not isinstance(body, dict):
        raise InvalidRequestError("the request body must be a JSON object", hint='e.g. {"model": "...", "input": "..."}')
    return body
