"""Benchmark of ``ils-redact verify`` on the full 293-table Koha fixture (MariaDB).

    python bench/koha_verify.py [--patrons 100000] [--circulations 100000] [--logins 200]
                                [--rounds 10] [--keep]

Measured in one run, interleaved (verify, baseline, baseline, verify, ...):

1. verify as a library runs it: the catalog proof of the three restricted roles and the
   definer, every table and view of the Koha and layer databases read as each role (through
   the temporary probe login), every routine called, the hazards and the drift;
2. the same with ``exhaustive`` (every column of every relation read alone);
3. the console script end to end (process start, connect, verify, JSON out), a few times;

with ``--logins`` staff logins in the exporter role (verify judges every login that can act
as a restricted role), beside two baselines: a bare catalog query (every column of every
table of the Koha database from information_schema) and the catalog read that verify
starts with (``read_catalog``).  Server: ``ILS_REDACT_BENCH_MARIADB_DSN`` (an
administrator DSN) or ``mysql://root@127.0.0.1:3306/``.  Prints numbers; asserts nothing
about time.
"""

# ruff: noqa: S608 - benchmark SQL: names quoted with sqltext.ident/account

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import log, median_ms, table
from _koha import KohaBench

from ils_redact.adapters import get_adapter
from ils_redact.backends import mariadb as m
from ils_redact.backends.mariadb.sqltext import account, ident
from ils_redact.stats import all_reports
from ils_redact.verify import verify

BENCH = KohaBench(prefix="ilsbench_kverify_", db="ilsbench_kverify")
DB, PREFIX = BENCH.db, BENCH.prefix
ANALYZE = ("borrowers", "issues", "items")

BARE = ("SELECT COUNT(*) FROM information_schema.COLUMNS c JOIN information_schema.TABLES t "
        "ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME "
        "WHERE c.TABLE_SCHEMA = %s")


def staff_logins(n: int) -> None:
    """n staff logins in the exporter role, as `ils-redact staff grant` leaves them."""
    role = ident(f"{PREFIX}exporter")
    with m.connect(BENCH.dsn_for(""), autocommit=True) as root:
        for i in range(n):
            who = account(f"{PREFIX}staff{i}", "%")
            root.execute(f"CREATE USER {who} IDENTIFIED BY 'bench-pw-{i}'")
            root.execute(f"GRANT {role} TO {who}")
            root.execute(f"SET DEFAULT ROLE {role} FOR {who}")


def rotate(fns: dict[str, object], rounds: int) -> dict[str, list[float]]:
    """Each function once per round, the order rotated every round."""
    names = list(fns)
    out: dict[str, list[float]] = {k: [] for k in names}
    for i in range(rounds):
        order = names[i % len(names):] + names[:i % len(names)]
        for k in order:
            t = time.perf_counter()
            fns[k]()  # type: ignore[operator]
            out[k].append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patrons", type=int, default=100_000)
    ap.add_argument("--circulations", type=int, default=100_000)
    ap.add_argument("--logins", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--keep", action="store_true", help="keep (and reuse) the database")
    args = ap.parse_args()
    rl = BENCH.rules()
    with m.connect(BENCH.dsn_for(""), autocommit=True) as root:
        version = m.connection.server_version(root)
        if args.keep and BENCH.rows(root, "borrowers") == args.patrons:
            BENCH.drop_layer(root)
        else:
            BENCH.drop_everything(root)
            log(f"building {DB}: {args.patrons:,} patrons ...")
            log(f"built in {BENCH.build(args.patrons, args.circulations, ANALYZE):.0f} s")
    try:
        with m.connect(BENCH.dsn_for(DB)) as c:
            m.install(c, rl, reports=all_reports)
        staff_logins(args.logins)
        conn = m.connect(BENCH.dsn_for(DB))
        bare_conn = m.connect(BENCH.dsn_for(DB), autocommit=True)
        timings: list[dict[str, float]] = []
        reports = []

        def run_verify() -> None:
            r = verify(conn, rl)
            assert r.exit_code == 0, [str(f) for f in r.findings][:5]
            timings.append(r.timings)
            reports.append(r)

        def run_bare() -> None:
            bare_conn.execute(BARE, (DB,)).fetchall()

        def run_catalog() -> None:
            m.read_catalog(bare_conn)

        log(f"verify, bare catalog query, read_catalog: {args.rounds} rounds")
        for f in (run_verify, run_bare, run_catalog):  # warm up
            f()
        t = rotate({"verify": run_verify, "bare": run_bare, "catalog": run_catalog},
                   args.rounds)
        log("exhaustive verify")
        ex = []
        for _ in range(max(2, args.rounds // 3)):
            s = time.perf_counter()
            r = verify(conn, rl, exhaustive=True)
            ex.append(time.perf_counter() - s)
            assert r.exit_code == 0
        log("console script")
        with tempfile.TemporaryDirectory() as tmp:
            rules_path = Path(tmp) / "koha_rules.yaml"
            rules_path.write_text(get_adapter("koha").preset_path.read_text(encoding="utf-8")
                                  .replace("role_prefix: ils_redact_", f"role_prefix: {PREFIX}",
                                           1), encoding="utf-8")
            exe = Path(sys.executable).parent / "ils-redact"
            cli = []
            for _ in range(3):
                s = time.perf_counter()
                res = subprocess.run([str(exe), "--dsn", BENCH.dsn_for(DB),
                                      "--rules", str(rules_path),
                                      "--format", "json", "verify"], capture_output=True,
                                     text=True, check=False)
                cli.append(time.perf_counter() - s)
                assert res.returncode == 0, res.stderr
                data = json.loads(res.stdout)
        conn.close()
        bare_conn.close()
    finally:
        with m.connect(BENCH.dsn_for(""), autocommit=True) as root:
            (BENCH.drop_layer if args.keep else BENCH.drop_everything)(root)
    last = reports[-1]
    checks = len(last.checks)
    probes = sum(int(c.detail.split("; ")[1].split()[0]) for c in last.checks
                 if c.id.endswith("/functions"))
    vb, bb, cb = median_ms(t["verify"]), median_ms(t["bare"]), median_ms(t["catalog"])
    rows_out = [("measure", "median ms", "vs bare query", "vs read_catalog"),
                ("verify (library)", f"{vb:.0f}", f"{vb / bb:.1f}x", f"{vb / cb:.1f}x"),
                ("verify --exhaustive", f"{median_ms(ex):.0f}", f"{median_ms(ex) / bb:.1f}x",
                 f"{median_ms(ex) / cb:.1f}x"),
                ("console script, end to end", f"{median_ms(cli):.0f}",
                 f"{median_ms(cli) / bb:.1f}x", f"{median_ms(cli) / cb:.1f}x"),
                ("bare catalog query", f"{bb:.1f}", "1.0x", f"{bb / cb:.2f}x"),
                ("read_catalog", f"{cb:.1f}", f"{cb / bb:.1f}x", "1.0x")]
    parts = ("read", "catalog", "empirical", "hazard", "drift")
    split = ", ".join(f"{k} {statistics.median(x[k] for x in timings) * 1000:.0f}"
                      for k in parts)
    print(f"MariaDB {version}, {DB}: 293 Koha tables, {args.patrons:,} patrons, "
          f"{args.logins} staff logins; {args.rounds} rounds, rotated")
    print(table(rows_out))
    print(f"\nverify: {checks} checks, {probes} probes as the three roles; median ms per "
          f"part: {split}")
    print(f"console script reported {data['summary']['checks']} checks in "
          f"{data['seconds']} s")


if __name__ == "__main__":
    main()
