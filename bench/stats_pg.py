"""Benchmark of the statistics reports: each standard report, run as the stats role, vs
a plain GROUP BY of the same grouping run as the ILS owner, side by side in one run.

    python bench/stats_pg.py                                   # quick: 300,000 circulations
    python bench/stats_pg.py --patrons 500000 --circulations 10000000 --rounds 3

The 10,000,000-circulation database takes several minutes to build (``fixture.fill``);
set ``ILS_REDACT_BENCH_DSN`` to a superuser DSN to use a server of your own (else an
embedded PostgreSQL 18 is started).  Target: report <= 1.2x the baseline.

Since layer 6 the report function returns the published months (``stats publish``), so
two things are timed: ``publish`` (every complete month of the report, once: the same
GROUP BY as the administrator's, the least-cost suppression of every page, the writes),
against the GROUP BY + distinct baseline run in the same process; and the report call
as the stats role, which reads the published rows only.

Two baselines, both over the same rows (every complete month):
* ``GROUP BY + distinct``: month, grouping, count(*) and count(DISTINCT patron): the same
  numbers the report needs before suppression (the threshold counts people);
* ``GROUP BY count``: count(*) only, which no report could be suppressed from; printed so
  the price of counting people is visible too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

import psycopg
from _common import (
    PREFIX,
    STATS_HEADER,
    bench_server,
    drop_everything,
    evergreen_db,
    log,
    make_login,
    report_vs_baselines,
    rules,
)
from _common import table as fmt_table

from ils_redact.backends import postgresql as pg
from ils_redact.backends.postgresql.stats import baseline_sql
from ils_redact.backends.postgresql.stats_publish import publish
from ils_redact.sdc.publish import month_range
from ils_redact.stats import all_reports, standard_reports


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patrons", type=int, default=20_000)
    ap.add_argument("--circulations", type=int, default=300_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    rl = rules()
    tz = rl.statistics.time_zone
    with bench_server() as srv:
        drop_everything(srv)
        try:
            owner = f"{PREFIX}ils_db_owner"
            db = evergreen_db(srv, f"{PREFIX}stats", patrons=args.patrons,
                              circulations=args.circulations, owner=owner)
            with psycopg.connect(srv.dsn_for(db), autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")
            with pg.connect(srv.dsn_for(db)) as conn:
                pg.install(conn, rl, reports=all_reports)
            analyst = make_login(srv, f"{PREFIX}analyst", rl.role("stats"))
            this_month = dt.date.today().replace(day=1)
            months = month_range(dt.date(2010, 1, 1), this_month - dt.timedelta(days=1))
            rows = [STATS_HEADER]
            with psycopg.connect(srv.dsn_for(db, user=analyst), autocommit=True) as sc, \
                    psycopg.connect(srv.dsn_for(db, user=owner), autocommit=True) as oc:
                publish_rows = [("report", "publish ms", "GROUP BY+distinct ms", "ratio",
                                 "months", "entries", "suppressed")]
                for report in standard_reports(rl.adapter):
                    q_base = baseline_sql(report, tz)
                    oc.execute(q_base).fetchall()  # warm-up
                    t = time.perf_counter()
                    oc.execute(q_base).fetchall()
                    base_ms = (time.perf_counter() - t) * 1000
                    with pg.connect(srv.dsn_for(db)) as ac:
                        t = time.perf_counter()
                        res = publish(ac, rl, pg.read_catalog(ac), report.name, months)
                        pub_ms = (time.perf_counter() - t) * 1000
                    counts = [r.counts() for r in res if r.status == "published"]
                    publish_rows.append((
                        report.name, f"{pub_ms:.0f}", f"{base_ms:.0f}",
                        f"{pub_ms / base_ms:.2f}x", str(len(counts)),
                        str(sum(c["entries"] for c in counts)),
                        str(sum(c["entries"] - c["released"] for c in counts))))
                    log(f"{report.name}: published")
                for report in standard_reports(rl.adapter):
                    q_report = f"SELECT * FROM ils_redact_stats.{report.name}()"  # noqa: S608
                    q_base = baseline_sql(report, tz)
                    q_count = baseline_sql(report, tz, patrons=False)
                    row, _ = report_vs_baselines(
                        report.name, lambda q=q_report: sc.execute(q).fetchall(),
                        lambda q=q_base: oc.execute(q).fetchall(),
                        lambda q=q_count: oc.execute(q).fetchall(), rounds=args.rounds)
                    rows.append(row)
                    log(f"{report.name}: done")
            print(f"\nstatistics reports, {args.patrons:,} patrons, {args.circulations:,} "
                  f"circulations, median of {args.rounds} (target: report <= 1.2x "
                  "GROUP BY+distinct)")
            print(fmt_table(rows))
            print("\npublish, once per month (counting, exact suppression, writes) vs one "
                  "GROUP BY+distinct")
            print(fmt_table(publish_rows))
        finally:
            drop_everything(srv)


if __name__ == "__main__":
    main()
