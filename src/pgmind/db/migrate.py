"""Installs and upgrades the ``ai`` schema from the SQL files shipped in the package.

``sql/migrations/NNN_name.sql`` run once each, in order, and are recorded with their sha256 (a
released file must never change: a changed hash is an error).  ``sql/functions/*.sql`` are
idempotent (create or replace), applied in name order whenever one of them changed; files named
``*.plpython.sql`` need plpython3u and are skipped, with a warning, where it cannot be had (managed
services).  Each function file grants its functions' rights itself, beside their definitions; the
installer makes sure nothing else is granted (:func:`_apply_function_files`).
Everything happens in one transaction under an advisory lock, so two installs cannot race.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from importlib import resources

import psycopg
from psycopg import sql

from ..errors import MigrationError, MissingExtensionError

log = logging.getLogger(__name__)
LOCK_KEY = 0x70676D696E64  # "pgmind"


@dataclass
class InstallResult:
    applied: list[str] = field(default_factory=list)
    functions: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    plpython: bool = True


def _sql_files(kind: str) -> list[tuple[str, str]]:
    folder = resources.files("pgmind") / "sql" / kind
    files = sorted((f.name, f.read_text(encoding="utf-8")) for f in folder.iterdir() if f.name.endswith(".sql"))
    return files


def migrations() -> list[tuple[str, str]]:
    return _sql_files("migrations")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def installed_version(conn: psycopg.Connection) -> list[str]:
    """Names of the migrations applied in this database (empty before the first install)."""
    exists = conn.execute("select to_regclass('ai.migrations') is not null").fetchone()[0]
    if not exists:
        return []
    return [r[0] for r in conn.execute("select name from ai.migrations order by name")]


def _ensure_extensions(conn: psycopg.Connection) -> bool:
    """Creates vector (required) and plpython3u (optional). Returns whether plpython3u is there."""
    have = {r[0]: r[1] for r in conn.execute(
        "select name, installed_version from pg_available_extensions where name in ('vector', 'plpython3u')")}
    if "vector" not in have:
        raise MissingExtensionError("the vector extension (pgvector) is not available on this PostgreSQL server")
    conn.execute("create extension if not exists vector")
    if "plpython3u" not in have:
        log.warning("plpython3u is not available: the SQL model functions (ai.embed, ai.chat, ...) "
                    "are not installed; vectorizers and search still work")
        return False
    if have["plpython3u"] is None:
        try:
            with conn.transaction():
                conn.execute("create extension if not exists plpython3u")
        except psycopg.errors.InsufficientPrivilege:
            log.warning("only a superuser can create plpython3u: the SQL model functions are not installed")
            return False
    return True


def _check_owner(conn: psycopg.Connection) -> None:
    row = conn.execute("""
        select n.nspowner::regrole::text, current_user,
               (select rolsuper from pg_roles where rolname = current_user)
        from pg_namespace n where n.nspname = 'ai'""").fetchone()
    if row and row[0] != row[1] and not row[2]:
        raise MigrationError(f"schema ai belongs to {row[0]}, not to {row[1]}",
                             hint=f"run pgmind install as {row[0]} or as a superuser")


def install(conn: psycopg.Connection, *, server_url: str | None = None,
            role_passwords: dict[str, str] | None = None, upto: str | None = None) -> InstallResult:
    """Create or upgrade the ai schema. ``upto`` stops after that migration (for upgrade tests).
    ``role_passwords`` sets the passwords of pgmind's service roles (made here when missing)."""
    result = InstallResult()
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        conn.execute("set local search_path = pg_catalog, public")
        conn.execute("set local client_min_messages = warning")
        result.plpython = _ensure_extensions(conn)
        _check_owner(conn)
        conn.execute("create schema if not exists ai")
        conn.execute("grant usage on schema ai to public")
        # the internal functions: out of the public listing (\\df ai.*), each granted by name below
        conn.execute("create schema if not exists ai_internal")
        conn.execute("revoke all on schema ai_internal from public")
        conn.execute("grant usage on schema ai_internal to public")
        conn.execute("""create table if not exists ai.migrations (
                            name text primary key, sha256 text not null,
                            applied_at timestamptz not null default now())""")
        done = {r[0]: r[1] for r in conn.execute("select name, sha256 from ai.migrations")}
        for name, text in migrations():
            if name in done:
                if done[name] != _sha(text):
                    raise MigrationError(f"migration {name} was changed after it was applied",
                                         hint="released migrations are never edited: add a new numbered file")
            else:
                conn.execute(text)
                conn.execute("insert into ai.migrations (name, sha256) values (%s, %s)", (name, _sha(text)))
                result.applied.append(name)
            if upto and name == upto:
                return result
        _sync_providers(conn)
        if server_url:
            conn.execute("""insert into ai._settings (key, value) values ('server_url', %s)
                            on conflict (key) do update set value = excluded.value""", (server_url,))
        _ensure_admin_role(conn)
        _ensure_service_roles(conn, role_passwords or {})
        files = []
        for name, text in _sql_files("functions"):
            if name.endswith(".plpython.sql") and not result.plpython:
                result.skipped.append(name)
            else:
                files.append((name, text))
        # An unchanged install replaces nothing, so calls in flight never meet a function that was
        # dropped and made again, nor a pg_proc row rewritten under them (see _grant_services).
        installed = {r[0]: r[1] for r in conn.execute("select name, sha256 from ai.installed_files")}
        if result.applied or any(installed.get(name) != _sha(text) for name, text in files):
            _apply_function_files(conn, files, result)
        _grant_services(conn)
    return result


