"""Hardening, on by default: TEMP and the row counters taken from PUBLIC, given back.

``hardening.revoke_public_temp``: a restricted login creates no temporary functions; the
roles that use the database keep TEMP.  ``hardening.revoke_public_counters``: the row
counters count rows fetched before a row policy drops them (threat model row 20), so a
login that may run SQL as the disclosure role recovers hidden values by binary search,
and a login with no role at all watches the ILS's activity.  Each attack is played as
the attacker would, on a real server; uninstall gives back exactly what was there.
"""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest
from psycopg import errors, sql

from ils_redact.backends import postgresql as pg
from ils_redact.backends.postgresql import staff
from ils_redact.backends.postgresql.counters import COUNTERS
from ils_redact.rules import load_rules
from ils_redact.stats import all_reports
from support import EgDb, create_role, dump_schema, run_cli, write_rules


def public_temp(db: EgDb) -> bool:
    return db.scalar(
        "SELECT d.datacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(d.datacl) x "
        "WHERE x.grantee = 0 AND x.privilege_type = 'TEMPORARY') FROM pg_database d "
        "WHERE d.datname = current_database()")


def can_create_temp(db: EgDb, user: str) -> bool:
    with db.connect(user) as conn:
        try:
            conn.execute("CREATE TEMP TABLE t_probe (a int)")
            return True
        except errors.InsufficientPrivilege:
            return False


def install(db: EgDb, rules=None):
    with db.connect(autocommit=False) as conn:
        return pg.install(conn, rules or db.rules, reports=all_reports)


def hardening_off(tmp: Path, db: EgDb):
    return load_rules(write_rules(tmp, db.prefix, lambda t: t.replace(
        "revoke_public_temp: true", "revoke_public_temp: false").replace(
        "revoke_public_counters: true", "revoke_public_counters: false")))


#: who holds what on the database and on every counter, as sets (what pg_dump compares)
ACLS = """
SELECT 'database', NULL, array_agg(x ORDER BY x)
FROM (SELECT (aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))))::text AS x
      FROM pg_database d WHERE d.datname = current_database()) s
UNION ALL
SELECT 'counter', k, (SELECT array_agg(x ORDER BY x) FROM (
           SELECT (aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))))::text x
           FROM pg_class c WHERE c.oid = CASE WHEN k NOT LIKE '%%(%%' THEN to_regclass(k) END
           UNION ALL
           SELECT (aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))))::text
           FROM pg_proc p WHERE p.oid = CASE WHEN k LIKE '%%(%%' THEN to_regprocedure(k) END
           ) s)
FROM unnest(%s::text[]) k
ORDER BY 1, 2
"""


def acls(db: EgDb) -> list:
    with db.connect() as conn:
        return conn.execute(ACLS, ([c.key for c in COUNTERS],)).fetchall()


def test_default_install_takes_temp_from_public_and_gives_it_back_to_the_ils(
        eg_db: EgDb, tmp_path: Path) -> None:
    """TEMP back to the roles that use this database (the ILS's owner and application
    role), never to a login in a restricted role, nor to a login with nothing here."""
    install(eg_db, hardening_off(tmp_path, eg_db))
    member = create_role(eg_db.server, f"{eg_db.prefix}reader",
                         member_of=(eg_db.role("disclosure"),))
    stranger = create_role(eg_db.server, f"{eg_db.prefix}stranger")
    assert public_temp(eg_db) and can_create_temp(eg_db, member)  # PostgreSQL's default

    plan = install(eg_db)
    assert [(s.kind, s.target) for s in plan.changes() if "temp" in s.kind] == [
        ("revoke-temp", eg_db.name), ("grant-temp", eg_db.app),
        ("grant-temp", eg_db.owner)], plan.render()
    assert not public_temp(eg_db)
    assert not can_create_temp(eg_db, member) and not can_create_temp(eg_db, stranger)
    with eg_db.connect(member) as conn:
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("CREATE FUNCTION pg_temp.leak(text) RETURNS boolean LANGUAGE sql "
                         "AS 'SELECT true'")
    assert can_create_temp(eg_db, eg_db.app) and can_create_temp(eg_db, eg_db.owner)
    assert install(eg_db).empty  # idempotent

    plan = install(eg_db, hardening_off(tmp_path, eg_db))  # turned off: as before
    assert [(s.kind, s.target) for s in plan.changes() if "temp" in s.kind] == [
        ("grant-temp", eg_db.name), ("revoke-temp", eg_db.app),
        ("revoke-temp", eg_db.owner)], plan.render()
    assert public_temp(eg_db) and can_create_temp(eg_db, member)
    assert eg_db.scalar("SELECT count(*) FROM pg_database d, aclexplode(d.datacl) x "
                        "WHERE d.datname = current_database() AND x.grantee <> 0 "
                        "AND x.grantee <> d.datdba") == 0


