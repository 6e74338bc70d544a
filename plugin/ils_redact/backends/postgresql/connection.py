"""Connecting to PostgreSQL, and the facts about the connection that decide what may run."""

from __future__ import annotations

import logging
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ...errors import ConnectionFailed, ReadOnlyServer, StateError

log = logging.getLogger("ils_redact.sql")

_Row = TypeVar("_Row")


def describe_dsn(dsn: str) -> str:
    """host:port/dbname for messages, never the password."""
    try:
        d = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparseable DSN>"
    host = d.get("host") or "local socket"
    port = d.get("port")
    where = f"{host}:{port}" if port else host
    user = d.get("user")
    who = f"{user}@" if user else ""
    return f"{who}{where}/{d.get('dbname', '')}"


#: what every session of ils-redact resolves names with: the built-in schema only (and
#: the session's temporary schema last, for relations; PostgreSQL never looks for
#: functions or operators there).  A function that the ILS owner, or anyone allowed to
#: create in ``public``, names like a built-in but types more exactly
#: (``public.unnest(smallint[])`` beats ``pg_catalog.unnest(anyarray)``) would otherwise
#: run inside the superuser's session at the next catalog read (the fourth review)
PINNED_SEARCH_PATH = "pg_catalog, pg_temp"


def pinned_options(dsn: str, options: str | None) -> str:
    """The connection's ``options`` with ``search_path`` pinned last (a later ``-c``
    wins): the DSN's own options (or, as libpq would take them, ``PGOPTIONS``) and the
    caller's are kept."""
    import os

    try:
        from_dsn = conninfo_to_dict(dsn).get("options") or ""
    except psycopg.ProgrammingError:
        from_dsn = ""  # psycopg.connect says why
    from_dsn = from_dsn or os.environ.get("PGOPTIONS", "")
    pin = "-c search_path=" + PINNED_SEARCH_PATH.replace(" ", "\\ ")
    return " ".join(x for x in (str(from_dsn), options or "", pin) if x)


def connect(dsn: str, *, debug: bool = False, autocommit: bool = False,
            keep_search_path: bool = False, **kwargs: Any) -> psycopg.Connection:
    """Open a connection; failures become one clean line (exit 2).

    The session's ``search_path`` is pinned to :data:`PINNED_SEARCH_PATH` unless
    ``keep_search_path`` (the query gate's sessions, which resolve a staff member's
    unqualified names as the server would for that login, and run only SQL the gate
    wrote, under ``SET LOCAL search_path = pg_catalog``)."""
    if not keep_search_path:
        kwargs["options"] = pinned_options(dsn, kwargs.get("options"))
    try:
        conn = psycopg.connect(dsn, autocommit=autocommit, **kwargs)
    except psycopg.ProgrammingError as exc:
        raise ConnectionFailed(f"invalid DSN: {exc}") from None
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "connection failed"
        raise ConnectionFailed(f"cannot connect to {describe_dsn(dsn)}: {first}") from None
    if debug:
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
        log.setLevel(logging.DEBUG)
    return conn


def service_in_environment() -> str | None:
    """PGSERVICE, when the environment sets it: libpq would read that service's
    parameters (a password, a client certificate) into every connection, and no
    connection parameter turns it off, so the console refuses to start with it."""
    import os

    return os.environ.get("PGSERVICE") or None


def connect_as(dsn: str, login: str, password: str, **kwargs: Any) -> psycopg.Connection:
    """Connect as ``login`` with exactly ``password``: explicit parameters, so
    PGPASSWORD and PGPASSFILE are overridden; the password file is the null device; a
    service (in the DSN or PGSERVICE) is refused.  The DSN may name no password."""
    import os

    if service_in_environment():
        raise ConnectionFailed("PGSERVICE is set in the console's environment: libpq "
                               "would add that service's parameters to staff logins")
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise ConnectionFailed(f"invalid DSN: {exc}") from None
    if params.get("service") or params.get("passfile") or params.get("password"):
        raise ConnectionFailed("the console's DSN must name the server itself (host, port, "
                               "dbname), not a service, password or password file")
    params.update(user=login, password=password, passfile=os.devnull)
    return connect(make_conninfo("", **params), **kwargs)


def read_only_reason(conn: psycopg.Connection) -> str | None:
    """Why this server cannot take writes, or None: a hot standby (in recovery: every
    write fails with "cannot execute ... during recovery"), or sessions that are read-only
    by default (``default_transaction_read_only``, set on the server, database or role).
    Leaves the connection as it found it (no transaction left open)."""
    idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    row = conn.execute("SELECT pg_is_in_recovery(), "
                       "current_setting('default_transaction_read_only')::bool").fetchone()
    if idle and not conn.autocommit:
        conn.rollback()
    if row is None:
        return None
    if row[0]:
        return "a read-only replica (a hot standby in recovery)"
    if row[1]:
        return "read-only for this session (default_transaction_read_only is on)"
    return None


def require_primary(conn: psycopg.Connection, action: str) -> None:
    """Refuse, in one line and before anything is printed or written, a command that
    writes (``action`` names it) on a server that cannot take writes."""
    why = read_only_reason(conn)
    if why:
        raise ReadOnlyServer(f"{action} writes, but {describe_conn(conn)} is {why}",
                             hint="run it against the primary")


def describe_conn(conn: psycopg.Connection) -> str:
    """host:port/dbname of an open connection, for messages."""
    info = conn.info
    host = info.host if info.host and not info.host.startswith("/") else "local socket"
    return f"{host}:{info.port}/{info.dbname}"


def require_superuser(conn: psycopg.Connection, action: str) -> None:
    """Install and uninstall create roles, enable RLS on ILS tables and write policies.

    PostgreSQL lets only a table's owner or a superuser do the latter two; a superuser is
    also the only role that can hand ownership of the layer to its admin role safely on
    every supported version (PostgreSQL 16 changed what CREATEROLE implies)."""
    row = conn.execute(
        "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    if not row or not row[0]:
        user = conn.info.user
        raise StateError(f"{action} must run as a superuser; {user} is not",
                         hint="connect as postgres (or another superuser) for this step")


def current_database(conn: psycopg.Connection) -> str:
    row = conn.execute("SELECT current_database()").fetchone()
    assert row is not None
    return str(row[0])


def one_row(row: _Row | None, what: str) -> _Row:
    """The row ``fetchone()`` returned for a query that always returns one (``what``
    names it in the error if it returned none)."""
    if row is None:
        raise StateError(f"{what}: the query returned no row")
    return row


def server_version(conn: psycopg.Connection) -> str:
    row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else ""


def run_statement(conn: psycopg.Connection, statement: str) -> None:
    """Run one planned statement, alone, with the extended query protocol.

    With no parameters psycopg would send the string with the simple protocol, which
    runs every statement in it; the extended protocol (asked for here by binary results)
    parses exactly one and refuses a string that holds two ("cannot insert multiple
    commands into a prepared statement").  A name that ends a statement and starts
    another can then never run as SQL inside a superuser's transaction (threat model
    row 16), whatever a plan's step was built from."""
    conn.execute(statement, binary=True)
