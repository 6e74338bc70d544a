"""Statistics reports on MariaDB: one SQL SECURITY DEFINER procedure per report.

The definer of every statistics routine is the ``<prefix>stats_owner`` role, which is
never granted to anybody and holds SELECT on exactly the Koha columns the reports count
(:meth:`ils_redact.sdc.model.Report.columns_read`), the layer's two work tables and
EXECUTE on the statistics routines; the stats role holds EXECUTE on the report
procedures and ``stats_reports`` and nothing else.  A report procedure
(``report_<name>``) does, inside the database:

1. pin the session time zone to the rules' ``statistics.time_zone`` (MariaDB turns
   ``TIMESTAMP`` columns and ``NOW()`` into wall-clock time in the session zone; Koha's
   ``DATETIME`` and ``DATE`` columns already are the library's wall-clock time), so the
   caller's ``time_zone`` cannot move a month boundary, and put it back afterwards;
2. ``stats_period``: whole months, never the current one;
3. per measure, one plain aggregate over the Koha tables (month, row, column,
   ``COUNT(*)`` and ``COUNT(DISTINCT patron)``: the GROUP BY an administrator would
   write), codes turned into names on the aggregated rows, pages and row/column ranks
   numbered; read with ``SELECT ... INTO`` (a consistent read: an ``INSERT ... SELECT``
   would lock every Koha row it reads) as one JSON document, then inserted into the
   work table;
4. ``stats_suppress`` (totals, primary and complementary suppression) and
   ``stats_emit`` (the released and suppressed entries; the work rows deleted).

``sql/mariadb/0003_stats.sql`` holds the parts that are the same for every library and
explains why no temporary table, user variable or warning carries a raw count out.
"""

# ruff: noqa: S608 - MariaDB SQL text is built here: identifiers only through sqltext.ident /
# qname, values only through sqltext.string / literal.

from __future__ import annotations

import json

from ...catalog import Catalog
from ...errors import StateError
from ...rules import Rules
from ...sdc.model import Dim, Measure, Report
from .generated import Generated
from .sqltext import ident, literal, qname, string
from .state import Grant

#: report NAME is the procedure report_NAME (names: ^[a-z][a-z0-9_]*$, at most 40)
PROC_PREFIX = "report_"
#: what ``ils-redact stats list`` calls
CATALOG_PROC = "stats_reports"
#: the layer file's routines, which the report procedures run as stats_owner
HELPER_ROUTINES = (
    ("FUNCTION", "stats_at"), ("FUNCTION", "stats_put"), ("FUNCTION", "stats_first_bridge"),
    ("FUNCTION", "stats_reachable"), ("PROCEDURE", "stats_clear"),
    ("PROCEDURE", "stats_period"), ("PROCEDURE", "stats_bridges"),
    ("PROCEDURE", "stats_suppress"), ("PROCEDURE", "stats_emit"),
)
WORK_TABLES = ("stats_cell", "stats_page")
#: layer 5: what ``stats publish`` released (the stats role holds nothing on them)
PUBLICATION_TABLES = ("stats_publication", "stats_published")
#: which months are published (the stats role may call it)
PUBLICATIONS_PROC = "stats_publications"
#: layer 6: the definer procedure `stats publish` counts through (administrators only)
COUNT_PROC = "stats_count"
WORK_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")
#: longest row or column label kept (longer ones are cut, and merge: a lower bound)
LABEL_CHARS = 200
#: zone names that need no time zone tables on the server
_UTC = frozenset({"UTC", "Etc/UTC", "GMT", "Etc/GMT", "UCT", "Etc/UCT", "Universal",
                  "Etc/Universal", "Zulu", "Etc/Zulu", "Z"})
_FLOOR = "1000-01-01"


def procedure_name(report: Report | str) -> str:
    return PROC_PREFIX + (report if isinstance(report, str) else report.name)


def zone(tz: str) -> str:
    """What ``SET time_zone`` takes for the rules' zone: ``+00:00`` for UTC (no time zone
    tables needed), else the IANA name, which needs them (``mariadb-tzinfo-to-sql``;
    without them the report stops with MariaDB's 'Unknown or incorrect time zone')."""
    return "+00:00" if tz in _UTC else tz


# -- SQL text ----------------------------------------------------------------------------

def _col(alias: str, column: str) -> str:
    return f"{ident(alias)}.{ident(column)}"


