"""Settings: PGMIND_* environment variables, then ``pgmind.toml`` in the home directory, then defaults.

Nothing is read at import time; call :func:`load_settings` in the entry point.
"""
from __future__ import annotations

import os
import secrets
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from .errors import ConfigError


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=lambda: Path(".pgmind").resolve())
    dsn: str | None = None               # an existing server; None means the embedded cluster
    pg_port: int = 54329                 # the embedded cluster's loopback port
    server_host: str = "127.0.0.1"       # the model server listens on loopback by default
    server_port: int = 8765
    server_url: str | None = None        # how the database reaches the model server
    token: str | None = None             # the model server's bearer token
    service_dsn: str | None = None       # how the services connect (default: dsn as pgmind_service)
    gateway_dsn: str | None = None       # how HTTP search connects to act as API keys' roles (pgmind_gateway)
    cache_dir: Path = field(default_factory=lambda: Path(
        os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pgmind")
    batch_wait_ms: float = 0.0           # extra wait to fill embedding batches (0: batch what queued)
    max_batch_size: int = 64
    log_payloads: bool = False           # ai.call_log stores no payloads unless asked
    request_timeout: float = 60.0        # seconds, for remote providers
    max_retries: int = 3
    search_timeout: float = 30.0         # seconds, for /v1/search and /v1/ask's retrieval
    max_body_mb: float = 16.0            # the largest request body the model server reads
    max_inputs: int = 2048               # texts in one embedding request
    embed_cache: int = 50_000            # embeddings of local models kept in memory (0: none; models/local/embed_cache.py)
    prefix_cache_mb: int = 64            # llama.cpp prompt-prefix states kept per chat model (0: none; models/local/llama_prefix.py)
    max_input_chars: int = 200_000       # characters in one text
    max_image_mb: float = 20.0           # the largest image file ai.load_file and the image helpers read
    max_image_pixels: int = 50_000_000   # width × height an image may decode to (decompression bombs)
    public_metrics: bool = False         # /metrics without a credential (for a Prometheus on loopback)
    # environment variables a model registered with {"author_type": "env"} may read (comma-separated)
    secret_env: str = "OPENAI_API_KEY,DASHSCOPE_API_KEY"

    @property
    def secret_env_names(self) -> frozenset[str]:
        return frozenset(n.strip() for n in self.secret_env.split(",") if n.strip())

    @property
    def data_dir(self) -> Path:
        return self.home / "pgdata"

    @property
    def socket_dir(self) -> Path:
        return self.home / "run"

    @property
    def token_file(self) -> Path:
        return self.home / "server.token"

    @property
    def models_dir(self) -> Path:
        return self.cache_dir / "models"

    @property
    def effective_server_url(self) -> str:
        if self.server_url:
            return self.server_url.rstrip("/")
        host = "127.0.0.1" if self.server_host in ("0.0.0.0", "::", "") else self.server_host
        return f"http://{host}:{self.server_port}"

    def role_password(self, role: str, create: bool = False) -> str | None:
        """The password of one of pgmind's own roles (pgmind_service, pgmind_gateway), made by
        `pgmind install` in an owner-only file under the home directory; None before that."""
        path = self.home / f"{role}.password"
        if path.exists():
            return path.read_text().strip()
        if not create:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        password = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        return password

    def server_token(self, create: bool = False) -> str:
        """The model server's token: PGMIND_TOKEN, else the owner-only file under the home directory."""
        if self.token:
            return self.token
        path = self.token_file
        if path.exists():
            return path.read_text().strip()
        if not create:
            raise ConfigError(f"no model server token: {path} does not exist",
                              hint="run `pgmind install` (it creates the token) or set PGMIND_TOKEN")
        path.parent.mkdir(parents=True, exist_ok=True)
        token = "pgm-" + secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        return token


_ENV = {
    "home": "PGMIND_HOME", "dsn": "PGMIND_DSN", "pg_port": "PGMIND_PG_PORT",
    "server_host": "PGMIND_SERVER_HOST", "server_port": "PGMIND_SERVER_PORT",
    "server_url": "PGMIND_SERVER_URL", "token": "PGMIND_TOKEN", "cache_dir": "PGMIND_CACHE_DIR",
    "service_dsn": "PGMIND_SERVICE_DSN", "gateway_dsn": "PGMIND_GATEWAY_DSN",
    "batch_wait_ms": "PGMIND_BATCH_WAIT_MS", "max_batch_size": "PGMIND_MAX_BATCH_SIZE",
    "log_payloads": "PGMIND_LOG_PAYLOADS", "request_timeout": "PGMIND_REQUEST_TIMEOUT",
    "max_retries": "PGMIND_MAX_RETRIES", "search_timeout": "PGMIND_SEARCH_TIMEOUT",
    "max_body_mb": "PGMIND_MAX_BODY_MB", "max_inputs": "PGMIND_MAX_INPUTS", "embed_cache": "PGMIND_EMBED_CACHE", "prefix_cache_mb": "PGMIND_PREFIX_CACHE_MB",
    "max_input_chars": "PGMIND_MAX_INPUT_CHARS",
    "max_image_mb": "PGMIND_MAX_IMAGE_MB", "max_image_pixels": "PGMIND_MAX_IMAGE_PIXELS",
    "public_metrics": "PGMIND_PUBLIC_METRICS", "secret_env": "PGMIND_SECRET_ENV",
}


def _convert(name: str, value, typ) -> object:
    try:
        if name in ("home", "cache_dir"):
            return Path(value).expanduser().resolve()
        if typ in ("int",):
            return int(value)
        if typ in ("float",):
            return float(value)
        if typ in ("bool",):
            return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")
        return str(value)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"setting {name} has an invalid value {value!r}: {e}",
                          hint=f"set {_ENV[name]} to a valid {typ}") from None


def load_settings(**overrides) -> Settings:
    """Environment first, then ``<home>/pgmind.toml``; keyword overrides (from the CLI) win over both."""
    env = os.environ
    home = Path(overrides.get("home") or env.get("PGMIND_HOME") or ".pgmind").expanduser().resolve()
    values: dict = {}
    toml_path = home / "pgmind.toml"
    if toml_path.exists():
        try:
            values.update(tomllib.loads(toml_path.read_text()))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{toml_path} is not valid TOML: {e}") from None
    for name, var in _ENV.items():
        if var in env and env[var] != "":
            values[name] = env[var]
    values.update({k: v for k, v in overrides.items() if v is not None})
    values["home"] = home
    types = {f.name: f.type for f in fields(Settings)}
    unknown = set(values) - set(types)
    if unknown:
        raise ConfigError(f"unknown settings in {toml_path}: {', '.join(sorted(unknown))}")
    typed = {k: _convert(k, v, str(types[k]).split(" ")[0]) for k, v in values.items()}
    return Settings(**typed)
