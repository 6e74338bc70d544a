"""Benchmark of ``ils-redact verify`` on the full 510-table Evergreen fixture.

    python bench/verify_pg.py [--patrons 100000] [--circulations 200000] [--logins 200]
                              [--rounds 10]

Measured in one run, interleaved (verify, baseline, verify, baseline, ...):

1. verify as the library runs it: catalog proof, every relation read as each of the three
   restricted roles, the functions, the hazards and the drift;     target <= 5 s
2. the same with ``exhaustive`` (every column of every relation read alone);
3. the console script end to end (process start, connect, verify, JSON out), a few times;

with ``--logins`` staff logins in the exporter role (verify judges every login that can act
as a restricted role), beside a bare catalog query, for scale: one query listing every
column of every relation (``pg_attribute`` joined to ``pg_class`` and ``pg_namespace``),
and the catalog read that verify starts with (``read_catalog``).  Server:
``ILS_REDACT_BENCH_DSN`` or an embedded PostgreSQL 18.  Prints numbers; asserts nothing
about time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from _common import ROOT, bench_server, clone, evergreen_db, interleaved, log, median_ms, rules
from _common import table as render_table
from psycopg import sql

from ils_redact.backends import postgresql as pg
from ils_redact.stats import all_reports
from ils_redact.verify import verify

#: this benchmark's own databases and roles (other benchmarks use ilsbench_ too)
PREFIX = "ilsbench_verify_"

BARE = """
SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
"""


def cleanup(srv) -> None:  # type: ignore[no-untyped-def]
    with psycopg.connect(srv.dsn, autocommit=True) as conn:
        for (db,) in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                                  (PREFIX + "%",)).fetchall():
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(db)))
        for (role,) in conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s "
                                    "ORDER BY 1 DESC", (PREFIX + "%",)).fetchall():
            conn.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patrons", type=int, default=100_000)
    ap.add_argument("--circulations", type=int, default=200_000)
    ap.add_argument("--logins", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    rl = rules(PREFIX + "x_")
    with bench_server() as srv:
        version = srv.version
        cleanup(srv)
        try:
            tpl = evergreen_db(srv, f"{PREFIX}tpl", patrons=args.patrons,
                               circulations=args.circulations, owner=f"{PREFIX}evergreen")
            db = clone(srv, tpl, f"{PREFIX}db")
            with psycopg.connect(srv.dsn_for(db), autocommit=True) as c:
                c.execute("VACUUM ANALYZE")
            with pg.connect(srv.dsn_for(db)) as conn:
                pg.install(conn, rl, reports=all_reports)
            with psycopg.connect(srv.dsn, autocommit=True) as c:
                for i in range(args.logins):
                    c.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(
                        sql.Identifier(f"{PREFIX}staff{i}"),
                        sql.Identifier(rl.role("exporter", db))))
            results = measure(srv, db, rl, args.rounds)
        finally:
            cleanup(srv)
    report(results, version, args)


def measure(srv, db: str, rl, rounds: int) -> dict:  # type: ignore[no-untyped-def]
    out: dict = {"parts": {}}
    with psycopg.connect(srv.dsn_for(db)) as conn:
        relations = conn.execute(BARE.replace("count(*)", "count(DISTINCT c.oid)")).fetchone()
        columns = conn.execute(BARE).fetchone()
        conn.rollback()
        out["relations"], out["columns"] = relations[0], columns[0]
        reports = []

        def run_verify() -> None:
            r = verify(conn, rl)
            assert r.ok, r.text()
            reports.append(r)

        def bare() -> None:
            conn.execute(BARE).fetchone()
            conn.rollback()

        def catalog() -> None:
            pg.read_catalog(conn)
            conn.rollback()

        log(f"1/3 verify vs a bare catalog query, {rounds} rounds")
        out["verify"], out["bare"] = interleaved(run_verify, bare, rounds=rounds, warmup=2)
        out["checks"] = len(reports[-1].checks)
        for part in reports[0].timings:
            out["parts"][part] = statistics.median(r.timings[part] for r in reports)
        _, out["read_catalog"] = interleaved(bare, catalog, rounds=rounds, warmup=2)

        log("2/3 verify --exhaustive")

        def exhaustive() -> None:
            r = verify(conn, rl, exhaustive=True)
            assert r.ok, r.text()

        out["exhaustive"], _ = interleaved(exhaustive, bare, rounds=max(3, rounds // 2),
                                           warmup=1)

    log("3/3 the console script, end to end")
    with tempfile.TemporaryDirectory() as tmp:
        rules_file = Path(tmp) / "rules.yaml"
        rules_file.write_text((ROOT / "redaction_rules.yaml").read_text(encoding="utf-8")
                              .replace("role_prefix: ils_redact_", f"role_prefix: {PREFIX}x_",
                                       1), encoding="utf-8")
        exe = Path(sys.executable).parent / "ils-redact"
        env = {k: v for k, v in os.environ.items() if k != "ILS_REDACT_DSN"}
        out["cli"] = []
        for _ in range(3):
            t = time.perf_counter()
            res = subprocess.run([str(exe), "--dsn", srv.dsn_for(db), "--rules", str(rules_file),
                                  "--format", "json", "verify"], capture_output=True, text=True,
                                 env=env)
            out["cli"].append(time.perf_counter() - t)
            assert res.returncode == 0, res.stdout[-2000:] + res.stderr
            assert json.loads(res.stdout)["ok"]
    return out


def report(r: dict, version: int, args) -> None:  # type: ignore[no-untyped-def]
    bare = median_ms(r["bare"])
    v = median_ms(r["verify"])
    x = median_ms(r["exhaustive"])
    cli = median_ms(r["cli"])
    rows = [("benchmark", "measured", "bare catalog query", "ratio", "target"),
            (f"verify, {r['checks']:,} checks (median of {len(r['verify'])})",
             f"{v:.0f} ms", f"{bare:.2f} ms", f"{v / bare:.0f}x", "<= 5 s"),
            (f"verify --exhaustive (median of {len(r['exhaustive'])})", f"{x:.0f} ms",
             f"{bare:.2f} ms", f"{x / bare:.0f}x", ""),
            ("ils-redact verify, process end to end (median of 3)", f"{cli:.0f} ms", "", "",
             "<= 5 s"),
            ("read_catalog (verify's first step)", f"{median_ms(r['read_catalog']):.0f} ms",
             f"{bare:.2f} ms", f"{median_ms(r['read_catalog']) / bare:.0f}x", "")]
    print(f"PostgreSQL {version // 10000}, {r['relations']} relations, {r['columns']:,} columns, "
          f"{args.patrons:,} patrons, {args.circulations:,} circulations, {args.logins} staff "
          "logins")
    print(render_table(rows))
    print("verify by part (median ms): " + ", ".join(
        f"{k} {v * 1000:.0f}" for k, v in r["parts"].items()))
    print(f"target <= 5 s: {'met' if max(v, cli) <= 5000 else 'NOT met'} "
          f"(library {v / 1000:.2f} s, process {cli / 1000:.2f} s)")


if __name__ == "__main__":
    main()
