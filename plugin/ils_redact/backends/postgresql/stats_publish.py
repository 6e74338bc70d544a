"""``stats publish`` on PostgreSQL (see :mod:`ils_redact.sdc.publish`): one transaction per run.

The run takes the publication table's lock first (two administrators publishing at once
would each miss the other's shared totals), counts as the statistics owner, solves, and
writes; nothing is written unless every page of every month was solved and checked.
"""

from __future__ import annotations

import datetime as dt

import psycopg
from psycopg import errors, sql

from ...catalog import Catalog
from ...errors import IlsRedactError, Refused
from ...rules import Rules
from ...sdc.model import Report, ReportSource
from ...sdc.publish import (
    MonthResult,
    next_month,
    prepare,
    publication_row,
    rows_to_write,
    solve_month,
)
from ...sdc.solve import Settings
from .as_role import call_as
from .stats import SCHEMA, live_sql

INFINITY = "-infinity"


def _installed(conn: psycopg.Connection) -> dict[str, tuple[int, str, bool]]:
    try:
        rows = conn.execute(sql.SQL("SELECT name, k, time_zone, timed FROM {}.reports()").format(
            sql.Identifier(SCHEMA))).fetchall()
        conn.execute("SELECT 'ils_redact_stats.publication'::regclass")
    except (errors.UndefinedFunction, errors.InvalidSchemaName, errors.UndefinedTable):
        conn.rollback()
        raise IlsRedactError("the statistics publication tables are not installed here",
                             hint="run `ils-redact install` (layer 6) first") from None
    return {n: (int(k), tz, bool(timed)) for n, k, tz, timed in rows}


def publish(conn: psycopg.Connection, rules: Rules, catalog: Catalog, name: str,
            months: list[dt.date] | None, *, reports: ReportSource) -> list[MonthResult]:
    """Publish ``months`` of report ``name`` (None: a report over all time).  Commits."""
    installed = _installed(conn)
    job = prepare(rules, catalog, installed, name, months, reports)
    report, settings, guarded, tz, timed = (job.report, job.settings, job.guarded,
                                            job.time_zone, job.timed)
    stats_owner = rules.roles(conn.info.dbname)["stats_owner"]
    periods = months or [dt.date.min]
    key_of = {d: (d if timed else INFINITY) for d in periods}
    with conn.transaction():
        conn.execute(sql.SQL("LOCK TABLE {}.publication IN EXCLUSIVE MODE").format(
            sql.Identifier(SCHEMA)))
        done = {(r[0] if r[0] != dt.date.min else None): r[1] for r in conn.execute(
            sql.SQL("SELECT CASE WHEN period = '-infinity' THEN NULL ELSE period END, "
                    "published_at FROM {}.publication WHERE report = %s").format(
                sql.Identifier(SCHEMA)), (name,))}
        results: list[MonthResult] = []
        todo = []
        for d in periods:
            period = d if timed else None
            if period in done:
                results.append(MonthResult(name, period, "already published",
                                           published_at=done[period].isoformat()))
            else:
                todo.append(d)
        if todo:
            _publish_months(conn, report, name, timed, tz, todo, key_of, settings, guarded,
                            stats_owner, results)
    conn.commit()
    return results


def _publish_months(conn: psycopg.Connection, report: Report, name: str, timed: bool,
                    tz: str, todo: list[dt.date], key_of: dict, settings: Settings,
                    guarded: set[str], stats_owner: str, results: list[MonthResult]) -> None:
    """Count, solve and write the months ``todo`` (inside the caller's transaction)."""
    lo, hi = (min(todo), next_month(max(todo))) if timed else (None, None)
    try:
        b = conn.execute(sql.SQL("SELECT lo, hi FROM {}.period_bounds(%s, %s, %s)").format(
            sql.Identifier(SCHEMA)), (lo, hi, tz)).fetchone()
    except errors.InvalidParameterValue as exc:
        raise Refused(exc.diag.message_primary or str(exc)) from None
    assert b is not None
    cells = _count_as(conn, stats_owner, live_sql(report, tz, b[0], b[1]))
    by_month: dict[dt.date | None, list] = {}
    for m, meas, r, c, v, np_ in cells:
        by_month.setdefault(m, []).append((meas, r, c, v, np_))
    for d in todo:
        period = d if timed else None
        shared = {key: value for key, value in conn.execute(
            sql.SQL("SELECT shared_key, value FROM {}.published "
                    "WHERE period = %s AND report <> %s").format(sql.Identifier(SCHEMA)),
            (key_of[d], name))}
        pages = solve_month(report, by_month.get(period, []), settings, guarded, shared)
        with conn.cursor() as cur:
            cur.execute(sql.SQL(
                "INSERT INTO {}.publication (report, period, k, protection, cost, method, "
                "released, primary_suppressed, complement_suppressed, shared_suppressed) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING published_at"
            ).format(sql.Identifier(SCHEMA)),
                (name, key_of[d], *publication_row(name, d, settings, pages)[2:]))
            row = cur.fetchone()
            rows = [(r[0], key_of[d], *r[2:]) for r in rows_to_write(name, d, pages)]
            if rows:
                cur.executemany(sql.SQL(
                    "INSERT INTO {}.published (report, period, measure, kind, row_value, "
                    "col_value, value, suppressed, reason, shared_key) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)").format(
                    sql.Identifier(SCHEMA)), rows)
        results.append(MonthResult(name, period, "published" if pages else "no records",
                                   pages, row[0].isoformat() if row else None))


#: the statistics owner's counting, run as that role where it cannot change role
#: (:func:`.as_role.call_as`): a row policy the ILS owner wrote for the statistics owner
#: could otherwise ``RESET ROLE`` and run as the administrator's superuser
COUNT_FUNCTION = """
CREATE FUNCTION pg_temp.ils_redact_count(q text) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    r jsonb;
BEGIN
    EXECUTE 'SELECT coalesce(jsonb_agg(jsonb_build_array(t.m, t.meas, t.r, t.c, t.v, t.np)), '
            || '''[]'') FROM (' || q
            || ') t' INTO r;
    RETURN r;
END
$fn$
"""


def _count_as(conn: psycopg.Connection, owner: str, query: sql.Composable) -> list[tuple]:
    """The rows of ``query`` (month, measure, row, column, records, patrons) as counted by
    ``owner``, the statistics owner."""
    rows = call_as(conn, owner, COUNT_FUNCTION, "pg_temp.ils_redact_count(text)",
                   (query.as_string(conn),))
    out = []
    for m, meas, r, c, v, np_ in rows or []:
        month = dt.date.fromisoformat(m[:10]) if m is not None else None
        out.append((month, meas, r, c, int(v), int(np_)))
    return out
