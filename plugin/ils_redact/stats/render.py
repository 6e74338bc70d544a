"""A report result as CSV, JSON or HTML (a table per page and an inline SVG chart).

Suppressed entries are marked, never blank: CSV has an empty ``value`` and
``suppressed=true``; HTML shows "suppressed" in a grey cell and leaves the bar out of the
chart with a hatched stub.  Everything here works on the released result only.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections import OrderedDict

from ..sdc.model import RESULT_COLUMNS
from ..sdc.results import Entry, ReportResult
from ..text import csv_label

SUPPRESSED = "suppressed"


def to_csv(result: ReportResult) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(RESULT_COLUMNS)
    for e in result.entries:
        # labels come from the ILS (branch, category, item type names anyone with the
        # ILS's staff client may edit): escaped and never a spreadsheet formula
        w.writerow([e.period.isoformat() if e.period else "", csv_label(e.measure), e.kind,
                    csv_label(e.row_value or ""), csv_label(e.col_value or ""),
                    "" if e.value is None else e.value, "true" if e.suppressed else "false"])
    return buf.getvalue()


def to_json(result: ReportResult) -> str:
    return json.dumps(result.to_dict(), indent=2) + "\n"


def _pages(result: ReportResult) -> OrderedDict[tuple, list[Entry]]:
    pages: OrderedDict[tuple, list[Entry]] = OrderedDict()
    for e in result.entries:
        pages.setdefault((e.period, e.measure), []).append(e)
    return pages


def _cell(e: Entry | None) -> str:
    if e is None:
        return '<td class="zero">0</td>'
    if e.suppressed:
        return ('<td class="sup" title="fewer than k distinct patrons, or needed to protect '
                f'such a cell">{SUPPRESSED}</td>')
    return f'<td class="num">{e.value:,}</td>'


def _table(result: ReportResult, entries: list[Entry]) -> str:
    info = result.info
    rows = sorted({e.row_value for e in entries if e.row_value is not None})
    cols = sorted({e.col_value for e in entries if e.col_value is not None})
    by = {(e.kind, e.row_value, e.col_value): e for e in entries}
    two_way = info.cols_title is not None and cols
    head_cols = cols if two_way else ["count"]
    out = ['<table><thead><tr>', f'<th>{html.escape(info.rows_title)}'
           + (f' \\ {html.escape(info.cols_title or "")}' if two_way else "") + "</th>"]
    out += [f"<th>{html.escape(c)}</th>" for c in head_cols]
    has_row_totals = any(e.kind == "row_total" for e in entries)
    if has_row_totals:
        out.append("<th>total</th>")
    out.append("</tr></thead><tbody>")
    for r in rows:
        out.append(f"<tr><th>{html.escape(r)}</th>")
        for c in head_cols:
            key: tuple[str, str | None, str | None] = ("cell", r, c if two_way else None)
            if not two_way:
                key = next((k for k in by if k[0] == "cell" and k[1] == r), key)
            out.append(_cell(by.get(key)))
        if has_row_totals:
            out.append(_cell(by.get(("row_total", r, None))))
        out.append("</tr>")
    total = by.get(("total", None, None))
    col_totals = [by.get(("col_total", None, c)) for c in head_cols]
    if any(col_totals) or total:
        out.append("<tr class=\"tot\"><th>total</th>")
        if any(col_totals):
            out += [_cell(e) for e in col_totals]
        else:
            out += ['<td></td>'] * (len(head_cols) - 1) + [_cell(total)]
            total = None if not has_row_totals else total
        if has_row_totals:
            out.append(_cell(total))
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _chart(result: ReportResult, width: int = 720, height: int = 220) -> str:
    """Bars of each period's grand total (or the sum of released cells where a page has
    no released total), per measure; a hatched stub where the total is suppressed."""
    series: OrderedDict[str, list[tuple[str, int | None]]] = OrderedDict()
    for (period, measure), entries in _pages(result).items():
        total = next((e for e in entries if e.kind == "total"), None)
        if total is None:  # a single cell: it is the total
            cells = [e for e in entries if e.kind == "cell"]
            total = cells[0] if len(cells) == 1 else None
        label = period.strftime("%Y-%m") if period else "all"
        series.setdefault(measure, []).append((label, None if total is None or total.suppressed
                                               else total.value))
    if not series:
        return ""
    n = max(len(v) for v in series.values())
    peak = max([v or 0 for s in series.values() for _, v in s] + [1])
    pad, bottom = 40, 30
    slot = (width - pad - 10) / max(n, 1)
    bar = max(2.0, slot / (len(series) + 1))
    colors = ["#3b6ea5", "#d08c2f", "#5a9e5a", "#a54a6e"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="{html.escape(result.info.title)}: totals per period">',
             '<defs><pattern id="hatch" width="4" height="4" patternUnits="userSpaceOnUse" '
             'patternTransform="rotate(45)"><line x1="0" y1="0" x2="0" y2="4" '
             'stroke="#999" stroke-width="2"/></pattern></defs>',
             f'<line x1="{pad}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}" '
             'stroke="#333"/>',
             f'<text x="{pad - 4}" y="14" font-size="10" text-anchor="end">{peak:,}</text>']
    plot_h = height - bottom - 20
    for si, (measure, points) in enumerate(series.items()):
        color = colors[si % len(colors)]
        for i, (label, v) in enumerate(points):
            x = pad + i * slot + si * bar
            if v is None:
                parts.append(f'<rect x="{x:.1f}" y="{height - bottom - 12}" width="{bar:.1f}" '
                             f'height="12" fill="url(#hatch)"><title>{html.escape(label)} '
                             f'{html.escape(measure)}: suppressed</title></rect>')
            else:
                h = plot_h * v / peak
                parts.append(f'<rect x="{x:.1f}" y="{height - bottom - h:.1f}" '
                             f'width="{bar:.1f}" height="{h:.1f}" fill="{color}"><title>'
                             f'{html.escape(label)} {html.escape(measure)}: {v:,}</title></rect>')
            if si == 0 and (n <= 12 or i % max(1, n // 12) == 0):
                parts.append(f'<text x="{x:.1f}" y="{height - bottom + 12}" font-size="9">'
                             f'{html.escape(label)}</text>')
        parts.append(f'<rect x="{pad + 10 + si * 140}" y="{height - 12}" width="10" '
                     f'height="10" fill="{color}"/><text x="{pad + 24 + si * 140}" '
                     f'y="{height - 3}" font-size="10">{html.escape(measure)}</text>')
    parts.append("</svg>")
    return "".join(parts)


_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 2px 8px; }
td.num { text-align: right; }
td.zero { text-align: right; color: #999; }
td.sup { background: #eee; color: #777; font-style: italic; text-align: center; }
tr.tot th, tr.tot td { border-top: 2px solid #333; }
p.note { color: #555; max-width: 50em; }
"""


