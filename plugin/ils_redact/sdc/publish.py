"""Publish a report's months: count once, suppress at least cost, record what is released.

``ils-redact stats publish REPORT --month 2026-03`` is run by an administrator (the
install DSN).  For each month not yet published it

1. counts the month's records and distinct patrons per cell, *as the statistics owner*
   (``SET LOCAL ROLE``: the counts come from exactly the columns that role holds);
2. builds each page (one per measure) with its totals and solves the least-cost pattern
   that meets every protection interval (:mod:`.solve`);
3. keeps entries another report of the same month already published (the month's
   circulations are the grand total of three standard reports): a number released
   there is released here too when it is the same, and suppressed and protected here
   when it differs (records changed since) or was suppressed there;
4. writes the released entries (a suppressed entry without its value) and a row saying
   how the page was solved into the layer's publication tables, which only the
   statistics owner can read.

A month is published once per report.  The report functions return published months
only, so a later run, a run over an overlapping period, a change of k or of the data
after publication all return the same page: nothing can be differenced.  A month that
is already published is left as it is and said so (republishing would release a second
page for the same month, whose difference with the first concerns the patrons who
changed).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from ..catalog import Catalog
from ..errors import IlsRedactError
from ..rules import Rules, for_catalog
from .model import Dim, Measure, Report, ReportSource
from .solve import Page, Settings, build_page, summary, suppress

ALL_TIME = dt.date.min  # stored as '-infinity' (PostgreSQL) / 1000-01-01 (MariaDB)


def settings_of(statistics: object, k: int) -> Settings:
    """The solver's settings from the rules' ``statistics`` section (k as installed)."""
    return Settings(k=int(k), cost=getattr(statistics, "cost", "totals_first"),
                    protection=float(getattr(statistics, "protection", 0.5)),
                    exact_limit=int(getattr(statistics, "exact_limit", 400_000)))


@dataclass(frozen=True)
class Job:
    """What a publication of one report needs before any engine counts: the report, its
    solver settings (k as installed), the slots shared with the other installed reports,
    its time zone and whether it is monthly."""

    report: Report
    settings: Settings
    guarded: set[str]
    time_zone: str
    timed: bool


def prepare(rules: Rules, catalog: Catalog, installed: dict[str, tuple[int, str, bool]],
            name: str, months: list[dt.date] | None, reports: ReportSource) -> Job:
    """Check a ``stats publish`` request against what is installed (``installed``: name ->
    (k, time zone, monthly)) and the rules' reports (``reports``, the statistics service's
    :func:`~ils_redact.stats.all_reports`), the same way on every engine."""
    if name not in installed:
        raise IlsRedactError(f"no statistics report {name!r} is installed here")
    k, tz, timed = installed[name]
    rules = for_catalog(rules, catalog)
    found = reports(rules, catalog)
    report = next((r for r in found if r.name == name), None)
    if report is None:
        raise IlsRedactError(f"report {name} is installed but not in these rules",
                             hint="publish with the rules file it was installed with")
    if timed and not months:
        raise IlsRedactError(f"report {name} is monthly: give --month or --from/--to")
    if not timed and months:
        raise IlsRedactError(f"report {name} covers all time: it takes no months")
    return Job(report, settings_of(rules.statistics, k),
               guarded_slots(r for r in found if r.name in installed), tz, timed)


def next_month(d: dt.date) -> dt.date:
    return dt.date(d.year + d.month // 12, d.month % 12 + 1, 1)


def month_range(first: dt.date, last: dt.date) -> list[dt.date]:
    """Every month from ``first`` to ``last``, both included."""
    out = []
    d = first
    while d <= last:
        out.append(d)
        d = next_month(d)
    return out


# -- which numbers two reports share --------------------------------------------------------

def _source_sig(m: Measure) -> list:
    return [m.relation, m.time_column, list(m.patron), list(m.also), [list(x) for x in m.only]]


def _dim_sig(m: Measure, d: Dim | None) -> str | None:
    if d is None:
        return None
    joins = {j.alias: [j.relation, j.column, j.ref_alias, j.ref_column] for j in m.joins}
    path = []
    alias = d.alias
    while alias in joins:  # the chain of joins that reaches the column
        path.append(joins[alias])
        alias = joins[alias][2]
    return json.dumps([path, d.column, d.kind, asdict(d.lookup) if d.lookup else None,
                       [list(f) for f in d.fallback]])


def _dims(m: Measure, kind: str, two_way: bool) -> tuple[str | None, ...]:
    if kind == "total":
        return ()
    if kind == "row_total" or (kind == "cell" and not two_way):
        return (_dim_sig(m, m.rows),)
    if kind == "col_total":
        return (_dim_sig(m, m.cols),)
    return (_dim_sig(m, m.rows), _dim_sig(m, m.cols))


def shared_key(m: Measure, kind: str, row: str | None, col: str | None,
               two_way: bool) -> str:
    """A name for the number an entry shows: the same source, groupings and group labels
    in any report give the same key (a one-way report's cells are another report's row
    totals when it groups by the same thing)."""
    dims = _dims(m, kind, two_way)
    labels: list[str | None] = []
    if kind in ("row_total",) or (kind == "cell" and not two_way):
        labels = [row]
    elif kind == "col_total":
        labels = [col]
    elif kind == "cell":
        labels = [row, col]
    pairs = sorted(json.dumps([d, lab]) for d, lab in zip(dims, labels, strict=True))
    text = json.dumps([_source_sig(m), pairs])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _slots(m: Measure) -> set[str]:
    """The kinds of number a measure's pages can show, without labels."""
    src = json.dumps(_source_sig(m))
    r, c = _dim_sig(m, m.rows), _dim_sig(m, m.cols)
    out = {json.dumps([src, []]), json.dumps([src, [r]])}
    if c is not None:
        out |= {json.dumps([src, [c]]), json.dumps([src, sorted([r, c])])}
    return out


