"""Who may execute pgmind's functions is written beside each definition (a grant line after it) and
recorded in tests/golden/rights.tsv: the live catalog must be that table, so that every change of
rights shows as a diff of the file in review.  After an intended change, regenerate it:

    .venv/bin/python scripts/rights.py > tests/golden/rights.tsv
"""
from __future__ import annotations

import difflib
import re
import sys
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import rights  # noqa: E402

GOLDEN = ROOT / "tests" / "golden" / "rights.tsv"
DEFINITION = re.compile(r"create or replace function ([\w.]+)\s*\(")
GRANT = re.compile(r"grant execute on function ([\w.]+)\(.*\) to (\w+);")


def _differences(live: list[str]) -> str:
    return "\n".join(difflib.unified_diff(GOLDEN.read_text(encoding="utf-8").splitlines(), live,
                                          "tests/golden/rights.tsv", "the live catalog", lineterm=""))


def test_rights_are_the_golden_table(conn):
    live = rights.rights_table(conn)
    assert live == GOLDEN.read_text(encoding="utf-8").splitlines(), (
        "who may execute pgmind's functions changed:\n" + _differences(live)
        + "\nif the change is meant, regenerate the table: .venv/bin/python scripts/rights.py > tests/golden/rights.tsv")


def test_public_is_what_a_role_granted_nothing_may(conn, sec_roles):
    """The table's PUBLIC column (read from the ACLs) is what a role granted nothing may execute."""
    public = {line.split("\t")[0]: line.split("\t")[1] == "yes" for line in rights.rights_table(conn)[1:]}
    with conn.transaction():
        conn.execute("set local search_path = pg_catalog")
        nobody = dict(conn.execute("select p.oid::regprocedure::text, has_function_privilege(%s, p.oid, 'execute') "
                                   "from pg_proc p where p.oid::regprocedure::text = any(%s)",
                                   (sec_roles["nobody"], list(public))).fetchall())
    assert nobody == public


def test_internal_functions_live_in_ai_internal(conn):
    """The public API is ai (\\df ai.*); an ai._* function belongs in ai_internal."""
    names = [r[0] for r in conn.execute("select proname from pg_proc where pronamespace = 'ai'::regnamespace")]
    assert names and not [n for n in names if n.startswith("_")]


def test_a_changed_install_grants_only_what_the_files_grant(conn, settings):
    """Least privilege by construction: an install that applies the function files starts every
    function of pgmind's schemas from no rights, so a stray grant (by hand, or a release's grant line
    since removed) is gone, and the install role's default privileges are left as they were."""
    from pgmind.db import install
    defaults = conn.execute("select defaclrole, defaclnamespace, defaclobjtype, defaclacl::text "
                            "from pg_default_acl order by 1, 2, 3").fetchall()
    conn.execute("grant execute on function ai_internal._may_use(name, text) to public")
    conn.execute("grant execute on function ai.drop_model(text, boolean) to public")
    conn.execute("grant execute on function ai_internal._require_admin(text) to pgmind_admin")
    assert rights.rights_table(conn) != GOLDEN.read_text(encoding="utf-8").splitlines()
    conn.execute("update ai.installed_files set sha256 = 'changed' where name = '990_comments.sql'")
    result = install(conn, server_url=settings.effective_server_url)
    assert "050_helpers.sql" in result.functions     # every file, not only from the changed one
    live = rights.rights_table(conn)
    assert live == GOLDEN.read_text(encoding="utf-8").splitlines(), _differences(live)
    assert conn.execute("select defaclrole, defaclnamespace, defaclobjtype, defaclacl::text "
                        "from pg_default_acl order by 1, 2, 3").fetchall() == defaults


def test_each_grant_follows_its_definition():
    """A function file grants a function only in the lines right after its definition, and only to
    PUBLIC or pgmind_admin (the service role's rights are the installer's: migrate._grant_services)."""
    folder = resources.files("pgmind") / "sql" / "functions"
    grants = 0
    for f in sorted(folder.iterdir(), key=lambda f: f.name):
        if not f.name.endswith(".sql"):
            continue
        defined = None
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if m := DEFINITION.match(line):
                defined = m.group(1)
            elif re.match(r"grant\b.*\bfunction", line, re.I):      # (a statement of the file, not a body's)
                g = GRANT.fullmatch(line)
                assert g, f"{f.name}:{n}: one grant per line, `grant execute on function <signature> to <role>;`"
                assert g.group(1) == defined, f"{f.name}:{n}: grants {g.group(1)} after the definition of {defined}"
                assert g.group(2) in ("public", "pgmind_admin"), f"{f.name}:{n}: grants to {g.group(2)}"
                grants += 1
    assert grants > 100
