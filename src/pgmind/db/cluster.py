"""The embedded PostgreSQL 15 cluster under ``<home>/pgdata``: the default that needs no set-up.

It listens on a unix socket in ``<home>/run`` (owner-only) and on a loopback port.
PostgreSQL refuses to run as root, so when we are root it runs as the ``postgres``
OS user, which then owns the data directory.
"""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import Settings
from ..errors import ClusterError

PG_BIN = Path(os.environ.get("PGMIND_PG_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER = "pgmind"
DATABASE = "pgmind"


@dataclass
class Cluster:
    settings: Settings

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    @property
    def socket_dir(self) -> Path:
        return self.settings.socket_dir

    @property
    def port(self) -> int:
        return self.settings.pg_port

    @property
    def dsn(self) -> str:
        return f"host={self.socket_dir} port={self.port} dbname={DATABASE} user={SUPERUSER}"

    # -- running commands as the right OS user --------------------------------------------
    def _os_user(self) -> str | None:
        """The OS user PostgreSQL runs as: ``postgres`` when we are root, else ourselves (None)."""
        return "postgres" if os.geteuid() == 0 else None

    def _run(self, args: list[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
        user = self._os_user()
        if user:
            pw = pwd.getpwnam(user)
            kw["user"], kw["group"] = pw.pw_uid, pw.pw_gid
            kw["extra_groups"] = []
            kw.setdefault("env", {**os.environ, "HOME": pw.pw_dir, "USER": user})
        kw.setdefault("cwd", "/")
        proc = subprocess.run(args, capture_output=True, text=True, **kw)
        if check and proc.returncode != 0:
            raise ClusterError(f"{Path(args[0]).name} failed: {(proc.stderr or proc.stdout).strip()}",
                               hint=f"see the server log at {self.data_dir / 'postgres.log'}")
        return proc

    def _chown(self, path: Path) -> None:
        user = self._os_user()
        if user:
            pw = pwd.getpwnam(user)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def _check_reachable(self) -> None:
        """As root, the postgres user must be able to reach the home directory."""
        user = self._os_user()
        if not user:
            return
        probe = self._run(["/usr/bin/test", "-x", str(self.settings.home)], check=False)
        if probe.returncode != 0:
            raise ClusterError(
                f"the postgres OS user cannot reach {self.settings.home}",
                hint="put the pgmind home where postgres can traverse every parent directory: "
                     "set PGMIND_HOME=/var/lib/pgmind or chmod o+x the parent directories")

    # -- lifecycle ---------------------------------------------------------------------------
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def running(self) -> bool:
        if not self.initialized():
            return False
        return self._run([str(PG_BIN / "pg_ctl"), "status", "-D", str(self.data_dir)],
                         check=False).returncode == 0

    def init(self) -> None:
        if not (PG_BIN / "initdb").exists():
            raise ClusterError(f"PostgreSQL 15 is not installed ({PG_BIN / 'initdb'} is missing)",
                               hint="run scripts/setup.sh, or apt-get install postgresql-15")
        self.settings.home.mkdir(parents=True, exist_ok=True)
        os.chmod(self.settings.home, 0o711)  # others may traverse, not list
        self._check_reachable()
        for d, mode in ((self.data_dir, 0o700), (self.socket_dir, 0o700)):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, mode)
            self._chown(d)
        self._run([str(PG_BIN / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
                   "--auth-local=trust", "--auth-host=scram-sha-256",
                   "--encoding=UTF8", "--locale=C.UTF-8", "--no-instructions"])
        conf = self.data_dir / "postgresql.conf"
        extra = (
            "\n# pgmind embedded cluster\n"
            f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
            f"unix_socket_directories = '{self.socket_dir}'\n"
            "unix_socket_permissions = 0700\n"
            "shared_buffers = 256MB\nmaintenance_work_mem = 512MB\nmax_connections = 200\n"
            "logging_collector = off\n"
        )
        # postgres owns the file; append through the same user
        self._run(["/bin/sh", "-c", f"cat >> '{conf}'"], input=extra)

    def start(self) -> None:
        if not self.initialized():
            self.init()
        if self.running():
            return
        self._check_reachable()
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self._chown(self.socket_dir)
        log = self.data_dir / "postgres.log"
        proc = self._run([str(PG_BIN / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(self.data_dir),
                          "-l", str(log)], check=False)
        if proc.returncode != 0:
            tail = log.read_text(errors="replace").splitlines()[-6:] if log.exists() else []
            if any("Address already in use" in line for line in tail):
                raise ClusterError(f"port {self.port} is already in use, so PostgreSQL cannot listen on it",
                                   hint="stop what uses it, or pick another port with PGMIND_PG_PORT")
            raise ClusterError("PostgreSQL did not start: " + " | ".join(tail[-3:]), hint=f"see {log}")
        self._wait_ready()
        self._create_database()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._run([str(PG_BIN / "pg_isready"), "-h", str(self.socket_dir), "-p", str(self.port)],
                         check=False).returncode == 0:
                return
            time.sleep(0.2)
        raise ClusterError("the embedded cluster did not become ready in time",
                           hint=f"see {self.data_dir / 'postgres.log'}")

    def _psql(self, db: str, sql: str, check: bool = True) -> subprocess.CompletedProcess:
        return self._run([str(PG_BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.socket_dir),
                          "-p", str(self.port), "-U", SUPERUSER, "-d", db, "-tAc", sql], check=check)

    def _create_database(self) -> None:
        have = self._psql("postgres", f"select 1 from pg_database where datname = '{DATABASE}'").stdout.strip()
        if have != "1":
            self._psql("postgres", f"create database {DATABASE}")
        self._psql(DATABASE, "create extension if not exists vector; create extension if not exists plpython3u")

    def stop(self) -> None:
        if self.running():
            self._run([str(PG_BIN / "pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(self.data_dir)])

    def destroy(self) -> None:
        self.stop()
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)

    def status(self) -> dict:
        return {"data_dir": str(self.data_dir), "initialized": self.initialized(),
                "running": self.running(), "port": self.port, "socket_dir": str(self.socket_dir),
                "dsn": self.dsn}

    def psql_command(self) -> list[str]:
        return [str(PG_BIN / "psql"), "-h", str(self.socket_dir), "-p", str(self.port),
                "-U", SUPERUSER, "-d", DATABASE]
