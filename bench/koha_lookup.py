"""Benchmark of the Koha (MariaDB) row scope, side by side in one run.

    python bench/koha_lookup.py [--patrons 1000000] [--rounds 3000] [--keep]

1. Scoped identity lookup of 5 patrons out of N, as a login in the disclosure role, vs
   the same rows and columns by primary key as the Koha application account (ALL on the
   Koha database), two ways:
   a. through the layer's lookup procedure (``CALL lookup_borrowers(NULL)``), the path
      for a client that looks patrons up;                          target <= 1.5x
   b. through the definer view (``SELECT ... FROM ils_redact_<db>.borrowers``), the path
      for ad-hoc SQL and the query gate, whose per-column guards and scope derived table
      are what keep the caller's own conditions off other patrons' rows (see
      backends/mariadb/generated.py).                              reported
2. The logged export of a 5-patron request (checks, rows through the view, CSV, SHA2,
   audit entry, commit) vs the same owner read.                     reported, no target
3. Install and uninstall on the N-patron database.                  reported

The server: ``ILS_REDACT_BENCH_MARIADB_DSN`` (an administrator DSN) if set, else
``mysql://root@127.0.0.1:3306/``.  The two sides alternate (A, B, A, B, ...), so a noisy
neighbour slows both alike; nothing here asserts a time.
"""

# ruff: noqa: S608 - benchmark SQL: names quoted with sqltext.ident/account

from __future__ import annotations

import argparse
import datetime as dt
import time

from _common import interleaved, log, median_ms, p, table
from _koha import PASSWORD, KohaBench

from ils_redact.backends import mariadb as m
from ils_redact.backends.mariadb import staff
from ils_redact.backends.mariadb.sqltext import account, ident, string
from ils_redact.disclosure import export as export_mod
from ils_redact.disclosure import requests as req
from ils_redact.stats import all_reports

BENCH = KohaBench(prefix="ilsbench_koha_", db="ilsbench_koha")
DB, PREFIX = BENCH.db, BENCH.prefix


def login(root, name: str) -> str:
    user = f"{PREFIX}{name}"
    root.execute(f"CREATE USER IF NOT EXISTS {account(user, '%')} IDENTIFIED BY "
                 f"{string(PASSWORD)}")
    return user


def grant(root, rl, user: str, kind: str) -> None:
    plan = staff.plan_grant(root, rl, user, kind)
    root.rollback()
    staff.apply(root, plan)


def scoped_lookup(rl, ids: list[int], rounds: int) -> dict:
    layer = BENCH.layer
    cols = ", ".join(ident(c) for c in rl.identity[0].columns)
    with m.connect(BENCH.dsn_for(DB), autocommit=True) as root:
        reader = login(root, "reader")
        app = login(root, "app")
        root.execute(f"GRANT ALL ON {ident(DB)}.* TO {account(app, '%')}")
        grant(root, rl, reader, "disclosure")
        root.autocommit(True)
        # the reader's account ('reader'@'%'), for a request that covers every field
        root.execute(f"INSERT INTO {ident(layer)}.scope (patron_id, grantee, grantee_user, "
                     "grantee_host, all_fields, expires_at, created_by, created_at) "
                     "SELECT p, %s, %s, '%%', 1, UTC_TIMESTAMP() + INTERVAL 1 DAY, 'bench', "
                     "UTC_TIMESTAMP() FROM JSON_TABLE(%s, '$[*]' COLUMNS (p INT PATH '$')) j",
                     (f"{reader}@%", reader, str(ids)))
        plan = "\n".join(" | ".join(str(x) for x in r) for r in root.execute(
            f"EXPLAIN SELECT {cols} FROM {ident(layer)}.borrowers").fetchall())
    q_reader = f"SELECT {cols} FROM {ident(layer)}.borrowers"
    q_call = f"CALL {ident(layer)}.lookup_borrowers(NULL)"
    q_owner = (f"SELECT {cols} FROM {ident(DB)}.borrowers WHERE borrowernumber IN "
               f"({', '.join(map(str, ids))})")
    rc = m.connect(BENCH.dsn_for(DB, reader), autocommit=True)
    oc = m.connect(BENCH.dsn_for(DB, app), autocommit=True)
    try:
        owner = sorted(oc.rows(q_owner))
        assert [r[0] for r in owner] == sorted(ids)
        assert sorted(rc.rows(q_reader)) == owner
        assert sorted(rc.rows(q_call)) == owner

        tc, tb1 = interleaved(lambda: rc.rows(q_call), lambda: oc.rows(q_owner),
                              rounds=rounds, warmup=50)
        ta, tb2 = interleaved(lambda: rc.rows(q_reader), lambda: oc.rows(q_owner),
                              rounds=rounds, warmup=50)
    finally:
        rc.close()
        oc.close()
    return {"procedure": tc, "owner (procedure run)": tb1, "view": ta,
            "owner (view run)": tb2, "plan": plan}


