"""The gated query runner's PostgreSQL part (``query.run`` holds the order of events):
the request check and audit entries through the layer's functions, the read-only
execution, and errors described by SQLSTATE only (a message can carry values)."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import psycopg
from psycopg import errors as pgerr
from psycopg import sql

from ...catalog import Catalog
from ...engine import SQLSTATE_CLASSES, QueryBackend, RequestCheck
from ...errors import IlsRedactError, QueryRefused

SCHEMA = "ils_redact"
#: cursor name for the gated query (server-side: rows beyond the cap never leave)
CURSOR = "ils_redact_query"

#: SQLSTATE (exact) -> what the restricted user is told
_BY_CODE: dict[str, str] = {
    "42501": "permission denied",
    "57014": "statement timeout (or the query was cancelled)",
    "25006": "the query tried to write in a read-only transaction",
    "42P01": "a relation does not exist",
    "42703": "a column does not exist",
    "42883": "a function or operator does not exist",
    "42601": "syntax error",
    "42804": "datatype mismatch",
    "54001": "statement too complex",
    "53200": "out of memory",
    "53100": "disk full",
    "55P03": "lock not available",
    "40001": "serialization failure",
    "40P01": "deadlock detected",
}

def describe_sqlstate(sqlstate: str | None) -> str:
    """A fixed description of a database error, from its SQLSTATE only (never its text)."""
    code = (sqlstate or "").upper()
    what = _BY_CODE.get(code) or SQLSTATE_CLASSES.get(code[:2]) or "database error"
    return f"{what} ({code or 'no SQLSTATE'})"


def session_search_path(conn: psycopg.Connection) -> tuple[str, ...]:
    """The schemas the server searches for this login, in order, as it resolves them:
    ``$user`` expanded, missing schemas and schemas without USAGE left out, implicit
    ``pg_catalog`` not listed (the gate's catalog has no system relations, so naming
    one refuses either way)."""
    row = conn.execute("SELECT current_schemas(false)").fetchone()
    return tuple(row[0]) if row and row[0] else ()


def check_request(conn: psycopg.Connection, request_id: int) -> RequestCheck:
    """The layer's own check (approved, unexpired, approved for ``session_user``) and
    the fields the request covers."""
    q = sql.SQL("SELECT ok, reason, columns FROM {}.{}(%s)").format(
        sql.Identifier(SCHEMA), sql.Identifier("export_check"))
    try:
        row = conn.execute(q, (request_id,)).fetchone()
    except pgerr.InsufficientPrivilege:
        conn.rollback()
        raise QueryRefused(f"request {request_id} cannot be checked: this login is not a "
                           f"member of the disclosure role") from None
    assert row is not None
    return RequestCheck(bool(row[0]), row[1], tuple(row[2] or ()))


def _layer_call(conn: psycopg.Connection, name: str, args: list[Any]) -> int:
    q = sql.SQL("SELECT {}.{}({})").format(
        sql.Identifier(SCHEMA), sql.Identifier(name),
        sql.SQL(", ").join(sql.Placeholder() * len(args)))
    row = conn.execute(q, args).fetchone()
    assert row is not None
    return int(row[0])


def audit_append(conn: psycopg.Connection, action: str, request_id: int | None,
                 detail: dict[str, Any]) -> int:
    """Append one audit entry (``query``, ``query.failed`` or ``query.finished``: the
    layer's ``log_query`` takes no other action); returns its sequence number."""
    return _layer_call(conn, "log_query", [action, request_id, json.dumps(detail)])


def log_refusal(conn: psycopg.Connection, request_id: int | None, reason: str) -> int | None:
    """``query.refused`` in the audit log; None when this login may not write it."""
    try:
        conn.rollback()
        return _layer_call(conn, "log_refusal", ["query", request_id, reason])
    except psycopg.Error:
        conn.rollback()
        return None


def run_read_only(conn: psycopg.Connection, sql_text: str, *, row_cap: int,
                  timeout_ms: int) -> tuple[tuple[str, ...], list[tuple[Any, ...]], bool]:
    """Execute ``sql_text`` in its own READ ONLY transaction; (columns, rows, capped).

    Raises :class:`psycopg.Error` as the server reported it; the caller decides what the
    user is told.  The transaction is always ended (committed after a clean read, rolled
    back otherwise), so the connection is ready for the next audit entry.
    """
    if conn.autocommit:
        raise IlsRedactError("the gated query needs a connection outside autocommit")
    conn.rollback()  # start clean: SET TRANSACTION must be the transaction's first statement
    try:
        conn.execute("SET TRANSACTION READ ONLY")
        conn.execute("SELECT set_config('statement_timeout', %s, true), "
                     "set_config('search_path', 'pg_catalog', true), "
                     "set_config('standard_conforming_strings', 'on', true)",
                     (f"{int(timeout_ms)}ms",))
        with conn.cursor(name=CURSOR) as cur:
            cur.execute(sql_text)
            rows = cur.fetchmany(row_cap)
            columns = tuple(d.name for d in cur.description or ())
        conn.commit()
    except BaseException:
        with contextlib.suppress(psycopg.Error):
            conn.rollback()
        raise
    # the gate's LIMIT is the cap too, so a full page means "more rows may exist"; no
    # row beyond the cap is fetched to find out
    return columns, [tuple(r) for r in rows], len(rows) >= row_cap


def _pg_failure(exc: psycopg.Error) -> tuple[str | None, str, str, dict[str, Any]]:
    state = exc.sqlstate
    return state, str(exc).strip(), describe_sqlstate(state), {"sqlstate": state}


def _names(conn: psycopg.Connection, catalog: Catalog) -> tuple[tuple[str, ...], dict[str, Any]]:
    """Names resolve through the login's own search path, as the server resolves them."""
    search_path = session_search_path(conn)
    return search_path, {"search_path": list(search_path)}


QUERY_BACKEND = QueryBackend(dialect="postgres", names=_names, check_request=check_request,
                             audit_append=audit_append, log_refusal=log_refusal,
                             run_read_only=run_read_only, driver_error=psycopg.Error,
                             failure=_pg_failure)
