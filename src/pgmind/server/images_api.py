"""Images over HTTP.  The SQL image helpers' routes (/pgmind/v1/images/*, the database's own
calls: load a file under the allow-list, resize, base64, info, embed, labels, OCR) and
clip-as-service's protocol (``POST /post``), so clip_client and that service's curl examples work
against pgmind's local image models."""
from __future__ import annotations

import asyncio
import base64
import binascii
import uuid

from fastapi import APIRouter, Depends, Request

from ..errors import InvalidRequestError
from ..images import codec
from .deps import authenticate, caller, internal_only, json_body, json_response, service
from .service import vectors_to_base64

router = APIRouter()
internal = APIRouter(dependencies=[Depends(internal_only)])
DEFAULT_CLIP_MODEL = "image-features"


def _bytes(value, where: str) -> bytes:
    if not isinstance(value, str):
        raise InvalidRequestError(f"{where} must be base64 text")
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError(f"{where} is not valid base64", hint="send the file's bytes base64-encoded") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@internal.post("/pgmind/v1/images/load", tags=["pgmind"])
async def load(request: Request):
    body = await json_body(request)
    data = await service(request).load_file(body.get("url"))
    return json_response({"data": _b64(data)})


@internal.post("/pgmind/v1/images/resize", tags=["pgmind"])
async def resize(request: Request):
    body = await json_body(request)
    img = _bytes(body.get("data"), "data")
    out = await asyncio.to_thread(codec.resize, img, body.get("width"), body.get("height"))
    return json_response({"data": _b64(out)})


@internal.post("/pgmind/v1/images/info", tags=["pgmind"])
async def info(request: Request):
    body = await json_body(request)
    return json_response(await asyncio.to_thread(codec.info, _bytes(body.get("data"), "data")))


@internal.post("/pgmind/v1/images/base64", tags=["pgmind"])
async def as_base64(request: Request):
    body = await json_body(request)
    img = _bytes(body.get("data"), "data")
    return json_response({"text": await asyncio.to_thread(codec.as_base64, img, bool(body.get("prefix")))})


@internal.post("/pgmind/v1/images/embed", tags=["pgmind"])
async def embed(request: Request):
    body = await json_body(request)
    images = body.get("images")
    if not isinstance(images, list):
        raise InvalidRequestError('the request needs "images": a list of base64 files')
    _, result = await service(request).embed_images(body.get("model"), [_bytes(x, f"image {i}")
                                                                        for i, x in enumerate(images)],
                                                    caller(request, "sql"))
    if body.get("encoding_format") == "float":
        return json_response({"data": [{"index": i, "embedding": v.tolist()} for i, v in enumerate(result.vectors)]})
    return json_response({"data": [{"index": i, "embedding": e}
                                   for i, e in enumerate(vectors_to_base64(result.vectors))]})


@internal.post("/pgmind/v1/images/labels", tags=["pgmind"])
async def labels(request: Request):
    body = await json_body(request)
    k = body.get("k", 5)
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 100:
        raise InvalidRequestError("k must be an integer from 1 to 100")
    img = _bytes(body.get("data"), "data")
    top = await service(request).classify_images(body.get("model"), [img], k, caller(request, "sql"))
    return json_response({"labels": [{"label": label, "score": p} for label, p in top[0]]})


@internal.post("/pgmind/v1/images/query", tags=["pgmind"])
async def query(request: Request):
    body = await json_body(request)
    return json_response(await service(request).image_query(body.get("model"), body.get("query"),
                                                            body.get("text_model") or "use-m3",
                                                            body.get("mode") or "hybrid", caller(request, "sql")))


@internal.post("/pgmind/v1/images/ocr", tags=["pgmind"])
async def ocr(request: Request):
    body = await json_body(request)
    from ..images.ocr import read_text
    img = _bytes(body.get("data"), "data")
    return json_response(await asyncio.to_thread(read_text, img))


# -- clip-as-service ------------------------------------------------------------------------------
@router.post("/post", tags=["clip-as-service"], dependencies=[Depends(authenticate)])
async def clip_post(request: Request):
    """clip-as-service's HTTP protocol: {"data": [{"text"} | {"blob"} | {"uri"}], "parameters":
    {"model"}} → the same documents with "embedding", in request order (vectors L2-normalised)."""
    body = await json_body(request)
    docs = body.get("data")
    if not isinstance(docs, list) or not docs or not all(isinstance(d, dict) for d in docs):
        raise InvalidRequestError('"data" must be a non-empty list of {"text"}, {"blob"} or {"uri"} documents')
    params = body.get("parameters") if isinstance(body.get("parameters"), dict) else {}
    # the model: parameters.model, else ?model= in the URL (a registration's URL can name it), else the default
    model = params.get("model") or request.query_params.get("model") or DEFAULT_CLIP_MODEL
    svc, who = service(request), caller(request, "clip-api")
    texts, images = [], []
    for i, d in enumerate(docs):
        if isinstance(d.get("text"), str):
            texts.append(i)
        elif d.get("blob") is not None:
            images.append((i, _bytes(d["blob"], f"document {i} blob")))
        elif isinstance(d.get("uri"), str):
            if d["uri"].startswith("data:"):
                images.append((i, _bytes(d["uri"], f"document {i} uri")))
            else:
                images.append((i, await svc.load_file(d["uri"])))
        else:
            raise InvalidRequestError(f"document {i} has no text, blob or uri")
    vectors: list = [None] * len(docs)
    if texts:
        _, r = await svc.embed(model, [docs[i]["text"] for i in texts], who)
        for i, v in zip(texts, r.vectors):
            vectors[i] = v
    if images:
        _, r = await svc.embed_images(model, [b for _, b in images], who)
        for (i, _), v in zip(images, r.vectors):
            vectors[i] = v
    out = [{"id": d.get("id") or uuid.uuid4().hex, **({"text": d["text"]} if "text" in d else {}),
            **({"uri": d["uri"]} if isinstance(d.get("uri"), str) and not d["uri"].startswith("data:") else {}),
            "embedding": v.tolist()} for d, v in zip(docs, vectors)]
    return json_response({"header": {"requestId": uuid.uuid4().hex, "status": None,
                                     "execEndpoint": body.get("execEndpoint") or "/"},
                          "parameters": params, "data": out})
