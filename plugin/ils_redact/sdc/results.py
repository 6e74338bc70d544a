"""What a statistics report run returns, the same on every engine: the report as the
database lists it, its released entries and its published months, and the checks a
request is held to before any engine is asked (month syntax, the report's name looked up
in what the database lists, all-time reports take no period).

The engines' runners (``backends/<engine>/stats_run.py``) fill these; the CLI and the
console render them (:mod:`ils_redact.stats.render`).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import IlsRedactError, did_you_mean


@dataclass(frozen=True)
class ReportInfo:
    name: str
    title: str
    description: str
    rows_title: str
    cols_title: str | None
    measures: tuple[str, ...]
    timed: bool
    custom: bool
    k: int
    time_zone: str


@dataclass(frozen=True)
class Entry:
    """One released or suppressed entry of a page (``value`` None when suppressed)."""

    period: dt.date | None
    measure: str
    kind: str
    row_value: str | None
    col_value: str | None
    value: int | None
    suppressed: bool


@dataclass(frozen=True)
class Published:
    """One published month of a report (``publications()``): what a run covers."""

    period: dt.date | None
    k: int
    protection: int
    cost: str
    method: str
    released: int
    primary: int
    complement: int
    shared: int
    published_at: str


@dataclass
class ReportResult:
    info: ReportInfo
    period_from: dt.date | None
    period_to: dt.date | None  # exclusive
    entries: list[Entry] = field(default_factory=list)
    #: the published months in the period (None: the layer predates publication)
    months: list[Published] | None = None

    def covers_text(self) -> str:
        """Which months the run covers, in one line."""
        if self.months is None:
            return "months as counted now (layer without publication)"
        if not self.months:
            return ("no published month in this period: an administrator publishes "
                    "months with `ils-redact stats publish`")
        names = [m.period.strftime("%Y-%m") if m.period else "all time" for m in self.months]
        ks = sorted({m.k for m in self.months})
        text = (f"covers {len(names)} published month{'s' if len(names) > 1 else ''}: "
                f"{_ranges(names)} (k = {', '.join(map(str, ks))}); "
                f"{sum(m.released for m in self.months)} entries released, "
                f"{sum(m.primary for m in self.months)} suppressed below k, "
                f"{sum(m.complement for m in self.months)} as complements")
        shared = sum(m.shared for m in self.months)
        heuristic = sum("heuristic" in m.method for m in self.months)
        if shared:
            text += f", {shared} as another report published them"
        if heuristic:
            text += (f"; {heuristic} month{'s' if heuristic > 1 else ''} solved by the "
                     "greedy fallback (statistics.exact_limit)")
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "report": asdict(self.info) | {"measures": list(self.info.measures)},
            "from": self.period_from.isoformat() if self.period_from else None,
            "to": self.period_to.isoformat() if self.period_to else None,
            "covers": None if self.months is None else [
                asdict(m) | {"period": m.period.isoformat() if m.period else None}
                for m in self.months],
            "entries": [asdict(e) | {"period": e.period.isoformat() if e.period else None}
                        for e in self.entries],
        }


def _ranges(months: list[str]) -> str:
    """2026-01, 2026-02, 2026-03, 2026-05 -> 2026-01..2026-03, 2026-05."""
    out: list[list[str]] = []
    for m in months:
        if out and m != "all time" and out[-1][-1] != "all time":
            y, mo = map(int, out[-1][-1].split("-"))
            nxt = f"{y + mo // 12:04d}-{mo % 12 + 1:02d}"
            if m == nxt:
                out[-1].append(m)
                continue
        out.append([m])
    return ", ".join(g[0] if len(g) == 1 else f"{g[0]}..{g[-1]}" for g in out)


def in_period(months: list[Published], lo: dt.date | None, hi: dt.date | None
              ) -> list[Published]:
    return [m for m in months if m.period is None
            or ((lo is None or m.period >= lo) and (hi is None or m.period < hi))]


_MONTH = re.compile(r"^\d{4}-\d{2}$")


def parse_month(value: str | None, what: str) -> dt.date | None:
    """``YYYY-MM`` or ``YYYY-MM-01``: reports cover whole months."""
    if value is None:
        return None
    text = value.strip()
    if _MONTH.match(text):
        text += "-01"
    try:
        d = dt.date.fromisoformat(text)
    except ValueError:
        raise IlsRedactError(f"{what} {value!r} is not a date (YYYY-MM or YYYY-MM-DD)") from None
    if d.day != 1:
        raise IlsRedactError(f"{what} {value} is not the first day of a month: reports cover "
                             "whole months (a period that differs from another by days "
                             "would single out the people of those days)")
    return d


def choose_report(reports: list[ReportInfo], name: str, period_from: dt.date | None,
                  period_to: dt.date | None) -> ReportInfo:
    """The installed report called ``name``, checked against the period asked for: the
    name is looked up in what the database lists before it is quoted into a call."""
    by_name = {r.name: r for r in reports}
    info = by_name.get(name)
    if info is None:
        raise IlsRedactError(f"no statistics report {name!r}",
                             hint=did_you_mean(name, by_name) or
                             f"`ils-redact stats list` shows {len(by_name)} reports")
    if not info.timed and (period_from or period_to):
        raise IlsRedactError(f"report {name} covers all time: it takes no --from/--to")
    return info
