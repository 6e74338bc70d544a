"""Benchmark of the Koha (MariaDB) statistics reports: each standard report, run as a login
in the stats role, vs a plain GROUP BY of the same grouping run as root, side by side.

    python bench/koha_stats.py                                   # quick: 300,000 checkouts
    python bench/koha_stats.py --patrons 500000 --circulations 10000000 --rounds 3 --keep

The 10,000,000-checkout database takes a while to build (``fixture.fill``: old_issues,
issues and the statistics log of that size); ``--keep`` keeps it for the next run.  The
server: ``ILS_REDACT_BENCH_MARIADB_DSN`` (an administrator DSN) if set, else
``mysql://root@127.0.0.1:3306/``.  Target: report <= 1.2x the baseline.

Two baselines, both over the same rows (every complete month), run as root:
* ``GROUP BY + distinct``: month, grouping, COUNT(*) and COUNT(DISTINCT patron), the same
  numbers the report needs before suppression (the threshold counts people);
* ``GROUP BY count``: COUNT(*) only, which no report could be suppressed from; printed so
  the price of counting people is visible too.
The report's time includes everything the stats login waits for: the CALL, the
aggregate, the names, the suppression in the database and the rows coming back.  Runs
are interleaved, the order rotated each round, and the median is printed.
"""

# ruff: noqa: S608 - benchmark SQL: names quoted with sqltext.ident/account

from __future__ import annotations

import argparse
import datetime as dt
import time

from _common import STATS_HEADER, log, report_vs_baselines
from _common import table as fmt_table
from _koha import PASSWORD, KohaBench

from ils_redact.backends import mariadb as m
from ils_redact.backends.mariadb import staff
from ils_redact.backends.mariadb.sqltext import ident
from ils_redact.backends.mariadb.stats import baseline_sql, procedure_name
from ils_redact.backends.mariadb.stats_publish import publish
from ils_redact.sdc.publish import month_range
from ils_redact.stats import all_reports, standard_reports

BENCH = KohaBench(prefix="ilsbench_kstats_", db="ilsbench_kstats")
DB = BENCH.db
ANALYZE = ("borrowers", "issues", "old_issues", "items", "biblioitems", "statistics",
           "reserves", "old_reserves")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patrons", type=int, default=20_000)
    ap.add_argument("--circulations", type=int, default=300_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--keep", action="store_true", help="keep (and reuse) the database")
    args = ap.parse_args()
    rl = BENCH.rules()
    with m.connect(BENCH.dsn_for(""), autocommit=True) as root:
        version = m.connection.server_version(root)
        sizes = (BENCH.rows(root, "borrowers"), BENCH.rows(root, "statistics"))
        if not (args.keep and sizes == (args.patrons, args.circulations)):
            BENCH.drop_everything(root)
            log(f"building {DB}: {args.patrons:,} patrons, {args.circulations:,} checkouts")
            log(f"built in {BENCH.build(args.patrons, args.circulations, ANALYZE):.0f} s")
        else:
            BENCH.drop_layer(root)
    try:
        with m.connect(BENCH.dsn_for(DB)) as c:
            t = time.perf_counter()
            m.install(c, rl, reports=all_reports)
            log(f"installed in {time.perf_counter() - t:.1f} s")
        with m.connect(BENCH.dsn_for(DB)) as c:
            analyst = f"{BENCH.prefix}analyst"
            plan = staff.plan_grant(c, rl, analyst, "stats", create=True, password=PASSWORD)
            c.rollback()
            staff.apply(c, plan)
            catalog = m.read_catalog(c)
        layer = BENCH.layer
        this_month = dt.datetime.now(dt.timezone.utc).date().replace(day=1)
        months = month_range(dt.date(2010, 1, 1), this_month - dt.timedelta(days=1))
        out = [STATS_HEADER]
        publish_rows = [("report", "publish ms", "GROUP BY+distinct ms", "ratio", "months",
                         "entries", "suppressed")]
        with m.connect(BENCH.dsn_for(DB), autocommit=True) as oc:
            for report in standard_reports("koha"):
                q_base = baseline_sql(report, catalog, this_month.isoformat())
                oc.rows(q_base)  # warm-up
                t = time.perf_counter()
                oc.rows(q_base)
                base_ms = (time.perf_counter() - t) * 1000
                with m.connect(BENCH.dsn_for(DB)) as ac:
                    t = time.perf_counter()
                    res = publish(ac, rl, catalog, report.name,
                                  months if report.timed else None)
                    pub_ms = (time.perf_counter() - t) * 1000
                counts = [r.counts() for r in res if r.status == "published"]
                publish_rows.append((
                    report.name, f"{pub_ms:.0f}", f"{base_ms:.0f}", f"{pub_ms / base_ms:.2f}x",
                    str(len(counts)), str(sum(c["entries"] for c in counts)),
                    str(sum(c["entries"] - c["released"] for c in counts))))
                log(f"{report.name}: published in {pub_ms:.0f} ms")
        with m.connect(BENCH.dsn_for(DB, analyst), autocommit=True) as sc, \
                m.connect(BENCH.dsn_for(DB), autocommit=True) as oc:
            for report in standard_reports("koha"):
                q_report = f"CALL {ident(layer)}.{ident(procedure_name(report))}(NULL, NULL)"
                q_base = baseline_sql(report, catalog, this_month.isoformat())
                q_count = baseline_sql(report, catalog, this_month.isoformat(), patrons=False)
                row, med = report_vs_baselines(
                    report.name, lambda q=q_report: sc.rows(q), lambda q=q_base: oc.rows(q),
                    lambda q=q_count: oc.rows(q), rounds=args.rounds)
                out.append(row)
                log(f"{report.name}: {med['r']:.0f} ms vs {med['b']:.0f} ms")
        print(f"\nKoha statistics reports on MariaDB {version}, {args.patrons:,} patrons, "
              f"{args.circulations:,} checkouts, median of {args.rounds} (target: report "
              "<= 1.5x GROUP BY+distinct)")
        print(fmt_table(out))
        print("\npublish, once per month (counting, exact suppression, writes) vs one "
              "GROUP BY+distinct")
        print(fmt_table(publish_rows))
    finally:
        with m.connect(BENCH.dsn_for(""), autocommit=True) as root:
            (BENCH.drop_layer if args.keep else BENCH.drop_everything)(root)


if __name__ == "__main__":
    main()
