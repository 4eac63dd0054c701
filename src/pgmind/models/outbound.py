"""Where the model server may send requests: an administrator's allow-list (ai.outbound_allow),
checked for every URL before it is called, after DNS resolution.

An entry is a host name (``api.openai.com``), a wildcard (``*.aliyuncs.com``), an IP address or a
CIDR range, each optionally with ``:port``.  A URL passes when an entry matches its host (and
port), and every address its host resolves to that is not a public one (loopback, private,
link-local, reserved, ...) is itself covered by an address entry: a name on the list cannot lead
to 127.0.0.1 or 10.x unless those addresses are on the list too (DNS rebinding, a redirect to an
internal name).  httpx does not follow redirects here, so the checked URL is the one called.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
import time
import urllib.parse
from dataclasses import dataclass
from typing import Awaitable, Callable

import httpx

from ..errors import InvalidRequestError, PermissionDeniedError

log = logging.getLogger(__name__)
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Entry:
    host: str | None          # a name, or "*.suffix"
    network: Network | None   # an address or a range
    port: int | None

    @classmethod
    def parse(cls, text: str) -> "Entry":
        text = text.strip().lower()
        port = None
        if text.startswith("["):                      # [v6]:port
            inner, _, rest = text[1:].partition("]")
            text, port = inner, int(rest[1:]) if rest.startswith(":") else None
        elif text.count(":") == 1:                    # host:port or v4:port
            text, p = text.split(":")
            port = int(p)
        try:
            return cls(None, ipaddress.ip_network(text, strict=False), port)
        except ValueError:
            return cls(text, None, port)

    def matches_name(self, host: str, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            try:
                return ipaddress.ip_address(host) in self.network
            except ValueError:
                return False
        if self.host.startswith("*."):
            return host.endswith(self.host[1:])
        return host == self.host

    def covers(self, addr: Address, port: int) -> bool:
        return self.network is not None and (self.port is None or self.port == port) and addr in self.network


def _is_public(addr: Address) -> bool:
    return addr.is_global and not addr.is_multicast


URL_HINT = "a model URL is http(s)://host[:port]/path: a host name or an address ([v6] in brackets), a port from 1 to 65535"


def _bad_url(url, what: str) -> InvalidRequestError:
    shown = url[:200] if isinstance(url, str) else type(url).__name__
    return InvalidRequestError(f"the model URL {shown!r} {what}", hint=URL_HINT)


def parse_url(url) -> httpx.URL:
    """The model URL, checked: an http(s) URL with a host, a numeric port and nothing HTTP cannot
    carry; anything else is an InvalidRequestError (SQLSTATE 22023, HTTP 400) saying what is
    wrong, never a library's exception."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidRequestError("the model has no URL", hint=URL_HINT)
    if any(ord(c) < 0x21 or ord(c) == 0x7f for c in url):
        raise _bad_url(url, "has a space or a control character")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:           # an unbalanced [ or ], a port that is not a number or over 65535
        raise _bad_url(url, "is not a valid URL (check the brackets around an address and the port)") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise _bad_url(url, "is not http or https")
    if not parts.hostname:
        raise _bad_url(url, "names no host")
    if port == 0:
        raise _bad_url(url, "has port 0")
    if parts.username is not None or parts.password is not None:
        raise _bad_url(url, "has user information", ) from None
    try:
        parsed = httpx.URL(url)
        if not parsed.host:
            raise httpx.InvalidURL("no host")
        _ascii_host(parsed.host)
        return parsed
    except (httpx.InvalidURL, UnicodeError, ValueError):   # e.g. a host name IDNA cannot encode
        raise _bad_url(url, "is not a valid URL (check the host name)") from None


def _ascii_host(host: str) -> str:
    """The host as DNS is asked for it; a label that is empty or over 63 characters is refused."""
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host.split("%")[0])
        return host
    except ValueError:
        pass
    encoded = host.encode("idna").decode("ascii")      # (UnicodeError for an empty or a long label)
    if len(encoded) > 253 or not re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?", encoded):
        raise ValueError(host)
    return encoded


