"""A statistics result shaped for the page: tables with suppressed cells marked, and the
bars of a server-rendered SVG chart (no script).  Works on the released result only,
like ``stats.render``; the template escapes every label."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from ..sdc.results import Entry, ReportResult

WIDTH, HEIGHT, PAD, BOTTOM = 720, 220, 48, 30
COLORS = ("#3b6ea5", "#d08c2f", "#5a9e5a", "#a54a6e")


@dataclass
class Row:
    label: str
    cells: list[Entry | None]
    total: Entry | None = None


@dataclass
class Page:
    title: str
    measure: str
    corner: str
    columns: list[str]
    rows: list[Row]
    has_row_totals: bool
    totals: list[Entry | None] | None = None
    grand_total: Entry | None = None


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    color: str
    title: str
    suppressed: bool


@dataclass
class Chart:
    width: int = WIDTH
    height: int = HEIGHT
    peak: int = 1
    bars: list[Bar] = field(default_factory=list)
    labels: list[tuple[float, str]] = field(default_factory=list)
    legend: list[tuple[float, str, str]] = field(default_factory=list)
    axis_y: float = HEIGHT - BOTTOM


def _pages(result: ReportResult) -> OrderedDict[tuple, list[Entry]]:
    pages: OrderedDict[tuple, list[Entry]] = OrderedDict()
    for e in result.entries:
        pages.setdefault((e.period, e.measure), []).append(e)
    return pages


def pages(result: ReportResult) -> list[Page]:
    info = result.info
    out = []
    for (period, measure), entries in _pages(result).items():
        rows = sorted({e.row_value for e in entries if e.row_value is not None})
        cols = sorted({e.col_value for e in entries if e.col_value is not None})
        by = {(e.kind, e.row_value, e.col_value): e for e in entries}
        two_way = bool(info.cols_title is not None and cols)
        columns = cols if two_way else ["count"]
        has_row_totals = any(e.kind == "row_total" for e in entries)
        page_rows = []
        for r in rows:
            if two_way:
                cells = [by.get(("cell", r, c)) for c in columns]
            else:
                cells = [next((e for k, e in by.items() if k[0] == "cell" and k[1] == r),
                              None)]
            page_rows.append(Row(r, cells, by.get(("row_total", r, None))))
        col_totals = [by.get(("col_total", None, c)) for c in columns] if two_way else None
        label = period.strftime("%B %Y") if period else "All time"
        out.append(Page(
            title=label, measure=measure,
            corner=info.rows_title + (f" \\ {info.cols_title}" if two_way else ""),
            columns=columns, rows=page_rows, has_row_totals=has_row_totals,
            totals=col_totals if col_totals and any(col_totals) else None,
            grand_total=by.get(("total", None, None))))
    return out


def chart(result: ReportResult) -> Chart | None:
    """Each period's grand total per measure (a single cell stands for it); a hatched
    stub where it is suppressed."""
    series: OrderedDict[str, list[tuple[str, int | None]]] = OrderedDict()
    for (period, measure), entries in _pages(result).items():
        total = next((e for e in entries if e.kind == "total"), None)
        if total is None:
            cells = [e for e in entries if e.kind == "cell"]
            total = cells[0] if len(cells) == 1 else None
        label = period.strftime("%Y-%m") if period else "all"
        series.setdefault(measure, []).append(
            (label, None if total is None or total.suppressed else total.value))
    if not series:
        return None
    n = max(len(v) for v in series.values())
    peak = max([v or 0 for s in series.values() for _, v in s] + [1])
    slot = (WIDTH - PAD - 10) / max(n, 1)
    bar = max(2.0, slot / (len(series) + 1))
    plot_h = HEIGHT - BOTTOM - 20
    c = Chart(peak=peak)
    for si, (measure, points) in enumerate(series.items()):
        color = COLORS[si % len(COLORS)]
        for i, (label, v) in enumerate(points):
            x = PAD + i * slot + si * bar
            if v is None:
                c.bars.append(Bar(x, HEIGHT - BOTTOM - 12, bar, 12, color,
                                  f"{label} {measure}: suppressed", True))
            else:
                h = plot_h * v / peak
                c.bars.append(Bar(x, HEIGHT - BOTTOM - h, bar, h, color,
                                  f"{label} {measure}: {v:,}", False))
            if si == 0 and (n <= 12 or i % max(1, n // 12) == 0):
                c.labels.append((x, label))
        c.legend.append((PAD + 10 + si * 160, color, measure))
    return c
