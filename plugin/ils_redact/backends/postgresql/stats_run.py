"""List and run the installed reports on PostgreSQL, as a login in the statistics role.

The database describes itself (``ils_redact_stats.reports()``), so a staff member needs
no rules file, and a report name is checked against that list before it is quoted into
the call.  What comes back is already suppressed: this module only shapes it (into
:mod:`ils_redact.sdc.results`).
"""

from __future__ import annotations

import datetime as dt

import psycopg
from psycopg import errors, sql

from ...errors import IlsRedactError, Refused
from ...sdc.model import RESULT_COLUMNS
from ...sdc.results import Entry, Published, ReportInfo, ReportResult, choose_report, in_period
from .stats import SCHEMA


def _not_installed(exc: Exception) -> IlsRedactError:
    return IlsRedactError(f"cannot read the statistics reports: {exc}".splitlines()[0],
                          hint="is ils-redact (layer 3) installed here, and is this login "
                               "a member of the stats role? (`ils-redact staff grant LOGIN "
                               "--role stats`)")


def list_reports(conn: psycopg.Connection) -> list[ReportInfo]:
    try:
        rows = conn.execute(sql.SQL("SELECT name, title, description, rows_title, cols_title, "
                                    "measures, timed, custom, k, time_zone FROM {}.reports() "
                                    "ORDER BY custom, name").format(
            sql.Identifier(SCHEMA))).fetchall()
    except (errors.UndefinedFunction, errors.InvalidSchemaName,
            errors.InsufficientPrivilege) as exc:
        conn.rollback()
        raise _not_installed(exc) from None
    return [ReportInfo(n, t, d, rt, ct, tuple(m), timed, custom, k, tz)
            for n, t, d, rt, ct, m, timed, custom, k, tz in rows]


def run_report(conn: psycopg.Connection, name: str, period_from: dt.date | None = None,
               period_to: dt.date | None = None) -> ReportResult:
    """Run one installed report; ``period_to`` is exclusive (the first month not
    included); None: up to the last complete month."""
    info = choose_report(list_reports(conn), name, period_from, period_to)
    query = sql.SQL("SELECT {} FROM {}.{}(%s, %s)").format(
        sql.SQL(", ").join(map(sql.Identifier, RESULT_COLUMNS)), sql.Identifier(SCHEMA),
        sql.Identifier(info.name))
    try:
        rows = conn.execute(query, (period_from, period_to)).fetchall()
    except errors.InvalidParameterValue as exc:
        conn.rollback()
        raise Refused(exc.diag.message_primary or str(exc)) from None
    except errors.InsufficientPrivilege as exc:
        conn.rollback()
        raise _not_installed(exc) from None
    return ReportResult(info, period_from, period_to, [Entry(*r) for r in rows],
                        publications(conn, info.name, period_from, period_to))


def publications(conn: psycopg.Connection, name: str, lo: dt.date | None,
                 hi: dt.date | None) -> list[Published] | None:
    """The published months of report ``name`` in [lo, hi); None before layer 6."""
    try:
        rows = conn.execute(sql.SQL(
            "SELECT period, k, protection, cost, method, released, primary_suppressed, "
            "complement_suppressed, shared_suppressed, published_at::text "
            "FROM {}.publications() WHERE report = %s ORDER BY period").format(
            sql.Identifier(SCHEMA)), (name,)).fetchall()
    except errors.UndefinedFunction:
        conn.rollback()
        return None
    return in_period([Published(*r) for r in rows], lo, hi)
