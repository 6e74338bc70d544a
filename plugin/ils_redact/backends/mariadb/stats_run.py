"""List and run the installed reports on MariaDB, as a login in the statistics role.

The same results as :mod:`ils_redact.sdc.results` (``ReportInfo``, ``ReportResult``,
``Entry``), from the layer's procedures: ``stats_reports()`` describes what is installed,
``report_<name>(from, to)`` returns entries that are already suppressed.  A report name
is checked against the installed list before it is quoted into the CALL.

A login has one active role at a time in MariaDB; if its default role is another one,
the stats role it was granted is activated (``SET ROLE``) and the call tried again.  A
report's own refusals (a misaligned period) arrive as SIGNAL and become
:class:`~ils_redact.errors.Refused` with their text, as on PostgreSQL; any other database
error is reported by its error number only: the stats login cannot read what the report
read, and neither should an error message carry it.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pymysql

from ...errors import IlsRedactError
from ...sdc.results import Entry, Published, ReportInfo, ReportResult, choose_report, in_period
from .connection import Connection
from .procedures import _run, layer_of
from .sqltext import qname
from .stats import CATALOG_PROC, PUBLICATIONS_PROC, procedure_name

_DENIED = (1142, 1143, 1370)  # table, column, routine access denied
_NO_ROUTINE = (1305, 1049)  # routine or database does not exist
_UNKNOWN_ZONE = 1298


def _not_installed(code: int) -> IlsRedactError:
    return IlsRedactError(
        f"cannot read the statistics reports (MariaDB error {code})",
        hint="is ils-redact (layer 3) installed here, and is this login a member of the "
             "stats role? (`ils-redact staff grant LOGIN --role stats`)")


def _call(conn: Connection, sql: str, params: tuple = ()) -> list[tuple]:
    """Run a CALL as the stats role and read its one result set; errors by number."""
    try:
        return _run(conn, sql, params, "stats", denied_refuses=False)
    except pymysql.err.MySQLError as exc:
        code = exc.args[0] if exc.args else 0
        if code in _DENIED or code in _NO_ROUTINE:
            raise _not_installed(code) from None
        if code == _UNKNOWN_ZONE:
            raise IlsRedactError(
                "the server does not know the report's time zone (statistics.time_zone; "
                "MariaDB error 1298)",
                hint="load the time zone tables (mariadb-tzinfo-to-sql "
                     "/usr/share/zoneinfo | mariadb mysql), or use time_zone: UTC") from None
        raise IlsRedactError(f"the statistics report failed (MariaDB error {code})",
                             hint="--debug shows the server's message") from None


def list_reports(conn: Connection) -> list[ReportInfo]:
    rows = _call(conn, f"CALL {qname(layer_of(conn), CATALOG_PROC)}()")
    out = [ReportInfo(str(n), str(t), str(d), str(rt), None if ct is None else str(ct),
                      tuple(json.loads(m)), bool(timed), bool(custom), int(k), str(tz))
           for n, t, d, rt, ct, m, timed, custom, k, tz in rows]
    return sorted(out, key=lambda r: (r.custom, r.name))


def _entry(row: tuple[Any, ...]) -> Entry:
    period, measure, kind, rv, cv, value, suppressed = row
    if isinstance(period, str):
        period = dt.date.fromisoformat(period)
    return Entry(period, str(measure), str(kind), rv, cv,
                 None if value is None else int(value), bool(suppressed))


def run_report(conn: Connection, name: str, period_from: dt.date | None = None,
               period_to: dt.date | None = None) -> ReportResult:
    """Run one installed report; ``period_to`` is exclusive (the first month not
    included); None: up to the last complete month."""
    info = choose_report(list_reports(conn), name, period_from, period_to)
    rows = _call(conn, f"CALL {qname(layer_of(conn), procedure_name(info.name))}(%s, %s)",
                 (period_from, period_to))
    return ReportResult(info, period_from, period_to, [_entry(r) for r in rows],
                        publications(conn, info.name, period_from, period_to))


def publications(conn: Connection, name: str, lo: dt.date | None, hi: dt.date | None
                 ) -> list[Published] | None:
    """The published months of report ``name`` in [lo, hi); None before layer 5."""
    try:
        rows = _run(conn, f"CALL {qname(layer_of(conn), PUBLICATIONS_PROC)}()", (), "stats",
                    denied_refuses=False)
    except pymysql.err.MySQLError:
        return None
    out = []
    for r in rows:
        if str(r[0]) != name:
            continue
        period = r[1]
        if isinstance(period, str):
            period = dt.date.fromisoformat(period)
        out.append(Published(period, int(r[2]), int(r[3]), str(r[4]), str(r[5]), int(r[6]),
                             int(r[7]), int(r[8]), int(r[9]), str(r[10])))
    return in_period(out, lo, hi)