def test_uninstall_gives_temp_and_the_counters_back_exactly(eg_db: EgDb) -> None:
    before, dump = acls(eg_db), dump_schema(eg_db)
    install(eg_db)
    assert not public_temp(eg_db)
    assert acls(eg_db) != before
    with eg_db.connect(autocommit=False) as conn:
        pg.uninstall(conn)
    assert acls(eg_db) == before
    assert dump_schema(eg_db) == dump


def test_unknown_temp_role_is_an_error(eg_db: EgDb, tmp_path: Path) -> None:
    rules = write_rules(tmp_path, eg_db.prefix, lambda t: t.replace(
        "  temp_roles: []", "  temp_roles: [no_such_role_anywhere]"))
    res = run_cli("--dsn", eg_db.dsn, "--rules", str(rules), "install")
    assert res.returncode == 2
    assert "hardening.temp_roles names no_such_role_anywhere, which does not exist" in res.stderr
    assert public_temp(eg_db)


# -- the row counters (threat model row 20) ------------------------------------------------

def _role_mode_clerk(db: EgDb, tmp: Path, scoped: tuple[int, ...]) -> str:
    """Install with ``disclosure.access: role`` and make a staff login a member of the
    disclosure role the supported way, with ``scoped`` patrons in its scope."""
    rules = load_rules(write_rules(tmp, db.prefix, lambda t: t.replace(
        "  access: function ", "  access: role     ")))
    assert rules.disclosure.access == "role"
    install(db, rules)
    clerk = f"{db.prefix}clerk"
    with db.connect(autocommit=False) as conn:
        staff.apply(conn, staff.plan_grant(conn, rules, clerk, "disclosure", create=True))
    with db.connect() as conn:
        for p in scoped:
            conn.execute("INSERT INTO ils_redact.scope (patron_id, grantee, expires_at) "
                         "VALUES (%s, %s, now() + interval '1 hour')", (p, clerk))
        conn.execute("ANALYZE actor.card")
    return clerk


def _lowest_barcode_by_counters(conn: psycopg.Connection) -> tuple[str, int]:
    """The attack: binary search over 14-digit barcodes for the lowest one on a card,
    reading how many rows the index scan fetched (before the row policy dropped them).
    Returns the barcode and the number of queries it took."""
    conn.execute("SET enable_seqscan = off")
    conn.execute("SET enable_bitmapscan = off")

    counter = ("SELECT idx_tup_fetch FROM pg_stat_xact_user_tables "
               "WHERE relid = 'actor.card'::regclass")

    def fetched_below(x: int) -> int:
        # the backend's pending counts outlive a transaction until they are flushed, and
        # planning a range query fetches the index's end tuples too: read the counter
        # around an EXPLAIN of the query (its planning alone) and around the query
        q = sql.SQL("SELECT count(*) FROM actor.card WHERE barcode < {}").format(
            sql.Literal(f"{x:014d}"))  # as typed: planned for this very value
        with conn.transaction(force_rollback=True):
            c0 = int(conn.execute(counter).fetchone()[0])
            conn.execute(sql.SQL("EXPLAIN ") + q)
            c1 = int(conn.execute(counter).fetchone()[0])
            conn.execute(q)
            c2 = int(conn.execute(counter).fetchone()[0])
        return (c2 - c1) - (c1 - c0)

    lo, hi, queries = 0, 10**14 - 1, 0
    while lo < hi:  # the largest x with nothing below it is the lowest barcode
        mid = (lo + hi + 1) // 2
        queries += 1
        if fetched_below(mid) == 0:
            lo = mid
        else:
            hi = mid - 1
    return f"{lo:014d}", queries


