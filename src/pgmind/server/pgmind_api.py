"""pgmind's own routes, used by the SQL functions: probe a model before it is registered, and
forward an ai.call_model request; and one for the operator: write the call log now."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from ..errors import InvalidRequestError, PermissionDeniedError
from ..models.spec import ModelSpec
from .deps import authenticate, caller, internal_only, json_body, json_response, service

router = APIRouter()


@router.post("/pgmind/v1/probe", tags=["pgmind"], include_in_schema=False, dependencies=[Depends(internal_only)])
async def probe(request: Request):
    body = await json_body(request)
    # only a registration (by an administrator) probes: through ai_internal._server_request anyone could
    # otherwise make the server call an address with a lent key
    who = caller(request, "sql")
    if who.role is not None and not await service(request).registry.is_admin(who.role):
        raise PermissionDeniedError("only pgmind administrators probe models",
                                    hint="register models with ai.create_model as an administrator")
    for key in ("model_id", "provider", "model_type", "model_name"):
        if not isinstance(body.get(key), str):
            raise InvalidRequestError(f"probe needs {key}, a string", hint="the probe is ai.create_model's own call")
    for key in ("auth", "options"):
        if not isinstance(body.get(key) or {}, dict):
            raise InvalidRequestError(f"the probe's {key} must be a JSON object",
                                      hint="the probe is ai.create_model's own call")
    if not isinstance(body.get("url"), (str, type(None))) or not isinstance(body.get("secret"), (str, type(None))):
        raise InvalidRequestError("the probe's url and secret are strings (or null)",
                                  hint="the probe is ai.create_model's own call")
    try:
        spec = ModelSpec(model_id=body["model_id"], provider=body["provider"], model_type=body["model_type"],
                         model_name=body["model_name"], url=body.get("url"), auth=body.get("auth") or {},
                         secret=body.get("secret"), options=body.get("options") or {})
    except KeyError as e:
        raise InvalidRequestError(f"probe needs {e.args[0]}") from None
    return await service(request).probe(spec)


@router.post("/pgmind/v1/call", tags=["pgmind"], dependencies=[Depends(internal_only)])
async def call(request: Request):
    body = await json_body(request)
    if "body" not in body:
        raise InvalidRequestError('the request needs "body": what the model\'s input function built')
    return json_response(await service(request).call(body.get("model"), body["body"], body.get("headers") or {},
                                                     caller(request, "sql")))


async def operator_only(request: Request) -> None:
    """The operator's routes (as /metrics): the server's own token only, neither an API key nor a
    role's SQL token."""
    await authenticate(request)
    if not request.state.principal.internal:
        raise PermissionDeniedError("this route is for the operator",
                                    hint="call it with the server's token (pgmind serve --show-token)")


@router.post("/pgmind/v1/call-log/flush", tags=["pgmind"], include_in_schema=False,
             dependencies=[Depends(operator_only)])
async def flush_call_log(request: Request):
    """Writes the queued call-log records now rather than at the next half-second flush: when it
    answers, every call answered before it is in ai.call_log (what the tests wait on)."""
    return json_response({"written": await service(request).call_log.flush()})


@router.post("/v1/rerank", tags=["pgmind"], dependencies=[Depends(authenticate)])
async def rerank(request: Request):
    """Cohere/Jina-style rerank: {model, query, documents, top_n} → {results: [{index, relevance_score}]}."""
    body = await json_body(request)
    scores = await service(request).rerank(body.get("model"), body.get("query"), body.get("documents"),
                                           caller(request, "pgmind-api"))
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    top_n = body.get("top_n")
    if top_n is not None:
        if not isinstance(top_n, int) or top_n < 1:
            raise InvalidRequestError("top_n must be a positive integer")
        order = order[:top_n]
    return json_response({"model": body.get("model"),
                          "results": [{"index": i, "relevance_score": scores[i]} for i in order]})