def _koha(catalog: Catalog, relation: str) -> tuple[str, str]:
    """(database, table) of a relation a report reads: always in the Koha database."""
    rel = catalog.relation(relation)
    if catalog.database and rel.schema != catalog.database:
        raise StateError(f"statistics report source {relation} is in database {rel.schema}, "
                         f"not in the Koha database {catalog.database}")
    return rel.schema, rel.name


def _table(catalog: Catalog, relation: str) -> str:
    return qname(*_koha(catalog, relation))


def _free(text: str | None) -> str:
    """A literal for free text from the rules (titles, descriptions): closing braces
    escaped (``\\}`` reads as ``}``), so the planner's ``{placeholder}`` rendering never
    matches inside it."""
    return "NULL" if text is None else string(text).replace("}", "\\}")


def _text(expr: str) -> str:
    return f"CONVERT({expr} USING utf8mb4)"


def dim_expr(m: Measure, d: Dim | None) -> str:
    """What the aggregate groups by (the code, or the age band's lower bound)."""
    if d is None:
        return "NULL"
    col = _col(d.alias, d.column)
    if d.kind == "age_band":
        at = _col("t", m.time_column or "")
        # a zero or partial date of birth is no age (and no warning quoting it)
        return (f"IF({col} >= {string(_FLOOR)} AND MONTH({col}) > 0 AND DAYOFMONTH({col}) > 0, "
                f"GREATEST(0, LEAST(90, FLOOR(TIMESTAMPDIFF(YEAR, {col}, {at}) / 10) * 10)), "
                "NULL)")
    if d.fallback:
        return "COALESCE(" + ", ".join(_col(a, c) for a, c in ((d.alias, d.column),
                                                               *d.fallback)) + ")"
    return col


def dim_label(d: Dim | None, value: str, lookup_alias: str) -> str:
    """The text a person reads for a grouped value, compared byte for byte (so ranks and
    groups do not depend on a collation that folds case)."""
    if d is None:
        return "NULL"
    v = f"x.{ident(value)}"
    if d.kind == "age_band":
        label = (f"CASE WHEN {v} IS NULL THEN 'unknown' WHEN {v} >= 90 THEN '90+' "
                 f"ELSE CONCAT({v}, '-', {v} + 9) END")
    elif d.lookup:
        label = (f"COALESCE({_text(_col(lookup_alias, d.lookup.label))}, {_text(v)}, "
                 "'(none)')")
    else:
        label = f"COALESCE({_text(v)}, '(none)')"
    return f"LEFT({_text(label)}, {LABEL_CHARS}) COLLATE utf8mb4_bin"


def patron_expr(m: Measure) -> str:
    if len(m.patron) == 1:
        return _col("t", m.patron[0])
    return "CONCAT_WS('|', " + ", ".join(_col("t", c) for c in m.patron) + ")"


def _conditions(m: Measure, bounds: tuple[str, str] | None, alias: str | None) -> list[str]:
    def c(col: str) -> str:
        return _col(alias, col) if alias else ident(col)

    out = []
    if m.time_column and bounds is not None:
        out += [f"{c(m.time_column)} >= {bounds[0]}", f"{c(m.time_column)} < {bounds[1]}"]
    out += [f"{c(col)} = {string(value)}" for col, value in m.only]
    return out


def source_sql(m: Measure, catalog: Catalog, bounds: tuple[str, str] | None) -> tuple[str, str]:
    """(FROM item, WHERE clause) of a measure: its relation as ``t``, or the relations of
    ``also`` with it as one UNION ALL, each filtered before the union."""
    rels = (m.relation, *m.also)
    if len(rels) == 1:
        cond = _conditions(m, bounds, "t")
        return (f"{_table(catalog, m.relation)} AS t",
                " WHERE " + " AND ".join(cond) if cond else "")
    cols = ", ".join(ident(c) for c in sorted(m.source_columns()))
    cond = _conditions(m, bounds, None)
    where = " WHERE " + " AND ".join(cond) if cond else ""
    branches = " UNION ALL ".join(f"SELECT {cols} FROM {_table(catalog, r)}{where}"
                                  for r in rels)
    return f"({branches}) AS t", ""


