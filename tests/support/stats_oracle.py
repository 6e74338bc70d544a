"""The statistics oracle both engines' report tests share: pages of released entries,
the linear system a page's entries satisfy (rows and columns add up to their totals),
and which suppressed entries the released ones pin down, in exact arithmetic."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from fractions import Fraction

Key = tuple[str, str | None, str | None]  # (kind, row, column)


def age_band(at: dt.date, dob: dt.date | None) -> str:
    """The age band of a patron born ``dob`` on day ``at``, as the reports band it."""
    if dob is None:
        return "unknown"
    years = at.year - dob.year - ((at.month, at.day) < (dob.month, dob.day))
    band = max(0, min(90, years // 10 * 10))
    return "90+" if band == 90 else f"{band}-{band + 9}"


def released(entries) -> dict[tuple, dict[Key, object]]:
    pages: dict[tuple, dict[Key, object]] = defaultdict(dict)
    for e in entries:
        key = (e.kind, e.row_value, e.col_value)
        assert key not in pages[(e.period, e.measure)], f"duplicate entry {key}"
        assert (e.value is None) == e.suppressed
        pages[(e.period, e.measure)][key] = e.value
    return pages


# -- the linear system -------------------------------------------------------------------

def equations(keys: set[Key]) -> list[dict[Key, int]]:
    """Rows add up to their totals, columns to theirs (absent entries are zero)."""
    rows = {r for k, r, _ in keys if k == "cell"}
    cols = {c for k, _, c in keys if k == "cell"}
    eqs: list[dict[Key, int]] = []
    if any(k == "row_total" for k, _, _ in keys):
        for r in rows:
            eqs.append({("cell", r, c): 1 for c in cols} | {("row_total", r, None): -1})
        for c in cols:
            eqs.append({("cell", r, c): 1 for r in rows} | {("col_total", None, c): -1})
        eqs.append({("row_total", r, None): 1 for r in rows} | {("total", None, None): -1})
        eqs.append({("col_total", None, c): 1 for c in cols} | {("total", None, None): -1})
    elif ("total", None, None) in keys:
        eqs.append({k: 1 for k in keys if k[0] == "cell"} | {("total", None, None): -1})
    return eqs


def determined(page: dict[Key, object]) -> list[Key]:
    """The suppressed entries the released ones pin down: e_j in the row space of the
    system restricted to the unknowns (exact arithmetic)."""
    unknowns = sorted((k for k, v in page.items() if v is None), key=repr)
    if not unknowns:
        return []
    col = {u: i for i, u in enumerate(unknowns)}
    matrix = []
    for eq in equations(set(page)):
        row = [Fraction(0)] * len(unknowns)
        for key, coef in eq.items():
            if key in col:
                row[col[key]] += coef
        if any(row):
            matrix.append(row)
    # reduced row echelon form
    pivots: list[tuple[int, list[Fraction]]] = []
    for row in matrix:
        for p, prow in pivots:
            if row[p]:
                f = row[p]
                row = [a - f * b for a, b in zip(row, prow, strict=True)]
        lead = next((i for i, a in enumerate(row) if a), None)
        if lead is None:
            continue
        row = [a / row[lead] for a in row]
        pivots = [(p, [a - prow[lead] * b for a, b in zip(prow, row, strict=True)])
                  for p, prow in pivots]
        pivots.append((lead, row))
    out = []
    for u, j in col.items():
        v = [Fraction(int(i == j)) for i in range(len(unknowns))]
        for p, prow in pivots:
            if v[p]:
                f = v[p]
                v = [a - f * b for a, b in zip(v, prow, strict=True)]
        if not any(v):
            out.append(u)
    return out
