"""The second adversarial review of the PostgreSQL layer (staff attackers), played as the
attacker played it: each test connects as the attacker's login and types what the review
typed.

* EXPLAIN ANALYZE in ``access: role`` counts and links hidden rows: not closable by grants;
  plan, install and verify say so, and function mode (the default) gives the disclosure
  and exporter logins no EXPLAIN on identity tables at all;
* a login that holds the audit chain's lock and overrides the idle guard froze every
  approval, export and revoke (and vetoed its own revocation): the layer ends a stale
  holder, and a revoke ends the grantee's sessions first;
* a REPEATABLE READ snapshot taken before a revoke kept reading (and could be imported
  by new sessions): the revoke ends the grantee's sessions;
* ``pg_locks`` showed a login with no role every checkout as it happened;
* the caller's ``standard_conforming_strings`` changed how the layer's SQL was read.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import psycopg
import psycopg.sql
import pytest
from psycopg import errors

from ils_redact.backends import postgresql as pg
from ils_redact.backends.postgresql import staff as pgstaff
from ils_redact.rules import load_rules
from ils_redact.stats import all_reports
from support import EgDb, run_cli, write_rules
from support.verify import verify_cli
from test_layer_hardening_pg import Staff


@pytest.fixture
def staff(eg_db: EgDb) -> Staff:
    with eg_db.connect(autocommit=False) as conn:
        pg.install(conn, eg_db.rules, reports=all_reports)
    return Staff(eg_db)


def _role_rules(tmp: Path, db: EgDb) -> Path:
    return write_rules(tmp, db.prefix, lambda t: t.replace("  access: function ",
                                                           "  access: role     "))


def _explain(conn: psycopg.Connection, query: str, params: tuple = ()) -> str:
    return "\n".join(r[0] for r in conn.execute(
        "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + query, params).fetchall())


# -- EXPLAIN ANALYZE: role mode's known limit ------------------------------------------------

def test_role_mode_explain_analyze_counts_hidden_rows_and_is_reported(
        eg_db: EgDb, tmp_path: Path) -> None:
    """The attack (role mode, a disclosure login with an EMPTY scope): with index and
    sequential scans off, the bitmap index scan's 'actual rows' is the exact number of
    hidden cards, and a BitmapOr tells whether a card number and a family name belong to
    one hidden patron.  No grant closes it: plan and install warn, verify reports it
    (H-EXPLAIN-ANALYZE, a warning), and the threat model's known limits say so."""
    rules_path = _role_rules(tmp_path, eg_db)
    rules = load_rules(rules_path)
    res = run_cli("--dsn", eg_db.dsn, "--rules", str(rules_path), "plan")
    assert res.returncode == 0, res.stderr
    assert "-- note: warning: disclosure.access: role" in res.stdout
    assert "EXPLAIN ANALYZE" in res.stdout
    res = run_cli("--dsn", eg_db.dsn, "--rules", str(rules_path), "install", "--quiet")
    assert res.returncode == 0, res.stderr
    assert "warning: disclosure.access: role" in res.stderr and "EXPLAIN ANALYZE" in res.stderr
    clerk = f"{eg_db.prefix}clerk"
    with eg_db.connect(autocommit=False) as conn:
        pgstaff.apply(conn, pgstaff.plan_grant(conn, rules, clerk, "disclosure", create=True))
    barcode = eg_db.scalar("SELECT barcode FROM actor.card ORDER BY id LIMIT 1")
    with eg_db.connect(clerk) as conn:
        assert conn.execute("SELECT count(*) FROM actor.card").fetchone()[0] == 0
        conn.execute("SET enable_indexscan = off")
        conn.execute("SET enable_seqscan = off")
        plan = _explain(conn, "SELECT 1 FROM actor.card WHERE barcode = %s OR id = -1",
                        (barcode,))
        # the same for a family name: the hidden patrons who bear it, exactly
        top = eg_db.scalar("SELECT family_name FROM actor.usr GROUP BY 1 "
                           "ORDER BY count(*) DESC, 1 LIMIT 1")
        n = eg_db.scalar("SELECT count(*) FROM actor.usr WHERE family_name = %s", (top,))
        named = _explain(conn, "SELECT 1 FROM actor.usr WHERE family_name = %s", (top,))
    assert re.search(rf"family_name\S* \(actual rows={n}(\.00)? "  # PG 18: 19.00
                     rf"|Rows Removed by Filter: {n}\b", named), named
    # the documented limit is real: a hidden card's barcode exists
    assert re.search(r"barcode\S* \(actual rows=1(\.00)? |Rows Removed by Filter: 1\b",
                     plan), plan
    run = verify_cli(eg_db, tmp_path, rules=rules_path)
    (f,) = run.findings("H-EXPLAIN-ANALYZE", f"role {eg_db.role('disclosure')}")
    assert f["severity"] == "warning" and clerk in f["why"], f
    assert run.returncode == 0, run.explain()  # visible, not a failure (docs/ci.md says why)
    assert verify_cli(eg_db, tmp_path, "--strict", rules=rules_path).returncode == 1


