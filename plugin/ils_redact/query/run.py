"""Run a gated query: logged like an export, read-only, bounded, quiet errors.

The order of events is written once, here; what differs between servers is the engine's
``query_backend()`` (``backends/<engine>/query.py``, an :class:`~ils_redact.engine.
QueryBackend`).  The steps as PostgreSQL takes them (MariaDB's are in
``backends/mariadb/query.py``):

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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..catalog import Catalog
from ..disclosure.db import commit_audited
from ..engine import QueryBackend, RequestCheck, engine_for
from ..errors import IlsRedactError, QueryFailed, QueryRefused
from ..gate import Gate, GateResult
from ..rules import Rules

__all__ = ["FORMATS", "QueryBackend", "QueryFailed", "QueryOutcome", "QueryRefused",
           "RequestCheck", "build_gate", "render", "request_gate",
           "run_gated", "run_query", "run_read_only", "session_gate"]

FORMATS = ("table", "csv", "json")

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
def build_gate(rules: Rules, catalog: Catalog, profile: str, *, request_id: int | None,
               search_path: Sequence[str], columns: Sequence[str] | None,
               dialect: str = "postgres") -> Gate:
    return Gate(rules, catalog, profile, request_id=request_id, dialect=dialect,
                search_path=tuple(search_path), cache_size=0,
                require_request=profile == "disclosure", columns=columns)


def request_gate(conn: Any, backend: QueryBackend, rules: Rules, catalog: Catalog, *,
                 profile: str, request_id: int | None, search_path: Sequence[str]) -> Gate:
    """The gate for one request, after the request's own check: the one path both
    ``query`` and ``rewrite --request`` take, so neither checks a query against more than
    the request covers.

    For the disclosure profile the request must be approved, unexpired and approved for
    this login (the layer's ``export_check``, run as the login); the gate is narrowed to
    the fields the request names (a court order naming only ``family_name`` reaches no
    other identity column).  A request that fails its check is refused, and the refusal
    is logged (``query.refused``) where the login may write the log.
    """
    if profile not in ("disclosure", "stats"):
        raise IlsRedactError(f"a request is checked for the disclosure profile, not "
                             f"{profile!r}")
    logged = profile == "disclosure"
    if logged and request_id is None:
        raise IlsRedactError("a disclosure query serves one request: pass --request ID")
    if not logged and request_id is not None:
        raise IlsRedactError("--request applies to the disclosure profile only")
    columns: tuple[str, ...] | None = None
    if logged:
        assert request_id is not None
        req = backend.check_request(conn, request_id)
        conn.commit()  # keeps what the check swept (expired requests) and its entries
        if not req.ok:
            reason = f"request {request_id}: {req.reason}"
            seq = _log_refusal(conn, backend, request_id, reason)
            raise QueryRefused(f"query refused: {reason}", audit_seq=seq)
        columns = req.columns
    return build_gate(rules, catalog, profile, request_id=request_id,
                      search_path=tuple(search_path), columns=columns,
                      dialect=backend.dialect)


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
    search_path = tuple(search_path)
    gate = request_gate(conn, backend, rules, catalog, profile=profile,
                        request_id=request_id, search_path=search_path)
    result = gate.check(sql_text)
    if not result.ok or result.sql is None:
        seq = (_log_refusal(conn, backend, request_id, refusal_reason(result)) if logged
               else None)
        raise QueryRefused("query refused by the gate", result.findings, seq)
    timeout_ms = rules.gate.statement_timeout_ms
    row_cap = gate.profile.row_cap
    query_seq = None
    if logged:
        query_seq = _audit_append(conn, backend, "query", request_id, {
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
                seq = _audit_append(conn, backend, "query.failed", request_id, {
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
        finished_seq = _audit_append(conn, backend, "query.finished", request_id, {
            "query_seq": query_seq, "rows": len(rows), "capped": capped,
            "format": fmt, "sha256": digest})
    return QueryOutcome(sql=result.sql, columns=cols, rows=rows, document=document,
                        sha256=digest, capped=capped, query_seq=query_seq,
                        finished_seq=finished_seq, search_path=search_path)


def session_gate(conn: Any, rules: Rules, catalog: Catalog, *,
                 profile: str = "disclosure", request_id: int | None = None) -> Gate:
    """:func:`request_gate` for this login: names resolve as :func:`run_query` resolves
    them (PostgreSQL: the login's own search path; MariaDB: the connected Koha
    database)."""
    backend = engine_for(conn).query_backend()
    search_path, _ = backend.names(conn, catalog)
    return request_gate(conn, backend, rules, catalog, profile=profile,
                        request_id=request_id, search_path=search_path)


def run_query(conn: Any, rules: Rules, catalog: Catalog, sql_text: str, *,
              profile: str = "disclosure", request_id: int | None = None,
              fmt: str = "table") -> QueryOutcome:
    """Check, log, execute and render one staff query (see the module docstring), on
    the server ``conn`` belongs to.

    Raises :class:`QueryRefused` (gate or request refusal, logged), or
    :class:`QueryFailed` (the database refused or stopped it; logged for disclosure).
    """
    backend = engine_for(conn).query_backend()
    search_path, context = backend.names(conn, catalog)
    return run_gated(conn, backend, rules, catalog, sql_text, profile=profile,
                     request_id=request_id, fmt=fmt, search_path=search_path,
                     context=context)


def _audit_append(conn: Any, backend: QueryBackend, action: str, request_id: int | None,
                  detail: dict[str, Any]) -> int:
    """Append one audit entry and commit it (``commit_audited``: a commit that waits for
    a synchronous standby that is gone ends with a clear error)."""
    seq = backend.audit_append(conn, action, request_id, detail)
    commit_audited(conn, what=f"the audit entry {action}")
    return seq


def _log_refusal(conn: Any, backend: QueryBackend, request_id: int | None,
                 reason: str) -> int | None:
    """``query.refused`` in the audit log, committed; None when this login may not
    write it."""
    seq = backend.log_refusal(conn, request_id, reason)
    if seq is None:
        return None
    try:
        commit_audited(conn, what="the audit entry query.refused")
    except backend.driver_error:
        with contextlib.suppress(backend.driver_error):
            conn.rollback()
        return None
    return seq


def run_read_only(conn: Any, sql_text: str, *, row_cap: int, timeout_ms: int
                  ) -> tuple[tuple[str, ...], list[tuple[Any, ...]], bool]:
    """Execute ``sql_text`` in its own READ ONLY transaction, on the server ``conn``
    belongs to; (columns, rows, capped)."""
    return engine_for(conn).query_backend().run_read_only(
        conn, sql_text, row_cap=row_cap, timeout_ms=timeout_ms)