def aggregate_sql(m: Measure, catalog: Catalog, bounds: tuple[str, str] | None, *,
                  patrons: bool = True) -> str:
    """The plain GROUP BY: month, row, column, records, distinct patrons.  ``bounds``:
    the period's (lo, hi) expressions; None for all time.  ``patrons`` False leaves out
    the distinct count (a benchmark baseline only)."""
    source, where = source_sql(m, catalog, bounds)
    joins = "".join(f" LEFT JOIN {_table(catalog, j.relation)} AS {ident(j.alias)} "
                    f"ON {_col(j.alias, j.column)} = {_col(j.ref_alias, j.ref_column)}"
                    for j in m.joins)
    month = (f"DATE_FORMAT({_col('t', m.time_column)}, '%Y-%m-01')" if m.time_column
             else "NULL")
    np = f"COUNT(DISTINCT {patron_expr(m)})" if patrons else "0"
    return (f"SELECT {month} AS m, {dim_expr(m, m.rows)} AS r, {dim_expr(m, m.cols)} AS c, "
            f"COUNT(*) AS v, {np} AS np FROM {source}{joins}{where} GROUP BY 1, 2, 3")


def cells_sql(m: Measure, catalog: Catalog, bounds: tuple[str, str] | None) -> str:
    """The aggregate with codes turned into names (after aggregation: a few hundred rows);
    codes that share a name are one group (records added, patrons by the larger count:
    a lower bound)."""
    lookups = []
    for alias, d, value in (("lr", m.rows, "r"), ("lc", m.cols, "c")):
        if d is not None and d.lookup:
            lookups.append(f" LEFT JOIN {_table(catalog, d.lookup.relation)} AS {ident(alias)} "
                           f"ON {_col(alias, d.lookup.key)} = x.{ident(value)}")
    meas = f"{_text(string(m.name))} COLLATE utf8mb4_bin"
    return (f"SELECT x.m AS m, {meas} AS meas, {dim_label(m.rows, 'r', 'lr')} AS rl, "
            f"{dim_label(m.cols, 'c', 'lc')} AS cl, SUM(x.v) AS v, MAX(x.np) AS np "
            f"FROM ({aggregate_sql(m, catalog, bounds)}) AS x{''.join(lookups)} "
            "GROUP BY 1, 2, 3, 4")


_JSON_COLUMNS = ("page INT PATH '$[0]', r INT PATH '$[1]', c INT PATH '$[2]', "
                 "m DATE PATH '$[3]', meas VARCHAR(100) PATH '$[4]', "
                 f"rl VARCHAR({LABEL_CHARS}) PATH '$[5]', cl VARCHAR({LABEL_CHARS}) PATH '$[6]', "
                 "v BIGINT PATH '$[7]', np BIGINT PATH '$[8]'")


def report_body(report: Report, catalog: Catalog, k: int, tz: str) -> str:
    """The procedure body: the period checked (whole, complete months in the report's
    zone), then the entries published for those months (``stats_published``, written by
    ``ils-redact stats publish``) and nothing else: the procedure counts nothing, so every
    call for a month returns the page published for it."""
    del catalog, k
    return f"""BEGIN
    DECLARE v_tz VARCHAR(64) DEFAULT @@session.time_zone;
    DECLARE v_lo DATETIME;
    DECLARE v_hi DATETIME;
    DECLARE EXIT HANDLER FOR SQLEXCEPTION
    BEGIN
        SET SESSION time_zone = v_tz;
        RESIGNAL;
    END;
    SET SESSION time_zone = {string(zone(tz))};
    CALL {{layer}}.stats_period(p_from, p_to, v_lo, v_hi);
    CALL {{layer}}.stats_clear();
    SET SESSION time_zone = v_tz;
    SELECT IF(p.period = {string(_FLOOR)}, NULL, p.period) AS period, p.measure, p.kind,
           p.row_value, p.col_value, p.value, p.suppressed
    FROM {{layer}}.stats_published p
    WHERE p.report = {_free(report.name)} AND p.period >= DATE(v_lo) AND p.period < DATE(v_hi)
    ORDER BY p.period, p.measure, p.kind <> 'cell', p.kind, p.row_value, p.col_value;
END"""


def live_sql(report: Report, catalog: Catalog, lo: str, hi: str) -> str:
    """The counts a page is published from: every measure's plain GROUP BY over
    [lo, hi) (DATETIME literals, wall-clock time in the report's zone), codes turned
    into names; (month, measure, row, column, records, distinct patrons)."""
    bounds = (string(lo), string(hi))
    return "\nUNION ALL\n".join(cells_sql(m, catalog, bounds) for m in report.measures)


