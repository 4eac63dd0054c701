"""The CLI against the real test cluster and model server."""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import free_port
from pgmind.devserver import settings_env


def pgmind(settings, *args, check=True):
    proc = subprocess.run([sys.executable, "-m", "pgmind.cli", *args], env=settings_env(settings), capture_output=True, text=True,
                          timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_models_list_json(settings, server):
    models = {m["model_id"]: m for m in json.loads(pgmind(settings, "models", "list", "--json").stdout)}
    assert models["e5-small"]["dimensions"] == "384"
    assert models["qwen-0.5b"]["type"] == "chat"


def test_models_show_and_unknown(settings, server):
    shown = json.loads(pgmind(settings, "models", "show", "use-m3").stdout)
    assert shown["provider"] == "pgmind" and shown["dimensions"] == 512
    bad = pgmind(settings, "models", "show", "nope", check=False)
    assert bad.returncode == 1
    assert 'model "nope" is not registered' in bad.stderr and "pgmind models list" in bad.stderr


def test_models_test_runs_through_sql(settings, server):
    out = pgmind(settings, "models", "test", "e5-small").stdout
    assert "384 dimensions" in out


def test_models_add_with_key_env(settings, server, conn):
    try:
        pgmind(settings, "models", "add", "cli-chat", "--provider", "openai", "--type", "chat",
               "--name", "gpt-4o-mini", "--url", "http://127.0.0.1:9/v1", "--key-env", "OPENAI_API_KEY")
        row = conn.execute("select provider, auth from ai.models where model_id = 'cli-chat'").fetchone()
        assert row == ("openai", {"author_type": "env", "env": "OPENAI_API_KEY"})
        dup = pgmind(settings, "models", "add", "cli-chat", "--provider", "openai", "--type", "chat",
                     "--name", "x", check=False)
        assert dup.returncode == 1 and "already exists" in dup.stderr
    finally:
        conn.execute("select ai.drop_model('cli-chat', if_exists => true)")


def test_status_and_token(settings, server, token):
    assert "model server  ok" in pgmind(settings, "status").stdout
    assert pgmind(settings, "serve", "--show-token").stdout.strip() == token


def test_db_url(settings, cluster):
    """Issue 38: a postgresql:// URL, which psql and psycopg take (scripts/*.py connect with it)."""
    out = pgmind(settings, "db", "url").stdout.strip()
    assert out.startswith("postgresql://"), out
    if not settings.dsn:
        assert f"port={settings.pg_port}" in out
        import psycopg
        with psycopg.connect(out) as c:
            assert c.execute("select current_database()").fetchone() == ("pgmind",)


def test_dsn_url_forms():
    from psycopg.conninfo import conninfo_to_dict
    from pgmind.db.connection import dsn_url
    for dsn, url in (
            ("host='/tmp/a b/run' port=5433 dbname=pgmind user=pgmind",
             "postgresql://pgmind@/pgmind?host=%2Ftmp%2Fa%20b%2Frun&port=5433"),
            ("host=db.example port=6543 dbname=app user=me password=p@ss sslmode=require",
             "postgresql://me:p%40ss@db.example:6543/app?sslmode=require"),
            ("postgresql://me@[::1]:5432/app", "postgresql://me@[::1]:5432/app")):
        assert dsn_url(dsn) == url
        assert conninfo_to_dict(url) == conninfo_to_dict(dsn)          # the same connection
    assert dsn_url("host=h user=me password=secret dbname=d", hide_password=True) == "postgresql://me:***@h/d"


def test_status_without_server(settings, installed):
    env = {**settings_env(settings), "PGMIND_SERVER_PORT": str(free_port())}
    proc = subprocess.run([sys.executable, "-m", "pgmind.cli", "status"], env=env, capture_output=True, text=True)
    assert proc.returncode == 1
    assert "pgmind serve" in proc.stdout


def test_vectorizer_status_json(settings, installed):
    assert isinstance(json.loads(pgmind(settings, "vectorizer", "status", "--json").stdout), list)


def test_library_errors_become_exit_code_1(settings, installed, tmp_path):
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question": "hnsw", "lang": "en", "gold": ["a.md"]}) + "\n")
    bad = pgmind(settings, "eval", "nokb", str(questions), "--mode", "bogus", check=False)
    assert bad.returncode == 1 and "error: unknown mode 'bogus'" in bad.stderr and "hint: modes: vector" in bad.stderr
    bad = pgmind(settings, "ingest", str(tmp_path / "missing"), "--into", "kb", "--no-embed", check=False)
    assert bad.returncode == 1 and "is not a folder" in bad.stderr
    bad = pgmind(settings, "models", "test", "nope", check=False)
    assert bad.returncode == 1 and 'model "nope" is not registered' in bad.stderr


def test_every_command_maps_errors_in_one_place():
    import typer
    from pgmind.cli import app, errors_to_exit
    root = typer.main.get_command(app)
    groups = [root] + [c for c in root.commands.values() if hasattr(c, "commands")]
    commands = [c for g in groups for c in g.commands.values() if not hasattr(c, "commands")]
    assert len(commands) > 20
    for c in commands:
        assert getattr(c.callback, "__wrapped__", None) is not None, f"{c.name} is not registered with cli.command"
    assert errors_to_exit.__doc__


def test_finetune_reports_what_the_job_row_says(monkeypatch, tmp_path):
    """A job a model server's trainer ran is reported by its row's end, as one the CLI ran: done is
    the model registered (exit 0), failed is its error (exit 1); never "failed" for a job that is
    done (issue 38, item 2)."""
    from typer.testing import CliRunner
    from pgmind.cli import app
    from pgmind.client import Pgmind, TrainingJob
    metrics = {"before": {"mrr": 0.5}, "after": {"mrr": 0.7}, "pairs": {"used": 40}}
    for state, error, code in (("done", None, 0), ("failed", "the fine-tuned model is worse", 1)):
        job = TrainingJob(7, state, metrics, error, "e5-kb", ran_here=False)
        monkeypatch.setattr(Pgmind, "finetune", lambda self, *a, **kw: job)
        out = CliRunner().invoke(app, ["--home", str(tmp_path), "--dsn", "postgresql://127.0.0.1:1/x",
                                       "finetune", "kb"])
        assert out.exit_code == code, out.output
        assert "model server's trainer" in out.output and "0.700" in out.output
        if state == "done":
            assert "registered e5-kb" in out.output
        else:
            assert "job 7 failed" in out.output and error in out.output


def test_serve_prints_a_ready_line(settings, server):
    """Issue 38: `pgmind serve` says when it serves, and where (the server fixture's output is its log)."""
    log = (settings.home / "server.log").read_text()
    assert f"pgmind serve is ready at http://127.0.0.1:{settings.server_port}" in log, log[-2000:]


def test_tables_show_each_value_under_its_header():
    """Cells are looked up by key (the library's dicts list keys in their own order); a table wider
    than the terminal is printed a "header: value" line a cell instead of as letters cut to one."""
    from pgmind import cli
    row = {"state": "done", "name": "docs", "extra": "not shown", "model": "e5-small"}
    width = cli.console.width
    try:
        cli.console.width = 120
        with cli.console.capture() as cap:
            cli._show_rows([row], False, ("name", ("state", "now"), "model"))
        lines = [line for line in cap.get().splitlines() if "docs" in line or "now" in line]
        assert [line.split("┃")[1:4] if "┃" in line else line.split("│")[1:4] for line in lines] == [
            [" name ", " now  ", " model    "], [" docs ", " done ", " e5-small "]]
        cli.console.width = 20
        with cli.console.capture() as cap:
            cli._show_rows([row, {**row, "name": "kb"}], False, ("name", ("state", "now"), "model"))
        assert cap.get() == " name: docs\n  now: done\nmodel: e5-small\n\n name: kb\n  now: done\nmodel: e5-small\n"
    finally:
        cli.console.width = width