def guarded_slots(reports: Iterable[Report]) -> set[str]:
    """Slots that two or more reports show: an entry in one of them is guarded (if
    suppressed, protected like a primary entry), so no report pins it down for another."""
    seen: dict[str, set[str]] = defaultdict(set)
    for r in reports:
        for m in r.measures:
            for s in _slots(m):
                seen[s].add(r.name)
    return {s for s, names in seen.items() if len(names) > 1}


def _slot_of(m: Measure, kind: str, two_way: bool) -> str:
    src = json.dumps(_source_sig(m))
    return json.dumps([src, sorted(_dims(m, kind, two_way), key=str)
                       if len(_dims(m, kind, two_way)) > 1 else list(_dims(m, kind, two_way))])


# -- one month ----------------------------------------------------------------------------

@dataclass
class PublishedPage:
    measure: str
    page: Page
    keys: list[str]


@dataclass
class MonthResult:
    report: str
    period: dt.date | None
    status: str  # published | already published | no records
    pages: list[PublishedPage] = field(default_factory=list)
    published_at: str | None = None

    def counts(self) -> dict[str, int]:
        return summary([p.page for p in self.pages])

    def methods(self) -> list[str]:
        return sorted({p.page.method for p in self.pages if p.page.method})

    def to_dict(self) -> dict:
        return {"report": self.report,
                "month": self.period.strftime("%Y-%m") if self.period else None,
                "status": self.status, "published_at": self.published_at,
                **({"counts": self.counts(), "methods": self.methods(),
                    "notes": [n for p in self.pages for n in p.page.notes]}
                   if self.status == "published" else {})}


def solve_month(report: Report, cells: list[tuple[str, str | None, str | None, int, int]],
                settings: Settings, guarded: set[str],
                published: dict[str, int | None]) -> list[PublishedPage]:
    """The pages of one month: ``cells`` (measure, row, column, records, patrons);
    ``published``: shared key -> value another report of this month released (None:
    suppressed there)."""
    by_measure: dict[str, list] = defaultdict(list)
    for meas, r, c, v, np_ in cells:
        by_measure[meas].append((r, c, int(v), int(np_)))
    measures = {m.name: m for m in report.measures}
    out = []
    for name in sorted(by_measure):
        m = measures[name]
        page = build_page(by_measure[name])
        # a page whose two-way table collapsed to one row or column is still keyed by
        # the cell's two labels (it shows the cells of the two-way grouping)
        two_way = m.cols is not None and m.rows is not None
        keys = []
        fixed: dict[int, int | None] = {}
        for i, e in enumerate(page.entries):
            key = shared_key(m, e.kind, e.row, e.col, two_way)
            keys.append(key)
            e.guarded = _slot_of(m, e.kind, two_way) in guarded
            if key in published:
                fixed[i] = published[key]
        suppress(page, settings, fixed)
        out.append(PublishedPage(name, page, keys))
    return out


def rows_to_write(report: str, period: dt.date,
                  pages: list[PublishedPage]) -> list[tuple]:
    """(report, period, measure, kind, row, col, value or None, suppressed, reason,
    shared key) for every entry: a suppressed entry's value is not written."""
    out = []
    for p in pages:
        for e, key in zip(p.page.entries, p.keys, strict=True):
            out.append((report, period, p.measure, e.kind, e.row, e.col,
                        None if e.suppressed else e.value, e.suppressed,
                        e.reason if e.suppressed else "", key))
    return out


def publication_row(report: str, period: dt.date, settings: Settings,
                    pages: list[PublishedPage]) -> tuple:
    s = summary([p.page for p in pages])
    methods = sorted({p.page.method for p in pages if p.page.method}) or ["no records"]
    return (report, period, settings.k, settings.level, settings.cost, "; ".join(methods),
            s["released"], s["primary"], s["complement"], s["shared"])
