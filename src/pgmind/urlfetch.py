"""A web page fetched for ``pgmind ingest``: only under a URL prefix an administrator allowed for
loading (``ai.allow_load_from``, the list ``ai.load_file`` reads: ``select * from
ai.load_allow_list``), and only from a public address unless the administrator listed that address.

Every hop of a redirect, and the connection actually made, is checked:

- the URL, canonical as ai.load_file matches it (lower-case host, no user info, ``..`` resolved:
  images.loader.canonical), starts with an allowed http(s) prefix;
- every address its host resolves to is public — not loopback, private, link-local, shared or
  reserved — unless a prefix names that very address (and port): a name on the list cannot lead to
  127.0.0.1 or 10.x (``localhost``, ``127.1``, a DNS answer that changed since the check), and the
  connection goes to the address that was checked, never to a second lookup's;
- never a cloud's instance metadata service (169.254.169.254, fd00:ec2::254, Alibaba Cloud's
  100.100.100.200) nor an unspecified address (0.0.0.0, ::), listed or not: they hand out the
  machine's credentials, and 0.0.0.0 reaches this machine;
- redirects are followed by hand, at most 5, each target checked as above;
- the body is capped as sent and as decompressed (a gzip bomb stops at the cap); connecting, each
  read and the whole fetch have time limits;
- no proxy from the environment (the proxy would make the connection these checks are about), no
  cookies kept between pages.

The allow-list is read as the signed-in role (the view is public), so a user's ingest is held to
the administrator's list whoever runs it.
"""
from __future__ import annotations

import ipaddress
import socket
import ssl
import time
import urllib.parse
import zlib
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Iterable

import httpcore
import httpx

from .errors import InvalidRequestError, PermissionDeniedError, ProviderError, ProviderTimeoutError
from .images.loader import canonical

MAX_REDIRECTS = 5
MAX_BYTES = 50 * 1024 * 1024          # a page or a PDF; larger is refused, not cut
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 30.0                   # between two reads
TOTAL_TIMEOUT = 120.0                 # the whole page: a server that trickles a byte a second stops here
# instance metadata services: AWS/GCP/Azure/Alibaba Cloud's, IPv4 and AWS's IPv6
_METADATA = frozenset(ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200"))
ALLOW_HINT = ("an administrator allows a site with select ai.allow_load_from('https://host/path/'); "
              "see select prefix from ai.load_allow_list")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


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


def _plain(addr: Address) -> Address:
    """An IPv4-mapped IPv6 address (::ffff:127.0.0.1) as the IPv4 address it is."""
    return addr.ipv4_mapped if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped else addr


def _is_public(addr: Address) -> bool:
    return addr.is_global and not addr.is_multicast


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

    def names_address(self, addr: Address, port: int) -> bool:
        """Whether a prefix names this address (and port) itself: the administrator meant it."""
        for p in self.prefixes:
            parts = urllib.parse.urlsplit(p)
            try:
                listed = _plain(ipaddress.ip_address(parts.hostname or ""))
            except ValueError:
                continue
            if listed == addr and (parts.port or (443 if parts.scheme == "https" else 80)) == port:
                return True
        return False


class _CheckedBackend(httpcore.NetworkBackend):
    """Connects only to an address the allow-list permits: the host is resolved here, each address
    checked, and the connection made to the checked address (TLS still names the host)."""

    def __init__(self, allow: AllowList):
        self._allow = allow
        self._inner = httpcore.SyncBackend()

    def addresses(self, host: str, port: int) -> list[str]:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as e:
            raise ProviderError(f"cannot resolve {host}: {getattr(e, 'strerror', None) or e}",
                                hint="check the host name and this machine's DNS") from None
        addrs = [_plain(ipaddress.ip_address(info[4][0].split("%")[0])) for info in infos]
        for addr in addrs:
            if addr in _METADATA or addr.is_unspecified:
                raise PermissionDeniedError(f"{host} is {addr}, a cloud metadata or unspecified address, "
                                            "which is never fetched", hint="ingest the page from its real host")
            if not _is_public(addr) and not self._allow.names_address(addr, port):
                raise PermissionDeniedError(
                    f"{host} resolves to {addr}, a loopback or private address",
                    hint=f"an administrator who means that server allows its address: "
                         f"select ai.allow_load_from('http://{addr if addr.version == 4 else f'[{addr}]'}:{port}/')")
        return list(dict.fromkeys(str(a) for a in addrs))

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        # each checked address in turn, as a connection to the name would try them (an IPv6
        # address first on a machine without an IPv6 route must not fail the page)
        failure = None
        for addr in self.addresses(host, port):
            try:
                return self._inner.connect_tcp(addr, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as e:
                failure = e
        raise failure

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise PermissionDeniedError("pages are fetched over TCP only")

    def sleep(self, seconds):
        self._inner.sleep(seconds)


class _CheckedTransport(httpx.HTTPTransport):
    def __init__(self, allow: AllowList):
        super().__init__(trust_env=False)
        # httpx has no public way to give its connection pool a network backend: the pool is made
        # again the way HTTPTransport makes it, with the checking backend
        import certifi
        self._pool = httpcore.ConnectionPool(ssl_context=ssl.create_default_context(cafile=certifi.where()),
                                             network_backend=_CheckedBackend(allow), max_connections=4)


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
            transport=_CheckedTransport(allow), follow_redirects=False, trust_env=False,
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