def _ensure_admin_role(conn: psycopg.Connection) -> None:
    """pgmind_admin, to which the function files grant the administrators' functions."""
    if conn.execute("select exists (select 1 from pg_roles where rolname = 'pgmind_admin')").fetchone()[0]:
        return
    try:
        with conn.transaction():
            conn.execute("create role pgmind_admin nologin")
    except psycopg.errors.InsufficientPrivilege:
        raise MigrationError("the role pgmind_admin does not exist, and only a role with CREATEROLE can make it",
                             hint="run `pgmind install` as a superuser, or have one run: "
                                  "create role pgmind_admin nologin") from None


# The schemas whose every function is pgmind's: no right in them but what the files grant.
FUNCTION_SCHEMAS = ("ai", "ai_internal", "polar_ai")


def _apply_function_files(conn: psycopg.Connection, files: list[tuple[str, str]], result: InstallResult) -> None:
    """Applies every function file, in name order, from a clean slate, so that a function is
    executable only as its file grants it (the grant line after its definition): nothing by PUBLIC
    or pgmind_admin otherwise, whatever an earlier release or a hand-made GRANT left behind.

    * A function made by this install starts with no rights but its owner's: PUBLIC's default
      EXECUTE is revoked from the install role's default privileges for the length of this
      transaction (put back as it was at the end, so other sessions never see it).
    * ``create or replace`` keeps a function's rights: every function of pgmind's schemas loses
      EXECUTE for PUBLIC and pgmind_admin first, and then ALL files are applied, not only those that
      changed, so that each one's grants are granted again.  (Every file, every pg_proc row, is
      rewritten then anyway; an unchanged install applies none and rewrites none.)
    * The service role's rights are granted after, by _grant_services, only where missing."""
    had_default = conn.execute("""
        select exists (select 1 from aclexplode(coalesce(
                           (select d.defaclacl from pg_default_acl d
                            where d.defaclrole = (select oid from pg_roles where rolname = current_user)
                              and d.defaclnamespace = 0 and d.defaclobjtype = 'f'),
                           acldefault('f', (select oid from pg_roles where rolname = current_user)))) a
                       where a.grantee = 0 and a.privilege_type = 'EXECUTE')""").fetchone()[0]
    conn.execute("alter default privileges revoke execute on functions from public")
    schemas = [r[0] for r in conn.execute("select nspname from pg_namespace where nspname = any(%s) order by 1",
                                          (list(FUNCTION_SCHEMAS),))]
    conn.execute(sql.SQL("revoke execute on all functions in schema {} from public, pgmind_admin").format(
        sql.SQL(", ").join(map(sql.Identifier, schemas))))
    for name, text in files:
        conn.execute(text)
        conn.execute("""insert into ai.installed_files (name, sha256) values (%s, %s)
                        on conflict (name) do update set sha256 = excluded.sha256, applied_at = now()""",
                     (name, _sha(text)))
        result.functions.append(name)
    if had_default:
        conn.execute("alter default privileges grant execute on functions to public")


