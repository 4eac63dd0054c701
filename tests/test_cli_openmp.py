"""Every command that runs models in its own process waits passively in OpenMP, as `pgmind serve`
does (cli._passive_openmp): set before torch or llama.cpp loads, a value the user set kept."""
from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from pgmind.client import Pgmind


@pytest.mark.parametrize("args", [["worker", "--once"], ["ingest", "{folder}", "--into", "kb"],
                                  ["vectorizer", "backfill", "kb"]])
def test_model_commands_wait_passively(monkeypatch, tmp_path, args):
    from pgmind.cli import app
    seen = {}

    def model_work(self, *a, **kw):          # (what would load the model: the environment is set by now)
        seen.update(policy=os.environ.get("OMP_WAIT_POLICY"), spin=os.environ.get("GOMP_SPINCOUNT"))
        raise SystemExit(0)
    for name in ("run_worker", "ingest", "backfill"):
        monkeypatch.setattr(Pgmind, name, model_work)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setenv("GOMP_SPINCOUNT", "77")           # the user's own value wins
    monkeypatch.setattr(Pgmind, "__enter__", lambda self: self)
    monkeypatch.setattr(Pgmind, "__exit__", lambda self, *exc: None)
    CliRunner().invoke(app, ["--home", str(tmp_path), "--dsn", "postgresql://127.0.0.1:1/x",
                             *[a.format(folder=tmp_path) for a in args]])
    assert seen == {"policy": "PASSIVE", "spin": "77"}, args
