"""A web page fetched for ``pgmind ingest``: only under a URL prefix an administrator allowed for
loading (``ai.allow_load_from``, the list ``ai.load_file`` reads: ``select * from
ai.load_allow_list``), and only from a public address unless the administrator listed that address.

Every hop of a redirect, and the connection actually made, is checked:

- the URL, canonical as ai.load_file matches it (lower-case host, no user info, ``..`` resolved:
  images.loader.canonical), starts with an allowed http(s) prefix;
- the connection goes only to a public address, or one a prefix names itself, never to a cloud
  metadata address, and to the address that was checked (checked_connect);
- redirects are followed by hand, at most 5, each target checked as above;
- the body is capped as sent and as decompressed (a gzip bomb stops at the cap); connecting, each
  read and the whole fetch have time limits;
- no cookies kept between pages.

The allow-list is read as the signed-in role (the view is public), so a user's ingest is held to
the administrator's list whoever runs it.
"""
from __future__ import annotations

import time
import urllib.parse
import zlib
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Iterable

import httpx

from . import checked_connect
from .errors import InvalidRequestError, PermissionDeniedError, ProviderError, ProviderTimeoutError
from .images.loader import canonical

MAX_REDIRECTS = 5
MAX_BYTES = 50 * 1024 * 1024          # a page or a PDF; larger is refused, not cut
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 30.0                   # between two reads
TOTAL_TIMEOUT = 120.0                 # the whole page: a server that trickles a byte a second stops here
ALLOW_HINT = ("an administrator allows a site with select ai.allow_load_from('https://host/path/'); "
              "see select prefix from ai.load_allow_list")


@dataclass(frozen=True)
class Page:
    url: str                          # the URL asked for, canonical
    final_url: str                    # where the body came from, after redirects
    content_type: str                 # the media type, lower case, without parameters ('' when none)
    charset: str | None               # the charset the server declares, if any
    data: bytes
    last_modified: datetime | None


