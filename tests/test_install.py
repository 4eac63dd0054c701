"""The schema installer: idempotent, upgrades from the previous version, guards released files."""
from __future__ import annotations

import psycopg
import pytest

from pgmind.db import connect, install, installed_version
from pgmind.db.migrate import migrations
from pgmind.errors import MigrationError


@pytest.fixture
def scratch_db(installed):
    """A database of its own, so installs can be tested from nothing."""
    with connect(installed, autocommit=True, register_vector=False) as admin:
        admin.execute("drop database if exists pgmind_scratch")
        admin.execute("create database pgmind_scratch")
    dsn = psycopg.conninfo.make_conninfo(installed, dbname="pgmind_scratch")
    yield dsn
    with connect(installed, autocommit=True, register_vector=False) as admin:
        admin.execute("drop database if exists pgmind_scratch with (force)")


def test_install_twice_is_safe(scratch_db):
    with connect(scratch_db, register_vector=False) as conn:
        first = install(conn, server_url="http://127.0.0.1:1")
        assert first.applied == [name for name, _ in migrations()]
        assert first.plpython
        second = install(conn, server_url="http://127.0.0.1:2")
        assert second.applied == []
        assert installed_version(conn) == [name for name, _ in migrations()]
        # the local models are registered once, the URL was updated in place, and the server's token
        # is not in the database (each role sends its own: ai_internal.role_tokens)
        n = conn.execute("select count(*) from ai.model_registry where provider = 'pgmind'").fetchone()[0]
        assert n == 7      # e5-small, use-m3, minilm, qwen-0.5b, image-features, qwen-1.5b, rerank-qwen-1.5b
        assert conn.execute("select value from ai._settings where key = 'server_url'").fetchone()[0] == "http://127.0.0.1:2"
        assert conn.execute("select count(*) from ai._settings where key = 'server_token'").fetchone()[0] == 0


def test_upgrade_from_previous_version(scratch_db):
    names = [name for name, _ in migrations()]
    assert len(names) >= 2
    with connect(scratch_db, register_vector=False) as conn:
        old = install(conn, upto=names[-2])
        assert old.applied == names[:-1]
        assert installed_version(conn) == names[:-1]
        # data written under the old version survives the upgrade
        conn.execute("insert into ai.model_registry (model_id, provider, model_type, model_name, url) "
                     "values ('kept', 'openai', 'chat', 'gpt', 'https://example.invalid/v1')")
        conn.commit()
        new = install(conn, server_url="http://127.0.0.1:1")
        assert new.applied == names[-1:]
        assert conn.execute("select count(*) from ai.model_registry where model_id = 'kept'").fetchone()[0] == 1


def test_changed_released_migration_is_refused(scratch_db):
    with connect(scratch_db, register_vector=False) as conn:
        install(conn)
        conn.execute("update ai.migrations set sha256 = 'edited' where name = %s", (migrations()[0][0],))
        conn.commit()
        with pytest.raises(MigrationError, match="changed after it was applied"):
            install(conn)


def test_install_runs_under_a_lock(scratch_db):
    """While one install holds the lock, a second waits instead of racing."""
    from pgmind.db.migrate import LOCK_KEY
    with connect(scratch_db, register_vector=False) as holder, \
            connect(scratch_db, register_vector=False) as other:
        holder.execute("select pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        other.execute("set lock_timeout = '300ms'")
        other.commit()
        with pytest.raises(psycopg.errors.LockNotAvailable):
            install(other)
        holder.rollback()