# pgmind's own roles (docs/security.md, "Who runs as whom").  Neither is a superuser, and neither is
# ever granted to anyone: code of a table's owner that runs in their sessions cannot become more.
SERVICE_ROLES = {
    # the model server, the workers, the training runner: the ai schema's tables, nothing of users'
    # but what owners grant it (their vectorizers' functions and chunk tables).  Not BYPASSRLS: the
    # ai tables' row security lets it through by a policy of its own (_grant_services), and
    # ai_internal.role_tokens, which has none for it, shows it no one's token.
    "pgmind_service": "login nosuperuser nocreatedb nocreaterole noinherit nobypassrls",
    # HTTP search as an API key's role: a member of exactly those roles (ai_internal._sync_gateway),
    # with no rights of its own, and never used for anything else
    "pgmind_gateway": "login nosuperuser nocreatedb nocreaterole noinherit nobypassrls",
}


# What the service role may change (it reads every other table of the ai schema, and nothing of
# ai_internal's): the queue and what workers report, the call log, the training jobs' progress.
# Never the registry, keys, settings, vectorizers or the installer's records: those change only
# through the functions that check who asks (a trained model is registered by a definer function).
SERVICE_TABLE_RIGHTS = {
    "ai.vectorizer_queue": ("select", "update", "delete"),
    "ai._vectorizer_errors": ("select", "insert", "update"),
    "ai.vectorizer_workers": ("select", "insert", "update", "delete"),
    "ai.vectorizer_progress": ("select", "insert"),
    "ai.call_log": ("select", "insert"),
    "ai.training_jobs": ("select", "update"),
    "ai.training_pairs": ("select", "insert", "update", "delete"),
}


def _ensure_service_roles(conn: psycopg.Connection, passwords: dict[str, str]) -> None:
    if not conn.execute("select rolsuper or rolcreaterole from pg_roles where rolname = current_user").fetchone()[0]:
        log.warning("only a superuser can make pgmind's service roles: run `pgmind install` as one")
        return
    for role, attributes in SERVICE_ROLES.items():
        exists = conn.execute("select 1 from pg_roles where rolname = %s", (role,)).fetchone()
        verb = "alter" if exists else "create"
        conn.execute(sql.SQL("{} role {} " + attributes).format(sql.SQL(verb), sql.Identifier(role)))
        if passwords.get(role):
            conn.execute(sql.SQL("alter role {} password {}").format(sql.Identifier(role),
                                                                      sql.Literal(passwords[role])))
        # nobody may become a service role (its memberships would make them more than themselves)
        for (member,) in conn.execute("select m.member::regrole::text from pg_auth_members m "
                                      "where m.roleid = %s::regrole", (role,)).fetchall():
            conn.execute(sql.SQL("revoke {} from {}").format(sql.Identifier(role), sql.SQL(member)))
    conn.execute("grant connect on database {} to pgmind_service, pgmind_gateway".replace(
        "{}", sql.Identifier(conn.info.dbname).as_string(conn)))