def report_procedure(report: Report, catalog: Catalog, layer: str, k: int,
                     tz: str) -> Generated:
    kind = "custom report from the rules" if report.custom else "standard report"
    why = f"{kind} {report.name}: suppressed below {k} distinct patrons"
    create = (f"CREATE OR REPLACE DEFINER={{stats_owner}} PROCEDURE "
              f"{qname(layer, procedure_name(report))}(IN p_from DATE, IN p_to DATE)\n"
              "    MODIFIES SQL DATA SQL SECURITY DEFINER\n"
              f"    COMMENT {string('ils-redact: ' + why)}\n"
              + report_body(report, catalog, k, tz))
    return Generated("PROCEDURE", procedure_name(report), "stats_owner", create, why)


def catalog_procedure(reports: list[Report], layer: str, k: int, tz: str) -> Generated:
    """``stats_reports()``: what ``ils-redact stats list`` shows."""
    names = ("name", "title", "description", "rows_title", "cols_title", "measures",
             "timed", "custom", "k", "time_zone")

    def row(r: Report, first: bool) -> str:
        values = (_free(r.name), _free(r.title), _free(r.description), _free(r.rows_title),
                  _free(r.cols_title), _free(json.dumps([m.name for m in r.measures])),
                  literal(r.timed), literal(r.custom), literal(int(k)), _free(tz))
        return "SELECT " + ", ".join(
            f"{v}{' AS ' + ident(n) if first else ''}"
            for v, n in zip(values, names, strict=True))

    if reports:
        rows = "\n    UNION ALL ".join(row(r, i == 0) for i, r in enumerate(reports))
    else:
        rows = "SELECT " + ", ".join(f"NULL AS {ident(n)}" for n in names) + " LIMIT 0"
    create = (f"CREATE OR REPLACE DEFINER={{stats_owner}} PROCEDURE "
              f"{qname(layer, CATALOG_PROC)}()\n"
              "    CONTAINS SQL SQL SECURITY DEFINER\n"
              "    COMMENT 'ils-redact: the statistics reports installed'\n"
              f"BEGIN\n    {rows};\nEND")
    return Generated("PROCEDURE", CATALOG_PROC, "stats_owner", create,
                     "the statistics reports installed: "
                     + ", ".join(r.name for r in reports))


def stats_objects(rules: Rules, catalog: Catalog, layer: str,
                  reports: list[Report]) -> list[Generated]:
    """The report procedures and the catalog procedure, written from the rules."""
    st = rules.statistics
    out = [report_procedure(r, catalog, layer, st.k, st.time_zone) for r in reports]
    out.append(catalog_procedure(reports, layer, st.k, st.time_zone))
    return out


def stats_grants(rules: Rules, catalog: Catalog, layer: str, roles: dict[str, str],
                 reports: list[Report]) -> set[Grant]:
    """What stats_owner and stats hold: column SELECT on what the reports count, the work
    tables, EXECUTE on the routines (a definer role needs EXECUTE on its own routine
    too); the stats role EXECUTE on the reports and the catalog."""
    owner, stats = roles["stats_owner"], roles["stats"]
    out: set[Grant] = set()
    for r in reports:
        for relation, cols in r.columns_read().items():
            db, table = _koha(catalog, relation)
            for c in cols:
                out.add(Grant(owner, "column", db, table, "SELECT", c))
    for t in WORK_TABLES:
        for p in WORK_PRIVILEGES:
            out.add(Grant(owner, "table", layer, t, p))
    for t in PUBLICATION_TABLES:  # read by the reports; written by `stats publish` (root)
        out.add(Grant(owner, "table", layer, t, "SELECT"))
    for rtype, name in HELPER_ROUTINES:
        out.add(Grant(owner, rtype.lower(), layer, name, "EXECUTE"))
    # MariaDB checks the definer's EXECUTE on its own routine too; nobody else holds it
    out.add(Grant(owner, "procedure", layer, COUNT_PROC, "EXECUTE"))
    for name in [procedure_name(r) for r in reports] + [CATALOG_PROC, PUBLICATIONS_PROC]:
        out.add(Grant(owner, "procedure", layer, name, "EXECUTE"))
        out.add(Grant(stats, "procedure", layer, name, "EXECUTE"))
    return out


def baseline_sql(report: Report, catalog: Catalog, this_month: str, *,
                 patrons: bool = True) -> str:
    """The plain GROUP BY of each measure, as root would run it (the benchmark's
    baseline): the same rows (all complete months), no suppression, no labels.
    ``this_month``: the first day of the current month in the report's zone."""
    bounds = (string(_FLOOR), string(this_month))
    return "\nUNION ALL\n".join(aggregate_sql(m, catalog, bounds, patrons=patrons)
                                for m in report.measures)
