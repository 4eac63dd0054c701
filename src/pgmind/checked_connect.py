"""Connections for fetching content from URLs an administrator allowed by prefix (the load
allow-list: ``pgmind ingest``'s pages, ``ai.load_file``'s http(s) URLs): the host is resolved here,
every address it resolves to is checked, and the connection goes to a checked address (never to a
second lookup's, which a DNS answer that changes after the check would steer).

An address passes when it is public (not loopback, private, link-local, shared, reserved, ...) or
when an allowed prefix names that very address and port: a name on the list cannot lead to
127.0.0.1 or 10.x (``localhost``, ``127.1``, DNS rebinding); an administrator who means a private
server lists its address.  A cloud's instance metadata service (169.254.169.254, fd00:ec2::254,
Alibaba Cloud's 100.100.100.200) and the unspecified addresses (0.0.0.0, ::, which reach this
machine) are never connected to, listed or not: they hand out the machine's credentials.

httpx has no public way to give its connection pool a network backend, so ``transport`` and
``async_transport`` make the pool the way httpx's transports do, with the checking backend; no
proxy from the environment is used (a proxy would make the connection these checks are about).
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import urllib.parse
from typing import Callable, Iterable

import httpcore
import httpx

from .errors import PermissionDeniedError, ProviderError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
METADATA = frozenset(ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200"))
Prefixes = Callable[[], Iterable[str]]       # the allowed prefixes, as they are now


# IPv6 ranges that carry an IPv4 address, reached through a gateway (NAT64, 6to4) or by old stacks
# (IPv4-compatible): Python calls most of them global whatever the IPv4 address inside is
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_6TO4 = ipaddress.ip_network("2002::/16")
_COMPAT = ipaddress.ip_network("::/96")
_IETF = ipaddress.ip_network("192.0.0.0/24")          # IETF protocol assignments (a cloud's old metadata)


def _plain(addr: Address) -> Address:
    """An IPv4-mapped IPv6 address (::ffff:127.0.0.1) as the IPv4 address it is."""
    return addr.ipv4_mapped if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped else addr


def _embedded_ipv4(addr: Address) -> ipaddress.IPv4Address | None:
    if not isinstance(addr, ipaddress.IPv6Address):
        return None
    if any(addr in n for n in _NAT64) or addr in _COMPAT:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    if addr in _6TO4:
        return addr.sixtofour
    return None


def _is_public(addr: Address) -> bool:
    inner = _embedded_ipv4(addr)
    if inner is not None and not _is_public(inner):
        return False
    return addr.is_global and not addr.is_multicast and addr not in _IETF


def names_address(prefixes: Iterable[str], addr: Address, port: int) -> bool:
    """Whether an http(s) prefix names this address (and port) itself: the administrator meant it."""
    for p in prefixes:
        parts = urllib.parse.urlsplit(p)
        if parts.scheme not in ("http", "https"):
            continue
        try:
            listed = _plain(ipaddress.ip_address(parts.hostname or ""))
            listed_port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            continue
        if listed == addr and listed_port == port:
            return True
    return False


def checked(host: str, port: int, infos: list, prefixes: Iterable[str]) -> list[str]:
    """The addresses of getaddrinfo's ``infos`` to connect to, each checked; PermissionDeniedError
    for the first that may not be."""
    prefixes = list(prefixes)
    addrs = [_plain(ipaddress.ip_address(info[4][0].split("%")[0])) for info in infos]
    for addr in addrs:
        if addr in METADATA or addr.is_unspecified:
            raise PermissionDeniedError(f"{host} is {addr}, a cloud metadata or unspecified address, which is never "
                                        "fetched", hint="fetch the content from its real host")
        if not _is_public(addr) and not names_address(prefixes, addr, port):
            shown = addr if addr.version == 4 else f"[{addr}]"
            raise PermissionDeniedError(
                f"{host} resolves to {addr}, a loopback or private address",
                hint=f"an administrator who means that server allows its address: "
                     f"select ai.allow_load_from('http://{shown}:{port}/')")
    return list(dict.fromkeys(str(a) for a in addrs))


def _unresolved(host: str, e: Exception) -> ProviderError:
    return ProviderError(f"cannot resolve {host}: {getattr(e, 'strerror', None) or e}",
                         hint="check the host name and this machine's DNS")


class CheckedBackend(httpcore.NetworkBackend):
    def __init__(self, prefixes: Prefixes):
        self._prefixes, self._inner = prefixes, httpcore.SyncBackend()

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as e:
            raise _unresolved(host, e) from None
        # each checked address in turn, as a connection to the name would try them (an IPv6
        # address first on a machine without an IPv6 route must not fail the fetch)
        failure = None
        for addr in checked(host, port, infos, self._prefixes()):
            try:
                return self._inner.connect_tcp(addr, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as e:
                failure = e
        raise failure

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise PermissionDeniedError("content is fetched over TCP only")

    def sleep(self, seconds):
        self._inner.sleep(seconds)


class AsyncCheckedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, prefixes: Prefixes):
        self._prefixes, self._inner = prefixes, httpcore.AnyIOBackend()

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as e:
            raise _unresolved(host, e) from None
        failure = None
        for addr in checked(host, port, infos, self._prefixes()):
            try:
                return await self._inner.connect_tcp(addr, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as e:
                failure = e
        raise failure

    async def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise PermissionDeniedError("content is fetched over TCP only")

    async def sleep(self, seconds):
        await self._inner.sleep(seconds)


def _ssl_context() -> ssl.SSLContext:
    import certifi
    return ssl.create_default_context(cafile=certifi.where())


def transport(prefixes: Prefixes) -> httpx.HTTPTransport:
    t = httpx.HTTPTransport(trust_env=False)
    t._pool = httpcore.ConnectionPool(ssl_context=_ssl_context(), network_backend=CheckedBackend(prefixes),
                                      max_connections=4)
    return t


def async_transport(prefixes: Prefixes) -> httpx.AsyncHTTPTransport:
    t = httpx.AsyncHTTPTransport(trust_env=False)
    t._pool = httpcore.AsyncConnectionPool(ssl_context=_ssl_context(),
                                           network_backend=AsyncCheckedBackend(prefixes), max_connections=10)
    return t
