"""ai.load_file: the bytes of a file, an http(s) URL or an S3 object — only under a prefix an
administrator allowed (ai.allow_load_from; empty by default).  Paths are resolved (``..``,
symlinks) and checked on the file actually opened; redirects are followed by hand and every hop is
checked against the same list; sizes are capped while reading."""
from __future__ import annotations

import asyncio
import logging
import os
import posixpath
import stat
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Collection

import httpx

from ..errors import ConfigError, InvalidRequestError, PermissionDeniedError, ProviderError
from . import codec

log = logging.getLogger(__name__)
SCHEMES = ("file", "http", "https", "s3")
MAX_REDIRECTS = 5


@dataclass(frozen=True)
class Allowed:
    prefix: str                        # file:///dir/  https://host/path/  s3://bucket/prefix/
    options: dict = field(default_factory=dict)
    auth: dict = field(default_factory=dict)
    secret: dict | None = field(default=None, repr=False)


def _refused(what: str) -> PermissionDeniedError:
    return PermissionDeniedError(f"{what} is not under a location allowed for loading",
                                 hint="an administrator allows it with select ai.allow_load_from('<directory or URL "
                                      "prefix>'); see select * from ai.load_allow_list")


def canonical(url: str) -> str:
    """The URL as it is matched: file paths absolute, resolved and without symlinks; other URLs with
    a lower-case scheme and host, no user info, and ``.``/``..`` segments resolved."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidRequestError("the location is empty", hint="pass file:///path, https://… or s3://bucket/key")
    if "\x00" in url:
        raise InvalidRequestError("the location has a NUL character")
    if url.startswith("/"):
        url = "file://" + url
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise InvalidRequestError(f"cannot load from {url[:200]!r}",
                                  hint="use an absolute path, file:///path, http(s)://host/path or s3://bucket/key")
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise InvalidRequestError("file URLs name a path on this machine: file:///path")
        path = urllib.parse.unquote(parts.path)
        if not path.startswith("/"):
            raise InvalidRequestError(f"{path!r} is not an absolute path", hint="e.g. file:///data/photos/cat.jpg")
        return "file://" + os.path.realpath(path)
    if parts.username or parts.password:
        raise InvalidRequestError("credentials in the URL are not accepted",
                                  hint="give them to ai.allow_load_from(..., credentials => ...) instead")
    if not parts.hostname:
        raise InvalidRequestError(f"{url[:200]!r} names no host or bucket")
    path = posixpath.normpath(urllib.parse.unquote(parts.path) or "/")
    if parts.path.endswith("/") and not path.endswith("/"):
        path += "/"
    host = parts.hostname.lower() + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((scheme, host, urllib.parse.quote(path.lstrip("/") and path), parts.query, ""))


class Loader:
    def __init__(self, allowed: Callable[[], Awaitable[list[Allowed]]], secret_env: Collection[str] = (),
                 ttl: float = 30.0):
        """``allowed()`` reads the list (from the database); it is kept ``ttl`` seconds (the model
        server uses 0: a change applies at once; a worker re-reads it at most every ``ttl``)."""
        self._allowed, self.ttl = allowed, ttl
        self._entries: list[Allowed] | None = None
        self._at = 0.0
        self.secret_env = frozenset(secret_env)
        self._http: httpx.AsyncClient | None = None

    async def entries(self) -> list[Allowed]:
        """The allowed prefixes, canonical: a directory as its real path (/data may be a symlink)."""
        if self._entries is None or time.monotonic() - self._at > self.ttl:
            entries = []
            for entry in await self._allowed():
                try:
                    prefix = canonical(entry.prefix)
                except InvalidRequestError:   # (ai.allow_load_from refuses these; a hand-made row is skipped)
                    log.warning("load allow-list entry %r is not a location; ignored", entry.prefix)
                    continue
                entries.append(Allowed(prefix if prefix.endswith("/") else prefix + "/", entry.options,
                                       entry.auth, entry.secret))
            self._entries, self._at = entries, time.monotonic()
        return self._entries

    async def _match(self, url: str) -> Allowed:
        for entry in await self.entries():
            if url.startswith(entry.prefix) or url + "/" == entry.prefix:
                return entry
        raise _refused(url if not url.startswith("file://") else url[len("file://"):])

    async def load(self, location: str) -> bytes:
        url = canonical(location)
        entry = await self._match(url)
        scheme = url.split(":", 1)[0]
        if scheme == "file":
            return await asyncio.to_thread(self._read_file, url[len("file://"):], entry)
        if scheme == "s3":
            return await asyncio.to_thread(self._read_s3, url, entry)
        return await self._read_http(url)

    # -- files ----------------------------------------------------------------------------------
    @staticmethod
    def _read_file(path: str, entry: Allowed) -> bytes:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
        except FileNotFoundError:
            raise InvalidRequestError(f"no file {path}", hint="check the path (select * from ai.load_allow_list)") from None
        except IsADirectoryError:
            raise InvalidRequestError(f"{path} is a directory, not a file") from None
        except PermissionError:
            raise PermissionDeniedError(f"the model server may not read {path}",
                                        hint="make the file readable by the user `pgmind serve` runs as") from None
        except OSError as e:
            raise InvalidRequestError(f"cannot open {path}: {e.strerror}") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise InvalidRequestError(f"{path} is a directory or a device, not a file",
                                      hint="name an image file in the directory")
        with os.fdopen(fd, "rb") as f:
            # the file actually opened must still be inside the allowed directory (a symlink or a
            # rename between the check and the open cannot lead out of it)
            real = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists(f"/proc/self/fd/{fd}") else path
            if not ("file://" + real).startswith(entry.prefix):
                raise _refused(path)
            codec.check_size(st.st_size, path)
            data = f.read(codec.MAX_BYTES + 1)
        codec.check_size(len(data), path)         # (it may have grown since fstat)
        return data

    # -- http(s) --------------------------------------------------------------------------------
    async def _read_http(self, url: str) -> bytes:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=30.0, follow_redirects=False,
                                           headers={"User-Agent": "pgmind-load-file"})
        for _ in range(MAX_REDIRECTS + 1):
            try:
                async with self._http.stream("GET", url) as resp:
                    if resp.is_redirect:
                        target = canonical(urllib.parse.urljoin(url, resp.headers.get("location", "")))
                        await self._match(target)       # every hop must be allowed
                        url = target
                        continue
                    if resp.status_code in (404, 410):
                        raise InvalidRequestError(f"no file at {url} (HTTP {resp.status_code})", hint="check the URL")
                    if resp.status_code >= 400:
                        raise ProviderError(f"GET {url} answered HTTP {resp.status_code}", status=resp.status_code,
                                            retryable=resp.status_code >= 500,
                                            hint="check the URL; the server refused or does not have it")
                    length = resp.headers.get("content-length")
                    if length and length.isdigit():
                        codec.check_size(int(length), url)
                    data = bytearray()
                    async for block in resp.aiter_bytes():
                        data += block
                        codec.check_size(len(data), url)
                    return bytes(data)
            except httpx.HTTPError as e:
                raise ProviderError(f"cannot fetch {url}: {type(e).__name__}", retryable=True,
                                    hint="check that the host is reachable from the model server") from None
        raise InvalidRequestError(f"{url} redirects more than {MAX_REDIRECTS} times")

    # -- S3-compatible stores ---------------------------------------------------------------------
    def _credentials(self, entry: Allowed) -> dict:
        kind = entry.auth.get("author_type", "none")
        if kind == "token":
            return {"aws_access_key_id": (entry.secret or {}).get("access_key_id"),
                    "aws_secret_access_key": (entry.secret or {}).get("secret_access_key")}
        if kind == "env":
            out = {}
            for arg, name in (("aws_access_key_id", entry.auth.get("access_key_env")),
                              ("aws_secret_access_key", entry.auth.get("secret_key_env"))):
                if name not in self.secret_env:
                    raise PermissionDeniedError(f"{entry.prefix} takes credentials from ${name}, which the model "
                                                "server does not lend", hint=f"add {name} to PGMIND_SECRET_ENV")
                if not os.environ.get(name):
                    raise ConfigError(f"${name} is not set in the model server's environment")
                out[arg] = os.environ[name]
            return out
        return {}

    def _read_s3(self, url: str, entry: Allowed) -> bytes:
        try:
            import boto3
            from botocore.config import Config
            from botocore.exceptions import BotoCoreError, ClientError
        except ImportError:
            raise ConfigError("s3:// needs boto3", hint="pip install 'pgmind[local]'") from None
        parts = urllib.parse.urlsplit(url)
        bucket, key = parts.hostname, urllib.parse.unquote(parts.path.lstrip("/"))
        client = boto3.client("s3", endpoint_url=entry.options.get("endpoint_url"),
                              region_name=entry.options.get("region", "us-east-1"),
                              config=Config(retries={"max_attempts": 3}, connect_timeout=10, read_timeout=30,
                                            s3={"addressing_style": entry.options.get("addressing_style", "path")}),
                              **self._credentials(entry))
        try:
            head = client.head_object(Bucket=bucket, Key=key)
            codec.check_size(int(head.get("ContentLength") or 0), url)
            data = client.get_object(Bucket=bucket, Key=key)["Body"].read(codec.MAX_BYTES + 1)
            codec.check_size(len(data), url)
            return data
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound"):
                raise InvalidRequestError(f"no object {url}") from None
            if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise PermissionDeniedError(f"the store refused {url} ({code})",
                                            hint="check the credentials given to ai.allow_load_from") from None
            raise ProviderError(f"the store failed on {url}: {code}", retryable=True) from None
        except BotoCoreError as e:
            raise ProviderError(f"cannot reach the store for {url}: {type(e).__name__}", retryable=True) from None

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()


LOAD_ALLOW_QUERY = """select a.prefix, a.options, a.auth, s.secret
                      from ai.load_allow a left join ai.load_secrets s on s.prefix = a.prefix"""


async def load_allow_list(pool) -> list[Allowed]:
    async with pool.connection() as conn:
        rows = await (await conn.execute(LOAD_ALLOW_QUERY)).fetchall()
    return [Allowed(p, o or {}, a or {}, s) for p, o, a, s in rows]