def export_vs_owner(ids: list[int], rounds: int) -> dict:
    rl = BENCH.rules("function")
    with m.connect(BENCH.dsn_for(DB), autocommit=True) as root:
        clerk, director = login(root, "clerk"), login(root, "director")
        for u, kinds in ((clerk, ("admin", "disclosure")), (director, ("admin",))):
            for k in kinds:
                grant(root, rl, u, k)
        app = f"{PREFIX}app"
    new = req.NewRequest(basis="emergency", agency="PD", officer_name="O", officer_badge="1",
                         case_number="c", emergency_reason="bench", patrons=ids,
                         expires_at=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2))
    new.columns = req.resolve_columns(rl, [], "emergency")
    with m.connect(BENCH.dsn_for(DB, clerk)) as c:
        found, _ = req.resolve_patrons(c, ids, [])
        rid = req.create(c, new, found)
        c.commit()
    with m.connect(BENCH.dsn_for(DB, director)) as c:
        req.approve(c, rid)
        c.commit()
    cols = ", ".join(ident(c) for c in rl.identity[0].columns)
    q_owner = (f"SELECT {cols} FROM {ident(DB)}.borrowers WHERE borrowernumber IN "
               f"({', '.join(map(str, ids))}) ORDER BY borrowernumber")
    cc = m.connect(BENCH.dsn_for(DB, clerk))
    oc = m.connect(BENCH.dsn_for(DB, app))
    try:
        def do_export() -> None:
            export_mod.export(cc, rid, "csv")

        def do_owner() -> None:
            cur = oc.cursor()
            cur.execute(q_owner)
            cur.fetchall()
            oc.commit()

        ta, tb = interleaved(do_export, do_owner, rounds=rounds, warmup=10)
    finally:
        cc.close()
        oc.close()
    return {"export (csv, logged)": ta, "owner read": tb}


def install_cycle(rl, repeats: int = 2) -> dict:
    out: dict[str, list[float]] = {"install": [], "uninstall": []}
    for _ in range(repeats):
        with m.connect(BENCH.dsn_for(DB)) as c:
            t = time.perf_counter()
            m.install(c, rl, reports=all_reports)
            out["install"].append(time.perf_counter() - t)
        with m.connect(BENCH.dsn_for(DB)) as c:
            t = time.perf_counter()
            m.uninstall(c, discard_audit=True)
            out["uninstall"].append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patrons", type=int, default=1_000_000)
    ap.add_argument("--circulations", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3000)
    ap.add_argument("--keep", action="store_true",
                    help="keep (and reuse) the benchmark database")
    args = ap.parse_args()
    rl = BENCH.rules("role")
    with m.connect(BENCH.dsn_for(""), autocommit=True) as root:
        version = m.connection.server_version(root)
        if not (args.keep and BENCH.rows(root, "borrowers") == args.patrons):
            BENCH.drop_everything(root)
            log(f"building {DB}: {args.patrons:,} patrons ...")
            log(f"built in {BENCH.build(args.patrons, args.circulations, ('borrowers',)):.0f} s")
        else:
            BENCH.drop_layer(root)
    try:
        log("3/3 install and uninstall")
        cyc = install_cycle(rl)
        with m.connect(BENCH.dsn_for(DB)) as c:
            m.install(c, rl, reports=all_reports)
        step = max(1, args.patrons // 6)
        ids = [step * k for k in range(1, 6)]
        log("1/3 scoped lookup")
        s = scoped_lookup(rl, ids, args.rounds)
        log("2/3 export")
        e = export_vs_owner([i + 1 for i in ids], max(200, args.rounds // 10))
    finally:
        if not args.keep:
            with m.connect(BENCH.dsn_for(""), autocommit=True) as root:
                BENCH.drop_everything(root)
    c, cb = s["procedure"], s["owner (procedure run)"]
    a, b = s["view"], s["owner (view run)"]
    ea, eb = e["export (csv, logged)"], e["owner read"]
    rows_out = [("measure", "median ms", "p95 ms", "ratio (median)"),
                ("lookup via the procedure", f"{median_ms(c):.3f}", f"{p(c, .95):.3f}",
                 f"{median_ms(c) / median_ms(cb):.2f}x"),
                ("lookup by primary key", f"{median_ms(cb):.3f}", f"{p(cb, .95):.3f}",
                 "1.00x"),
                ("lookup via the definer view", f"{median_ms(a):.3f}", f"{p(a, .95):.3f}",
                 f"{median_ms(a) / median_ms(b):.2f}x"),
                ("lookup by primary key", f"{median_ms(b):.3f}", f"{p(b, .95):.3f}", "1.00x"),
                ("export of 5 patrons", f"{median_ms(ea):.3f}", f"{p(ea, .95):.3f}",
                 f"{median_ms(ea) / median_ms(eb):.2f}x"),
                ("owner read of the same", f"{median_ms(eb):.3f}", f"{p(eb, .95):.3f}",
                 "1.00x"),
                ("install", f"{1000 * min(cyc['install']):.0f}", "", ""),
                ("uninstall", f"{1000 * min(cyc['uninstall']):.0f}", "", "")]
    print(f"MariaDB {version}, {args.patrons:,} patrons, {args.rounds} rounds interleaved")
    print(table(rows_out))
    print(f"\nscoped lookup through the procedure: {median_ms(c) / median_ms(cb):.2f}x the "
          "primary-key read (target <= 1.5x); through the view (ad-hoc SQL): "
          f"{median_ms(a) / median_ms(b):.2f}x")
    print("plan of the view (as root):\n" + s["plan"])


if __name__ == "__main__":
    main()
