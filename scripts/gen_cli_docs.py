"""Writes the CLI reference (docs/cli.md) from the commands' own help texts and options, so the two
never drift. tests/test_docs.py fails when docs/cli.md is out of date or a command has no help."""
from __future__ import annotations

import typer

from pgmind.cli import app

SKIP_OPTIONS = {"--install-completion", "--show-completion"}


def walk(cmd, path: list[str]):
    yield path, cmd
    if hasattr(cmd, "commands"):
        for name in sorted(cmd.commands):
            yield from walk(cmd.commands[name], path + [name])


def _param_row(p) -> str | None:
    if p.param_type_name == "argument":
        return f"| `{p.name.upper()}` | argument | {getattr(p, 'help', '') or ''} |"
    opts = [o for o in p.opts if o not in SKIP_OPTIONS]
    if not opts or any(o in SKIP_OPTIONS for o in p.opts):
        return None
    names = ", ".join(f"`{o}`" for o in opts + list(p.secondary_opts))
    default = "" if p.default in (None, False) or p.required else f" (default: `{p.default}`)"
    return f"| {names} | {'required' if p.required else 'option'} | {(p.help or '').strip()}{default} |"


def render() -> str:
    root = typer.main.get_command(app)
    out = ["# CLI reference", "",
           "Generated from the commands' help by `make docs` (scripts/gen_cli_docs.py); do not edit by hand.", ""]
    for path, cmd in walk(root, ["pgmind"]):
        out += [f"## `{' '.join(path)}`", "", (cmd.help or "").strip(), ""]
        if hasattr(cmd, "commands"):
            out += [f"Commands: {', '.join(f'`{c}`' for c in sorted(cmd.commands))}", ""]
        rows = [r for r in (_param_row(p) for p in cmd.params) if r]
        if rows:
            out += ["| name | kind | description |", "|---|---|---|", *rows, ""]
    return "\n".join(out)


if __name__ == "__main__":
    print(render(), end="")
