"""The gated query runner's MariaDB part (Koha); ``query.run`` holds the order of
events, as follows here.

1. Check the request with the layer's own procedure (``export_check``: approved,
   unexpired, approved for this login; it also records expiries) and read the fields it
   covers; the gate is narrowed to them.
2. Check the text with the gate in the MySQL dialect.  Unqualified names are the Koha
   database's (the login connects with no default database: it holds nothing there);
   the gate rewrites every identity table to the layer's definer view of the same name
   and adds the explicit scope predicate (``scope_patrons`` of this request).  A refusal
   is logged (``query.refused``) and nothing runs.
3. Commit an audit entry ``query`` (the hash of the text as submitted, the SQL that will
   run) BEFORE any row is read.
4. Execute only :attr:`GateResult.sql`, in ``START TRANSACTION READ ONLY``, as
   ``SET STATEMENT max_statement_time = <gate.statement_timeout_ms>, sql_mode = <the
   layer's> FOR <sql>``: the time limit holds for this statement only, and the SQL means
   what the gate read (no ``ANSI_QUOTES`` turning a string into a name, no
   ``NO_BACKSLASH_ESCAPES`` or ``PIPES_AS_CONCAT`` from the login's session).  The
   gate's LIMIT is the row cap; no more than the cap is taken.
5. Render, then commit ``query.finished`` with the row count and the sha256 of the
   rendered bytes.

Errors are mapped by MariaDB error number (else the SQLSTATE class) to fixed messages:
a message can carry values (``Truncated incorrect DOUBLE value: '...'``, a duplicate
key).  The server's text is kept on the exception for ``--debug`` only; the audit entry
``query.failed`` records the error number and SQLSTATE.

The catalog the gate checks against is the one install recorded in the layer database
(a restricted login sees none of the Koha tables in information_schema; see
``recorded_catalog``), or a JSON catalog given with ``--catalog``.

The ``stats`` profile runs the same way, without a request and without audit entries; on
Koha it permits no relation (the statistics reports are procedures: ``ils-redact stats
run``).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pymysql

from ...catalog import Catalog
from ...engine import SQLSTATE_CLASSES, QueryBackend, RequestCheck
from ...errors import IlsRedactError, QueryRefused
from . import procedures
from .connection import Connection, current_database
from .sqltext import SQL_MODE, qname, string

#: MariaDB error number -> what the restricted user is told
_BY_CODE: dict[int, str] = {
    1044: "permission denied (database)",
    1142: "permission denied (table)",
    1143: "permission denied (column)",
    1370: "permission denied (routine)",
    1227: "permission denied",
    1969: "statement timeout (max_statement_time)",
    1317: "the query was interrupted",
    1927: "the connection was killed",
    1792: "the query tried to write in a read-only transaction",
    1146: "a relation does not exist",
    1054: "a column does not exist",
    1305: "a function does not exist",
    1064: "syntax error",
    1292: "data exception (an incorrect value)",
    1366: "data exception (an incorrect value)",
    1365: "division by zero",
    1690: "value out of range",
    1242: "a subquery returned more than one row",
    1205: "lock wait timeout",
    1213: "deadlock detected",
    1040: "too many connections",
    1041: "out of memory",
    1114: "a temporary table is full",
    1021: "disk full",
    2006: "the server has gone away",
    2013: "lost the connection to the server",
}


def describe_error(code: int, sqlstate: str | None) -> str:
    """A fixed description of a MariaDB error, from its number and SQLSTATE (never its
    text)."""
    state = (sqlstate or "").upper()
    what = _BY_CODE.get(code) or SQLSTATE_CLASSES.get(state[:2]) or "database error"
    return f"{what} (MariaDB error {code}" + (f", SQLSTATE {state})" if state else ")")


def _error(exc: pymysql.err.MySQLError) -> tuple[int, str | None, str]:
    code = int(exc.args[0]) if exc.args and isinstance(exc.args[0], int) else 0
    detail = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
    return code, getattr(exc, "sqlstate", None), detail


# -- the layer's procedures ----------------------------------------------------------------

def check_request(conn: Connection, request_id: int) -> RequestCheck:
    """``export_check`` as the login: ok, the reason if not, the fields it covers.  A
    request for fewer than every identity field is refused here too: the layer's views
    serve only requests that cover them all (the export alone serves the others)."""
    layer = procedures.layer_of(conn)
    q = (f"CALL {qname(layer, 'export_check')}(%s, @ils_redact_ok, @ils_redact_reason, "
         "@ils_redact_basis, @ils_redact_columns, @ils_redact_patrons)")
    try:
        procedures._run(conn, q, (request_id,), "disclosure")
        row = procedures._run(conn, "SELECT @ils_redact_ok, @ils_redact_reason, "
                                    f"@ils_redact_columns, {qname(layer, 'covers_all')}("
                                    "@ils_redact_columns)", (), "disclosure")[0]
        conn.execute("SET @ils_redact_ok = NULL, @ils_redact_reason = NULL, "
                     "@ils_redact_basis = NULL, @ils_redact_columns = NULL, "
                     "@ils_redact_patrons = NULL")
    except IlsRedactError:
        conn.rollback()
        raise QueryRefused(f"request {request_id} cannot be checked: this login is not a "
                           f"member of the disclosure role") from None
    ok, reason, columns, every = row
    cols = json.loads(columns) if isinstance(columns, str | bytes) and columns else []
    if ok and not every:
        return RequestCheck(False, "it names only some identity fields, and queries read "
                            "whole rows: its fields are disclosed by the logged export only "
                            "(ils-redact export)", tuple(cols))
    return RequestCheck(bool(ok), None if reason is None else str(reason), tuple(cols))


def audit_append(conn: Connection, action: str, request_id: int | None,
                 detail: dict[str, Any]) -> int:
    """Append one audit entry (``query``, ``query.finished`` or ``query.failed``: the
    layer's query_log takes no other); returns its sequence number."""
    rows = procedures.call(conn, "query_log", [action, request_id, json.dumps(detail)])
    return int(rows[0][0])


def log_refusal(conn: Connection, request_id: int | None, reason: str) -> int | None:
    """``query.refused`` in the audit log; None when this login may not write it."""
    try:
        conn.rollback()
        rows = procedures.call(conn, "log_refusal", ["query", request_id, reason])
        return int(rows[0][0])
    except (pymysql.err.MySQLError, IlsRedactError):
        with contextlib.suppress(pymysql.err.MySQLError):
            conn.rollback()
        return None


# -- execution -------------------------------------------------------------------------

def statement(sql_text: str, timeout_ms: int) -> str:
    """The gated SELECT with its time limit and the SQL mode it was checked in."""
    seconds = f"{max(1, int(timeout_ms)) / 1000:.3f}"
    return (f"SET STATEMENT max_statement_time = {seconds}, sql_mode = {string(SQL_MODE)} "
            f"FOR {sql_text}")


def run_read_only(conn: Connection, sql_text: str, *, row_cap: int, timeout_ms: int
                  ) -> tuple[tuple[str, ...], list[tuple[Any, ...]], bool]:
    """Execute ``sql_text`` in its own READ ONLY transaction; (columns, rows, capped).
    Raises the driver's error as the server reported it; the transaction is always
    ended."""
    conn.rollback()
    cur = conn.cursor()
    try:
        cur.execute("START TRANSACTION READ ONLY")
        cur.execute(statement(sql_text, timeout_ms))
        rows = cur.fetchmany(row_cap)
        columns = tuple(d[0] for d in cur.description or ())
        conn.commit()
    except BaseException:
        with contextlib.suppress(pymysql.err.MySQLError):
            conn.rollback()
        raise
    finally:
        with contextlib.suppress(pymysql.err.MySQLError):
            cur.close()
    return columns, [tuple(r) for r in rows], len(rows) >= row_cap


def _failure(exc: pymysql.err.MySQLError) -> tuple[str | None, str, str, dict[str, Any]]:
    code, state, detail = _error(exc)
    return state, detail, describe_error(code, state), {"error_code": code, "sqlstate": state}


def _names(conn: Connection, catalog: Catalog) -> tuple[tuple[str, ...], dict[str, Any]]:
    """Unqualified names are the connected Koha database's."""
    database = _database(conn, catalog)
    return (database,), {"database": database}


QUERY_BACKEND = QueryBackend(dialect="mariadb", names=_names, check_request=check_request,
                             audit_append=audit_append, log_refusal=log_refusal,
                             run_read_only=run_read_only,
                             driver_error=pymysql.err.MySQLError, failure=_failure)


def _database(conn: Connection, catalog: Catalog) -> str:
    database = current_database(conn)
    if catalog.engine != "mariadb" or catalog.database != database:
        raise IlsRedactError(f"the catalog describes {catalog.engine} database "
                             f"{catalog.database!r}, not the Koha database {database}",
                             hint="leave out --catalog, or give one read from this database")
    return database


