"""Benchmarks of the PostgreSQL core and the disclosure export, side by side in one run.

    python bench/pg_core.py [--patrons 1000000] [--circulations 1000000] [--rounds 2000]

1. Scoped identity lookup of 5 patrons out of N as the disclosure role (row policy) vs the
   same rows by primary key as the ILS owner.                      target <= 1.2x
2. An ILS workload (patron lookup by barcode + a circulation insert, one transaction) as
   a non-owner ILS role, with the layer installed vs not.          target <= 2 % slower
3. Install and uninstall on the full 510-table Evergreen fixture.  target <= 5 s each
4. Export of a 10-patron request (rows, CSV rendering, hash, audit entry, commit) vs the
   same rows read by primary key as the owner.                     target <= 1.5x
"""

from __future__ import annotations

import argparse
import time

import psycopg
from _common import (
    PREFIX,
    bench_server,
    clone,
    drop_everything,
    evergreen_db,
    interleaved,
    log,
    make_login,
    median_ms,
    p,
    rules,
    table,
)
from psycopg import sql

from ils_redact.backends import postgresql as pg
from ils_redact.stats import all_reports

COLS = sql.SQL(", ").join(map(sql.Identifier, (
    "id", "family_name", "first_given_name", "second_given_name", "dob", "email", "day_phone",
    "evening_phone")))


def scoped_lookup(srv, db: str, rl, rounds: int, ids: list[int]) -> dict:
    reader = make_login(srv, f"{PREFIX}reader", rl.role("disclosure"))
    with psycopg.connect(srv.dsn_for(db), autocommit=True) as su:
        for i in ids:
            su.execute("INSERT INTO ils_redact.scope (patron_id, grantee, expires_at) "
                       "VALUES (%s, %s, now() + interval '1 day')", (i, reader))
    owner = su_owner(srv, db)
    with psycopg.connect(srv.dsn_for(db, user=reader), autocommit=True) as rc, \
            psycopg.connect(srv.dsn_for(db, user=owner), autocommit=True) as oc:
        q_reader = sql.SQL("SELECT {} FROM actor.usr").format(COLS)  # the row policy scopes it
        q_owner = sql.SQL("SELECT {} FROM actor.usr WHERE id = ANY (%s)").format(COLS)
        plan = "\n".join(r[0] for r in rc.execute(sql.SQL("EXPLAIN ") + q_reader))
        assert len(rc.execute(q_reader).fetchall()) == len(ids)
        ta, tb = interleaved(lambda: rc.execute(q_reader, prepare=True).fetchall(),
                             lambda: oc.execute(q_owner, (ids,), prepare=True).fetchall(),
                             rounds=rounds)
    return {"disclosure": ta, "owner": tb, "plan": plan}


def su_owner(srv, db: str) -> str:
    with psycopg.connect(srv.dsn_for(db)) as c:
        return c.execute("SELECT pg_get_userbyid(relowner) FROM pg_class "
                         "WHERE oid = 'actor.usr'::regclass").fetchone()[0]


def ils_workload(srv, on: str, off: str, app: str, rounds: int) -> dict:
    """The ILS's own work, as its non-owner role.  Both arms commit asynchronously: the WAL
    flush is the same on both sides and only adds its variance (several ms per commit on
    this disk) to what is measured, the layer's cost on the ILS's queries."""
    def session(db: str):
        conn = psycopg.connect(srv.dsn_for(db, user=app))
        conn.execute("SET synchronous_commit = off")
        barcodes = [r[0] for r in conn.execute(
            "SELECT barcode FROM actor.card WHERE active ORDER BY id LIMIT 500")]
        template = conn.execute("SELECT * FROM action.circulation ORDER BY id LIMIT 1")
        cols = [d.name for d in template.description]
        row = list(template.fetchone())
        next_id = conn.execute("SELECT max(id) + 1 FROM money.billable_xact").fetchone()[0]
        conn.commit()
        state = {"i": 0, "id": next_id + 10_000_000}
        ins = sql.SQL("INSERT INTO action.circulation ({}) VALUES ({})").format(
            sql.SQL(", ").join(map(sql.Identifier, cols)),
            sql.SQL(", ").join(sql.Placeholder() * len(cols)))

        def txn() -> None:
            state["i"] += 1
            bc = barcodes[state["i"] % len(barcodes)]
            u = conn.execute("SELECT u.id, u.family_name, u.first_given_name, u.home_ou "
                             "FROM actor.card c JOIN actor.usr u ON u.id = c.usr "
                             "WHERE c.barcode = %s", (bc,), prepare=True).fetchone()
            state["id"] += 1
            vals = list(row)
            vals[cols.index("id")] = state["id"]
            vals[cols.index("usr")] = u[0]
            conn.execute(ins, vals, prepare=True)
            conn.commit()
        return conn, txn

    con_on, t_on = session(on)
    con_off, t_off = session(off)
    try:
        ta, tb = interleaved(t_on, t_off, rounds=rounds)
    finally:
        con_on.close()
        con_off.close()
    return {"installed": ta, "not installed": tb}