def test_function_mode_gives_disclosure_and_exporter_logins_no_explain(
        staff: Staff, tmp_path: Path) -> None:
    """The default mode: the exporter, and a staff login granted 'disclosure' (moved to
    the exporter role), cannot EXPLAIN a query on any identity table; verify reports no
    H-EXPLAIN-ANALYZE and plan warns of nothing."""
    db = staff.db
    clerk = f"{db.prefix}clerk"
    with db.connect(autocommit=False) as conn:
        pgstaff.apply(conn, pgstaff.plan_grant(conn, db.rules, clerk, "disclosure",
                                               create=True))
    staff.request(staff.exporter)
    staff.request(clerk)
    queries = ["SELECT 1 FROM actor.usr WHERE family_name = 'Okafor'",
               "SELECT 1 FROM actor.card WHERE id = 5 OR barcode = '20000000000005'",
               "SELECT 1 FROM actor.usr_address WHERE usr = 5",
               "SELECT 1 FROM actor.usr WHERE id = 5"]
    for login in (staff.exporter, clerk):
        with db.connect(login) as conn:
            conn.execute("SET enable_indexscan = off")
            conn.execute("SET enable_seqscan = off")
            for q in queries:
                with pytest.raises(errors.InsufficientPrivilege):
                    _explain(conn, q)
    run = verify_cli(db, tmp_path)
    assert not run.findings("H-EXPLAIN-ANALYZE"), run.findings("H-EXPLAIN-ANALYZE")
    assert run.check("hazard/explain")["findings"] == []
    res = run_cli("--dsn", db.dsn, "--rules", str(write_rules(tmp_path, db.prefix)), "plan")
    assert "EXPLAIN ANALYZE" not in res.stdout


# -- the audit chain's lock: a stale holder is ended, a revoke is not vetoed --------------

def _hold_audit_lock(staff: Staff, login: str, rid: int) -> psycopg.Connection:
    """The attack: take the audit chain's lock with a refusal, undo the layer's idle
    guard, and sit on it."""
    conn = psycopg.connect(staff.db.dsn_as(login), autocommit=True)
    conn.execute("BEGIN")
    conn.execute("SELECT ils_redact.log_refusal('export', %s, 'x')", (rid,))
    conn.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
    return conn


def _ended(conn: psycopg.Connection) -> bool:
    try:
        conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return True
    return False


def test_a_stale_holder_of_the_audit_lock_is_ended_and_named(staff: Staff) -> None:
    """An exporter holding the lock past 30 s froze every approval, export and refusal of
    everyone else ('the audit log is locked by ...' after 5 s).  Now the next writer ends
    that session, records it in its entry, and goes on."""
    db = staff.db
    rid = staff.request(staff.exporter)
    holder = _hold_audit_lock(staff, staff.exporter, rid)
    pid = holder.info.backend_pid
    try:
        with staff.connect(staff.director) as conn:  # a young holder: waited for, named
            t0 = time.monotonic()
            with pytest.raises(errors.LockNotAvailable, match=staff.exporter):
                conn.execute("SELECT ils_redact.log_refusal('export', %s, 'y')", (rid,))
            assert time.monotonic() - t0 < 15
        time.sleep(31)
        with staff.connect(staff.director) as conn:
            conn.execute("SELECT ils_redact.log_refusal('export', %s, 'z')", (rid,))
        assert _ended(holder)
    finally:
        holder.close()
    entry = staff.audit()[-1]
    assert entry[2] == staff.director and entry[3] == "export.refused"
    ended = entry[5]["audit_lock_holder_ended"]
    assert ended["pid"] == pid and ended["login"] == staff.exporter
    res = run_cli("--dsn", db.dsn, "audit", "verify")
    assert res.returncode == 0, res.stderr
    # the owner's membership is the install's: planned again when taken away
    owner = db.role("owner")
    assert db.scalar("SELECT pg_has_role(%s, 'pg_signal_backend', 'USAGE')", (owner,))
    with db.connect() as conn:
        conn.execute(f'REVOKE pg_signal_backend FROM "{owner}"')
    with db.connect(autocommit=False) as conn:
        plan = pg.install(conn, db.rules, reports=all_reports)
    assert ("grant-role", f"role {owner}") in {(s.kind, s.target) for s in plan.changes()}
    assert db.scalar("SELECT pg_has_role(%s, 'pg_signal_backend', 'USAGE')", (owner,))


