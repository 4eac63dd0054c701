"""Request plumbing shared by the protocol modules: the token check, the caller, JSON bodies."""
from __future__ import annotations

import json
import secrets

from fastapi import Request, Response

from ..errors import AuthenticationError, InvalidRequestError
from .service import Caller, ModelService


def service(request: Request) -> ModelService:
    return request.app.state.service


async def authenticate(request: Request) -> None:
    """async, so FastAPI does not hand it to a thread pool on every request."""
    expected = request.app.state.token
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given or not secrets.compare_digest(given.strip(), expected):
        raise AuthenticationError("missing or wrong bearer token" if header else "no Authorization header")


def caller(request: Request, client: str) -> Caller:
    """Calls from SQL name their database role; the server then enforces that role's model grants."""
    role = request.headers.get("x-pgmind-caller") or None
    return Caller(role, request.headers.get("x-pgmind-client") or client)


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
