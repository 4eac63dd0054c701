"""HTTP to remote providers, once: timeouts, retries with exponential backoff (honouring 429 and
Retry-After), and the mapping of failures onto the error hierarchy.  Secrets go in headers and are
never part of an error message."""
from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass
from typing import AsyncIterator

import httpx

from ...errors import ProviderError, ProviderResponseError, ProviderTimeoutError
from ..outbound import check_headers, parse_url, redact, transport_failure

RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}


@dataclass
class Endpoint:
    url: str
    headers: dict
    timeout: float = 60.0
    max_retries: int = 3


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _error_message(resp: httpx.Response) -> str:
    """The provider's own message, from the OpenAI or DashScope error shapes, else the text."""
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:300].strip() or resp.reason_phrase
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
        if body.get("message"):  # DashScope: {"code": "...", "message": "..."}
            code = body.get("code")
            return f"{code}: {body['message']}" if code else str(body["message"])
    return json.dumps(body)[:300]


class Transport:
    """One shared async HTTP client.  ``policy`` (an OutboundPolicy) checks every URL before it is
    called; ``secret_env`` names the environment variables registrations may take keys from."""

    def __init__(self, client: httpx.AsyncClient | None = None, *, policy=None, secret_env=frozenset()):
        self._client = client
        self.policy = policy
        self.secret_env = frozenset(secret_env)

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(limits=httpx.Limits(max_connections=64))
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def _fail(self, ep: Endpoint, resp: httpx.Response) -> ProviderError:
        status = resp.status_code
        hint = None
        if status in (401, 403):
            hint = "check the model's token: select ai.alter_model('<model>', auth => '{\"token\": \"...\"}')"
        elif status == 404:
            hint = "check the model's URL and name"
        elif status == 429:
            hint = "the provider is rate-limiting: retry later or lower the request rate"
        return ProviderError(f"{_host(ep.url)} answered HTTP {status}: {_safe_message(resp, ep)}", status=status,
                             retryable=status in RETRYABLE_STATUS, retry_after=_retry_after(resp), hint=hint)

    async def _send(self, ep: Endpoint, body: dict, stream: bool):
        """Sends with retries; returns an httpx.Response (for stream=True, open and unread)."""
        parse_url(ep.url)             # a URL or a header httpx cannot send is the registration's fault: a 400
        check_headers(ep.headers)
        if self.policy is not None:
            await self.policy.check(ep.url)
        attempt = 0
        while True:
            try:
                req = self.client.build_request("POST", ep.url, json=body, headers=ep.headers,
                                                timeout=httpx.Timeout(ep.timeout, connect=min(10.0, ep.timeout)))
                resp = await self.client.send(req, stream=stream)
                if resp.status_code < 400:
                    return resp
                if stream:
                    await resp.aread()
                    await resp.aclose()
                err = self._fail(ep, resp)
            except httpx.TimeoutException:
                err = ProviderTimeoutError(f"{_host(ep.url)} did not answer within {ep.timeout:g} s")
            except httpx.TransportError as e:
                err = ProviderError(f"cannot reach {_host(ep.url)}: {transport_failure(e)}",
                                    retryable=not isinstance(e, (httpx.LocalProtocolError, httpx.UnsupportedProtocol)),
                                    hint="check the model's URL and the network")
            if not err.retryable or attempt >= ep.max_retries:
                raise err
            delay = err.retry_after if err.retry_after is not None else min(8.0, 0.5 * 2 ** attempt)
            await asyncio.sleep(delay + random.uniform(0, 0.1))
            attempt += 1

    async def post_json(self, ep: Endpoint, body: dict) -> dict:
        resp = await self._send(ep, body, stream=False)
        try:
            data = resp.json()
        except ValueError:
            raise ProviderResponseError(f"{_host(ep.url)} answered with something that is not JSON: "
                                        f"{redact(resp.text[:200], list(ep.headers.values()))!r}") from None
        if not isinstance(data, dict):
            raise ProviderResponseError(f"{_host(ep.url)} answered JSON that is not an object")
        return data

    async def post_sse(self, ep: Endpoint, body: dict) -> AsyncIterator[dict]:
        """Server-sent events: yields each ``data:`` payload parsed as JSON, stops at [DONE]."""
        resp = await self._send(ep, body, stream=True)
        try:
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    break
                try:
                    yield json.loads(payload)
                except ValueError:
                    raise ProviderResponseError(f"{_host(ep.url)} streamed an event that is not JSON") from None
        finally:
            await resp.aclose()


def _safe_message(resp: httpx.Response, ep: Endpoint) -> str:
    """The provider's message without the secrets we sent it (some providers echo the key)."""
    return redact(_error_message(resp), list(ep.headers.values()))


def _host(url: str) -> str:
    """The URL's host for a message (the URL itself, cut short, when it has none)."""
    try:
        return httpx.URL(url).host or url[:200]
    except (httpx.InvalidURL, TypeError, ValueError):
        return str(url)[:200]


def field(data, *path, url: str = ""):
    """data[path...] or a ProviderResponseError naming what was missing."""
    cur = data
    for key in path:
        try:
            cur = cur[key]
        except (KeyError, IndexError, TypeError):
            where = "".join(f"[{k!r}]" for k in path)
            raise ProviderResponseError(f"{_host(url)} answered without {where}") from None
    return cur
