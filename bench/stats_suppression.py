"""Utility of the suppression: released cells and hidden value, against the exact optimum.

    python bench/stats_suppression.py

Tables shaped like a library's monthly reports (branches x circulation modifiers, one
patron in four at the smallest branch, a third of the cells below k), generated with a
fixed seed.  For each shape, the exact solver (HiGHS, ``statistics.exact_limit`` not
reached) and the greedy fallback (``exact_limit`` 0) are run side by side on the same
tables; printed: the share of cells with at least k distinct patrons that is released,
the value hidden as complements, and the time, with the fallback as a ratio of the exact
optimum.  No database: this is the solver alone (``bench/stats_pg.py`` times the report
path on PostgreSQL).

    python bench/stats_suppression.py --layer-dsn postgresql://.../evergreen

also runs the suppression of layers 3-5 (``ils_redact_stats.suppress_page``: threshold and
exact-recovery only, cycles closed through bridges, smallest first) on the same tables,
in a database where ils-redact is installed, for comparison.
"""

from __future__ import annotations

import random
import time

from _common import table as fmt_table

from ils_redact.sdc.solve import Settings, build_page, suppress

K = 11


def shape(rng: random.Random, branches: int, modifiers: int) -> list[tuple]:
    cells = []
    for b in range(branches):
        size = 300 if b == 0 else max(20, 300 // (b + 1))
        for m in range(modifiers):
            if rng.random() < 0.1:
                continue
            small = rng.random() < (0.6 if b == branches - 1 else 0.25)
            p = rng.randint(1, K - 1) if small else rng.randint(K, size)
            cells.append((f"branch{b}", f"mod{m}", p + rng.randint(0, 2 * p), p))
    return cells


def measure(cells: list[tuple], settings: Settings) -> tuple[int, int, int, float, str]:
    t = time.perf_counter()
    page = suppress(build_page(cells), settings)
    dt = time.perf_counter() - t
    big = [e for e in page.entries if e.kind == "cell" and e.patrons >= K]
    released = sum(not e.suppressed for e in big)
    hidden = sum(e.value for e in page.entries if e.reason == "complement")
    return released, len(big), hidden, dt, page.method.split(" ")[0]


def old_heuristic(conn: object, cells: list[tuple]) -> tuple[int, int]:
    """(cells >= k released, value hidden as complements) by layer 3's suppress_page."""
    rows = conn.execute(  # type: ignore[attr-defined]
        "SELECT kind, row_value, col_value, suppressed FROM ils_redact_stats.suppress_page("
        "%s, NULL, 'm', %s, %s, %s, %s)",
        (K, [c[0] for c in cells], [c[1] for c in cells], [c[2] for c in cells],
         [c[3] for c in cells])).fetchall()
    pats = {(c[0], c[1]): c[3] for c in cells}
    vals = {(c[0], c[1]): c[2] for c in cells}
    released = sum(1 for k, r, c, sup in rows if k == "cell" and not sup and pats[(r, c)] >= K)
    hidden = sum(vals[(r, c)] for k, r, c, sup in rows
                 if k == "cell" and sup and pats[(r, c)] >= K)
    return released, hidden


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layer-dsn", help="a database with ils-redact installed: compare with "
                    "layer 3's suppress_page")
    args = ap.parse_args()
    if args.layer_dsn:
        import psycopg

        with psycopg.connect(args.layer_dsn, autocommit=True) as conn:
            compare_old(conn)
        return
    rng = random.Random(17)
    rows = [("table", "policy", "cells >=k", "released exact", "released greedy",
             "greedy/exact", "hidden exact", "hidden greedy", "s exact", "s greedy")]
    for branches, modifiers, pages in ((3, 6, 12), (3, 15, 12), (10, 20, 6), (25, 30, 3)):
        for policy in ("totals_first", "value"):
            tot = [0, 0, 0, 0, 0, 0.0, 0.0]
            for _ in range(pages):
                cells = shape(rng, branches, modifiers)
                ex = measure(cells, Settings(k=K, cost=policy))
                gr = measure(cells, Settings(k=K, cost=policy, exact_limit=0))
                tot[0] += ex[1]
                tot[1] += ex[0]
                tot[2] += gr[0]
                tot[3] += ex[2]
                tot[4] += gr[2]
                tot[5] += ex[3]
                tot[6] += gr[3]
            rows.append((f"{branches}x{modifiers} ({pages} months)", policy, str(tot[0]),
                         f"{tot[1] / tot[0]:.1%}", f"{tot[2] / tot[0]:.1%}",
                         f"{tot[2] / max(tot[1], 1):.3f}", f"{tot[3]:,}", f"{tot[4]:,}",
                         f"{tot[5]:.1f}", f"{tot[6]:.1f}"))
            print(rows[-1], flush=True)
    print(f"\nsuppression utility, k = {K}, protection 0.5 k (levels of {Settings().level})")
    print(fmt_table(rows))


def compare_old(conn: object) -> None:
    """Layer 3's suppression against the exact solver (totals_first), same tables."""
    rng = random.Random(17)
    rows = [("table", "cells >=k", "released, layers 3-5", "released, exact",
             "cells >=k hidden, layers 3-5", "cells >=k hidden, exact")]
    for branches, modifiers, pages in ((3, 6, 12), (3, 15, 12), (10, 20, 6)):
        tot = [0, 0, 0, 0, 0]
        for _ in range(pages):
            cells = shape(rng, branches, modifiers)
            old_rel, old_hidden = old_heuristic(conn, cells)
            page = suppress(build_page(cells), Settings(k=K))
            big = [e for e in page.entries if e.kind == "cell" and e.patrons >= K]
            tot[0] += len(big)
            tot[1] += old_rel
            tot[2] += sum(not e.suppressed for e in big)
            tot[3] += old_hidden
            tot[4] += sum(e.value for e in big if e.suppressed)
        rows.append((f"{branches}x{modifiers} ({pages} months)", str(tot[0]),
                     f"{tot[1] / tot[0]:.1%}", f"{tot[2] / tot[0]:.1%}", f"{tot[3]:,}",
                     f"{tot[4]:,}"))
        print(rows[-1], flush=True)
    print(f"\nlayers 3-5 (exact recovery only) vs the exact solver (totals_first, protection "
          f"{Settings().level}), k = {K}")
    print(fmt_table(rows))


if __name__ == "__main__":
    main()