class OutboundPolicy:
    """``load()`` returns the entries (from the database); they are cached for ``ttl`` seconds."""

    def __init__(self, load: Callable[[], Awaitable[list[str]]], ttl: float = 30.0):
        self._load, self.ttl = load, ttl
        self._entries: list[Entry] | None = None
        self._at = 0.0

    async def entries(self) -> list[Entry]:
        if self._entries is None or time.monotonic() - self._at > self.ttl:
            entries = []
            for text in await self._load():
                try:
                    entries.append(Entry.parse(text))
                except ValueError:       # (ai.allow_outbound refuses these; a hand-made row is skipped)
                    log.warning("outbound allow-list entry %r is not a host, address or range; ignored", text)
            self._entries, self._at = entries, time.monotonic()
        return self._entries

    async def check(self, url: str) -> None:
        u = parse_url(url)
        host, port = u.host.lower().strip("[]"), u.port or (443 if u.scheme == "https" else 80)
        entries = await self.entries()
        hint = f"an administrator can allow it: select ai.allow_outbound('{host}')"
        if not any(e.matches_name(host, port) for e in entries):
            raise PermissionDeniedError(f"requests to {host}:{port} are not allowed", hint=hint)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as e:
            raise PermissionDeniedError(f"cannot resolve {host}: {e.strerror}",
                                        hint="check the model's URL and the server's DNS") from None
        except (UnicodeError, ValueError):       # (parse_url refuses these first; kept as the last word)
            raise _bad_url(url, "is not a valid URL (check the host name)") from None
        for info in infos:
            addr = ipaddress.ip_address(info[4][0].split("%")[0])
            if not _is_public(addr) and not any(e.covers(addr, port) for e in entries):
                raise PermissionDeniedError(
                    f"{host} resolves to {addr}, a loopback or private address that is not allowed",
                    hint=f"an administrator can allow that address: select ai.allow_outbound('{addr}')")


_CLASS_NAME = re.compile(r"[A-Za-z]+(Error|Exception|Group)\b|Traceback")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def check_headers(headers: dict) -> None:
    """Header names are HTTP tokens and values printable ASCII on one line: anything else is a 400
    naming the header, never its value (it is often a key) nor an encoder's exception."""
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise InvalidRequestError(f"the header name {str(name)[:100]!r} is not a valid HTTP header name",
                                      hint="header names are letters, digits and - (check the model's auth.header "
                                           "and options.headers)")
        if not isinstance(value, str) or any(not (0x20 <= ord(c) < 0x7f or c == "\t") for c in value):
            raise InvalidRequestError(
                f"the value of header {name!r} has characters an HTTP header cannot carry "
                "(not ASCII, a line break or a control character)",
                hint="check the model's key (ai.alter_model(..., auth => ...)) and options.headers: header values "
                     "are printable ASCII text on one line")


def transport_failure(e: Exception) -> str:
    """What went wrong with a connection, in words (the exception's class and text stay in the log:
    a protocol error's text can hold a header value)."""
    if isinstance(e, httpx.ConnectError):
        # its text is the socket's or TLS's ("All connection attempts failed", "[Errno 111] Connection
        # refused", "[SSL: CERTIFICATE_VERIFY_FAILED] ..."): kept unless it names an exception class
        reason = str(e).strip()[:200]
        return f"the connection failed ({reason})" if reason and not _CLASS_NAME.search(reason) \
            else "the connection failed"
    if isinstance(e, httpx.LocalProtocolError):
        return "the request could not be sent as HTTP"
    if isinstance(e, httpx.RemoteProtocolError):
        return "the server did not answer in HTTP, or closed the connection"
    if isinstance(e, httpx.ProxyError):
        return "the proxy refused the connection"
    if isinstance(e, httpx.UnsupportedProtocol):
        return "the URL is not http or https"
    if isinstance(e, (httpx.ReadError, httpx.WriteError)):
        return "the connection broke"
    return "the connection failed"


def redact(text: str, secrets: list[str]) -> str:
    """The text with every secret (a header value, the token in it) replaced: providers echo keys."""
    for s in secrets:
        for piece in (s, s.split(" ", 1)[-1]):
            if piece and len(piece) >= 6:
                text = text.replace(piece, "***")
    return text