def _grant_services(conn: psycopg.Connection) -> None:
    """The service role's rights, re-applied by every install (upgrades included): the ai schema's
    tables and sequences, the internal functions, and each vectorizer's owner functions and chunk
    tables (new vectorizers grant those themselves).  The gateway's memberships follow the API keys."""
    if not conn.execute("select exists (select 1 from pg_roles where rolname = 'pgmind_service')").fetchone()[0]:
        return
    # Only what is missing is granted (and only what is too much revoked): a GRANT rewrites the
    # object's catalog row even when nothing changes, and a PL/Python function whose pg_proc row
    # changes under a call in flight in another session crashed that backend (tests/security:
    # install during calls in flight).
    conn.execute("grant usage on schema ai, ai_internal to pgmind_service")
    tables = conn.execute("""select c.oid::regclass::text, c.relnamespace = 'ai'::regnamespace from pg_class c
                             where c.relnamespace in ('ai'::regnamespace, 'ai_internal'::regnamespace)
                               and c.relkind in ('r', 'v', 'p')""").fetchall()
    for table, in_ai in tables:
        want = set(SERVICE_TABLE_RIGHTS.get(table, ("select",) if in_ai else ()))
        for right in ("select", "insert", "update", "delete", "truncate"):
            has = conn.execute("select has_table_privilege('pgmind_service', %s::regclass, %s)",
                               (table, right)).fetchone()[0]
            if right in want and not has:
                conn.execute(sql.SQL("grant {} on {} to pgmind_service").format(sql.SQL(right), sql.SQL(table)))
            elif right not in want and has:
                conn.execute(sql.SQL("revoke {} on {} from pgmind_service").format(sql.SQL(right), sql.SQL(table)))
    # the ai tables under row security (queue, quarantine, secrets, jobs) are the service's to read
    for (table,) in conn.execute("""
            select c.oid::regclass::text from pg_class c
            where c.relnamespace = 'ai'::regnamespace and c.relrowsecurity
              and not exists (select 1 from pg_policy p where p.polrelid = c.oid and p.polname = 'pgmind_service')
            """).fetchall():
        conn.execute(sql.SQL("create policy pgmind_service on {} to pgmind_service using (true) with check (true)")
                     .format(sql.SQL(table)))
    for (seq,) in conn.execute("""
            select c.oid::regclass::text from pg_class c where c.relnamespace = 'ai'::regnamespace
              and c.relkind = 'S'
              and case when c.relkind = 'S' then not (has_sequence_privilege('pgmind_service', c.oid, 'usage')
                                                       and has_sequence_privilege('pgmind_service', c.oid, 'update')) end
            """).fetchall():
        conn.execute(sql.SQL("grant usage, select, update on sequence {} to pgmind_service").format(sql.SQL(seq)))
    for (fn,) in conn.execute("""
            select p.oid::regprocedure::text from pg_proc p where p.pronamespace = 'ai_internal'::regnamespace
              and not has_function_privilege('pgmind_service', p.oid, 'execute')""").fetchall():
        conn.execute(sql.SQL("grant execute on function {} to pgmind_service").format(sql.SQL(fn)))
    conn.execute("select ai_internal._grant_vectorizers_to_service(null)")
    if conn.execute("select to_regprocedure('ai_internal._issue_role_tokens()') is not null").fetchone()[0]:
        conn.execute("select ai_internal._issue_role_tokens()")
        conn.execute("select ai_internal._sync_gateway()")


def _sync_providers(conn: psycopg.Connection) -> None:
    """ai.providers from the provider classes: create_model checks names against this one list."""
    if conn.execute("select to_regclass('ai.providers') is null").fetchone()[0]:
        return    # (an upgrade test stopped before the migration that makes it)
    from ..models.providers import catalog_rows
    for row in catalog_rows():
        conn.execute("""insert into ai.providers (name, default_url, probe, in_process, description)
                        values (%s, %s, %s, %s, %s)
                        on conflict (name) do update set default_url = excluded.default_url, probe = excluded.probe,
                            in_process = excluded.in_process, description = excluded.description""", row)
