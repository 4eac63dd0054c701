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
import socket
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

import httpx

from ..errors import PermissionDeniedError

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
        try:
            u = httpx.URL(url)
        except httpx.InvalidURL:
            raise PermissionDeniedError("the model URL is not a valid URL", hint="register an http(s) URL") from None
        if u.scheme not in ("http", "https") or not u.host:
            raise PermissionDeniedError(f"outbound requests use http or https, not {u.scheme or 'nothing'}",
                                        hint="register an http(s) URL")
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
        for info in infos:
            addr = ipaddress.ip_address(info[4][0].split("%")[0])
            if not _is_public(addr) and not any(e.covers(addr, port) for e in entries):
                raise PermissionDeniedError(
                    f"{host} resolves to {addr}, a loopback or private address that is not allowed",
                    hint=f"an administrator can allow that address: select ai.allow_outbound('{addr}')")


def redact(text: str, secrets: list[str]) -> str:
    """The text with every secret (a header value, the token in it) replaced: providers echo keys."""
    for s in secrets:
        for piece in (s, s.split(" ", 1)[-1]):
            if piece and len(piece) >= 6:
                text = text.replace(piece, "***")
    return text
