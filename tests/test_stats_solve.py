"""The minimum-loss suppression solver (``ils_redact.sdc.solve``), on tables alone.

* every suppressed primary entry's interval, as an attacker computes it with SciPy's
  ``linprog`` from the released entries, the table's equations and non-negativity
  (written here independently of the solver), reaches the protection level both ways;
* the pattern is optimal: on small tables, every cheaper set of complements is tried by
  brute force and each fails the protection check;
* entries another report already published stay as published, or are suppressed and
  protected when they changed.
"""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
from scipy.optimize import linprog

from ils_redact.sdc.solve import Page, Settings, build_page, costs, suppress

K = 11


def attacker(page: Page, target: int) -> tuple[float, float]:
    """min and max of entry ``target`` over all tables that agree with the released
    entries and add up (the equations written from the entry kinds here), where a listed
    entry is at least 1 (a page lists no empty cell) and none is negative."""
    ents = page.entries
    unknown = [i for i, e in enumerate(ents) if e.suppressed]
    col = {i: j for j, i in enumerate(unknown)}
    rows = sorted({e.row for e in ents if e.kind == "cell"}, key=str)
    cols = sorted({e.col for e in ents if e.kind == "cell"}, key=str)
    by = {(e.kind, e.row, e.col): i for i, e in enumerate(ents)}
    eqs: list[dict[int, int]] = []
    if any(e.kind == "row_total" for e in ents):
        for r in rows:
            eqs.append({by[k]: 1 for c in cols if (k := ("cell", r, c)) in by}
                       | {by[("row_total", r, None)]: -1})
        for c in cols:
            eqs.append({by[k]: 1 for r in rows if (k := ("cell", r, c)) in by}
                       | {by[("col_total", None, c)]: -1})
        t = by[("total", None, None)]
        eqs.append({by[("row_total", r, None)]: 1 for r in rows} | {t: -1})
        eqs.append({by[("col_total", None, c)]: 1 for c in cols} | {t: -1})
    elif ("total", None, None) in by:
        eqs.append({i: 1 for i, e in enumerate(ents) if e.kind == "cell"}
                   | {by[("total", None, None)]: -1})
    a = np.zeros((len(eqs), len(unknown)))
    b = np.zeros(len(eqs))
    for r, eq in enumerate(eqs):
        for i, coef in eq.items():
            if i in col:
                a[r, col[i]] += coef
            else:
                b[r] -= coef * ents[i].value
    out = []
    for sign in (1, -1):
        c = np.zeros(len(unknown))
        c[col[target]] = sign
        res = linprog(c, A_eq=a if len(eqs) else None, b_eq=b if len(eqs) else None,
                      bounds=[(1 if ents[i].value >= 1 else 0, None) for i in unknown],
                      method="highs")
        out.append(sign * res.fun if res.status == 0 else -sign * math.inf)
    return out[0], out[1]


def check_protected(page: Page, level: int) -> None:
    for i, e in enumerate(page.entries):
        if e.reason in ("primary", "shared"):
            assert e.suppressed
            lo, hi = attacker(page, i)
            assert hi >= e.value + level - 1e-6, (e, lo, hi)
            assert lo <= max(min(1, e.value), e.value - level) + 1e-6, (e, lo, hi)
        if e.patrons < K and e.reason != "shared" and not e.suppressed:
            raise AssertionError(f"released below k: {e}")


def random_cells(rng: random.Random, nr: int, nc: int, small: float = 0.35):
    cells = []
    for r in range(nr):
        for c in range(nc):
            if rng.random() < 0.2:
                continue
            p = rng.randint(1, K - 1) if rng.random() < small else rng.randint(K, 200)
            cells.append((f"r{r}", f"c{c}" if nc > 1 else None, p + rng.randint(0, 2 * p), p))
    return cells


@pytest.mark.parametrize("policy", ["totals_first", "entries", "value"])
def test_every_primary_entry_meets_its_protection_interval(policy: str) -> None:
    rng = random.Random(17)
    settings = Settings(k=K, cost=policy)
    checked = 0
    for _ in range(40):
        nr, nc = rng.randint(1, 6), rng.choice([1, 2, 3, 5, 8])
        cells = random_cells(rng, nr, nc)
        if not cells:
            continue
        page = suppress(build_page(cells), settings)
        assert page.method.startswith(("exact", "threshold", "single"))
        check_protected(page, settings.level)
        checked += sum(e.reason == "primary" for e in page.entries)
    assert checked > 50


