"""Minimum-loss complementary suppression with protection intervals (one page at a time).

A *page* is one month of one measure of a report: its cells and the totals they add up
to (row totals, column totals, grand total; a one-way page has cells and a total).  The
released entries and the equations "each row adds up to its total, each column to its
total" are what an attacker knows, together with the fact that counts are never negative.
For a suppressed entry the attacker can then solve two linear programs (the smallest and
the largest value consistent with everything released) and learn an interval.  The
threshold rule alone only asks that no suppressed entry be determined exactly; an
interval like [3, 4] discloses a small cell in practice.  So each entry that is
suppressed for a *primary* reason (fewer than k distinct patrons) gets a protection
interval: the attacker's upper bound must reach at least ``value + upper`` and the lower
bound at most ``value - lower`` (or 1: a listed entry is not empty), where ``upper`` and
``lower`` are a fraction of k
(``statistics.suppression.protection``, default one half).

Which further entries to suppress (*complements*) is a choice; each costs information.
The rules state the cost of an entry (``statistics.suppression.cost``: keep cells and
sacrifice totals first, weigh by value, or count entries) and this module finds the
pattern of least total cost that meets every protection interval, exactly, with a mixed
integer program (SciPy's ``milp``, i.e. HiGHS):

* a binary ``s_e`` per entry (1: suppressed), fixed to 1 for primary entries;
* for each primary entry p and each direction, a *witness*: a deviation ``z`` from the
  true table that keeps every equation (``A z = 0``), moves only suppressed entries
  (``-(value_e - 1) * s_e <= z_e <= M * s_e``, so no listed entry of the moved table is
  empty) and moves
  p by its protection level.  A witness is a table the attacker cannot rule out, so it
  proves the attacker's interval reaches that far; conversely, if the attacker's bound
  reaches that far, such a table exists (the attacker's LP has an optimal vertex; the
  table's equations form a network matrix, so a deviation of at most the protection
  level along the flow's cycles suffices, which is the ``M`` used).

Witness blocks are added lazily: solve with the blocks of the entries found short so far,
check every primary entry with the attacker's LP (``linprog``), add the blocks of those
that fall short, solve again.  Every intermediate problem is a relaxation of the full
one, so when no entry falls short the pattern is optimal for the full problem.  Past
``exact_limit`` (witness blocks x entries, the size of the integer program) or when the
solver's time limit is reached without an optimum, the fallback is a greedy network
heuristic (for each entry still short, the cheapest witness by a linear program, its
entries suppressed, repeated), and the result says so.  Either way, the final pattern is
checked with the attacker's LP for every primary entry before anything is released.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only; the functions import what they run
    import numpy as np
    from scipy.sparse import csr_matrix


#: the cost policies the rules may name (``statistics.suppression.cost``)
COST_POLICIES = {
    # keep cells, sacrifice marginal totals first, then the grand total
    "totals_first": {"cell": 1.0, "row_total": 0.25, "col_total": 0.25, "total": 0.5},
    # every entry costs the same: as few suppressed entries as possible
    "entries": {"cell": 1.0, "row_total": 1.0, "col_total": 1.0, "total": 1.0},
    # the value hidden (tau-ARGUS's default): hide small numbers rather than large ones
    "value": {"cell": 1.0, "row_total": 1.0, "col_total": 1.0, "total": 1.0},
}
DEFAULT_COST = "totals_first"
DEFAULT_PROTECTION = 0.5
#: witness blocks x entries above which the exact solver is not tried (HiGHS solves the
#: library-sized tables we measured, up to about 60 x 30 with a third of cells small,
#: in seconds; see docs/statistics.md)
DEFAULT_EXACT_LIMIT = 400_000
DEFAULT_TIME_LIMIT = 60.0


@dataclass(frozen=True)
class Settings:
    k: int = 11
    cost: str = DEFAULT_COST
    protection: float = DEFAULT_PROTECTION
    exact_limit: int = DEFAULT_EXACT_LIMIT
    time_limit: float = DEFAULT_TIME_LIMIT

    @property
    def level(self) -> int:
        """The protection level in records, each way: ``ceil(protection * k)``, at least 1
        (a suppressed entry is never pinned to one value)."""
        return max(1, math.ceil(self.protection * self.k))


@dataclass
class Entry:
    kind: str  # cell, row_total, col_total, total
    row: str | None
    col: str | None
    value: int
    patrons: int  # distinct patrons (a lower bound for totals)
    suppressed: bool = False
    reason: str = ""  # primary, complement, shared (already published), ""
    #: another report of the month shows the same number: if suppressed, protect it like
    #: a primary entry (so that no report pins it down for another)
    guarded: bool = False


@dataclass
class Page:
    """One table: entries and the equations between them (each a list of (entry index,
    coefficient) with right-hand side 0)."""

    entries: list[Entry]
    equations: list[list[tuple[int, int]]]
    method: str = ""
    cost: float = 0.0
    notes: list[str] = field(default_factory=list)

    def index(self) -> dict[tuple[str, str | None, str | None], int]:
        return {(e.kind, e.row, e.col): i for i, e in enumerate(self.entries)}


def build_page(cells: list[tuple[str | None, str | None, int, int]]) -> Page:
    """Cells (row, column, records, distinct patrons) -> the page with its totals, as
    ``suppress_page`` in sql/postgresql/0003_stats.sql builds it: zero cells are absent;
    two or more rows and columns give row, column and grand totals; one row or one column
    gives a grand total; a single cell stands alone."""
    cells = [c for c in cells if c[2]]
    rows = sorted({c[0] for c in cells}, key=_key)
    cols = sorted({c[1] for c in cells}, key=_key)
    entries = [Entry("cell", r, c, int(v), int(p)) for r, c, v, p in
               sorted(cells, key=lambda x: (_key(x[0]), _key(x[1])))]
    eqs: list[list[tuple[int, int]]] = []
    if len(rows) > 1 and len(cols) > 1:
        rt: dict[str | None, int] = {}
        ct: dict[str | None, int] = {}
        for r in rows:
            mine = [i for i, e in enumerate(entries[:len(cells)]) if e.row == r]
            rt[r] = len(entries)
            entries.append(Entry("row_total", r, None, sum(entries[i].value for i in mine),
                                 max(entries[i].patrons for i in mine)))
            eqs.append([(i, 1) for i in mine] + [(rt[r], -1)])
        for c in cols:
            mine = [i for i, e in enumerate(entries[:len(cells)]) if e.col == c]
            ct[c] = len(entries)
            entries.append(Entry("col_total", None, c, sum(entries[i].value for i in mine),
                                 max(entries[i].patrons for i in mine)))
            eqs.append([(i, 1) for i in mine] + [(ct[c], -1)])
        t = len(entries)
        entries.append(Entry("total", None, None, sum(e.value for e in entries[:len(cells)]),
                             max(e.patrons for e in entries[:len(cells)])))
        eqs.append([(i, 1) for i in rt.values()] + [(t, -1)])
        eqs.append([(i, 1) for i in ct.values()] + [(t, -1)])
    elif len(cells) > 1:
        t = len(entries)
        entries.append(Entry("total", None, None, sum(e.value for e in entries),
                             max(e.patrons for e in entries)))
        eqs.append([(i, 1) for i in range(t)] + [(t, -1)])
    return Page(entries, eqs)


def _key(v: str | None) -> tuple[int, str]:
    return (0, "") if v is None else (1, v)


# -- the attacker ------------------------------------------------------------------------

def _matrix(page: Page) -> csr_matrix:
    from scipy.sparse import coo_matrix  # here, not at import: the CLI starts without SciPy
    n = len(page.entries)
    r, c, d = [], [], []
    for i, eq in enumerate(page.equations):
        for j, coef in eq:
            r.append(i)
            c.append(j)
            d.append(coef)
    return coo_matrix((d, (r, c)), shape=(len(page.equations), n)).tocsr()


def floor(e: Entry) -> int:
    """The least value an attacker knows a suppressed entry has: 1 for every entry the
    page lists (a page lists no empty cell, and a total of listed cells is at least 1),
    0 for an empty one.  With 0 instead, eleven suppressed cells of 1 under a released
    total of 11 looked protected, while each is exactly 1 to an attacker who knows that
    a listed cell is not empty."""
    return 1 if e.value >= 1 else 0


def attacker_interval(page: Page, target: int, released: list[bool] | None = None
                      ) -> tuple[float, float]:
    """The interval an attacker who knows the released entries, the equations and that
    counts are non-negative can prove for entry ``target`` (``inf`` when unbounded)."""
    import numpy as np  # here, not at import: the CLI starts without SciPy
    from scipy.optimize import linprog
    n = len(page.entries)
    rel = released if released is not None else [not e.suppressed for e in page.entries]
    lb = np.array([e.value if rel[i] else floor(e) for i, e in enumerate(page.entries)],
                  float)
    ub = np.array([e.value if rel[i] else np.inf for i, e in enumerate(page.entries)],
                  float)
    if rel[target]:
        v = float(page.entries[target].value)
        return v, v
    if not page.equations:
        return 0.0, math.inf
    a = _matrix(page)
    out = []
    for sign in (1.0, -1.0):
        c = np.zeros(n)
        c[target] = sign
        res = linprog(c, A_eq=a, b_eq=np.zeros(a.shape[0]),
                      bounds=list(zip(lb, ub, strict=True)), method="highs")
        if res.status == 3:
            out.append(-math.inf if sign > 0 else math.inf)
        elif res.status != 0:
            raise RuntimeError(f"attacker LP failed: {res.message}")
        else:
            out.append(sign * res.fun)
    return out[0], out[1]


def sensitive(page: Page) -> list[int]:
    """The entries that need a protection interval: primary, and shared entries forced
    suppressed by an earlier publication."""
    return [i for i, e in enumerate(page.entries)
            if e.suppressed and (e.reason in ("primary", "shared") or e.guarded)]


def shortfalls(page: Page, level: int, released: list[bool] | None = None
               ) -> list[tuple[int, int]]:
    """(entry, direction) pairs whose attacker interval is too narrow: direction +1 when
    the upper bound is below value + level, -1 when the lower bound is above
    max(0, value - level)."""
    out = []
    rel = released if released is not None else [not e.suppressed for e in page.entries]
    for i in sensitive(page):
        lo, hi = attacker_interval(page, i, rel)
        v = page.entries[i].value
        if hi < v + level - 1e-6:
            out.append((i, 1))
        if lo > max(floor(page.entries[i]), v - level) + 1e-6:
            out.append((i, -1))
    return out


# -- the solver --------------------------------------------------------------------------

def costs(page: Page, policy: str) -> np.ndarray:
    """The cost of suppressing each entry under ``policy``, plus a tie-break far below
    one unit (smaller values first), so that equal-cost patterns resolve the same way
    every time."""
    import numpy as np  # here, not at import: the CLI starts without SciPy
    weights = COST_POLICIES[policy]
    total = sum(e.value for e in page.entries) or 1
    out = []
    for e in page.entries:
        base = weights[e.kind] * (e.value if policy == "value" else 1.0)
        out.append(base + 1e-3 * e.value / total)
    return np.array(out)


def mark_primary(page: Page, k: int) -> None:
    for e in page.entries:
        if e.reason == "shared":
            continue
        if e.patrons < k:
            e.suppressed, e.reason = True, "primary"


def suppress(page: Page, settings: Settings,
             fixed: dict[int, int | None] | None = None) -> Page:
    """Choose the page's pattern in place (``Entry.suppressed``/``reason``) and return it.

    ``fixed``: entries already published by another report of the same month (entry ->
    the value released there, or None where it was suppressed there).  A value released
    there and equal here stays released (it is public); anything else (suppressed there,
    or a value that has changed since) is suppressed here and protected like a primary
    entry, so the difference is not released."""
    fixed = fixed or {}
    for i, v in fixed.items():
        e = page.entries[i]
        if v is None or v != e.value:
            e.suppressed, e.reason = True, "shared"
    mark_primary(page, settings.k)
    keep = {i for i, v in fixed.items() if v is not None and v == page.entries[i].value}
    for i in keep:
        if page.entries[i].reason == "primary":
            # published elsewhere already (with the same value): it cannot be taken back
            page.entries[i].suppressed, page.entries[i].reason = False, ""
            page.notes.append(f"{_name(page.entries[i])} was published by another report "
                              "of this month; kept as released")
    level = settings.level
    if not sensitive(page) or not page.equations:
        page.method = "threshold only (no protection needed)" if not sensitive(page) \
            else "single entry"
        page.cost = 0.0
        return page
    c = costs(page, settings.cost)
    try:
        ok = _exact(page, settings, c, keep)
    except _TooLarge as exc:
        page.notes.append(str(exc))
        ok = False
    if not ok:
        _heuristic(page, level, c, keep)
    page.cost = float(sum(c[i] for i, e in enumerate(page.entries)
                          if e.suppressed and e.reason == "complement"))
    left = shortfalls(page, level)
    if left:  # only possible when entries fixed as released make protection impossible
        for i, e in enumerate(page.entries):
            if i not in keep and not e.suppressed:
                e.suppressed, e.reason = True, "complement"
        page.method += "; everything not already published suppressed"
        page.notes.append("protection could not be met around entries another report "
                          "published: every other entry of this page is suppressed")
    return page


class _TooLarge(Exception):
    pass


@contextmanager
def _quiet_stdout() -> Iterator[None]:
    """HiGHS (SciPy 1.17) prints a stray debug line to the process's standard output
    from C++ on some problems, whatever ``disp`` says; `stats publish --format json`
    must print JSON only.  File descriptor 1 goes to /dev/null for the call."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # no real stdout (captured): nothing to do
        yield
        return
    sys.stdout.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def _name(e: Entry) -> str:
    return f"{e.kind} {e.row or ''}/{e.col or ''}".strip()


