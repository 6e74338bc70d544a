"""Statistics reports as data: what is counted, grouped how, and who counts as a patron.

A report is one or more *measures* (circulations; holds placed and holds filled), each
counted per month and per one or two dimensions (rows, and optionally columns).  The
release criterion is always distinct patrons (``Measure.patron``), never rows: ten loans
of one person are one person.  Backend-neutral: the engines write the SQL
(``backends/<engine>/stats.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..catalog import Catalog
    from ..rules import Rules

#: functions of the PostgreSQL layer file in the reports' schema: a report may not take
#: their names (on MariaDB every report procedure has a prefix)
HELPERS = frozenset({"period_bounds", "first_bridge", "reachable", "suppress_page",
                     "reports", "publications", "publication", "published"})

#: what every report function returns, in this order
RESULT_COLUMNS = ("period", "measure", "kind", "row_value", "col_value", "value",
                  "suppressed")
#: entry kinds: a cell, the total of a row, the total of a column, the grand total
KINDS = ("cell", "row_total", "col_total", "total")


@dataclass(frozen=True)
class Lookup:
    """Show a code by its name: ``LEFT JOIN relation ON key = value``, show ``label``."""

    relation: str
    key: str
    label: str


@dataclass(frozen=True)
class Join:
    """``LEFT JOIN relation AS alias ON alias.column = ref_alias.ref_column``."""

    alias: str
    relation: str
    column: str
    ref_alias: str
    ref_column: str


@dataclass(frozen=True)
class Dim:
    """A grouping: a column of the source (alias ``t``) or of a join.

    ``kind`` ``value`` groups by the column itself; ``age_band`` groups a date of birth
    into ten-year bands of the age at the measure's time (the date itself never leaves
    the database).  ``fallback``: (alias, column) pairs used, in order, where the column
    is NULL (Koha's item type: ``items.itype``, else ``biblioitems.itemtype``).
    """

    title: str
    alias: str
    column: str
    kind: str = "value"
    lookup: Lookup | None = None
    fallback: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Measure:
    """One count: records of ``relation`` (alias ``t``) per month of ``time_column``.

    ``patron``: the columns of ``t`` that say whose record it is.  One column is the
    patron's id; several (aged circulations keep no patron id, only post code, home
    library, profile and birth year) are combined, which undercounts people who share
    all of them: a lower bound, so a cell released with k such combinations has at least
    k patrons.  ``time_column`` None: one page for all time (custom reports only).

    ``also``: relations with the same columns whose rows are counted too, as one source
    (Koha keeps current loans in ``issues`` and returned ones in ``old_issues``; a patron
    in both is still one patron).  ``only``: (column, value) equalities a record of ``t``
    must meet (Koha's filled holds: ``found = 'F'``).  Both are MariaDB-only so far.
    """

    name: str
    relation: str
    time_column: str | None
    patron: tuple[str, ...]
    rows: Dim
    cols: Dim | None = None
    joins: tuple[Join, ...] = ()
    also: tuple[str, ...] = ()
    only: tuple[tuple[str, str], ...] = ()

    def source_columns(self) -> set[str]:
        """The columns of ``t`` the measure reads (each relation of ``also`` has them)."""
        out = set(self.patron) | {c for c, _ in self.only}
        if self.time_column:
            out.add(self.time_column)
        out |= {j.ref_column for j in self.joins if j.ref_alias == "t"}
        for d in (self.rows, self.cols):
            if d is not None:
                out |= {c for a, c in ((d.alias, d.column), *d.fallback) if a == "t"}
        return out


@dataclass(frozen=True)
class Report:
    name: str
    title: str
    description: str
    measures: tuple[Measure, ...]
    custom: bool = False

    @property
    def rows_title(self) -> str:
        return self.measures[0].rows.title

    @property
    def cols_title(self) -> str | None:
        c = self.measures[0].cols
        return c.title if c else None

    @property
    def timed(self) -> bool:
        return all(m.time_column for m in self.measures)

    def columns_read(self) -> dict[str, set[str]]:
        """relation -> the columns the report reads: exactly what its owner is granted."""
        out: dict[str, set[str]] = {}
        for m in self.measures:
            alias = {"t": m.relation, **{j.alias: j.relation for j in m.joins}}
            for rel in (m.relation, *m.also):
                out.setdefault(rel, set()).update(m.source_columns())
            for j in m.joins:
                out.setdefault(j.relation, set()).add(j.column)
                out.setdefault(alias[j.ref_alias], set()).add(j.ref_column)
            for d in (m.rows, m.cols):
                if d is None:
                    continue
                for a, c in ((d.alias, d.column), *d.fallback):
                    out.setdefault(alias[a], set()).add(c)
                if d.lookup:
                    out.setdefault(d.lookup.relation, set()).update(
                        (d.lookup.key, d.lookup.label))
        return out


#: the reports a rules file defines on a catalog: the adapter's standard reports whose
#: relations exist there, then the rules' own (checked by the query gate).  The service
#: (:func:`ils_redact.stats.all_reports`) is handed to the engines as this callable, so an
#: engine installs the reports without importing the statistics service or the gate.
ReportSource = Callable[["Rules", "Catalog"], "list[Report]"]
