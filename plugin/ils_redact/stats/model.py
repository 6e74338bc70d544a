"""Statistics reports as data: what is counted, grouped how, and who counts as a patron.

A report is one or more *measures* (circulations; holds placed and holds filled), each
counted per month and per one or two dimensions (rows, and optionally columns).  The
release criterion is always distinct patrons (``Measure.patron``), never rows: ten loans
of one person are one person.  Backend-neutral: SQL is written by :mod:`.pgsql`.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    the database).
    """

    title: str
    alias: str
    column: str
    kind: str = "value"
    lookup: Lookup | None = None


@dataclass(frozen=True)
class Measure:
    """One count: records of ``relation`` (alias ``t``) per month of ``time_column``.

    ``patron``: the columns of ``t`` that say whose record it is.  One column is the
    patron's id; several (aged circulations keep no patron id, only post code, home
    library, profile and birth year) are combined, which undercounts people who share
    all of them: a lower bound, so a cell released with k such combinations has at least
    k patrons.  ``time_column`` None: one page for all time (custom reports only).
    """

    name: str
    relation: str
    time_column: str | None
    patron: tuple[str, ...]
    rows: Dim
    cols: Dim | None = None
    joins: tuple[Join, ...] = ()


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
            t = out.setdefault(m.relation, set())
            t.update(m.patron)
            if m.time_column:
                t.add(m.time_column)
            for j in m.joins:
                out.setdefault(j.relation, set()).add(j.column)
                out.setdefault(alias[j.ref_alias], set()).add(j.ref_column)
            for d in (m.rows, m.cols):
                if d is None:
                    continue
                out.setdefault(alias[d.alias], set()).add(d.column)
                if d.lookup:
                    out.setdefault(d.lookup.relation, set()).update(
                        (d.lookup.key, d.lookup.label))
        return out
