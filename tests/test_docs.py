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


# -- the snippets in README.md and docs/*.md, as a new user copies them --------------------------
import re  # noqa: E402
import shlex  # noqa: E402

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def code_blocks(lang: set[str]):
    """(file, line, text) of each fenced block whose language is in ``lang`` ('' for none)."""
    for doc in DOCS:
        text = doc.read_text()
        for m in _BLOCK.finditer(text):
            if m.group(1) in lang:
                yield doc.relative_to(ROOT), text[:m.start()].count("\n") + 2, m.group(2)


def cli_lines():
    """Every `pgmind …` command line of the shell blocks: (where, argv after 'pgmind')."""
    for doc, first, body in code_blocks({"", "sh", "bash", "shell"}):
        lines, i = body.split("\n"), 0
        while i < len(lines):
            start, line = i, lines[i]
            while line.endswith("\\") and i + 1 < len(lines):    # a backslash: the command goes on
                i += 1
                line = line[:-1] + " " + lines[i]
            i += 1
            # (a command starts its line; an indented "pgmind serve" is a diagram's box)
            words = shlex.split(line, comments=True) if re.match(r"(\.venv/bin/)?pgmind\s", line) else []
            if words:
                yield f"{doc}:{first + start}", [w for w in words[1:] if w != "&"]


def inline_cli():
    """Every `pgmind …` span in the prose (outside code blocks): (where, argv after 'pgmind')."""
    for doc in DOCS:
        text = doc.read_text()
        prose = _BLOCK.sub(lambda m: "\n" * m.group(0).count("\n"), text)
        for m in re.finditer(r"`(?:\.venv/bin/)?pgmind ([^`…]+)`", prose):
            yield f"{doc.relative_to(ROOT)}:{prose[:m.start()].count(chr(10)) + 1}", shlex.split(m.group(1))


def test_every_cli_snippet_parses():
    """Each command in the docs exists and its options and arguments parse as written (a command
    renamed, an option that never existed, an argument missing or in the wrong place); in the prose,
    where a command is often named with one option of interest, its names and options."""
    import typer
    from pgmind.cli import _ray_alone_is_auto, app
    try:
        from typer._click import exceptions as click_exceptions    # typer 0.29 carries its own click
    except ImportError:
        from click import exceptions as click_exceptions
    root = typer.main.get_command(app)
    seen = 0
    lines = [(where, argv, False) for where, argv in cli_lines()]
    for where, argv, partial in lines + [(where, argv, True) for where, argv in inline_cli()]:
        cmd, path, args = root, ["pgmind"], _ray_alone_is_auto(list(argv))     # (as the entry point does)
        while hasattr(cmd, "commands") and args and args[0] in cmd.commands:
            path.append(args[0])
            cmd = cmd.commands[args.pop(0)]
        if partial and hasattr(cmd, "commands") and not args:
            continue                                  # (a group named in the prose: `pgmind vectorizer`)
        assert not hasattr(cmd, "commands"), f"{where}: no command {' '.join(path + args[:1])}"
        try:
            cmd.make_context(" ".join(path), list(args), resilient_parsing=partial)
        except typer.Exit:
            pass
        except click_exceptions.UsageError as e:
            raise AssertionError(f"{where}: `{' '.join(path + args)}`: {e.format_message()}") from None
        seen += 1
    assert seen > 60


def _sql_objects() -> set[str]:
    names = set()
    for f in (ROOT / "src" / "pgmind" / "sql").rglob("*.sql"):
        names.update(m.lower() for m in re.findall(
            r"(?:function|view|table|procedure)\s+(?:if not exists\s+)?((?:ai|polar_ai|public)\.\w+)", f.read_text(), re.I))
    return names


def test_every_sql_function_in_the_docs_exists():
    """Each ai.* / polar_ai.* function a SQL snippet calls is one pgmind installs (a function renamed
    or never written fails here, not in a new user's psql)."""
    known = _sql_objects()
    missing = []
    for doc, first, body in code_blocks({"sql"}):
        for m in re.finditer(r"\b((?:ai|polar_ai)\.\w+)\s*\(", body):
            if m.group(1).lower() not in known:
                missing.append(f"{doc}:{first + body[:m.start()].count(chr(10))}: {m.group(1)}")
    assert not missing, missing


def test_every_python_snippet_compiles_and_imports():
    """Python snippets are valid Python, and each ``from pgmind… import name`` names something that
    exists."""
    import ast
    import importlib
    for doc, first, body in code_blocks({"python"}):
        tree = ast.parse(body, filename=f"{doc}:{first}")
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pgmind"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name) or importlib.util.find_spec(
                        f"{node.module}.{alias.name}"), f"{doc}:{first}: {node.module} has no {alias.name}"
