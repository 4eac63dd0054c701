"""Who may execute each of pgmind's SQL functions: the rights table, one line per function, checked
in as tests/golden/rights.tsv so that every change of rights is a diff in review.  pgmind's functions:
those of the ai, ai_internal and polar_ai schemas, and PolarDB's three unqualified aliases in public
(public.ai_loadfile, ...; no extension's).

    .venv/bin/python scripts/rights.py > tests/golden/rights.tsv     # a fresh install, in a scratch cluster
    .venv/bin/python scripts/rights.py --dsn "$(pgmind db url)"       # an installed database, as it is

The columns are the role classes: PUBLIC (a role granted nothing: what PUBLIC may), pgmind_admin,
pgmind_service and pgmind_gateway (each with what PUBLIC may, as PostgreSQL counts it).
tests/security/test_rights_golden.py compares a live install with the file."""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import psycopg

ROLE_CLASSES = ("PUBLIC", "pgmind_admin", "pgmind_service", "pgmind_gateway")
HEADER = "# function\t" + "\t".join(ROLE_CLASSES)

# A function's signature as regprocedure writes it with nothing on the search path (schema-qualified
# names and types), so the table does not depend on the session.  PUBLIC's right is read from the
# ACL (no ACL: PostgreSQL's default, PUBLIC may); a missing role may nothing.
_QUERY = """
select p.oid::regprocedure::text,
       exists (select 1 from aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
               where a.grantee = 0 and a.privilege_type = 'EXECUTE'),
       {roles}
from pg_proc p join pg_namespace n on n.oid = p.pronamespace
where n.nspname in ('ai', 'ai_internal', 'polar_ai')
   or (n.nspname = 'public' and left(p.proname, 3) = 'ai_'
       and not exists (select 1 from pg_depend d where d.classid = 'pg_proc'::regclass and d.objid = p.oid
                                                   and d.deptype = 'e'))
"""
_ROLE = ("coalesce((select has_function_privilege(r.oid, p.oid, 'execute') from pg_roles r "
         "where r.rolname = '{}'), false)")


def rights_table(conn: psycopg.Connection) -> list[str]:
    """The table's lines (the header first), sorted by signature, as the golden file holds them."""
    query = _QUERY.format(roles=", ".join(_ROLE.format(r) for r in ROLE_CLASSES[1:]))
    with conn.transaction():
        conn.execute("set local search_path = pg_catalog")
        rows = conn.execute(query).fetchall()
    lines = ["\t".join([sig, *("yes" if may else "no" for may in mays)]) for sig, *mays in rows]
    return [HEADER, *sorted(lines)]


def _fresh_install_table() -> list[str]:
    from pgmind.config import load_settings
    from pgmind.db import Cluster, connect, install
    from pgmind.db.migrate import SERVICE_ROLES
    from pgmind.devserver import free_port

    home = Path(tempfile.mkdtemp(prefix="pgmind-rights-"))
    home.chmod(0o711)
    settings = load_settings(home=str(home), pg_port=free_port(), server_port=free_port())
    cluster = Cluster(settings)
    try:
        cluster.start()
        with connect(cluster.dsn, register_vector=False) as conn:
            settings.server_token(create=True)
            install(conn, server_url=settings.effective_server_url,
                    role_passwords={r: settings.role_password(r, create=True) for r in SERVICE_ROLES})
            conn.commit()
            return rights_table(conn)
    finally:
        cluster.destroy()
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", help="read this installed database instead of installing into a scratch cluster")
    args = parser.parse_args()
    if args.dsn:
        with psycopg.connect(args.dsn, autocommit=True) as conn:
            lines = rights_table(conn)
    else:
        lines = _fresh_install_table()
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
