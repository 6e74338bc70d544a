"""Reports a sysadmin declares in the rules file, checked before anything is installed.

A custom report is a count of ``source`` rows per month of ``time_column`` and per one or
two ``group_by`` columns, released where the cell holds at least k distinct values of
``patron_column``.  Install checks it twice:

* ``patron_column`` must be a column that identifies a patron of ``source`` (a foreign key
  to the patron table, or a patron-link name; :func:`ils_redact.gate.profiles.
  patron_identifiers`): counting branches instead of people would release anything;
* the query the report stands for goes through the query gate's statistics profile
  (``report``): aggregate-only, no credentials or personal-data relations, and no patron
  identifier or per-patron key in the grouping (R-PATRON-KEY-IN-GROUPING).

Errors name the rules file line; nothing is installed.
"""

from __future__ import annotations

import zoneinfo

from ..catalog import Catalog
from ..errors import RulesError, RulesErrors
from ..rules import Rules
from ..rules.model import CustomReport
from ..sdc.model import HELPERS, Dim, Measure, Report

_TIME_TYPES = ("date", "timestamp")


def gate_sql(r: CustomReport, catalog: Catalog) -> str:
    """The report as one SQL statement, for the gate (in the catalog's dialect)."""
    rel = catalog.qualify(r.source)
    schema, _, name = rel.partition(".")
    if catalog.engine == "mariadb":
        return _gate_sql_mysql(r, schema, name)
    cols = [f't."{c}"' for c in r.group_by]
    period = [f"date_trunc('month', t.\"{r.time_column}\") AS period"] if r.time_column else []
    group = ", ".join(str(i) for i in range(1, len(period) + len(cols) + 1))
    return (f"SELECT {', '.join(period + cols)}, count(*) AS records, "  # noqa: S608 - checked
            f"count(DISTINCT t.\"{r.patron_column}\") AS patrons "
            f"FROM \"{schema}\".\"{name}\" AS t GROUP BY {group}")


def _gate_sql_mysql(r: CustomReport, schema: str, name: str) -> str:
    def q(x: str) -> str:
        return "`" + x.replace("`", "``") + "`"

    cols = [f"t.{q(c)}" for c in r.group_by]
    # the month as YEAR() and MONTH(), which the gate reads as plain conversions
    period = ([f"YEAR(t.{q(r.time_column)}) AS period_year",
               f"MONTH(t.{q(r.time_column)}) AS period_month"] if r.time_column else [])
    group = ", ".join(str(i) for i in range(1, len(period) + len(cols) + 1))
    return (f"SELECT {', '.join(period + cols)}, COUNT(*) AS records, "  # noqa: S608 - checked
            f"COUNT(DISTINCT t.{q(r.patron_column)}) AS patrons "
            f"FROM {q(schema)}.{q(name)} AS t GROUP BY {group}")


def custom_reports(rules: Rules, catalog: Catalog, standard: list[Report]) -> list[Report]:
    """The rules' reports as :class:`Report`; RulesErrors (exit 2, file:line) if any is
    refused."""
    from ..gate import Gate
    from ..gate.profiles import patron_identifiers

    errs: list[RulesError] = []
    stats = rules.statistics

    def err(msg: str, *path: object, hint: str | None = None) -> None:
        errs.append(RulesError(msg, path=rules.path, line=rules.line(*path), hint=hint))

    try:
        zoneinfo.ZoneInfo(stats.time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        err(f"statistics.time_zone {stats.time_zone!r} is not a time zone name",
            "statistics", "time_zone", hint="an IANA name such as America/Chicago")
    if not stats.reports:
        if errs:
            raise RulesErrors(errs)
        return []
    taken = {r.name for r in standard} | HELPERS
    ids = patron_identifiers(rules, catalog)
    gate = Gate(rules, catalog, "report", cache_size=0,
                dialect="mysql" if catalog.engine == "mariadb" else "postgres")
    out: list[Report] = []
    for i, r in enumerate(stats.reports):
        path = ("statistics", "reports", i)
        before = len(errs)
        if r.name in taken:
            err(f"statistics report {r.name}: the name is taken by a standard report",
                *path, "name", hint="choose another name")
        rel = catalog.get(r.source)
        if rel is None:
            hint = catalog.suggest_relation(r.source)
            err(f"statistics report {r.name}: source {r.source} does not exist", *path,
                "source", hint=hint)
            continue
        if r.measure != "count":
            err(f"statistics report {r.name}: measure {r.measure!r} is not supported",
                *path, "measure", hint="count")
        for key, col in ([("patron_column", r.patron_column)]
                         + ([("time_column", r.time_column)] if r.time_column else [])
                         + [(("group_by", j), c) for j, c in enumerate(r.group_by)]):
            keys = key if isinstance(key, tuple) else (key,)
            if rel.column(col) is None:
                err(f"statistics report {r.name}: {r.source} has no column {col}", *path,
                    *keys, hint=catalog.suggest_column(rel, col))
        if len(errs) > before:
            continue
        if r.time_column and not any(
                t in (rel.column(r.time_column).type or "")  # type: ignore[union-attr]
                for t in _TIME_TYPES):
            err(f"statistics report {r.name}: time_column {r.time_column} is not a date or "
                "timestamp", *path, "time_column")
        if r.patron_column not in ids.get(rel.qualified, frozenset()):
            err(f"statistics report {r.name}: patron_column {r.patron_column} does not "
                f"identify a patron of {r.source}; the threshold counts distinct patrons",
                *path, "patron_column",
                hint="name the column that links each row to its patron (e.g. usr)")
        result = gate.check(gate_sql(r, catalog))
        for f in result.findings:
            where = path + ("group_by",) if f.code == "R-PATRON-KEY-IN-GROUPING" else path
            err(f"statistics report {r.name} refused by the query gate: {f.code} "
                f"{f.message}", *where)
        if len(errs) > before:
            continue
        dims = [Dim(c, "t", c) for c in r.group_by]
        out.append(Report(
            r.name, r.description or r.name, r.description,
            (Measure("count", r.source, r.time_column, (r.patron_column,), rows=dims[0],
                     cols=dims[1] if len(dims) > 1 else None),),
            custom=True))
    if errs:
        raise RulesErrors(errs)
    return out
