"""Connections: one place that turns settings into a DSN and opens a psycopg connection."""
from __future__ import annotations

import re

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ..config import Settings
from ..errors import (DatabaseError, InvalidRequestError, PermissionDeniedError, PgmindError, ProviderTimeoutError,
                      UnknownModelError)


def resolve_dsn(settings: Settings) -> str:
    """PGMIND_DSN / --dsn when given, else the embedded cluster's unix socket."""
    if settings.dsn:
        return settings.dsn
    from .cluster import Cluster
    return Cluster(settings).dsn


SERVICE_ROLE = "pgmind_service"   # the model server, workers, the training runner
GATEWAY_ROLE = "pgmind_gateway"   # HTTP search, acting as API keys' roles (SET ROLE)


def service_dsn(settings: Settings, base: str | None = None, role: str = SERVICE_ROLE) -> str:
    """How a service connects: never as the install role (docs/security.md, "Who runs as whom").
    PGMIND_SERVICE_DSN / PGMIND_GATEWAY_DSN when given; else ``base`` (or the settings' DSN) with the
    user swapped for pgmind's own role and the password `pgmind install` wrote under the home."""
    given = settings.service_dsn if role == SERVICE_ROLE else settings.gateway_dsn
    if given:
        return given
    try:
        params = conninfo_to_dict(base or resolve_dsn(settings))
    except psycopg.ProgrammingError as e:
        raise InvalidRequestError(f"the database address cannot be parsed: {e}",
                                  hint="set PGMIND_DSN to a postgresql:// URL or a key=value string") from None
    params["user"] = role
    params.pop("password", None)
    password = settings.role_password(role)
    if password:
        params["password"] = password
    return make_conninfo(**params)


def redact(dsn: str) -> str:
    """The DSN without its password, for messages and logs."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparsable dsn>"
    if "password" in params:
        params["password"] = "***"
    return make_conninfo(**params)


def dsn_url(dsn: str, *, hide_password: bool = False) -> str:
    """The DSN as a postgresql:// URL (what psql, psycopg, SQLAlchemy and most tools take): a socket
    directory (or several hosts) goes in the query, as libpq reads it; with ``hide_password`` the
    password shows as ***."""
    from urllib.parse import quote, urlencode
    try:
        params = {k: v for k, v in conninfo_to_dict(dsn).items() if v is not None}
    except psycopg.ProgrammingError as e:
        raise InvalidRequestError(f"the database address cannot be parsed: {e}",
                                  hint="set PGMIND_DSN to a postgresql:// URL or a key=value string") from None
    user, password = params.pop("user", None), params.pop("password", None)
    host, port, dbname = params.pop("host", None), params.pop("port", None), params.pop("dbname", None)
    netloc = ""
    if user:
        netloc = quote(str(user), safe="")
        if password:
            netloc += ":" + ("***" if hide_password else quote(str(password), safe=""))
        netloc += "@"
    query: dict = {}
    if host and (host.startswith("/") or "," in host or host.startswith("@")):
        query["host"] = host
        if port:
            query["port"] = port
    elif host:
        netloc += (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
    elif port:
        query["port"] = port
    query.update(params)
    url = f"postgresql://{netloc}/{quote(str(dbname), safe='') if dbname else ''}"
    return url + ("?" + urlencode(query, safe="", quote_via=quote) if query else "")


def connect(dsn: str, *, application_name: str = "pgmind", autocommit: bool = False,
            register_vector: bool = True) -> psycopg.Connection:
    try:
        conn = psycopg.connect(dsn, application_name=application_name, autocommit=autocommit)
    except psycopg.OperationalError as e:
        raise DatabaseError(f"cannot connect to PostgreSQL at {redact(dsn)}: {str(e).strip()}",
                            hint="start the embedded cluster with `pgmind db up`, "
                                 "or point PGMIND_DSN at a running server") from None
    if register_vector:
        from pgvector.psycopg import register_vector as _register
        try:
            _register(conn)
        except psycopg.ProgrammingError:
            # the vector type is not in this database yet (before `pgmind install`)
            if not autocommit:
                conn.rollback()
    return conn


# SQLSTATEs with a class of their own (an HTTP status, for one); then whole SQLSTATE classes
_ERROR_CLASSES = {"42704": UnknownModelError, "42501": PermissionDeniedError, "57014": ProviderTimeoutError}
_ERROR_FAMILIES = {"22": InvalidRequestError, "42": InvalidRequestError, "23": InvalidRequestError}


# PL/Python's prefix on the errors raised through it ("spiexceptions.QueryCanceled: ..."): the SQL
# functions take it off (ai_internal._reraise), but a statement timeout is not caught by their
# handlers (WHEN OTHERS leaves query_canceled alone), so it can still arrive here
_PLPY_PREFIX = re.compile(r"^((spiexceptions|plpy)\.\w+: )+")


def from_sql_error(e: psycopg.Error) -> PgmindError:
    """A server error as the library's error: its message (without PL/Python's prefix), hint and
    SQLSTATE kept."""
    state = e.sqlstate or ""
    cls = _ERROR_CLASSES.get(state) or _ERROR_FAMILIES.get(state[:2], PgmindError)
    err = cls(_PLPY_PREFIX.sub("", e.diag.message_primary or str(e)), hint=e.diag.message_hint)
    err.sqlstate = e.sqlstate or err.sqlstate
    return err