def test_the_grantee_cannot_veto_its_own_revocation(staff: Staff) -> None:
    """The grantee held the audit lock; `request revoke` failed after 5 s and the request
    stayed approved (then the grantee exported in the same transaction).  The revoke now
    ends the grantee's sessions first."""
    db = staff.db
    rid = staff.request(staff.exporter)
    holder = _hold_audit_lock(staff, staff.exporter, rid)
    pid = holder.info.backend_pid
    try:
        res = run_cli("--dsn", db.dsn_as(staff.director), "request", "revoke", str(rid),
                      "--reason", "approved by mistake")
        assert res.returncode == 0, res.stderr
        assert _ended(holder)
    finally:
        holder.close()
    assert db.scalar("SELECT status FROM ils_redact.request WHERE id = %s", (rid,)) == "revoked"
    entry = staff.audit()[-1]
    assert entry[3] == "request.revoked"
    assert pid in entry[5]["grantee_sessions_ended"]["pids"]
    with staff.connect(staff.exporter) as conn:  # and then exports nothing
        assert conn.execute("SELECT document FROM ils_redact.export(%s, 'csv')",
                            (rid,)).fetchone()[0] is None


def test_revoke_ends_an_open_repeatable_read_snapshot(staff: Staff) -> None:
    """Role mode: a REPEATABLE READ transaction opened before the revoke kept reading the
    revoked patrons, and new sessions could import its snapshot.  The revoke ends the
    grantee's sessions: the transaction is gone, the snapshot cannot be imported."""
    db = staff.db
    with staff.connect() as conn:
        conn.execute("UPDATE ils_redact.setting SET value = '\"role\"' WHERE key = 'access'")
    rid = staff.request(staff.disclosure)
    reader = psycopg.connect(db.dsn_as(staff.disclosure), autocommit=True)
    try:
        reader.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        assert {r[0] for r in reader.execute("SELECT id FROM actor.usr")} == {11, 12}
        snap = reader.execute("SELECT pg_export_snapshot()").fetchone()[0]
        with staff.connect(staff.director) as conn:
            assert conn.execute("SELECT ils_redact.request_end(%s, 'revoked', 'mistake')",
                                (rid,)).fetchone()[0] is None
        with pytest.raises(psycopg.OperationalError):
            reader.execute("SELECT id, family_name FROM actor.usr").fetchall()
    finally:
        reader.close()
    with psycopg.connect(db.dsn_as(staff.disclosure), autocommit=True) as late:
        late.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        with pytest.raises(psycopg.Error):
            late.execute(psycopg.sql.SQL("SET TRANSACTION SNAPSHOT {}").format(
                psycopg.sql.Literal(snap)))
    with staff.connect(staff.disclosure) as conn:
        assert conn.execute("SELECT count(*) FROM actor.usr").fetchone()[0] == 0
    assert staff.audit()[-1][5]["grantee_sessions_ended"]["pids"]


# -- pg_locks: live activity for a login with no role -------------------------------------

def test_a_login_with_no_role_cannot_watch_checkouts_through_pg_locks(staff: Staff) -> None:
    """The attack: poll pg_locks joined to pg_class for RowExclusiveLock on
    action.circulation while the ILS checks items out (10 of 10 seen, with the pid
    pg_stat_activity names).  pg_locks and pg_lock_status() are taken from PUBLIC with
    the row counters and given back as they are; the layer's own use of pg_locks (naming
    the holder of the audit log's lock) still works."""
    db = staff.db
    watch = ("SELECT l.pid FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
             "WHERE c.relname = 'circulation' AND l.mode = 'RowExclusiveLock'")
    with db.connect(db.app, autocommit=False) as ils:  # a checkout in progress
        ils.execute("INSERT INTO action.circulation SELECT (jsonb_populate_record("
                    "NULL::action.circulation, to_jsonb(c) || '{\"id\": 999999}')).* "
                    "FROM action.circulation c WHERE c.id = 3")
        for login in (staff.stranger, staff.disclosure, staff.exporter, staff.stats):
            with db.connect(login) as w:
                with pytest.raises(errors.InsufficientPrivilege):
                    w.execute(watch).fetchall()
                with pytest.raises(errors.InsufficientPrivilege):
                    w.execute("SELECT count(*) FROM pg_lock_status() l").fetchall()
        with db.connect(db.owner) as conn:  # the ILS owner and monitoring keep it
            assert conn.execute(watch).fetchall() == [(ils.info.backend_pid,)]
        ils.rollback()
    assert db.scalar("SELECT has_table_privilege('pg_read_all_stats', 'pg_catalog.pg_locks', "
                     "'SELECT')")
    rid = staff.request(staff.exporter)
    holder = _hold_audit_lock(staff, staff.exporter, rid)
    try:
        with staff.connect(staff.director) as conn:
            with pytest.raises(errors.LockNotAvailable, match=staff.exporter):
                conn.execute("SELECT ils_redact.log_refusal('export', %s, 'y')", (rid,))
    finally:
        holder.close()


