"""Installs and upgrades the ``ai`` schema from the SQL files shipped in the package.

``sql/migrations/NNN_name.sql`` run once each, in order, and are recorded with their sha256 (a
released file must never change: a changed hash is an error).  ``sql/functions/*.sql`` are
idempotent (create or replace) and run on every install; files named ``*.plpython.sql`` need
plpython3u and are skipped, with a warning, where it cannot be had (managed services).
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
        conn.execute("""do $$ begin
                            if not exists (select 1 from pg_roles where rolname = 'pgmind_admin') then
                                create role pgmind_admin nologin;
                            end if;
                        exception when insufficient_privilege then
                            raise warning 'cannot create role pgmind_admin: only superusers administer models';
                        end $$""")
        _ensure_service_roles(conn, role_passwords or {})
        # Function files are re-applied from the first one that changed: an unchanged install replaces
        # nothing, so calls in flight never meet a function that was dropped and made again.
        installed = {r[0]: r[1] for r in conn.execute("select name, sha256 from ai.installed_files")}
        changed = bool(result.applied)
        for name, text in _sql_files("functions"):
            if name.endswith(".plpython.sql") and not result.plpython:
                result.skipped.append(name)
                continue
            changed = changed or installed.get(name) != _sha(text)
            if not changed:
                continue
            conn.execute(text)
            conn.execute("""insert into ai.installed_files (name, sha256) values (%s, %s)
                            on conflict (name) do update set sha256 = excluded.sha256, applied_at = now()""",
                         (name, _sha(text)))
            result.functions.append(name)
        if changed:
            apply_privileges(conn)
        _grant_services(conn)
    return result


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


# Who may call what.  Every function in the ai and ai_internal schemas is first revoked from PUBLIC;
# then the public API (ai) is granted to PUBLIC, except:
ADMIN_FUNCTIONS = ("create_model", "alter_model", "drop_model", "grant_model", "revoke_model",
                   "create_api_key", "revoke_api_key", "allow_outbound", "disallow_outbound",
                   "allow_load_from", "disallow_load_from")
# and of the internal functions (ai_internal) only those that the public ones call with the caller's
# rights.  Each is safe to call directly: it reads nothing private, or checks the caller itself
# (docs/security.md).
CALLABLE_INTERNALS = (
    "_create_training_job", "_add_training_pairs", "_add_training_images",
    "_reraise", "_py_client_init", "_server_request", "_embed_batch", "_check_messages", "_check_options",
    "_call_model", "_model_for_call", "_rerank", "_is_admin", "_can_use", "_check_caller",
    # each role reads only its own token; making the missing ones reveals nothing; the session's role
    "_role_token", "_issue_role_tokens", "_server_url", "_session_role",
    "_key_json", "_key_from_json", "_key_cols", "_vectorizer_id", "_owns_vectorizer", "_check_vectorizer_owner",
    "_live_versions", "_enqueue", "_enqueue_all", "_forget", "_forget_all", "_owner_functions_sql",
    "_owner_function_names", "_install_owner_functions", "_register_vectorizer", "_vector_schema",
    "_vectorizer_model", "_check_chunking", "_check_index", "_spec_object", "_create_store", "_view_sql",
    "_unregister_vectorizer",
    "_vectorizer_info", "_vectorizer_stores", "_add_version", "_vectorizer_done", "_search_target", "_store_is_plain",
    "_text_language", "_translate", "_kb_settings", "_json_request", "_b64",
    "_set_image_config", "_search_run", "_require_image_kb", "_check_search_args",
    "_check_query_length", "_fts_words", "_all_words", "_regex_quote", "_json_count",
    # they call models as the caller (ai.generate / ai.chat check the caller's grant)
    "_expand", "_topic_score")


def apply_privileges(conn: psycopg.Connection) -> None:
    """Least privilege by construction: an internal function nobody listed above is callable by
    nobody but the install role (and superusers).  The public functions are callable by everyone
    except the administrators' ones, which go to pgmind_admin."""
    has_admin = conn.execute("select exists (select 1 from pg_roles where rolname = 'pgmind_admin')").fetchone()[0]
    rows = conn.execute("select p.oid::regprocedure::text, p.proname, p.pronamespace::regnamespace::text "
                        "from pg_proc p where p.pronamespace in ('ai'::regnamespace, 'ai_internal'::regnamespace)"
                        ).fetchall()
    for sig, name, schema in rows:
        fn = sql.SQL(sig)
        conn.execute(sql.SQL("revoke all on function {} from public").format(fn))
        if schema == "ai" and name in ADMIN_FUNCTIONS:
            if has_admin:
                conn.execute(sql.SQL("grant execute on function {} to pgmind_admin").format(fn))
        elif schema == "ai" or name in CALLABLE_INTERNALS:
            conn.execute(sql.SQL("grant execute on function {} to public").format(fn))