def to_html(result: ReportResult) -> str:
    info = result.info
    period = (f"{result.period_from or 'the first month'} to "
              f"{result.period_to or 'the last complete month'} (exclusive)")
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{html.escape(info.title)}</title><style>{_STYLE}</style></head><body>",
           f"<h1>{html.escape(info.title)}</h1>",
           f"<p>{html.escape(info.description)}</p>",
           f'<p class="note">Period: {html.escape(period)}; months in '
           f"{html.escape(info.time_zone)}."
           f" Each released count covers at least {info.k} distinct patrons. Cells marked "
           f"<em>{SUPPRESSED}</em> are hidden because they cover fewer, or because they "
           "would let a hidden count be worked out from the totals.</p>",
           _chart(result)]
    pages = _pages(result)
    if not pages:
        out.append("<p>No records in this period.</p>")
    for (period_, measure), entries in pages.items():
        label = period_.strftime("%B %Y") if period_ else "All time"
        out.append(f"<h2>{html.escape(label)}: {html.escape(measure)}</h2>")
        out.append(_table(result, entries))
    out.append("</body></html>\n")
    return "\n".join(out)


RENDERERS = {"csv": to_csv, "json": to_json, "html": to_html}


def render(result: ReportResult, fmt: str) -> str:
    return RENDERERS[fmt](result)