# -- the caller's parser settings ------------------------------------------------------------

def test_the_callers_string_and_date_settings_do_not_change_the_export(staff: Staff) -> None:
    """The attack: `SET standard_conforming_strings = off` made the layer read
    regexp_replace(c, '^.*\\.', '') as '^.*.': every field name of the JSON export became
    "" (and the audit manifest's sha256 covered that document).  DateStyle would rewrite
    every date the export carries."""
    rid = staff.request(staff.exporter)
    with staff.connect(staff.exporter) as conn:
        clean = conn.execute("SELECT document FROM ils_redact.export(%s, 'json')",
                             (rid,)).fetchone()[0]
        clean_csv = conn.execute("SELECT document FROM ils_redact.export(%s, 'csv')",
                                 (rid,)).fetchone()[0]
        conn.execute("SET standard_conforming_strings = off")
        conn.execute("SET escape_string_warning = off")
        conn.execute("SET DateStyle = 'SQL, DMY'")
        conn.execute("SET IntervalStyle = 'sql_standard'")
        conn.execute("SET extra_float_digits = 3")
        conn.execute("SET bytea_output = 'escape'")
        mangled = conn.execute("SELECT document FROM ils_redact.export(%s, 'json')",
                               (rid,)).fetchone()[0]
        mangled_csv = conn.execute("SELECT document FROM ils_redact.export(%s, 'csv')",
                                   (rid,)).fetchone()[0]
    assert '"": ' not in mangled and "family_name" in mangled, mangled[:400]
    assert mangled == clean and mangled_csv == clean_csv


# -- the third review -------------------------------------------------------------------

def test_a_request_cannot_be_recorded_for_a_login_outside_the_staff_roles(
        staff: Staff) -> None:
    """The attack: two admins record and approve a request "for" the ILS application's
    login (or the ILS owner), and a revoke then ends that login's sessions (the layer's
    owner may end sessions).  A grantee must be a login in the exporter or disclosure role
    and neither the ILS owner nor a member of it: checked when recorded and when approved,
    and a revoke ends no session of any other login."""
    db = staff.db
    app_dsn = db.server.dsn_for(db.name, user=db.app)
    with psycopg.connect(app_dsn, autocommit=True) as app:  # the application, working
        for victim in (db.app, db.owner, staff.stranger, staff.stats, staff.director):
            with pytest.raises(errors.InsufficientPrivilege,
                               match="cannot be its grantee"):
                staff.request(victim, approve=False)
        # approved for the exporter, who then becomes a member of the ILS owner: the
        # approval is refused, and the revoke of a request approved earlier ends none of
        # the application's sessions
        early = staff.request(staff.exporter)
        rid = staff.request(staff.exporter, approve=False)
        with staff.connect() as conn:
            conn.execute(psycopg.sql.SQL("GRANT {} TO {}").format(
                psycopg.sql.Identifier(db.owner), psycopg.sql.Identifier(staff.exporter)))
        try:
            with staff.connect(staff.director) as conn, pytest.raises(
                    errors.InsufficientPrivilege, match="ILS owner"):
                conn.execute("SELECT ils_redact.request_approve(%s)", (rid,))
            with staff.connect(staff.director) as conn:
                assert conn.execute("SELECT ils_redact.request_end(%s, 'revoked', 'x')",
                                    (early,)).fetchone()[0] is None
        finally:
            with staff.connect() as conn:
                conn.execute(psycopg.sql.SQL("REVOKE {} FROM {}").format(
                    psycopg.sql.Identifier(db.owner), psycopg.sql.Identifier(staff.exporter)))
        assert app.execute("SELECT 1").fetchone() == (1,)  # still connected
    detail = [e[5] for e in staff.audit() if e[3] == "request.revoked"][-1]
    assert detail["grantee_sessions_ended"]["pids"] == [], detail


def test_the_audit_channel_is_not_readable_by_other_logins(staff: Staff) -> None:
    """Each entry notifies a channel (so no transaction holding one can be prepared, see
    tests/replication/test_prepared_pg.py); its name is the install's secret, so no login
    can LISTEN for it and watch when staff look patrons up."""
    for login in (staff.stranger, staff.admin, staff.exporter, staff.disclosure, staff.stats):
        with staff.connect(login) as conn, pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT name FROM ils_redact.audit_channel")
    with staff.connect() as conn:
        name = conn.execute("SELECT name FROM ils_redact.audit_channel").fetchone()[0]
    assert re.fullmatch(r"ils_redact_[0-9a-f]{32}", name)
