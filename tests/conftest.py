"""Test fixtures: a real PostgreSQL (a fresh embedded cluster per session, or PGMIND_TEST_DSN) and a
real model server in a subprocess, with the real local models."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import psycopg
import pytest

from pgmind.config import load_settings
from pgmind.db import Cluster, connect, install
from pgmind.devserver import free_port, start_server, stop_server


@pytest.fixture(scope="session")
def home():
    path = Path(tempfile.mkdtemp(prefix="pgmind-test-"))
    os.chmod(path, 0o711)
    return path


@pytest.fixture(scope="session")
def settings(home):
    return load_settings(home=str(home), pg_port=free_port(), server_port=free_port(),
                         dsn=os.environ.get("PGMIND_TEST_DSN") or None)


@pytest.fixture(scope="session")
def cluster(settings):
    if settings.dsn:
        yield None
        return
    c = Cluster(settings)
    try:
        c.start()
    except Exception as e:
        pytest.exit(f"cannot start the test PostgreSQL cluster: {e}", returncode=2)
    yield c
    c.destroy()


@pytest.fixture(scope="session")
def dsn(settings, cluster):
    return settings.dsn or cluster.dsn


@pytest.fixture(scope="session")
def installed(settings, dsn):
    with connect(dsn, register_vector=False) as conn:
        install(conn, server_url=settings.effective_server_url, server_token=settings.server_token(create=True))
    return dsn


@pytest.fixture
def conn(installed):
    with connect(installed, autocommit=True) as c:
        yield c


@pytest.fixture(scope="session")
def server(settings, installed):
    # no vectorizer worker inside: the tests run the workers they study themselves
    proc = start_server(settings, {"PROVIDER_TEST_KEY": "sk-from-env-123"}, args=("--no-worker",))
    yield settings.effective_server_url
    stop_server(proc)


@pytest.fixture(scope="session")
def token(settings, installed):
    return settings.server_token()


def sql_error(conn: psycopg.Connection, query: str, params=None) -> psycopg.Error:
    """Runs a query that must fail; returns the error (its diag carries SQLSTATE, message, hint)."""
    with pytest.raises(psycopg.Error) as info:
        conn.execute(query, params)
    return info.value