def _exact(page: Page, settings: Settings, c: np.ndarray, keep: set[int]) -> bool:
    """Constraint generation over witness blocks; True when the pattern is optimal."""
    n = len(page.entries)
    a = _matrix(page)
    m = a.shape[0]
    level = settings.level
    fixed_on = {i for i, e in enumerate(page.entries) if e.suppressed}
    guarded = {i for i, e in enumerate(page.entries) if e.guarded and i not in fixed_on}
    blocks: list[tuple[int, int]] = []
    released = [i not in fixed_on for i in range(n)]
    # a guarded entry gets its (conditional) witness blocks from the start
    blocks += [(i, d) for i in sorted(guarded) for d in (1, -1)]
    rounds = 0
    while True:
        todo = [b for b in shortfalls(page, level, released) if b not in blocks]
        if not todo:
            break
        blocks += todo
        if len(blocks) * n > settings.exact_limit:
            raise _TooLarge(f"{len(blocks)} protection constraints x {n} entries exceed "
                            f"statistics.suppression.exact_limit ({settings.exact_limit})")
        rounds += 1
        s = _solve_master(page, a, m, n, blocks, level, c, fixed_on, keep, settings)
        if s is None:
            return False
        released = [not x for x in s]
    for i, e in enumerate(page.entries):
        if not released[i] and not e.suppressed:
            e.suppressed, e.reason = True, "complement"
    page.method = ("exact (HiGHS MILP)" if rounds else
                   "exact (primary suppression alone protects)")
    return True