def test_row_counters_give_a_role_mode_login_no_hidden_barcode(
        eg_db: EgDb, tmp_path: Path) -> None:
    clerk = _role_mode_clerk(eg_db, tmp_path, scoped=(11, 12))
    with eg_db.connect() as conn:
        lowest, owner_patron = conn.execute(
            "SELECT barcode, usr FROM actor.card ORDER BY barcode LIMIT 1").fetchone()
    assert owner_patron not in (11, 12)
    with eg_db.connect(clerk) as conn:
        # the row policy holds: the clerk sees no card outside its scope
        assert conn.execute("SELECT count(*) FROM actor.card WHERE usr <> ALL "
                            "(ARRAY[11, 12])").fetchone()[0] == 0
        try:
            found, queries = _lowest_barcode_by_counters(conn)
        except errors.InsufficientPrivilege:
            found, queries = None, 0
        assert found is None, (f"recovered {found} in {queries} queries: the barcode of "
                               f"patron {owner_patron}, outside the scope (lowest {lowest})")
    with eg_db.connect(clerk) as conn:  # the functions behind the view, called directly
        for q in ("SELECT pg_stat_get_xact_tuples_fetched('actor.card'::regclass)",
                  "SELECT pg_stat_get_tuples_fetched('actor.card'::regclass)",
                  "SELECT idx_tup_fetch FROM pg_stat_user_tables",
                  "SELECT tup_fetched FROM pg_stat_database",
                  "SELECT idx_tup_fetch FROM pg_stat_user_indexes",
                  "SELECT heap_blks_hit FROM pg_statio_user_tables"):
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(q)


def _circulations_inserted(conn: psycopg.Connection) -> int:
    # by name: a login with no role has no USAGE on schema action, so no ::regclass
    return int(conn.execute("SELECT n_tup_ins FROM pg_stat_user_tables WHERE schemaname = "
                            "'action' AND relname = 'circulation'").fetchone()[0])


def test_a_login_with_no_role_cannot_watch_circulations(eg_db: EgDb) -> None:
    install(eg_db)
    watcher = create_role(eg_db.server, f"{eg_db.prefix}watcher")
    with eg_db.connect(watcher) as w:
        try:
            before = _circulations_inserted(w)
        except errors.InsufficientPrivilege:
            before = None
        with eg_db.connect(eg_db.app) as app:  # the ILS checks an item out
            app.execute("INSERT INTO action.circulation SELECT (jsonb_populate_record("
                        "NULL::action.circulation, to_jsonb(c) || '{\"id\": 999999}')).* "
                        "FROM action.circulation c WHERE c.id = 3")
        seen = None
        if before is not None:
            for _ in range(50):  # the ILS's backend flushes its counters as it ends
                w.execute("SELECT pg_stat_clear_snapshot()")
                seen = _circulations_inserted(w) - before
                if seen:
                    break
                time.sleep(0.1)
        assert before is None, f"a login with no role saw {seen} circulation(s) inserted"
    # the ILS owner (and monitoring, through pg_read_all_stats) keep them
    with eg_db.connect(eg_db.owner) as conn:
        assert _circulations_inserted(conn) >= 0
    assert eg_db.scalar("SELECT has_table_privilege('pg_read_all_stats', "
                        "'pg_catalog.pg_stat_user_tables', 'SELECT')")


def test_counters_back_to_public_is_drift(eg_db: EgDb) -> None:
    install(eg_db)
    with eg_db.connect() as conn:
        conn.execute("GRANT SELECT ON pg_catalog.pg_stat_xact_user_tables TO PUBLIC")
    plan = install(eg_db)
    assert [(s.kind, s.sql) for s in plan.changes()] == [
        ("revoke-counters", 'REVOKE SELECT ON TABLE "pg_catalog"."pg_stat_xact_user_tables" '
                            "FROM PUBLIC")]
    assert install(eg_db).empty


def test_staff_grant_takes_back_the_temp_install_gave(eg_db: EgDb, tmp_path: Path) -> None:
    """A login that used the database before install got TEMP back; once it acts in a
    layer role it creates no temporary functions there."""
    reporter = create_role(eg_db.server, f"{eg_db.prefix}reporter")
    with eg_db.connect() as conn:
        conn.execute(sql.SQL("GRANT SELECT ON actor.org_unit TO {}").format(
            sql.Identifier(reporter)))
    install(eg_db)
    assert can_create_temp(eg_db, reporter)
    res = run_cli("--dsn", eg_db.dsn, "--rules", str(write_rules(tmp_path, eg_db.prefix)),
                  "staff", "grant", reporter, "--role", "stats")
    assert res.returncode == 0, res.stderr
    assert not can_create_temp(eg_db, reporter)
    assert install(eg_db).empty
    with eg_db.connect(autocommit=False) as conn:
        pg.uninstall(conn)
    assert public_temp(eg_db) and can_create_temp(eg_db, reporter)
