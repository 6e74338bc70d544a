"""PostgreSQL for the statistics reports: one SECURITY DEFINER function per report.

Each report function (owned by the stats_owner role, EXECUTE for the stats role only,
search_path pinned) does, in one statement (plpgsql ``RETURN QUERY``, which, unlike a SQL
function's body, may use a parallel plan, as the owner's plain GROUP BY does):

1. ``period_bounds``: whole months in the report's time zone, never the current month;
2. per measure, one plain aggregate over the ILS table: month, row, column,
   ``count(*)`` and ``count(DISTINCT patron)`` (the same GROUP BY the owner would write);
3. codes to names (org unit short names, profile names) on the aggregated rows only;
4. ``suppress_page`` per month and measure: totals, primary and complementary
   suppression (``sql/postgresql/0003_stats.sql``).

Nothing else reads the ILS: the stats role cannot, and its owner holds column grants on
exactly the columns the reports name (:meth:`ils_redact.sdc.model.Report.columns_read`).
"""

from __future__ import annotations

import json

from psycopg import sql

from ...errors import IlsRedactError
from ...sdc.model import Dim, Measure, Report
from .generated import PINS, Generated, definer_function

SCHEMA = "ils_redact_stats"
RETURNS = ("TABLE (period date, measure text, kind text, row_value text, col_value text, "
           "value bigint, suppressed boolean)")


def _s(q: sql.Composable) -> str:
    return q.as_string(None)


def _rel(name: str) -> sql.Identifier:
    return sql.Identifier(*name.split(".", 1))


def _col(alias: str, column: str) -> sql.Composable:
    return sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(column))


def _local(m: Measure, tz: str) -> sql.Composable:
    """The measure's time as local wall-clock time in the report's zone."""
    return sql.SQL("({} AT TIME ZONE {})").format(_col("t", m.time_column or ""),
                                                  sql.Literal(tz))


def dim_expr(m: Measure, d: Dim | None, tz: str) -> sql.Composable:
    """What the aggregate groups by (the code, or the age band's lower bound)."""
    if d is None:
        return sql.SQL("NULL::text")
    col = _col(d.alias, d.column)
    if d.kind == "age_band":
        return sql.SQL("greatest(0, least(90, floor(extract(year FROM age({}::date, {})) / 10)"
                       "::integer * 10))").format(_local(m, tz), col)
    return col


def dim_label(d: Dim | None, value: str, lookup_alias: str) -> sql.Composable:
    """The text a person reads for a grouped value; never NULL for a real group."""
    v = sql.SQL("x.{}").format(sql.Identifier(value))
    if d is None:
        return sql.SQL("NULL::text")
    if d.kind == "age_band":
        return sql.SQL("CASE WHEN {v} IS NULL THEN 'unknown' WHEN {v} >= 90 THEN '90+' "
                       "ELSE {v}::text || '-' || ({v} + 9)::text END").format(v=v)
    if d.lookup:
        return sql.SQL("coalesce({}.{}::text, {}::text, '(none)')").format(
            sql.Identifier(lookup_alias), sql.Identifier(d.lookup.label), v)
    return sql.SQL("coalesce({}::text, '(none)')").format(v)


def patron_expr(m: Measure) -> sql.Composable:
    if len(m.patron) == 1:
        return _col("t", m.patron[0])
    return sql.SQL("concat_ws('|', {})").format(
        sql.SQL(", ").join(_col("t", c) for c in m.patron))


def aggregate_sql(m: Measure, tz: str, bounds: tuple[sql.Composable, sql.Composable] | None,
                  *, patrons: bool = True) -> sql.Composable:
    """The plain GROUP BY: month, row, column, records, distinct patrons.  ``bounds``:
    the period's (lo, hi) expressions; None for all time.  ``patrons`` False leaves out
    the distinct count (a benchmark baseline only)."""
    if m.also or m.only or any(d is not None and d.fallback for d in (m.rows, m.cols)):
        raise IlsRedactError(f"measure {m.name}: also/only/fallback are not supported on "
                             "PostgreSQL")
    joins = sql.SQL("").join(
        sql.SQL(" LEFT JOIN {} AS {} ON {} = {}").format(
            _rel(j.relation), sql.Identifier(j.alias), _col(j.alias, j.column),
            _col(j.ref_alias, j.ref_column)) for j in m.joins)
    month = (sql.SQL("date_trunc('month', {})::date").format(_local(m, tz))
             if m.time_column else sql.SQL("NULL::date"))
    where: sql.Composable = sql.SQL("")
    if m.time_column and bounds is not None:
        t = _col("t", m.time_column)
        where = sql.SQL(" WHERE {t} >= {lo} AND {t} < {hi}").format(t=t, lo=bounds[0],
                                                                    hi=bounds[1])
    return sql.SQL(
        "SELECT {month} AS m, {r} AS r, {c} AS c, count(*) AS v, {np} AS np "
        "FROM {rel} AS t{joins}{where} GROUP BY 1, 2, 3").format(
        month=month, r=dim_expr(m, m.rows, tz), c=dim_expr(m, m.cols, tz),
        np=sql.SQL("count(DISTINCT {})").format(patron_expr(m)) if patrons else sql.SQL("0"),
        rel=_rel(m.relation), joins=joins, where=where)