class PageGoneError(InvalidRequestError):
    """No page at the URL (HTTP 404 or 410): what was ingested from it is gone too."""

    def __init__(self, message: str, *, url: str, status: int, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.url, self.status = url, status


class AllowList:
    """The http(s) prefixes of the load allow-list, canonical, each ending in '/'."""

    def __init__(self, prefixes: Iterable[str]):
        self.prefixes: list[str] = []
        for p in prefixes:
            try:
                c = canonical(p)
            except InvalidRequestError:       # (ai.allow_load_from refuses these; a hand-made row is skipped)
                continue
            if c.startswith(("http://", "https://")):
                self.prefixes.append(c if c.endswith("/") else c + "/")

    @classmethod
    def read(cls, conn) -> "AllowList":
        return cls(r[0] for r in conn.execute("select prefix from ai.load_allow_list"))

    def check_url(self, url: str) -> str:
        """The URL, canonical, when it is under an allowed prefix; else PermissionDeniedError."""
        if not isinstance(url, str) or not url[:8].lower().startswith(("http://", "https://")):
            raise InvalidRequestError(f"{str(url)[:200]!r} is not an http(s) URL", hint="pass https://host/path")
        c = canonical(url)
        if not any(c.startswith(p) or c + "/" == p for p in self.prefixes):
            raise PermissionDeniedError(f"{c} is not under a location allowed for loading", hint=ALLOW_HINT)
        return c


class _Decoder:
    """gzip/deflate decoding with the output capped (httpx would inflate without a limit)."""

    def __init__(self, encoding: str):
        self._z = None
        if encoding in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._z = zlib.decompressobj()
        elif encoding not in ("", "identity"):
            raise InvalidRequestError(f"the page is sent with content encoding {encoding!r}, which is not read",
                                      hint="serve it uncompressed, or gzip or deflate")

    def decode(self, block: bytes, room: int) -> bytes:
        if self._z is None:
            return block
        try:
            return self._z.decompress(block, room + 1)
        except zlib.error:
            raise InvalidRequestError("the page's compressed body is broken") from None


def _too_big(url: str, max_bytes: int) -> InvalidRequestError:
    return InvalidRequestError(f"{url} is larger than {max_bytes // (1024 * 1024)} MiB",
                               hint="split it, or fetch it yourself and ingest the file")


class Fetcher:
    """Fetches pages under one allow-list; ``close()`` when done."""

    def __init__(self, allow: AllowList, *, max_bytes: int = MAX_BYTES, connect_timeout: float = CONNECT_TIMEOUT,
                 read_timeout: float = READ_TIMEOUT, total_timeout: float = TOTAL_TIMEOUT):
        self.allow, self.max_bytes, self.total_timeout = allow, max_bytes, total_timeout
        self._http = httpx.Client(
            transport=checked_connect.transport(lambda: allow.prefixes), follow_redirects=False, trust_env=False,
            cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            headers={"User-Agent": "pgmind-ingest", "Accept-Encoding": "gzip, deflate",
                     "Accept": "text/html, text/markdown, text/plain, application/pdf, */*;q=0.5"})

    def close(self) -> None:
        self._http.close()

    def fetch(self, url: str) -> Page:
        """The page at ``url``: PermissionDeniedError where the allow-list does not let it be read,
        PageGoneError for no page (404, 410), InvalidRequestError for a page too big or a bad URL, ProviderError
        (ProviderTimeoutError) where the server fails or does not answer in time."""
        asked = current = self.allow.check_url(url)
        deadline = time.monotonic() + self.total_timeout
        for _ in range(MAX_REDIRECTS + 1):
            try:
                with self._http.stream("GET", current) as resp:
                    if resp.is_redirect:
                        target = urllib.parse.urljoin(current, resp.headers.get("location", ""))
                        try:
                            current = self.allow.check_url(target)
                        except PermissionDeniedError as e:
                            raise PermissionDeniedError(f"{current} redirects to {e.message}", hint=e.hint) from None
                        continue
                    if resp.status_code in (404, 410):
                        raise PageGoneError(f"no page at {current} (HTTP {resp.status_code})", url=asked,
                                            status=resp.status_code, hint="check the URL")
                    if resp.status_code >= 400:
                        raise ProviderError(f"GET {current} answered HTTP {resp.status_code}",
                                            status=resp.status_code, retryable=resp.status_code >= 500,
                                            hint="check the URL, or try again later")
                    data = self._body(resp, current, deadline)
                    media, _, params = resp.headers.get("content-type", "").partition(";")
                    charset = next((v.strip().strip('"\'') for k, _, v in (p.partition("=") for p in params.split(";"))
                                    if k.strip().lower() == "charset" and v.strip()), None)
                    return Page(asked, current, media.strip().lower(), charset, data,
                                _http_date(resp.headers.get("last-modified")))
            except httpx.TimeoutException:
                raise ProviderTimeoutError(f"{current} did not answer in time",
                                           hint="check that the site is up and reachable from this machine") from None
            except httpx.HTTPError as e:
                from .models.outbound import transport_failure
                raise ProviderError(f"cannot fetch {current}: {transport_failure(e)}", retryable=True,
                                    hint="check that the site is up and reachable from this machine") from None
        raise InvalidRequestError(f"{asked} redirects more than {MAX_REDIRECTS} times",
                                  hint="ingest the URL it ends at")

    def _body(self, resp: httpx.Response, url: str, deadline: float) -> bytes:
        length = resp.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            raise _too_big(url, self.max_bytes)
        decoder = _Decoder(resp.headers.get("content-encoding", "").strip().lower())
        out, sent = bytearray(), 0
        for block in resp.iter_raw():
            sent += len(block)
            out += decoder.decode(block, self.max_bytes - len(out))
            if sent > self.max_bytes or len(out) > self.max_bytes:
                raise _too_big(url, self.max_bytes)
            if time.monotonic() > deadline:
                raise ProviderTimeoutError(f"{url} took longer than {self.total_timeout:.0f} s to send",
                                           hint="check that the site is up, or fetch the page yourself "
                                                "and ingest the file")
        return bytes(out)


def _http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