def _solve_master(page: Page, a: csr_matrix, m: int, n: int, blocks: list[tuple[int, int]],
                  level: int, c: np.ndarray, fixed_on: set[int], keep: set[int],
                  settings: Settings) -> list[bool] | None:
    """The integer program over s (n binaries) and one witness z per block (n each)."""
    import numpy as np  # here, not at import: the CLI starts without SciPy
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_matrix
    nb = len(blocks)
    nvar = n + nb * n
    vals = np.array([e.value for e in page.entries], float)
    rows: list[int] = []
    cols: list[int] = []
    data: list[float] = []
    lo: list[float] = []
    hi: list[float] = []
    r = 0
    acoo = a.tocoo()
    for b in range(nb):
        off = n + b * n
        # A z = 0
        for i, j, v in zip(acoo.row, acoo.col, acoo.data, strict=True):
            rows.append(r + i)
            cols.append(off + j)
            data.append(float(v))
        lo += [0.0] * m
        hi += [0.0] * m
        r += m
        # z_e - M s_e <= 0 and z_e + min(M, value_e) s_e >= 0: only suppressed entries
        # move, none below zero, none by more than the protection level (enough: see the
        # module docstring; the attacker may move them further, never less)
        for j in range(n):
            rows += [r, r]
            cols += [off + j, j]
            data += [1.0, -float(level)]
            lo.append(-np.inf)
            hi.append(0.0)
            r += 1
            rows += [r, r]
            cols += [off + j, j]
            data += [1.0, min(float(level), vals[j] - floor(page.entries[j]))]
            lo.append(0.0)
            hi.append(np.inf)
            r += 1
        p, d = blocks[b]
        if p not in fixed_on:  # guarded: protected only if it ends up suppressed
            need = level if d > 0 else min(level, page.entries[p].value
                                            - floor(page.entries[p]))
            rows += [r, r]
            cols += [off + p, p]
            data += [float(d), -float(need)]
            lo.append(0.0)
            hi.append(np.inf)
            r += 1
    cons = LinearConstraint(coo_matrix((data, (rows, cols)), shape=(r, nvar)).tocsr(),
                            np.array(lo), np.array(hi))
    lb = np.full(nvar, -np.inf)
    ub = np.full(nvar, np.inf)
    lb[:n] = 0.0
    ub[:n] = 1.0
    for i in fixed_on:
        lb[i] = 1.0
    for i in keep:
        ub[i] = 0.0
    for b, (p, d) in enumerate(blocks):
        off = n + b * n
        if p not in fixed_on:
            continue
        need = level if d > 0 else min(level, page.entries[p].value
                                            - floor(page.entries[p]))
        if d > 0:
            lb[off + p] = need
        else:
            ub[off + p] = -need
    obj = np.concatenate([c, np.zeros(nb * n)])
    integrality = np.concatenate([np.ones(n), np.zeros(nb * n)])
    with _quiet_stdout():
        res = milp(obj, constraints=cons, integrality=integrality, bounds=Bounds(lb, ub),
                   options={"time_limit": settings.time_limit, "disp": False})
    if res.status != 0 or res.x is None:
        if res.x is not None:
            page.notes.append(f"the exact solver stopped ({res.message.strip()}); the "
                              "heuristic was used")
        return None
    return [bool(round(x)) for x in res.x[:n]]


