"""Run a gated query on PostgreSQL: logged like an export, read-only, bounded, quiet errors.

``ils-redact query`` is the one place where SQL a person typed reaches patron data
through the gate.  The order of events is the point of this module:

1. Check the request (approved, unexpired, approved for this login) and read the
   fields it covers; the gate is narrowed to them.
2. Check the text with the gate, resolving names through the login's own search path
   as the server resolves it (``current_schemas``: ``$user`` expanded, schemas that do
   not exist or that the role may not use left out).  A refusal is written to the audit
   log (``query.refused``) and nothing runs.
3. Commit an audit entry ``query`` (the hash of the text as submitted, the SQL that will
   run, the profile) BEFORE any row is read.  A client that dies later still leaves it.
4. Execute only :attr:`GateResult.sql`, never the original text, in a READ ONLY
   transaction with ``SET LOCAL`` statement_timeout (rules ``gate.statement_timeout_ms``),
   ``search_path = pg_catalog`` (the output names every schema) and
   ``standard_conforming_strings = on`` (the output's string literals mean what the gate
   read), through a server-side cursor fetching at most the row cap.
5. Render the rows, then commit ``query.finished`` with the row count and the sha256 of
   the rendered bytes, so the log can be matched with what left the database.

Database errors are not echoed to the restricted user: a message can carry values
(``invalid input syntax for type integer: "..."``, a key in a unique violation).  They
are mapped by SQLSTATE to fixed messages naming the class; the full text is kept on the
exception for ``--debug`` only, and the audit entry ``query.failed`` records the SQLSTATE.

The statistics profile (``stats``) runs the same way without a request and without audit
entries: the statistics role reads only suppressed aggregate views and cannot write the
log.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import errors as pgerr
from psycopg import sql

from ..catalog import Catalog
from ..errors import IlsRedactError, Refused
from ..rules import Rules
from .findings import Finding
from .gate import Gate, GateResult

FORMATS = ("table", "csv", "json")
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

#: SQLSTATE class (first two characters) -> what the restricted user is told
_BY_CLASS: dict[str, str] = {
    "08": "connection exception",
    "0A": "feature not supported",
    "21": "cardinality violation",
    "22": "data exception",
    "23": "integrity constraint violation",
    "25": "invalid transaction state",
    "28": "invalid authorization",
    "2F": "SQL routine exception",
    "38": "external routine exception",
    "39": "external routine invocation exception",
    "40": "transaction rollback",
    "42": "syntax error or access rule violation",
    "53": "insufficient resources",
    "54": "program limit exceeded",
    "55": "object not in prerequisite state",
    "57": "operator intervention",
    "58": "system error",
    "P0": "PL/pgSQL error",
    "XX": "internal error",
}


def describe_sqlstate(sqlstate: str | None) -> str:
    """A fixed description of a database error, from its SQLSTATE only (never its text)."""
    code = (sqlstate or "").upper()
    what = _BY_CODE.get(code) or _BY_CLASS.get(code[:2]) or "database error"
    return f"{what} ({code or 'no SQLSTATE'})"


class QueryRefused(Refused):
    """The gate (or the request check) refused: nothing was executed."""

    def __init__(self, message: str, findings: Sequence[Finding] = (),
                 audit_seq: int | None = None) -> None:
        super().__init__(message)
        self.findings = tuple(findings)
        self.audit_seq = audit_seq


class QueryFailed(Refused):
    """The database refused or stopped the gated query.  ``message`` names the SQLSTATE
    class only; ``detail`` is the server's full text, for ``--debug``."""

    def __init__(self, message: str, *, sqlstate: str | None, detail: str,
                 audit_seq: int | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.detail = detail
        self.audit_seq = audit_seq


@dataclass(frozen=True)
class QueryOutcome:
    """What ran and what came back.  ``document`` is exactly the bytes whose sha256 the
    ``query.finished`` entry records."""

    sql: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    document: bytes
    sha256: str
    capped: bool
    query_seq: int | None = None
    finished_seq: int | None = None
    search_path: tuple[str, ...] = field(default_factory=tuple)

    def summary(self) -> dict[str, Any]:
        return {"rows": len(self.rows), "capped": self.capped, "sha256": self.sha256,
                "audit_seq": self.query_seq, "finished_seq": self.finished_seq}


# -- the connection's facts ------------------------------------------------------------
def session_search_path(conn: psycopg.Connection) -> tuple[str, ...]:
    """The schemas the server searches for this login, in order, as it resolves them:
    ``$user`` expanded, missing schemas and schemas without USAGE left out, implicit
    ``pg_catalog`` not listed (the gate's catalog has no system relations, so naming
    one refuses either way)."""
    row = conn.execute("SELECT current_schemas(false)").fetchone()
    return tuple(row[0]) if row and row[0] else ()


@dataclass(frozen=True)
class RequestCheck:
    ok: bool
    reason: str | None
    columns: tuple[str, ...]


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
    """Append and commit one audit entry; returns its sequence number."""
    seq = _layer_call(conn, "audit_append", [action, request_id, json.dumps(detail)])
    conn.commit()
    return seq


def log_refusal(conn: psycopg.Connection, request_id: int | None, reason: str) -> int | None:
    """``query.refused`` in the audit log; None when this login may not write it."""
    try:
        conn.rollback()
        seq = _layer_call(conn, "log_refusal", ["query", request_id, reason])
        conn.commit()
        return seq
    except psycopg.Error:
        conn.rollback()
        return None


def refusal_reason(result: GateResult) -> str:
    """What the log records of a gate refusal: codes, objects and positions."""
    return "; ".join(f"{f.code} {f.object or '-'} {f.where()}" for f in result.findings)


# -- rendering -------------------------------------------------------------------------
_FORMULA = re.compile(r"^[=+\-@\t\r]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    if isinstance(value, bool):
        return "true" if value else "false"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    return _text(value)


def render(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str) -> bytes:
    """The document handed to the user.

    ``csv``: RFC 4180 with a header; a cell starting with ``= + - @`` tab or CR gets a
    leading apostrophe, as in the export, so a spreadsheet shows it instead of running
    it.  ``json``: ``{"columns": [...], "rows": [[...], ...]}`` (column names can repeat,
    so rows are arrays).  ``table``: aligned text for a terminal, control characters
    shown as ``?`` so a value cannot move the cursor or recolour the screen.
    """
    if fmt == "csv":
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\r\n")
        w.writerow(columns)
        for r in rows:
            w.writerow([("'" + t if _FORMULA.match(t) else t) for t in map(_text, r)])
        return out.getvalue().encode("utf-8")
    if fmt == "json":
        doc = {"columns": list(columns), "rows": [[_json_value(v) for v in r] for r in rows]}
        return (json.dumps(doc, ensure_ascii=False) + "\n").encode("utf-8")
    if fmt == "table":
        cells = [[_CONTROL.sub("?", _text(v)) for v in r] for r in rows]
        head = [_CONTROL.sub("?", c) for c in columns]
        widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(head)]
        def line(values: list[str]) -> str:
            return " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

        lines = [line(head), "-+-".join("-" * w for w in widths)]
        lines += [line(r) for r in cells]
        lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
        return ("\n".join(lines) + "\n").encode("utf-8")
    raise IlsRedactError(f"unknown output format {fmt!r}: {', '.join(FORMATS)}")


# -- execution -------------------------------------------------------------------------
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


@dataclass(frozen=True)
class QueryBackend:
    """What differs between servers in :func:`run_gated`; the order of events does not.

    ``failure`` turns a driver error into (sqlstate, the server's text for ``--debug``,
    the fixed description the user is told, the fields of the ``query.failed`` entry).
    """

    dialect: str
    check_request: Callable[[Any, int], RequestCheck]
    audit_append: Callable[[Any, str, int | None, dict[str, Any]], int]
    log_refusal: Callable[[Any, int | None, str], int | None]
    run_read_only: Callable[..., tuple[tuple[str, ...], list[tuple[Any, ...]], bool]]
    driver_error: type[Exception]
    failure: Callable[[Any], tuple[str | None, str, str, dict[str, Any]]]


def build_gate(rules: Rules, catalog: Catalog, profile: str, *, request_id: int | None,
               search_path: Sequence[str], columns: Sequence[str] | None,
               dialect: str = "postgres") -> Gate:
    return Gate(rules, catalog, profile, request_id=request_id, dialect=dialect,
                search_path=tuple(search_path), cache_size=0,
                require_request=profile == "disclosure", columns=columns)


def run_gated(conn: Any, backend: QueryBackend, rules: Rules, catalog: Catalog,
              sql_text: str, *, profile: str, request_id: int | None, fmt: str,
              search_path: Sequence[str], context: dict[str, Any]) -> QueryOutcome:
    """The order of events of the module docstring, for any server: check the request,
    gate the text, commit ``query`` before any row is read, run only the regenerated
    SQL read-only, render, commit ``query.finished``.  ``context`` goes into the
    ``query`` entry (how names were resolved: the search path, the database)."""
    if fmt not in FORMATS:
        raise IlsRedactError(f"unknown output format {fmt!r}: {', '.join(FORMATS)}")
    if profile not in ("disclosure", "stats"):
        raise IlsRedactError(f"query runs the disclosure or stats profile, not {profile!r}")
    logged = profile == "disclosure"
    if logged and request_id is None:
        raise IlsRedactError("a disclosure query serves one request: pass --request ID")
    if not logged and request_id is not None:
        raise IlsRedactError("--request applies to the disclosure profile only")
    search_path = tuple(search_path)
    columns: tuple[str, ...] | None = None
    if logged:
        assert request_id is not None
        req = backend.check_request(conn, request_id)
        conn.commit()  # keeps what the check swept (expired requests) and its entries
        if not req.ok:
            reason = f"request {request_id}: {req.reason}"
            seq = backend.log_refusal(conn, request_id, reason)
            raise QueryRefused(f"query refused: {reason}", audit_seq=seq)
        columns = req.columns
    gate = build_gate(rules, catalog, profile, request_id=request_id,
                      search_path=search_path, columns=columns, dialect=backend.dialect)
    result = gate.check(sql_text)
    if not result.ok or result.sql is None:
        seq = backend.log_refusal(conn, request_id, refusal_reason(result)) if logged else None
        raise QueryRefused("query refused by the gate", result.findings, seq)
    timeout_ms = rules.gate.statement_timeout_ms
    row_cap = gate.profile.row_cap
    query_seq = None
    if logged:
        query_seq = backend.audit_append(conn, "query", request_id, {
            "profile": profile,
            "sql_sha256": hashlib.sha256(sql_text.encode("utf-8")).hexdigest(),
            "sql": result.sql,
            **context,
            "row_cap": row_cap,
            "statement_timeout_ms": timeout_ms,
        })
    try:
        cols, rows, capped = backend.run_read_only(conn, result.sql, row_cap=row_cap,
                                                   timeout_ms=timeout_ms)
    except backend.driver_error as exc:
        state, detail, described, fields = backend.failure(exc)
        seq = None
        if logged:
            try:
                seq = backend.audit_append(conn, "query.failed", request_id, {
                    "query_seq": query_seq, **fields, "error": described})
            except (backend.driver_error, IlsRedactError):  # e.g. the connection is gone
                with contextlib.suppress(backend.driver_error):
                    conn.rollback()
        raise QueryFailed(f"the database refused the query: {described}", sqlstate=state,
                          detail=detail, audit_seq=seq) from None
    document = render(cols, rows, fmt)
    digest = hashlib.sha256(document).hexdigest()
    finished_seq = None
    if logged:
        finished_seq = backend.audit_append(conn, "query.finished", request_id, {
            "query_seq": query_seq, "rows": len(rows), "capped": capped,
            "format": fmt, "sha256": digest})
    return QueryOutcome(sql=result.sql, columns=cols, rows=rows, document=document,
                        sha256=digest, capped=capped, query_seq=query_seq,
                        finished_seq=finished_seq, search_path=search_path)


def _pg_failure(exc: psycopg.Error) -> tuple[str | None, str, str, dict[str, Any]]:
    state = exc.sqlstate
    return state, str(exc).strip(), describe_sqlstate(state), {"sqlstate": state}


POSTGRESQL = QueryBackend(dialect="postgres", check_request=check_request,
                          audit_append=audit_append, log_refusal=log_refusal,
                          run_read_only=run_read_only, driver_error=psycopg.Error,
                          failure=_pg_failure)


def run_query(conn: psycopg.Connection, rules: Rules, catalog: Catalog, sql_text: str, *,
              profile: str = "disclosure", request_id: int | None = None,
              fmt: str = "table") -> QueryOutcome:
    """Check, log, execute and render one staff query (see the module docstring).

    Raises :class:`QueryRefused` (gate or request refusal, logged), or
    :class:`QueryFailed` (the database refused or stopped it; logged for disclosure).
    """
    search_path = session_search_path(conn)
    return run_gated(conn, POSTGRESQL, rules, catalog, sql_text, profile=profile,
                     request_id=request_id, fmt=fmt, search_path=search_path,
                     context={"search_path": list(search_path)})
