"""Docs that are checked: the CLI reference is generated from the commands, and every command has help."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import gen_cli_docs  # noqa: E402


def test_every_command_has_help():
    import typer
    from pgmind.cli import app
    for path, cmd in gen_cli_docs.walk(typer.main.get_command(app), ["pgmind"]):
        assert (cmd.help or "").strip(), f"{' '.join(path)} has no help text"
        for p in cmd.params:
            if p.param_type_name == "option" and p.name not in ("install_completion", "show_completion", "help"):
                assert (p.help or "").strip(), f"{' '.join(path)} {p.opts} has no help text"


def test_cli_reference_is_current():
    assert (ROOT / "docs" / "cli.md").read_text() == gen_cli_docs.render(), \
        "docs/cli.md is out of date: run `make docs`"