def install_cycle(srv, db: str, rl, repeats: int = 3) -> dict:
    out: dict[str, list[float]] = {"install": [], "uninstall": [], "catalog query": []}
    for _ in range(repeats):
        with pg.connect(srv.dsn_for(db)) as conn:
            t = time.perf_counter()
            conn.execute("SELECT count(*) FROM pg_attribute a JOIN pg_class c "
                         "ON c.oid = a.attrelid").fetchone()
            out["catalog query"].append(time.perf_counter() - t)
            t = time.perf_counter()
            plan = pg.install(conn, rl, reports=all_reports)
            out["install"].append(time.perf_counter() - t)
            assert not plan.empty
        with pg.connect(srv.dsn_for(db)) as conn:
            t = time.perf_counter()
            pg.uninstall(conn, discard_audit=True)
            out["uninstall"].append(time.perf_counter() - t)
    return out


def export_vs_owner(srv, db: str, rl, rounds: int, ids: list[int]) -> dict:
    from ils_redact.disclosure import export as export_mod
    from ils_redact.disclosure import requests as req

    clerk = make_login(srv, f"{PREFIX}clerk", rl.role("admin"), rl.role("exporter"))
    director = make_login(srv, f"{PREFIX}director", rl.role("admin"))
    import datetime as dt

    new = req.NewRequest(basis="emergency", agency="PD", officer_name="O", officer_badge="1",
                         case_number="c", emergency_reason="bench", patrons=ids,
                         expires_at=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2))
    new.columns = req.resolve_columns(rl, [], "emergency")
    with psycopg.connect(srv.dsn_for(db, user=clerk)) as c:
        found, unknown = req.resolve_patrons(c, ids, [])
        assert not unknown
        rid = req.create(c, new, found)
        c.commit()
    with psycopg.connect(srv.dsn_for(db, user=director)) as c:
        req.approve(c, rid)
        c.commit()
    owner = su_owner(srv, db)
    q_owner = [
        "SELECT id, card, prefix, first_given_name, second_given_name, family_name, suffix, "
        "pref_prefix, pref_first_given_name, pref_second_given_name, pref_family_name, "
        "pref_suffix, alias, email, day_phone, evening_phone, other_phone, mailing_address, "
        "billing_address, dob FROM actor.usr WHERE id = ANY (%s) ORDER BY id",
        "SELECT id, usr, barcode, active FROM actor.card WHERE usr = ANY (%s) ORDER BY usr, id",
        "SELECT id, usr, address_type, street1, street2, city, county, state, country, "
        "post_code FROM actor.usr_address WHERE usr = ANY (%s) ORDER BY usr, id"]
    with psycopg.connect(srv.dsn_for(db, user=clerk)) as cc, \
            psycopg.connect(srv.dsn_for(db, user=owner)) as oc:
        def do_export() -> None:
            export_mod.export(cc, rid, "csv")  # commits: the audit entry is durable

        def do_export_uncommitted() -> None:
            cc.execute("SELECT * FROM ils_redact.export(%s, 'csv')", (rid,),
                       prepare=True).fetchall()
            cc.rollback()  # the same work, audit write included, without the WAL flush

        def do_owner() -> None:
            for q in q_owner:
                oc.execute(q, (ids,), prepare=True).fetchall()
            oc.commit()
        ta, tb = interleaved(do_export, do_owner, rounds=rounds, warmup=10)
        tc, td = interleaved(do_export_uncommitted, do_owner, rounds=rounds, warmup=10)
    with psycopg.connect(srv.dsn_for(db)) as su:
        tf, _ = interleaved(commit_only(su), lambda: None, rounds=rounds, warmup=10)
    return {"export": ta, "owner": tb, "export_nocommit": tc, "owner2": td, "flush": tf}