def cells_sql(m: Measure, tz: str, bounds: tuple[sql.Composable, sql.Composable] | None
              ) -> sql.Composable:
    """The aggregate with codes turned into names (after aggregation: a few hundred rows)."""
    lookups = []
    for alias, d, value in (("lr", m.rows, "r"), ("lc", m.cols, "c")):
        if d is not None and d.lookup:
            lookups.append(sql.SQL(" LEFT JOIN {} AS {} ON {}.{} = x.{}").format(
                _rel(d.lookup.relation), sql.Identifier(alias), sql.Identifier(alias),
                sql.Identifier(d.lookup.key), sql.Identifier(value)))
    return sql.SQL("SELECT x.m, {name}::text AS meas, {r} AS r, {c} AS c, x.v, x.np "
                   "FROM ({agg}) AS x{lookups}").format(
        name=sql.Literal(m.name), r=dim_label(m.rows, "r", "lr"),
        c=dim_label(m.cols, "c", "lc"), agg=aggregate_sql(m, tz, bounds),
        lookups=sql.SQL("").join(lookups))


def report_body(report: Report, k: int, tz: str) -> sql.Composable:
    """plpgsql: the period's bounds (whole, complete months in the report's zone), then
    the published entries of those months (``ils_redact_stats.published``, written by
    ``ils-redact stats publish``), and nothing else: the function counts nothing itself,
    so every call for a month returns the page published for it.  ``k`` is the rules'
    current threshold, named in the function's comment; a page keeps the k it was
    published with (``publications()``)."""
    del k
    return sql.SQL("""
DECLARE
    b record;
BEGIN
    SELECT * INTO b FROM ils_redact_stats.period_bounds(p_from, p_to, {tz});
    RETURN QUERY
    SELECT CASE WHEN p.period = '-infinity' THEN NULL ELSE p.period END, p.measure, p.kind,
           p.row_value, p.col_value, p.value, p.suppressed
    FROM ils_redact_stats.published p
    WHERE p.report = {name}
      AND p.period >= coalesce((b.lo AT TIME ZONE {tz})::date, '-infinity'::date)
      AND p.period < (b.hi AT TIME ZONE {tz})::date
    ORDER BY p.period, p.measure, p.kind <> 'cell', p.kind, p.row_value, p.col_value;
END
""").format(tz=sql.Literal(tz), name=sql.Literal(report.name))


def live_sql(report: Report, tz: str, lo: object, hi: object) -> sql.Composed:
    """The counts a page is published from: every measure's plain GROUP BY over
    [lo, hi) (timestamps), codes turned into names; (month, measure, row, column,
    records, distinct patrons).  Run by ``stats publish`` as the statistics owner."""
    bounds = (sql.SQL("{}::timestamptz").format(sql.Literal(lo)),
              sql.SQL("{}::timestamptz").format(sql.Literal(hi)))
    return sql.SQL("\nUNION ALL\n").join(cells_sql(m, tz, bounds) for m in report.measures)


def report_function(report: Report, k: int, tz: str) -> Generated:
    sig = f"{SCHEMA}.{report.name}(date, date)"
    create = definer_function(
        sql.SQL("{}.{}(p_from date DEFAULT NULL, p_to date DEFAULT NULL)").format(
            sql.Identifier(SCHEMA), sql.Identifier(report.name)),
        RETURNS, "plpgsql", "STABLE", report_body(report, k, tz))
    kind = "custom report from the rules" if report.custom else "standard report"
    return Generated(sig, "stats_owner", create, ("stats",),
                     f"{kind} {report.name}: suppressed below {k} distinct patrons")


def catalog_function(reports: list[Report], k: int, tz: str) -> Generated:
    """``ils_redact_stats.reports()``: what ``ils-redact stats list`` shows."""
    rows = sql.SQL(",\n    ").join(
        sql.SQL("({}, {}, {}, {}, {}::text, ARRAY[{}]::text[], {}, {}, {}, {})").format(
            sql.Literal(r.name), sql.Literal(r.title), sql.Literal(r.description),
            sql.Literal(r.rows_title), sql.Literal(r.cols_title),
            sql.SQL(", ").join(sql.Literal(m.name) for m in r.measures),
            sql.Literal(r.timed), sql.Literal(r.custom), sql.Literal(int(k)), sql.Literal(tz))
        for r in reports)
    create = _s(sql.SQL(
        "CREATE OR REPLACE FUNCTION ils_redact_stats.reports()\n"
        "    RETURNS TABLE (name text, title text, description text, rows_title text, "
        "cols_title text, measures text[], timed boolean, custom boolean, k integer, "
        "time_zone text)\n"
        "    LANGUAGE sql IMMUTABLE\n"
        + PINS +
        "AS $fn$ VALUES\n    {}\n$fn$").format(rows))
    return Generated("ils_redact_stats.reports()", "stats_owner", create, ("stats",),
                     "the statistics reports installed: " + json.dumps(
                         [r.name for r in reports]))


def baseline_sql(report: Report, tz: str, *, patrons: bool = True) -> str:
    """The plain GROUP BY of each measure of a report, as the owner would run it (the
    benchmark's baseline): same rows (all complete months), no suppression, no labels."""
    bounds = (sql.SQL("'-infinity'::timestamptz"),
              sql.SQL("(date_trunc('month', now() AT TIME ZONE {}) AT TIME ZONE {})").format(
                  sql.Literal(tz), sql.Literal(tz)))
    return _s(sql.SQL("\nUNION ALL\n").join(aggregate_sql(m, tz, bounds, patrons=patrons)
                                             for m in report.measures))
