"""ai.load_file: the bytes of a file, an http(s) URL or an S3 object — only under a prefix an
administrator allowed (ai.allow_load_from; empty by default).  Paths are resolved (``..``,
symlinks) and checked on the file actually opened; redirects are followed by hand and every hop is
checked against the same list, and each connection's address too (checked_connect: public, or
named by a prefix; never a metadata address); sizes are capped while reading."""
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
from ..models.outbound import transport_failure
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
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port                 # (a port that is not a number, or over 65535, raises here)
    except ValueError:                    # an unbalanced [ or ], a port that is not a number
        raise InvalidRequestError(f"{url[:200]!r} is not a valid URL",
                                  hint="a host is a name or an address ([v6] in brackets), a port a number "
                                       "from 1 to 65535: file:///path, https://host[:port]/path or s3://bucket/key"
                                  ) from None
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
    if any(ord(c) < 0x21 or ord(c) == 0x7f for c in url):
        raise InvalidRequestError(f"{url[:200]!r} has a space or a control character",
                                  hint="percent-encode it in the URL (%20, %0A, ...)")
    if parts.username or parts.password:
        raise InvalidRequestError("credentials in the URL are not accepted",
                                  hint="give them to ai.allow_load_from(..., credentials => ...) instead")
    if not parts.hostname:
        raise InvalidRequestError(f"{url[:200]!r} names no host or bucket")
    path = posixpath.normpath(urllib.parse.unquote(parts.path) or "/")
    if parts.path.endswith("/") and not path.endswith("/"):
        path += "/"
    host = parts.hostname.lower()
    if ":" in host:                       # an IPv6 address keeps its brackets
        host = f"[{host}]"
    host += f":{port}" if port else ""
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
            # connections only to public addresses or ones a prefix names, never a cloud metadata
            # address, and to the address checked (checked_connect): a name on the list whose DNS
            # answer is 127.0.0.1 or 169.254.169.254 leads nowhere
            from ..checked_connect import async_transport
            self._http = httpx.AsyncClient(timeout=30.0, follow_redirects=False, trust_env=False,
                                           transport=async_transport(lambda: [e.prefix for e in self._entries or []]),
                                           headers={"User-Agent": "pgmind-load-file"})
        for _ in range(MAX_REDIRECTS + 1):
            try:
                async with self._http.stream("GET", url) as resp:
                    if resp.is_redirect:
                        try:
                            target = urllib.parse.urljoin(url, resp.headers.get("location", ""))
                        except ValueError:
                            raise InvalidRequestError(f"{url} redirects to a location that is not a URL") from None
                        target = canonical(target)
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
            except httpx.TimeoutException:
                raise ProviderError(f"cannot fetch {url}: it did not answer in time", retryable=True,
                                    hint="check that the host is reachable from the model server") from None
            except httpx.HTTPError as e:
                raise ProviderError(f"cannot fetch {url}: {transport_failure(e)}", retryable=True,
                                    hint="check that the host is reachable from the model server") from None
            except (httpx.InvalidURL, UnicodeError):    # (canonical refuses what it can see; e.g. a host IDNA cannot encode)
                raise InvalidRequestError(f"{url[:200]!r} is not a valid URL", hint="check the host name") from None
        raise InvalidRequestError(f"{url} redirects more than {MAX_REDIRECTS} times")

    # -- S3-compatible stores ---------------------------------------------------------------------
    # An s3:// prefix is read with the credentials its own entry names (its stored secret, or
    # environment variables lent by PGMIND_SECRET_ENV), or without signing where the entry says
    # options {"anonymous": true}: never with boto3's default chain (AWS_* variables, ~/.aws, the
    # cloud instance's role), which is the model server's own identity, not the administrator's.
    NO_CREDENTIALS_HINT = ("give the prefix credentials: select ai.allow_load_from('<s3://bucket/prefix/>', options, "
                           "credentials => '{\"access_key_id\": \"...\", \"secret_access_key\": \"...\"}') "
                           "(or '{\"access_key_env\": \"NAME\", \"secret_key_env\": \"NAME\"}' with variables "
                           "lent by PGMIND_SECRET_ENV); a public bucket is read unsigned with options "
                           "'{\"anonymous\": true}'")

    def _credentials(self, entry: Allowed) -> dict:
        """boto3 client arguments that fix how requests to ``entry`` are signed."""
        kind = entry.auth.get("author_type", "none")
        if kind == "token":
            secret = entry.secret or {}
            key, password = secret.get("access_key_id"), secret.get("secret_access_key")
            if not (isinstance(key, str) and key and isinstance(password, str) and password):
                raise ConfigError(f"{entry.prefix} has no stored credentials (the secret is missing or incomplete)",
                                  hint=self.NO_CREDENTIALS_HINT)
            return {"aws_access_key_id": key, "aws_secret_access_key": password, "aws_session_token": None}
        if kind == "env":
            out = {}
            for arg, name in (("aws_access_key_id", entry.auth.get("access_key_env")),
                              ("aws_secret_access_key", entry.auth.get("secret_key_env"))):
                if not isinstance(name, str) or not name:
                    raise ConfigError(f"{entry.prefix} names no environment variable for its "
                                      f"{'access key id' if arg == 'aws_access_key_id' else 'secret key'}",
                                      hint=self.NO_CREDENTIALS_HINT)
                if name not in self.secret_env:
                    raise PermissionDeniedError(f"{entry.prefix} takes credentials from ${name}, which the model "
                                                "server does not lend", hint=f"add {name} to PGMIND_SECRET_ENV")
                if not os.environ.get(name):
                    raise ConfigError(f"${name} is not set in the model server's environment",
                                      hint=f"export {name}=... before `pgmind serve`")
                out[arg] = os.environ[name]
            return {**out, "aws_session_token": None}
        if entry.options.get("anonymous") is True:
            return {}
        raise PermissionDeniedError(f"{entry.prefix} has no credentials, and the model server does not read S3 "
                                    "with its own identity", hint=self.NO_CREDENTIALS_HINT)

    def _read_s3(self, url: str, entry: Allowed) -> bytes:
        credentials = self._credentials(entry)          # (before anything is sent)
        try:
            import botocore
            import botocore.session
            from botocore.config import Config
            from botocore.exceptions import BotoCoreError, ClientError
        except ImportError:
            raise ConfigError("s3:// needs boto3", hint="pip install 'pgmind[local]'") from None
        parts = urllib.parse.urlsplit(url)
        bucket, key = parts.hostname, urllib.parse.unquote(parts.path.lstrip("/"))
        region = entry.options.get("region") or "us-east-1"
        config = Config(retries={"max_attempts": 3}, connect_timeout=10, read_timeout=30,
                        s3={"addressing_style": entry.options.get("addressing_style", "path")},
                        **({} if credentials else {"signature_version": botocore.UNSIGNED}))
        # explicit credentials (or none, unsigned) and an explicit endpoint: neither AWS_* variables,
        # ~/.aws nor the instance role decide as whom, nor AWS_ENDPOINT_URL where, the request goes
        try:
            client = botocore.session.Session().create_client(
                "s3", endpoint_url=entry.options.get("endpoint_url") or f"https://s3.{region}.amazonaws.com",
                region_name=region, config=config, **credentials)
        except (BotoCoreError, ValueError):
            raise ConfigError(f"cannot make an S3 client for {entry.prefix}",
                              hint="check the prefix's options (endpoint_url, region, addressing_style)") from None
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
        except BotoCoreError:
            raise ProviderError(f"cannot reach the store for {url}", retryable=True,
                                hint="check the prefix's endpoint_url and that the store is reachable from the "
                                     "model server") from None

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()


LOAD_ALLOW_QUERY = """select a.prefix, a.options, a.auth, s.secret
                      from ai.load_allow a left join ai.load_secrets s on s.prefix = a.prefix"""


async def load_allow_list(pool) -> list[Allowed]:
    async with pool.connection() as conn:
        rows = await (await conn.execute(LOAD_ALLOW_QUERY)).fetchall()
    return [Allowed(p, o or {}, a or {}, s) for p, o, a, s in rows]