def commit_only(conn):
    """A one-row durable write alone (a logged table, as the audit log is): what the WAL
    flush of a commit costs on this machine."""
    conn.execute("CREATE TABLE IF NOT EXISTS public.ilsbench_flush_probe (a int)")
    conn.commit()

    def go() -> None:
        conn.execute("INSERT INTO public.ilsbench_flush_probe VALUES (1)")
        conn.commit()
    return go


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patrons", type=int, default=1_000_000)
    ap.add_argument("--circulations", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=2000)
    args = ap.parse_args()
    rl = rules()
    with bench_server() as srv:
        version = srv.version
        drop_everything(srv)
        try:
            owner = f"{PREFIX}evergreen"
            tpl = evergreen_db(srv, f"{PREFIX}tpl", patrons=args.patrons,
                               circulations=args.circulations, owner=owner)
            app = make_login(srv, f"{PREFIX}app")
            with psycopg.connect(srv.dsn_for(tpl, user=owner), autocommit=True) as c:
                for (s,) in c.execute("SELECT nspname FROM pg_namespace WHERE nspowner = "
                                      "current_user::regrole").fetchall():
                    c.execute(sql.SQL("GRANT USAGE ON SCHEMA {0} TO {1}; GRANT ALL ON ALL "
                                      "TABLES IN SCHEMA {0} TO {1}").format(
                        sql.Identifier(s), sql.Identifier(app)))
            on, off = clone(srv, tpl, f"{PREFIX}on"), clone(srv, tpl, f"{PREFIX}off")
            for db in (on, off):
                with psycopg.connect(srv.dsn_for(db), autocommit=True) as c:
                    c.execute("VACUUM ANALYZE")
            with pg.connect(srv.dsn_for(on)) as conn:
                pg.install(conn, rl, reports=all_reports)
            step = max(1, args.patrons // 11)
            ids5 = [step * k for k in range(1, 6)]
            ids10 = [step * k + 1 for k in range(1, 11)]

            log("1/4 scoped lookup")
            s = scoped_lookup(srv, on, rl, args.rounds, ids5)
            log("2/4 ILS workload")
            w = ils_workload(srv, on, off, app, args.rounds)
            log("3/4 install/uninstall on the full fixture")
            small = evergreen_db(srv, f"{PREFIX}small", patrons=1000, circulations=5000,
                                 owner=owner)
            ic = install_cycle(srv, small, rules(f"{PREFIX}ic_"))
            log("4/4 export")
            e = export_vs_owner(srv, on, rl, max(200, args.rounds // 4), ids10)
        finally:
            drop_everything(srv)

    rows = [("benchmark", "measured", "baseline", "ratio", "target")]
    r1 = median_ms(s["disclosure"]) / median_ms(s["owner"])
    rows.append((f"scoped lookup, 5 of {args.patrons:,} patrons (median)",
                 f"{median_ms(s['disclosure']):.3f} ms", f"{median_ms(s['owner']):.3f} ms",
                 f"{r1:.2f}x", "<= 1.2x"))
    r2 = median_ms(w["installed"]) / median_ms(w["not installed"])
    rows.append(("ILS workload txn, installed vs not (median)",
                 f"{median_ms(w['installed']):.3f} ms", f"{median_ms(w['not installed']):.3f} ms",
                 f"{(r2 - 1) * 100:+.1f} %", "<= +2 %"))
    rows.append(("install, 510-table fixture (median of 3)", f"{median_ms(ic['install']):.0f} ms",
                 f"{median_ms(ic['catalog query']):.1f} ms catalog query",
                 f"{median_ms(ic['install']) / 1000:.2f} s", "<= 5 s"))
    rows.append(("uninstall, 510-table fixture (median of 3)",
                 f"{median_ms(ic['uninstall']):.0f} ms", "",
                 f"{median_ms(ic['uninstall']) / 1000:.2f} s", "<= 5 s"))
    r4 = median_ms(e["export"]) / median_ms(e["owner"])
    rows.append(("export 10 patrons incl. audit write, committed (median)",
                 f"{median_ms(e['export']):.3f} ms", f"{median_ms(e['owner']):.3f} ms",
                 f"{r4:.2f}x", "<= 1.5x"))
    r5 = median_ms(e["export_nocommit"]) / median_ms(e["owner2"])
    rows.append(("  same, audit write not flushed (rollback)",
                 f"{median_ms(e['export_nocommit']):.3f} ms",
                 f"{median_ms(e['owner2']):.3f} ms", f"{r5:.2f}x", ""))
    rows.append(("  one durable commit alone (WAL flush)", f"{median_ms(e['flush']):.3f} ms",
                 "", "", ""))
    print(f"PostgreSQL {version // 10000}, {args.patrons:,} patrons, "
          f"{args.circulations:,} circulations, {args.rounds} rounds")
    print(table(rows))
    print(f"p99: scoped lookup {p(s['disclosure'], .99):.3f} ms vs {p(s['owner'], .99):.3f} ms;"
          f" export {p(e['export'], .99):.3f} ms vs {p(e['owner'], .99):.3f} ms")
    print("scoped lookup plan:\n  " + s["plan"].replace("\n", "\n  "))


if __name__ == "__main__":
    main()