def _heuristic(page: Page, level: int, c: np.ndarray, keep: set[int]) -> None:
    """Greedy network heuristic: while an entry is short, find the cheapest witness for
    it by a linear program (cost of moving a released entry = its suppression cost) and
    suppress every entry the witness moves."""
    import numpy as np  # here, not at import: the CLI starts without SciPy
    from scipy.optimize import linprog
    from scipy.sparse import csr_matrix
    n = len(page.entries)
    a = _matrix(page)
    vals = np.array([e.value for e in page.entries], float)
    for _ in range(4 * n + 10):
        short = shortfalls(page, level)
        if not short:
            break
        p, d = short[0]
        # z = zp - zm; cost on |z| of entries not yet suppressed
        cz = np.array([0.0 if e.suppressed else c[i] for i, e in enumerate(page.entries)])
        obj = np.concatenate([cz, cz])
        aeq = csr_matrix(np.hstack([a.toarray(), -a.toarray()]))
        bounds = []
        for i in range(n):
            up = 0.0 if i in keep else float(level)
            down = 0.0 if i in keep else min(float(level),
                                             float(vals[i]) - floor(page.entries[i]))
            bounds.append((0.0, up))
            bounds.append((0.0, down))
        bz = [bounds[2 * i] for i in range(n)] + [bounds[2 * i + 1] for i in range(n)]
        need = level if d > 0 else min(level, page.entries[p].value
                                            - floor(page.entries[p]))
        # p moves by the level one way and not at all the other (else the two halves of
        # its move could cancel)
        if d > 0:
            bz[p], bz[n + p] = (need, max(need, bz[p][1])), (0.0, 0.0)
        else:
            bz[n + p], bz[p] = (need, max(need, bz[n + p][1])), (0.0, 0.0)
        res = linprog(obj, A_eq=aeq, b_eq=np.zeros(a.shape[0]), bounds=bz, method="highs")
        if res.status != 0:
            break
        moved = [i for i in range(n) if abs(res.x[i] - res.x[n + i]) > 1e-7]
        new = [i for i in moved if not page.entries[i].suppressed]
        if not new:
            break
        for i in new:
            page.entries[i].suppressed, page.entries[i].reason = True, "complement"
    page.method = "heuristic (greedy network LP per short entry; not proven optimal)"


def summary(pages: list[Page]) -> dict[str, int]:
    """Utility numbers: entries released, suppressed as primary, as complements, shared."""
    out = {"entries": 0, "released": 0, "primary": 0, "complement": 0, "shared": 0,
           "released_value": 0, "suppressed_value": 0}
    for p in pages:
        for e in p.entries:
            out["entries"] += 1
            if e.suppressed:
                out[e.reason or "complement"] += 1
                out["suppressed_value"] += e.value
            else:
                out["released"] += 1
                out["released_value"] += e.value
    return out
