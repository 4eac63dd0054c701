"""Starting the model server as a child process and waiting until it answers: used by the tests,
the benchmarks and the demo, so each does not carry its own copy."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx

from .config import Settings
from .errors import ModelServerUnavailableError


def settings_env(settings: Settings) -> dict:
    """Environment that makes a child pgmind process use these settings."""
    env = {**os.environ, "PGMIND_HOME": str(settings.home), "PGMIND_PG_PORT": str(settings.pg_port),
           "PGMIND_SERVER_PORT": str(settings.server_port), "PGMIND_SERVER_HOST": settings.server_host}
    if settings.dsn:
        env["PGMIND_DSN"] = settings.dsn
    return env


def start_server(settings: Settings, extra_env: dict | None = None, timeout: float = 60.0,
                 args: tuple[str, ...] = ()) -> subprocess.Popen:
    log_path = settings.home / "server.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "pgmind.cli", "serve", *args],
                                env={**settings_env(settings), **(extra_env or {})}, stdout=log, stderr=log)
    url = settings.effective_server_url + "/health"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ModelServerUnavailableError(f"the model server exited: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise ModelServerUnavailableError(f"the model server did not answer within {timeout:g} s",
                                      hint=f"see {log_path}")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sandbox:
    """A throwaway pgmind: a fresh cluster in a temporary home, the schema installed, and the model
    server running. For benchmarks; ``with Sandbox() as sb: sb.dsn, sb.settings``."""

    def __enter__(self) -> "Sandbox":
        import tempfile
        from pathlib import Path

        from .config import load_settings
        from .db import Cluster, connect, install
        home = Path(tempfile.mkdtemp(prefix="pgmind-sandbox-"))
        os.chmod(home, 0o711)
        self.settings = load_settings(home=str(home), pg_port=free_port(), server_port=free_port())
        self.cluster = Cluster(self.settings)
        self.cluster.start()
        self.dsn = self.cluster.dsn
        with connect(self.dsn, register_vector=False) as conn:
            self.settings.server_token(create=True)
            install(conn, server_url=self.settings.effective_server_url)
        self.server = start_server(self.settings, args=("--no-worker",))
        return self

    def __exit__(self, *exc) -> None:
        import shutil
        stop_server(self.server)
        self.cluster.destroy()
        shutil.rmtree(self.settings.home, ignore_errors=True)
