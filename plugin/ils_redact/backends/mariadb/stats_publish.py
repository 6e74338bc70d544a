"""``stats publish`` on MariaDB (see :mod:`ils_redact.sdc.publish`): one transaction.

Run by the administrator (the install DSN).  Publishers are serialised by a named lock
(two at once would each miss the other's shared totals); the counts are the plain GROUP
BY of each measure over the months asked for, with the session pinned to the report's
time zone, as the report procedures pinned it; the pages are solved and checked in
Python; the released entries go into the layer's ``stats_published`` in one InnoDB
transaction, or nothing does.
"""

# ruff: noqa: S608 - identifiers only through sqltext.qname; values as parameters

from __future__ import annotations

import datetime as dt
import zoneinfo

import pymysql

from ...catalog import Catalog
from ...errors import IlsRedactError, Refused, StateError
from ...rules import Rules
from ...sdc.model import ReportSource
from ...sdc.publish import (
    MonthResult,
    next_month,
    prepare,
    publication_row,
    rows_to_write,
    solve_month,
)
from .connection import Connection
from .procedures import layer_of
from .sqltext import qname
from .stats import _FLOOR, CATALOG_PROC, COUNT_PROC, live_sql, zone

_LOCK = "ils_redact_stats_publish"


def _installed(conn: Connection, layer: str) -> dict[str, tuple[int, str, bool]]:
    try:
        rows = conn.rows(f"CALL {qname(layer, CATALOG_PROC)}()")
        conn.rows(f"SELECT 1 FROM {qname(layer, 'stats_publication')} LIMIT 0")
        counts = conn.rows("SELECT 1 FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = "
                           "%s AND ROUTINE_NAME = %s", (layer, COUNT_PROC))
    except pymysql.err.MySQLError:
        counts = None
    if not counts:
        raise IlsRedactError("the statistics publication tables are not installed here",
                             hint="run `ils-redact install` (layer 6) first")
    return {str(r[0]): (int(r[8]), str(r[9]), bool(r[6])) for r in rows}


def publish(conn: Connection, rules: Rules, catalog: Catalog, name: str,
            months: list[dt.date] | None, *, reports: ReportSource) -> list[MonthResult]:
    layer = layer_of(conn)
    installed = _installed(conn, layer)
    job = prepare(rules, catalog, installed, name, months, reports)
    report, settings, guarded, tz, timed = (job.report, job.settings, job.guarded,
                                            job.time_zone, job.timed)
    this_month = dt.datetime.now(zoneinfo.ZoneInfo(tz)).date().replace(day=1)
    floor = dt.date.fromisoformat(_FLOOR)
    periods = months or [floor]
    pub, pubd = qname(layer, "stats_publication"), qname(layer, "stats_published")
    if conn.rows("SELECT GET_LOCK(%s, 30)", (_LOCK,))[0][0] != 1:
        raise IlsRedactError("another `stats publish` is running; try again")
    try:
        conn.begin()
        done = {r[0]: r[1] for r in conn.rows(
            f"SELECT period, published_at FROM {pub} WHERE report = %s", (name,))}
        results: list[MonthResult] = []
        todo = []
        for d in periods:
            period = d if timed else None
            if d in done:
                results.append(MonthResult(name, period, "already published",
                                           published_at=str(done[d])))
            else:
                todo.append(d)
        if not todo:
            conn.commit()
            return results
        if timed:
            lo, hi = min(todo), next_month(max(todo))
            if hi > this_month:
                raise Refused(f"reports cover complete months only: the end {hi} is after "
                              f"{this_month}")
        else:
            lo, hi = floor, this_month
        old_tz = conn.rows("SELECT @@session.time_zone")[0][0]
        conn.execute("SET SESSION time_zone = %s", (zone(tz),))
        try:
            # as the statistics owner (a definer procedure), never as the administrator:
            # a view the Koha account planted in place of a Koha table runs nothing of
            # its own with the administrator's rights (layer 6, sql/mariadb)
            try:
                cells = conn.rows(f"CALL {qname(layer, COUNT_PROC)}(%s)",
                                  (live_sql(report, catalog, f"{lo} 00:00:00",
                                            f"{hi} 00:00:00"),))
            except pymysql.err.MySQLError as exc:
                code = int(exc.args[0]) if exc.args and isinstance(exc.args[0], int) else 0
                raise StateError(
                    f"stats publish {name}: counting as the statistics owner failed "
                    f"(MariaDB error {code}); nothing was published",
                    hint="a table the report reads may have been replaced by a view or "
                         "lost a column: run `ils-redact verify`") from None
        finally:
            conn.execute("SET SESSION time_zone = %s", (old_tz,))
        by_month: dict[dt.date | None, list] = {}
        for m, meas, r, c, v, np_ in cells:
            if isinstance(m, str):
                m = dt.date.fromisoformat(m)
            by_month.setdefault(m if timed else None, []).append((meas, r, c, v, np_))
        for d in todo:
            period = d if timed else None
            shared = {str(key): (None if value is None else int(value))
                      for key, value in conn.rows(
                          f"SELECT shared_key, value FROM {pubd} "
                          "WHERE period = %s AND report <> %s", (d, name))}
            pages = solve_month(report, by_month.get(period, []), settings, guarded, shared)
            conn.execute(
                f"INSERT INTO {pub} (report, period, k, protection, cost, method, released, "
                "primary_suppressed, complement_suppressed, shared_suppressed, published_at, "
                "published_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
                "UTC_TIMESTAMP(6), CURRENT_USER())",
                (name, d, *publication_row(name, d, settings, pages)[2:])).close()
            rows = [(r[0], d, *r[2:]) for r in rows_to_write(name, d, pages)]
            if rows:
                cur = conn.cursor()
                cur.executemany(
                    f"INSERT INTO {pubd} (report, period, measure, kind, row_value, "
                    "col_value, value, suppressed, reason, shared_key) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", rows)
                cur.close()
            results.append(MonthResult(name, period, "published" if pages else "no records",
                                       pages, None))
        conn.commit()
        return results
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.rows("SELECT RELEASE_LOCK(%s)", (_LOCK,))
