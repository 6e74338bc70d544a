"""How the workflow calls the layer's functions, whatever the backend.

PostgreSQL exposes them as functions (``SELECT * FROM ils_redact.f(...)``); the MariaDB
backend provides procedures of the same names and arguments.  Values are always passed
as parameters; the function names come from this package, never from input.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from ..errors import Refused

_NAMES = frozenset({
    "patron_lookup", "request_create", "request_approve", "request_end", "sweep_expired",
    "export", "log_refusal", "audit_append",
})


def is_postgres(conn: Any) -> bool:
    return isinstance(conn, psycopg.Connection)


def call(conn: Any, name: str, args: list[Any]) -> list[tuple]:
    if name not in _NAMES:
        raise ValueError(name)
    if is_postgres(conn):
        q = sql.SQL("SELECT * FROM {}.{}({})").format(
            sql.Identifier("ils_redact"), sql.Identifier(name),
            sql.SQL(", ").join(sql.Placeholder() * len(args)))
        try:
            return conn.execute(q, args).fetchall()
        except psycopg.errors.RaiseException as exc:
            raise Refused(exc.diag.message_primary or str(exc)) from None
        except (psycopg.errors.InvalidParameterValue,
                psycopg.errors.InsufficientPrivilege) as exc:
            raise Refused(exc.diag.message_primary or str(exc)) from None
    from ..backends.mariadb import procedures

    return procedures.call(conn, name, args)


def query(conn: Any, sql_text: str, params: list[Any] | None = None) -> list[tuple]:
    if is_postgres(conn):
        return conn.execute(sql_text, params or None).fetchall()
    from ..backends.mariadb import procedures

    return procedures.query(conn, sql_text, params)


def table(conn: Any, name: str) -> str:
    """One of the layer's tables as SQL: ``ils_redact.request`` on PostgreSQL, the layer
    database of this Koha database on MariaDB (``ils_redact_koha``.``request``)."""
    if is_postgres(conn):
        return f"ils_redact.{name}"
    from ..backends.mariadb import procedures

    return procedures.table(conn, name)


def normalize_request(conn: Any, row: dict[str, Any]) -> dict[str, Any]:
    """A request row as PostgreSQL returns it (MariaDB: JSON columns, naive UTC times)."""
    if is_postgres(conn):
        return row
    from ..backends.mariadb import procedures

    return procedures.normalize_request(row)
