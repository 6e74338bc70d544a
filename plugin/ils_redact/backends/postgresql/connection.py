"""Connecting to PostgreSQL, and the facts about the connection that decide what may run."""

from __future__ import annotations

import logging
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from ...errors import ConnectionFailed, StateError

log = logging.getLogger("ils_redact.sql")

#: advisory lock key shared by install, uninstall and every layer upgrade
#: ("ilsredc" in ASCII); xact-scoped, so it is released with the transaction.
LOCK_KEY = 0x696C7372656463

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


def connect(dsn: str, *, debug: bool = False, autocommit: bool = False,
            **kwargs: Any) -> psycopg.Connection:
    """Open a connection; failures become one clean line (exit 2)."""
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


def lock_statement() -> str:
    return sql.SQL("SELECT pg_advisory_xact_lock({})").format(sql.Literal(LOCK_KEY)).as_string()