def test_the_pattern_is_optimal_by_brute_force() -> None:
    """Tables small enough to try every set of complements cheaper than the solver's."""
    rng = random.Random(5)
    settings = Settings(k=K)
    tried = 0
    for _ in range(25):
        cells = random_cells(rng, rng.randint(2, 3), rng.randint(2, 3), small=0.3)
        page = suppress(build_page(cells), settings)
        c = costs(page, settings.cost)
        chosen = sum(c[i] for i, e in enumerate(page.entries) if e.reason == "complement")
        free = [i for i, e in enumerate(page.entries) if e.reason != "primary"]
        if not any(e.reason == "primary" for e in page.entries):
            continue
        for size in range(len(free) + 1):
            for combo in itertools.combinations(free, size):
                if sum(c[i] for i in combo) >= chosen - 1e-9:
                    continue
                trial = build_page(cells)
                for i, e in enumerate(trial.entries):
                    if e.patrons < K:
                        e.suppressed, e.reason = True, "primary"
                    elif i in combo:
                        e.suppressed, e.reason = True, "complement"
                short = False
                for i, e in enumerate(trial.entries):
                    if e.reason == "primary":
                        lo, hi = attacker(trial, i)
                        if hi < e.value + settings.level - 1e-6 or \
                                lo > max(min(1, e.value), e.value - settings.level) + 1e-6:
                            short = True
                            break
                assert short, f"cheaper pattern {combo} protects {cells}"
                tried += 1
    assert tried > 20


def test_held_out_shape_keeps_the_large_cells() -> None:
    """Three branches x circulation modifiers, a small cell in most columns: the old
    bridge heuristic suppressed large cells as complements; totals_first hides column
    totals instead and releases every cell of k patrons or more."""
    cells = []
    rng = random.Random(3)
    for b, size in (("big", 300), ("mid", 90), ("small", 25)):
        for m in ("book", "dvd", "cd", "magazine", "kit", "video_game"):
            p = rng.randint(2, 8) if b == "small" and m != "book" else rng.randint(11, size)
            cells.append((b, m, p * 2 + rng.randint(0, p), p))
    settings = Settings(k=K)
    page = suppress(build_page(cells), settings)
    check_protected(page, settings.level)
    big = [e for e in page.entries if e.kind == "cell" and e.patrons >= K]
    assert all(not e.suppressed for e in big), [e for e in big if e.suppressed]
    assert page.method.startswith("exact")


def test_entries_published_by_another_report_are_kept_or_protected() -> None:
    cells = [("a", None, 120, 40), ("b", None, 80, 30), ("c", None, 5, 3)]
    settings = Settings(k=K)
    base = build_page(cells)
    t = base.index()[("total", None, None)]
    # the total was released elsewhere with this value: it stays released
    page = suppress(build_page(cells), settings, {t: 205})
    assert not page.entries[t].suppressed
    check_protected(page, settings.level)
    # suppressed elsewhere: suppressed here too, and protected
    page = suppress(build_page(cells), settings, {t: None})
    assert page.entries[t].suppressed and page.entries[t].reason == "shared"
    check_protected(page, settings.level)
    # released elsewhere with another value (the data changed): the new value is not
    # released, and the difference cannot be worked out
    page = suppress(build_page(cells), settings, {t: 204})
    assert page.entries[t].suppressed
    check_protected(page, settings.level)


def test_exact_limit_falls_back_to_the_heuristic_and_says_so() -> None:
    rng = random.Random(9)
    cells = random_cells(rng, 6, 8, small=0.4)
    settings = Settings(k=K, exact_limit=10)
    page = suppress(build_page(cells), settings)
    assert page.method.startswith("heuristic")
    assert any("exact_limit" in n for n in page.notes)
    check_protected(page, settings.level)


def test_a_guarded_total_is_protected_when_it_is_suppressed() -> None:
    """A total another report also shows (the month's circulations): if the pattern
    suppresses it, it gets a protection interval too, so neither report pins it down for
    the other."""
    rng = random.Random(11)
    settings = Settings(k=K)
    seen = 0
    for _ in range(30):
        cells = random_cells(rng, 3, 4, small=0.4)
        page = build_page(cells)
        for e in page.entries:
            e.guarded = e.kind != "cell"
        suppress(page, settings)
        check_protected(page, settings.level)
        for i, e in enumerate(page.entries):
            if e.guarded and e.suppressed:
                lo, hi = attacker(page, i)
                assert hi >= e.value + settings.level - 1e-6
                assert lo <= max(min(1, e.value), e.value - settings.level) + 1e-6
                seen += 1
    assert seen > 5


def test_listed_cells_are_known_to_be_at_least_one() -> None:
    """The attack: a page lists no empty cell, so each suppressed cell is at least 1.
    Under a released total, eleven suppressed cells of one loan each (a branch each)
    would each be exactly 1; and BR2 + BR3 = 22 - 20 gives BR2 = BR3 = 1."""
    settings = Settings(k=K)
    for cells in ([("BR1", None, 20, 20), ("BR2", None, 1, 1), ("BR3", None, 1, 1)],
                  [(f"BR{i}", None, 1, 1) for i in range(K)] + [("BR99", None, 40, 30)]):
        page = suppress(build_page(cells), settings)
        check_protected(page, settings.level)
        for i, e in enumerate(page.entries):
            if e.reason == "primary":
                lo, hi = attacker(page, i)
                assert hi - lo >= settings.level, (e, lo, hi)
