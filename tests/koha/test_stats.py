"""The statistics role on Koha/MariaDB, proven as that role on a real server.

* it reads no Koha table, no layer table, and may call the report procedures and
  ``stats_reports`` only (not the suppression routines);
* the report definer (``stats_owner``, a role nobody is granted) holds column grants on
  exactly what the reports count;
* every released entry of every standard report is checked against the raw data,
  counted here by brute force as root from SQL written by hand: the count is right and
  it covers at least k distinct patrons;
* no suppressed entry can be recomputed from the released ones: the linear system of
  each page is solved with exact fractions;
* the tiny branch gets suppressed cells, not counts; overlapping periods release
  identical pages; the caller's session time zone moves no boundary;
* nothing is left behind: no work rows, no warnings, the caller's time zone restored,
  and no lock on a Koha row while the report runs;
* custom reports: a patron key in the grouping, or a patron column that is not one, is
  refused at install with the rules file's line; a valid one runs with the same
  suppression and is dropped with its grants when it leaves the rules;
* ``stats_suppress`` on random tables, and uninstall still exact.
"""

# ruff: noqa: S608 - test SQL: names quoted with sqltext.ident, constant fragments only

from __future__ import annotations

import datetime as dt
import json
import random
import re
import threading
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from ils_redact.adapters.koha import fixture
from ils_redact.backends.mariadb import stats_publish, stats_run
from ils_redact.backends.mariadb.introspect import read_catalog as m_read_catalog
from ils_redact.backends.mariadb.sqltext import ident
from ils_redact.errors import IlsRedactError, Refused
from ils_redact.rules import load_rules
from ils_redact.sdc.publish import month_range
from ils_redact.stats import all_reports
from support.koha import KohaDb, MariaServer, run_cli, snapshot, write_koha_rules
from support.stats_oracle import Key, age_band, determined, equations, released

K = 11
TINY = "Tiny Township"
MONTH = "DATE_FORMAT({}, '%Y-%m-01')"
BRANCH = "COALESCE(b.branchname, {}, '(none)')"
CHECKOUTS = ("(SELECT issuedate, branchcode, itemnumber, borrowernumber FROM issues "
             "UNION ALL SELECT issuedate, branchcode, itemnumber, borrowernumber "
             "FROM old_issues)")

#: report -> [(measure, SQL returning (month, row label, column label, patron) per
#: record)], written by hand from the Koha schema, independently of the generator
RAW: dict[str, list[tuple[str, str]]] = {
    "circ_by_branch_itemtype": [("checkouts", f"""
        SELECT {MONTH.format('x.issuedate')}, {BRANCH.format('x.branchcode')},
               COALESCE(it.description, i.itype, bi.itemtype, '(none)'), x.borrowernumber
        FROM {CHECKOUTS} x LEFT JOIN items i ON i.itemnumber = x.itemnumber
        LEFT JOIN biblioitems bi ON bi.biblioitemnumber = i.biblioitemnumber
        LEFT JOIN itemtypes it ON it.itemtype = COALESCE(i.itype, bi.itemtype)
        LEFT JOIN branches b ON b.branchcode = x.branchcode""")],
    "circ_by_category": [("checkouts", f"""
        SELECT {MONTH.format('x.issuedate')},
               COALESCE(cat.description, u.categorycode, '(none)'), NULL, x.borrowernumber
        FROM {CHECKOUTS} x LEFT JOIN borrowers u ON u.borrowernumber = x.borrowernumber
        LEFT JOIN categories cat ON cat.categorycode = u.categorycode""")],
    "holds_by_pickup_branch": [
        ("holds placed", f"""
        SELECT {MONTH.format('h.reservedate')}, {BRANCH.format('h.branchcode')}, NULL,
               h.borrowernumber
        FROM (SELECT reservedate, branchcode, borrowernumber FROM reserves UNION ALL
              SELECT reservedate, branchcode, borrowernumber FROM old_reserves) h
        LEFT JOIN branches b ON b.branchcode = h.branchcode"""),
        ("holds filled", f"""
        SELECT {MONTH.format('h.timestamp')}, {BRANCH.format('h.branchcode')}, NULL,
               h.borrowernumber
        FROM old_reserves h LEFT JOIN branches b ON b.branchcode = h.branchcode
        WHERE h.found = 'F'""")],
    "registrations_by_branch": [("registrations", f"""
        SELECT {MONTH.format('u.dateenrolled')}, {BRANCH.format('u.branchcode')}, NULL,
               u.borrowernumber
        FROM borrowers u LEFT JOIN branches b ON b.branchcode = u.branchcode""")],
    # the age band is computed in Python below, from the date of birth
    "circ_by_age_band": [("checkouts", f"""
        SELECT {MONTH.format('x.issuedate')}, DATE(x.issuedate), u.dateofbirth,
               x.borrowernumber
        FROM {CHECKOUTS} x LEFT JOIN borrowers u ON u.borrowernumber = x.borrowernumber""")],
    "transactions_by_branch_type": [("transactions", f"""
        SELECT {MONTH.format('s.datetime')}, {BRANCH.format('s.branch')},
               COALESCE(s.type, '(none)'), s.borrowernumber
        FROM statistics s LEFT JOIN branches b ON b.branchcode = s.branch""")],
}
REPORTS = sorted(RAW)


def _month(value: object) -> dt.date | None:
    if value is None:
        return None
    return dt.date.fromisoformat(str(value)[:10])


def truth(db: KohaDb, report: str, lo: dt.date | None = None, hi: dt.date | None = None
          ) -> dict[tuple, dict[Key, tuple[int, set[int]]]]:
    """(period, measure) -> entry -> (count, patrons), for every nonzero entry a page
    has (cells, and the totals the page shows)."""
    this_month = dt.datetime.now(dt.timezone.utc).date().replace(day=1)
    hi = min(hi or this_month, this_month)
    pages: dict[tuple, dict[tuple, list]] = defaultdict(dict)
    with db.connect() as conn:
        conn.execute(f"USE {ident(db.name)}")
        conn.execute("SET time_zone = '+00:00'")
        for measure, q in RAW[report]:
            for month, r, c, patron in conn.execute(q).fetchall():
                month = _month(month)
                if month is None or month < dt.date(1000, 1, 1) or month >= hi or (
                        lo and month < lo):
                    continue
                if report == "circ_by_age_band":
                    r, c = age_band(r, c), None
                cell = pages[(month, measure)].setdefault((r, c), [0, set()])
                cell[0] += 1
                if patron is not None:
                    cell[1].add(patron)
    out: dict[tuple, dict[Key, tuple[int, set[int]]]] = {}
    for page, cells in pages.items():
        rows = {r for r, _ in cells}
        cols = {c for _, c in cells}
        entries: dict[Key, tuple[int, set[int]]] = {
            ("cell", r, c): (v, p) for (r, c), (v, p) in cells.items()}

        def add(key: Key, members: list, entries: dict = entries) -> None:
            entries[key] = (sum(v for v, _ in members), set().union(*(p for _, p in members)))

        if len(rows) > 1 and len(cols) > 1:
            for r in rows:
                add(("row_total", r, None), [x for (rr, _), x in cells.items() if rr == r])
            for c in cols:
                add(("col_total", None, c), [x for (_, cc), x in cells.items() if cc == c])
        if len(rows) > 1 or len(cols) > 1:
            add(("total", None, None), list(cells.values()))
        out[page] = entries
    return out


FIRST = dt.date(2014, 1, 1)  # before the fixture's first month of records


def publish(db: KohaDb, report: str, lo=None, hi=None, rules=None) -> list:
    """Publish the months [lo, hi) of a report as root (idempotent)."""
    this_month = dt.datetime.now(dt.timezone.utc).date().replace(day=1)
    lo, hi = lo or FIRST, min(hi or this_month, this_month)
    months = month_range(lo, hi - dt.timedelta(days=1))
    with db.connect(autocommit=False) as conn:
        conn.execute(f"USE {ident(db.name)}")
        return stats_publish.publish(conn, rules or db.rules, m_read_catalog(conn), report,
                                     months, reports=all_reports)


def run(db: KohaDb, login: str, report: str, lo=None, hi=None):
    with db.connect(login) as conn:
        return stats_run.run_report(conn, report, lo, hi)


def check_report(db: KohaDb, login: str, report: str, lo=None, hi=None, k: int = K,
                 rules=None) -> dict:
    publish(db, report, lo, hi, rules)
    got = released(run(db, login, report, lo, hi).entries)
    want = truth(db, report, lo, hi)
    assert set(got) == set(want), f"{report}: pages differ"
    for page, entries in got.items():
        true = want[page]
        assert set(entries) == set(true), f"{report} {page}: entries differ"
        for key, value in entries.items():
            count, patrons = true[key]
            if key[0] == "cell" and len(patrons) < k:
                assert value is None, f"{report} {page} {key}: {len(patrons)} patrons, released"
            if value is not None:
                assert value == count, f"{report} {page} {key}: {value} != {count}"
                assert len(patrons) >= k, f"{report} {page} {key}: only {len(patrons)} patrons"
        assert determined(entries) == [], f"{report} {page}: recomputable {determined(entries)}"
    return got


# -- fixtures ------------------------------------------------------------------------------

def add_test_data(db: KohaDb) -> None:
    """Two things the generated data lacks: checkouts at the tiny branch (two patrons, in
    March 2024) and filled holds with their fill time (``timestamp``) in the past, late in
    the (UTC) evening, so a month boundary would move with the session's zone."""
    with db.connect() as c:
        c.execute(f"USE {ident(db.name)}")
        c.execute("SET time_zone = '+00:00'")
        fixture.insert_rows(c, "old_issues", 4, {
            "issue_id": "900000 + seq", "borrowernumber": "IF(seq % 2 = 0, 499, 998)",
            "itemnumber": "seq", "issuer_id": "1", "branchcode": "'TPL'",
            "issuedate": "'2024-03-05 10:00:00' + INTERVAL seq DAY",
            "date_due": "'2024-03-30'", "returndate": "'2024-03-25'",
            "renewals_count": "0", "unseen_renewals": "0", "onsite_checkout": "0"})
        fixture.insert_rows(c, "old_reserves", 3000, {
            "reserve_id": "700000 + seq", "borrowernumber": "1 + (seq * 7919) % 2000",
            "reservedate": "'2023-01-01' + INTERVAL (seq % 600) DAY",
            "biblionumber": "1 + seq % 100", "branchcode": "ELT(1 + seq % 4, 'CPL', 'FFL', "
            "'MPL', 'RPL')", "priority": "0", "found": "'F'",
            "timestamp": "'2023-01-01 23:30:00' + INTERVAL ((seq % 600) + (seq % 5)) DAY"})
        c.execute("ANALYZE TABLE old_issues, old_reserves").fetchall()


@pytest.fixture(scope="module")
def world(mariadb: MariaServer) -> Iterator[tuple[KohaDb, str]]:
    db = mariadb.koha_db()
    add_test_data(db)
    db.install()
    analyst = db.login("analyst", "stats")
    for report in REPORTS:  # every month of every report, as an administrator would
        publish(db, report)
    try:
        yield db, analyst
    finally:
        mariadb.release(db)


def _error(conn, sql: str, params=None) -> int:
    with pytest.raises(pymysql.err.MySQLError) as exc:
        conn.rows(sql, params)
    return exc.value.args[0]


# -- what the role can read ----------------------------------------------------------------

def test_no_table_and_no_helper_is_open_to_the_stats_role(world) -> None:
    db, login = world
    tables = [(db.name, t) for (t,) in db.rows(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
        (db.name,))]
    layer_tables = [(db.layer, t) for (t,) in db.rows(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
        (db.layer,))]
    assert len(tables) == 293 and ("ils_redact_" + db.name, "stats_cell") in layer_tables
    routines = db.rows("SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES "
                       "WHERE ROUTINE_SCHEMA = %s", (db.layer,))
    reports = {f"report_{r}" for r in REPORTS} | {"stats_reports", "stats_publications"}
    # the publication tables (what was released, and when) are closed like the rest
    assert {(db.layer, "stats_published"), (db.layer, "stats_publication")} <= set(
        layer_tables)
    assert reports <= {n for _, n in routines}
    with db.connect(login) as c:
        readable = []
        for schema, t in tables + layer_tables:
            try:
                c.execute(f"SELECT 1 FROM {ident(schema)}.{ident(t)} LIMIT 0").fetchall()
                readable.append(t)
            except pymysql.err.MySQLError as exc:
                assert exc.args[0] in (1142, 1143), exc
        assert readable == []
        callable_ = []
        for rtype, name in routines:
            if name in reports:
                continue
            q = (f"CALL {ident(db.layer)}.{ident(name)}()" if rtype == "PROCEDURE"
                 else f"SELECT {ident(db.layer)}.{ident(name)}()")
            code = _error(c, q)  # the privilege is checked before the argument count
            if code != 1370:
                callable_.append((name, code))
        assert callable_ == []
        # the suppression itself, with the right arguments
        assert _error(c, f"CALL {ident(db.layer)}.stats_suppress(3)") == 1370
        assert _error(c, f"CALL {ident(db.layer)}.stats_emit()") == 1370
        # and the reports are there
        names = {i.name for i in stats_run.list_reports(c)}
        assert names == set(REPORTS)
    # what the stats role holds, from the grant tables: EXECUTE on the reports, no more
    grants = set(db.rows("SELECT Db, Routine_name, Proc_priv FROM mysql.procs_priv "
                         "WHERE User = %s", (db.role("stats"),)))
    assert grants == {(db.layer, r, "Execute") for r in reports}
    for t in ("db", "tables_priv", "columns_priv"):
        assert db.rows(f"SELECT * FROM mysql.{t} WHERE User = %s", (db.role("stats"),)) == []
    assert db.rows("SELECT Role FROM mysql.roles_mapping WHERE User = %s",
                   (db.role("stats"),)) == []


def test_report_definer_holds_only_the_columns_it_counts(world) -> None:
    db, _ = world
    owner = db.role("stats_owner")
    cols = {f"{t}.{c}" for t, c in db.rows(
        "SELECT Table_name, Column_name FROM mysql.columns_priv WHERE User = %s AND Db = %s",
        (owner, db.name))}
    assert {"issues.borrowernumber", "old_issues.issuedate", "borrowers.dateofbirth",
            "items.itype", "statistics.type"} <= cols
    for secret in ("borrowers.surname", "borrowers.cardnumber", "borrowers.email",
                   "borrowers.password", "borrowers.address", "statistics.other",
                   "old_reserves.reservenotes"):
        assert secret not in cols
    assert len(cols) < 40
    # table-level: nothing (a column grant leaves a row with an empty Table_priv)
    assert {p for (p,) in db.rows("SELECT Table_priv FROM mysql.tables_priv WHERE User = %s "
                                  "AND Db = %s", (owner, db.name))} == {""}
    assert db.rows("SELECT * FROM mysql.db WHERE User = %s", (owner,)) == []
    # a role nobody acts as: only the installing administrator's automatic admin mapping
    assert db.scalar("SELECT is_role FROM mysql.user WHERE User = %s", (owner,)) == "Y"
    mappings = db.rows("SELECT User, Admin_option FROM mysql.roles_mapping WHERE Role = %s",
                       (owner,))
    assert all(admin == "Y" for _, admin in mappings) and len(mappings) <= 1
    # the definer of every statistics routine
    definers = {d for (d,) in db.rows(
        "SELECT DEFINER FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s "
        "AND (ROUTINE_NAME LIKE 'stats\\_%%' OR ROUTINE_NAME LIKE 'report\\_%%')",
        (db.layer,))}
    assert definers == {f"{owner}@"} or definers == {owner}


# -- what the reports release --------------------------------------------------------------

@pytest.mark.parametrize("report", REPORTS)
def test_released_entries_count_k_patrons_and_hidden_ones_stay_hidden(world, report) -> None:
    db, login = world
    got = check_report(db, login, report)
    assert got, f"{report}: no pages"
    suppressed = sum(v is None for page in got.values() for v in page.values())
    total = sum(len(page) for page in got.values())
    assert 0 < suppressed, f"{report}: nothing suppressed in a database with a tiny branch"
    if report != "registrations_by_branch":  # 2,000 patrons over ten years: all small
        assert suppressed < total


def test_tiny_branch_gets_suppressed_cells_not_counts(world) -> None:
    db, login = world
    patrons = db.scalar(f"SELECT COUNT(*) FROM {ident(db.name)}.borrowers "
                        "WHERE branchcode = 'TPL'")
    assert 0 < patrons < K
    for report in ("circ_by_branch_itemtype", "registrations_by_branch"):
        entries = run(db, login, report).entries
        mine = [e for e in entries if e.row_value == TINY]
        assert mine, f"{report}: the tiny branch has records"
        assert all(e.suppressed and e.value is None for e in mine), report
    # its month has released entries too: it is the tiny branch that is hidden
    march = [e for e in run(db, login, "circ_by_branch_itemtype", dt.date(2024, 3, 1),
                            dt.date(2024, 4, 1)).entries]
    assert any(not e.suppressed for e in march) and any(e.row_value == TINY for e in march)


def test_overlapping_periods_release_identical_pages(world) -> None:
    db, login = world
    half = check_report(db, login, "circ_by_branch_itemtype", dt.date(2023, 1, 1),
                        dt.date(2023, 7, 1))
    spring = check_report(db, login, "circ_by_branch_itemtype", dt.date(2023, 3, 1),
                          dt.date(2023, 5, 1))
    assert {p[0] for p in half} == {dt.date(2023, m, 1) for m in range(1, 7)}
    assert {p[0] for p in spring} == {dt.date(2023, 3, 1), dt.date(2023, 4, 1)}
    for page, entries in spring.items():
        assert half[page] == entries
    everything = released(run(db, login, "circ_by_branch_itemtype").entries)
    for page, entries in half.items():
        assert everything[page] == entries


@pytest.mark.parametrize("lo, hi, message", [
    (dt.date(2023, 1, 2), None, "not the first day of a month"),
    (None, dt.date(2023, 5, 15), "not the first day of a month"),
    (None, "next", "complete months only"),
    (dt.date(2023, 5, 1), dt.date(2023, 5, 1), "not before"),
])
def test_periods_are_whole_complete_months(world, lo, hi, message) -> None:
    db, login = world
    if hi == "next":
        hi = (dt.datetime.now(dt.timezone.utc).date().replace(day=1)
              + dt.timedelta(days=40)).replace(day=1)
    with pytest.raises(Refused, match=message):
        run(db, login, "circ_by_category", lo, hi)
    # the database refuses it too, whatever the client does, and keeps nothing
    with db.connect(login) as c:
        assert _error(c, f"CALL {ident(db.layer)}.report_circ_by_category(%s, %s)",
                      (lo, hi)) == 1644
        assert c.execute("SELECT @@time_zone").fetchone()[0] == "SYSTEM"
    assert db.scalar(f"SELECT COUNT(*) FROM {ident(db.layer)}.stats_cell") == 0


def test_month_boundaries_do_not_follow_the_session_time_zone(world) -> None:
    db, login = world
    runs = []
    for tz in ("+00:00", "+13:00", "-12:00"):
        with db.connect(login) as c:
            c.execute("SET time_zone = %s", (tz,))
            runs.append(c.rows(f"CALL {ident(db.layer)}.report_holds_by_pickup_branch("
                               "'2023-02-01', '2023-06-01')"))
            assert c.execute("SELECT @@time_zone").fetchone()[0] == tz  # put back
    assert runs[0] and runs[0] == runs[1] == runs[2]
    # the filled holds (a TIMESTAMP) are in the pages, some of them released
    filled = [r for r in runs[0] if r[1] == "holds filled"]
    assert filled and any(not r[6] for r in filled)


def test_a_run_leaves_nothing_behind(world) -> None:
    db, login = world
    layer = ident(db.layer)
    with db.connect(login) as c:
        conn_id = c.execute("SELECT CONNECTION_ID()").fetchone()[0]
        # rows a stopped run of this connection left: the next run starts clean
        with db.connect() as root:
            root.execute(f"INSERT INTO {layer}.stats_cell (conn, page, r, c, measure, v, np) "
                         "VALUES (%s, 1, 1, 1, 'stale', 999, 999)", (conn_id,))
            root.execute(f"INSERT INTO {layer}.stats_page VALUES (%s, 1, 1, 1, 0)", (conn_id,))
        got = released(stats_run.run_report(c, "circ_by_category").entries)
        assert not any(m == "stale" for _, m in got)
        assert c.execute("SHOW WARNINGS").fetchall() == ()
        assert c.execute("SELECT @@time_zone, @@group_concat_max_len").fetchone() == (
            "SYSTEM", db.scalar("SELECT @@global.group_concat_max_len"))
        # nothing in user variables or temporary tables of the session
        assert c.execute("SELECT COUNT(*) FROM information_schema.USER_VARIABLES"
                         ).fetchone()[0] == 0
    assert got == check_report(db, login, "circ_by_category")
    assert db.scalar(f"SELECT COUNT(*) FROM {layer}.stats_cell") == 0
    assert db.scalar(f"SELECT COUNT(*) FROM {layer}.stats_page") == 0


def test_an_interrupted_run_leaves_nothing_readable(world) -> None:
    """max_statement_time stops a report wherever it is (no handler catches a kill): what
    it computed so far is in work rows the login cannot read, and its next run is
    right."""
    db, login = world
    layer = ident(db.layer)
    stopped = 0
    with db.connect(login) as c:
        for limit in (0.001, 0.005, 0.02, 0.05):
            c.execute(f"SET SESSION max_statement_time = {limit}")
            try:
                c.rows(f"CALL {layer}.report_circ_by_branch_itemtype(NULL, NULL)")
            except pymysql.err.MySQLError as exc:
                assert exc.args[0] == 1969, exc
                stopped += 1
            assert _error(c, f"SELECT COUNT(*) FROM {layer}.stats_cell") == 1142
            assert _error(c, f"SELECT COUNT(*) FROM {layer}.stats_page") == 1142
        c.execute("SET SESSION max_statement_time = 0")
        got = released(stats_run.run_report(c, "circ_by_branch_itemtype").entries)
    # the reports read published rows only now and rarely run long enough to be
    # stopped; stopped or not, nothing they touched is readable
    del stopped
    assert got == check_report(db, login, "circ_by_branch_itemtype")
    assert db.scalar(f"SELECT COUNT(*) FROM {layer}.stats_cell") == 0


def test_a_running_report_locks_no_koha_row(world) -> None:
    """An INSERT ... SELECT from the Koha tables would hold shared locks on every row it
    read until the caller commits; the reports read with a consistent read."""
    db, login = world
    with db.connect(login, autocommit=False) as c:
        c.execute("START TRANSACTION")
        assert c.rows(f"CALL {ident(db.layer)}.report_circ_by_branch_itemtype(NULL, NULL)")
        # the caller's transaction is still open: a checkin must not wait for it
        with db.connect() as root:
            root.execute("SET SESSION innodb_lock_wait_timeout = 1")
            for step in ("+ 1", "- 1"):  # a write to a row the report read, and back
                n = root.execute(f"UPDATE {ident(db.name)}.old_issues SET renewals_count = "
                                 f"renewals_count {step} WHERE issue_id = 5000").rowcount
                assert n == 1
        c.rollback()


def test_concurrent_runs_do_not_interfere(world) -> None:
    """Four logins, two reports each at a time, in open transactions and in autocommit:
    every result is the one a lone run gives (work rows are per connection, and scratch
    rows take no row locks that two callers' transactions could deadlock on)."""
    db, login = world
    reports = ["circ_by_branch_itemtype", "transactions_by_branch_type", "circ_by_category",
               "holds_by_pickup_branch"]
    want = {r: run(db, login, r).entries for r in reports}
    users = [login] + [db.login(f"conc{i}", "stats") for i in range(3)]
    problems: list[str] = []

    def work(user: str, autocommit: bool) -> None:
        with db.connect(user, autocommit=autocommit) as c:
            for i in range(4):
                r = reports[(i + users.index(user)) % len(reports)]
                try:
                    if stats_run.run_report(c, r).entries != want[r]:
                        problems.append(f"{user} {r}: different entries")
                except Exception as exc:  # noqa: BLE001 - collected and asserted below
                    problems.append(f"{user} {r}: {exc}")
                if not autocommit:
                    c.commit()

    for autocommit in (True, False):
        threads = [threading.Thread(target=work, args=(u, autocommit)) for u in users]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert problems == []
    assert db.scalar(f"SELECT COUNT(*) FROM {ident(db.layer)}.stats_cell") == 0


def test_a_named_time_zone_is_the_servers_or_a_clear_error(koha: KohaDb,
                                                           tmp_path: Path) -> None:
    """statistics.time_zone: America/Chicago.  MariaDB knows named zones only from its
    time zone tables: with them, the month boundaries are Chicago's; without them, the
    report stops with a hint, and the caller's session is as it was."""
    rules = write_koha_rules(tmp_path, koha.prefix, lambda text: text.replace(
        "  k: 11 ", "  time_zone: America/Chicago\n  k: 11 ", 1))
    res = run_cli("--dsn", koha.dsn, "--rules", str(rules), "install")
    assert res.returncode == 0, res.stderr
    login = koha.login("analyst", "stats")
    known = koha.scalar("SELECT CONVERT_TZ('2024-01-01', '+00:00', 'America/Chicago') "
                        "IS NOT NULL")
    res = run_cli("--dsn", koha.dsn_as(login), "--format", "json", "stats", "run",
                  "transactions_by_branch_type", "--format", "json")
    if known:
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["report"]["time_zone"] == "America/Chicago"
    else:
        assert res.returncode == 2 and "time zone" in res.stderr, res.stderr
        assert "mariadb-tzinfo-to-sql" in res.stderr
    with koha.connect(login) as c:
        c.execute("SET time_zone = '+02:00'")
        try:
            stats_run.run_report(c, "circ_by_category")
        except IlsRedactError:
            assert not known
        assert c.execute("SELECT @@time_zone").fetchone()[0] == "+02:00"
    assert koha.scalar(f"SELECT COUNT(*) FROM {ident(koha.layer)}.stats_cell") == 0


# -- custom reports ------------------------------------------------------------------------

def _with_reports(yaml_reports: str, k: int = K):
    def edit(text: str) -> str:
        assert "  reports: []\n" in text and "  k: 11 " in text
        text = text.replace("  k: 11 ", f"  k: {k} ", 1)
        return text.replace("  reports: []\n", "  reports:\n" + yaml_reports, 1)
    return edit


def test_custom_report_is_installed_suppressed_and_dropped(koha: KohaDb,
                                                           tmp_path: Path) -> None:
    rules = write_koha_rules(tmp_path, koha.prefix, _with_reports(
        "    - name: renewals_by_branch\n"
        "      description: Returned loans by branch and number of renewals {layer}\n"
        "      source: old_issues\n"
        "      group_by: [branchcode, renewals_count]\n"
        "      patron_column: borrowernumber\n"
        "      time_column: issuedate\n", k=30))
    res = run_cli("--dsn", koha.dsn, "--rules", str(rules), "install")
    assert res.returncode == 0, res.stderr
    login = koha.login("analyst", "stats")
    with koha.connect(login) as c:
        info = {i.name: i for i in stats_run.list_reports(c)}["renewals_by_branch"]
    assert info.custom and info.description.endswith("renewals {layer}") and info.k == 30
    RAW["renewals_by_branch"] = [("count", f"""
        SELECT {MONTH.format('o.issuedate')}, COALESCE(o.branchcode, '(none)'),
               COALESCE(CAST(o.renewals_count AS CHAR), '(none)'), o.borrowernumber
        FROM old_issues o""")]
    try:
        got = check_report(koha, login, "renewals_by_branch", k=30, rules=load_rules(rules))
    finally:
        del RAW["renewals_by_branch"]
    cells = [v for page in got.values() for v in page.values()]
    assert None in cells and any(v is not None for v in cells)
    assert koha.rows("SELECT Column_name FROM mysql.columns_priv WHERE User = %s AND "
                     "Table_name = 'old_issues' AND Column_name = 'renewals_count'",
                     (koha.role("stats_owner"),)) == [("renewals_count",)]
    # removed from the rules: the next install drops the procedure and its grants
    res = run_cli("--dsn", koha.dsn, "--rules", str(write_koha_rules(tmp_path, koha.prefix)),
                  "install")
    assert res.returncode == 0, res.stderr
    assert koha.scalar("SELECT COUNT(*) FROM information_schema.ROUTINES WHERE "
                       "ROUTINE_SCHEMA = %s AND ROUTINE_NAME = 'report_renewals_by_branch'",
                       (koha.layer,)) == 0
    assert koha.rows("SELECT * FROM mysql.procs_priv WHERE Db = %s AND "
                     "Routine_name = 'report_renewals_by_branch'", (koha.layer,)) == []
    assert koha.rows("SELECT * FROM mysql.columns_priv WHERE User = %s AND "
                     "Column_name = 'renewals_count'", (koha.role("stats_owner"),)) == []
    with koha.connect() as c:
        from ils_redact.backends import mariadb as m

        assert m.compute_install_plan(c, koha.rules, reports=all_reports).steps == []


# -- the command line ----------------------------------------------------------------------

def test_cli_list_and_run(world, tmp_path: Path) -> None:
    db, login = world
    dsn = db.dsn_as(login)
    res = run_cli("--dsn", dsn, "--format", "json", "stats", "list")
    assert res.returncode == 0, res.stderr
    listed = json.loads(res.stdout)
    assert {r["name"] for r in listed} == set(REPORTS)
    assert all(r["k"] == K and r["time_zone"] == "UTC" for r in listed)
    res = run_cli("--dsn", dsn, "stats", "run", "circ_by_branch_itemtype", "--from",
                  "2024-02", "--to", "2024-03")  # inclusive months
    assert "covers 2 published months: 2024-02..2024-03" in res.stderr
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "period,measure,kind,row_value,col_value,value,suppressed"
    assert {line[:10] for line in lines[1:]} == {"2024-02-01", "2024-03-01"}
    assert any(line.endswith(",,true") and TINY in line for line in lines)
    assert any(line.endswith(",false") for line in lines)
    out = tmp_path / "r.html"
    res = run_cli("--dsn", dsn, "stats", "run", "holds_by_pickup_branch", "--format", "html",
                  "-o", str(out))
    assert res.returncode == 0, res.stderr
    page = out.read_text(encoding="utf-8")
    assert "<svg" in page and 'class="sup"' in page and "holds filled" in page
    res = run_cli("--dsn", dsn, "--format", "json", "stats", "run", "circ_by_age_band",
                  "--format", "json", "--from", "2024-01", "--to", "2024-02")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["report"]["name"] == "circ_by_age_band" and doc["entries"]
    assert not any(re.match(r"\d{4}-\d\d-\d\d", e["row_value"] or "") for e in doc["entries"])
    # refusals: misaligned period (exit 2 before the database), unknown report, an
    # empty range, and a login outside the stats role
    res = run_cli("--dsn", dsn, "stats", "run", "circ_by_category", "--from", "2023-01-15")
    assert res.returncode == 2 and "first day of a month" in res.stderr
    res = run_cli("--dsn", dsn, "stats", "run", "circ_by_categry")
    assert res.returncode == 2 and "did you mean circ_by_category" in res.stderr
    # months are inclusive: --from 2023-05 --to 2023-05 is May (issue 14)
    res = run_cli("--dsn", dsn, "stats", "run", "circ_by_category", "--from", "2023-05",
                  "--to", "2023-05")
    assert res.returncode == 0 and "covers 1 published month: 2023-05" in res.stderr
    res = run_cli("--dsn", dsn, "stats", "run", "circ_by_category", "--from", "2023-06",
                  "--to", "2023-05")
    assert res.returncode == 2 and "is after" in res.stderr
    outsider = db.login("outsider")
    res = run_cli("--dsn", db.dsn_as(outsider), "stats", "list")
    assert res.returncode == 2 and "stats role" in res.stderr


def test_a_login_with_another_default_role_gets_the_stats_role(world) -> None:
    db, _ = world
    both = db.login("both", "admin", "stats")  # admin is its default role
    with db.connect(both) as c:
        assert c.execute("SELECT CURRENT_ROLE()").fetchone()[0] == db.role("admin")
        assert stats_run.run_report(c, "circ_by_category", dt.date(2023, 1, 1),
                                    dt.date(2023, 2, 1)).entries
        with pytest.raises(IlsRedactError, match="no statistics report"):
            stats_run.run_report(c, "nope")


# -- the suppression itself, on random tables ----------------------------------------------

def test_suppress_on_random_tables(world) -> None:
    db, _ = world
    layer = ident(db.layer)
    rng = random.Random(20240601)
    pages = 0
    with db.connect() as c:
        conn_id = c.execute("SELECT CONNECTION_ID()").fetchone()[0]
        for _ in range(120):
            nr, nc = rng.randint(1, 7), rng.choice([1, 1, 2, 3, 5, 8])
            cells = {}
            for r in range(nr):
                for col in range(nc):
                    if rng.random() < 0.25:
                        continue  # an empty cell
                    small = rng.random() < 0.35
                    p = rng.randint(1, K - 1) if small else rng.randint(K, 80)
                    cells[(f"r{r}", f"c{col}" if nc > 1 else None)] = (p + rng.randint(0, 3 * p),
                                                                       p)
            if not cells:
                continue
            rows = sorted({r for r, _ in cells})
            cols = sorted({x for _, x in cells}, key=lambda x: x or "")
            for (r, col), (v, p) in cells.items():
                c.execute(f"INSERT INTO {layer}.stats_cell (conn, page, r, c, period, "
                          "measure, row_value, col_value, v, np) VALUES (%s, 1, %s, %s, "
                          "'2023-01-01', 'm', %s, %s, %s, %s)",
                          (conn_id, rows.index(r) + 1, cols.index(col) + 1, r, col, v, p))
            c.execute(f"CALL {layer}.stats_suppress(%s)", (K,))
            out = c.rows(f"CALL {layer}.stats_emit()")
            page = {(k, r, col): v for _, _, k, r, col, v, _ in out}
            for (kind, r, col), v in page.items():
                if kind == "cell":
                    assert v is None or cells[(r, col)][0] == v
                    if cells[(r, col)][1] < K:
                        assert v is None
                else:  # a total: released only with a cell of k patrons in it
                    members = [x for (rr, cc), x in cells.items()
                               if kind == "total" or (kind == "row_total" and rr == r)
                               or (kind == "col_total" and cc == col)]
                    if v is not None:
                        assert v == sum(x[0] for x in members)
                        assert max(x[1] for x in members) >= K
            assert determined(page) == [], (cells, page)
            pages += 1
        assert c.execute(f"SELECT COUNT(*) FROM {layer}.stats_cell").fetchone()[0] == 0
    assert pages > 100


def test_k_below_three_is_refused_by_the_database(world) -> None:
    db, _ = world
    with db.connect() as c:
        assert _error(c, f"CALL {ident(db.layer)}.stats_suppress(2)") == 1644


# -- uninstall -----------------------------------------------------------------------------

def test_uninstall_is_still_exact(koha: KohaDb) -> None:
    before = snapshot(koha)
    koha.install()
    login = koha.login("analyst", "stats")
    publish(koha, "circ_by_category", dt.date(2024, 1, 1), dt.date(2024, 3, 1))
    assert run(koha, login, "circ_by_category").entries
    assert snapshot(koha) != before
    koha.uninstall()
    assert snapshot(koha) == before
    assert koha.scalar("SELECT COUNT(*) FROM mysql.user WHERE User = %s",
                       (koha.role("stats_owner"),)) == 0
    assert koha.scalar("SELECT COUNT(*) FROM mysql.procs_priv WHERE Db = %s",
                       (koha.layer,)) == 0


# -- publication: protection intervals, no differencing over time --------------------------

LEVEL = 6  # ceil(0.5 * k): the default protection level


def _interval(page: dict[Key, object], target: Key) -> tuple[float, float]:
    """The attacker's bounds on one suppressed entry (linprog: released entries, the
    page's equations, counts >= 0)."""
    import numpy as np
    from scipy.optimize import linprog

    unknown = sorted((k for k, v in page.items() if v is None), key=repr)
    col = {u: j for j, u in enumerate(unknown)}
    a_rows, b = [], []
    for eq in equations(set(page)):
        row = np.zeros(len(unknown))
        rhs = 0.0
        for key, coef in eq.items():
            if key in col:
                row[col[key]] += coef
            elif key in page:
                rhs -= coef * page[key]
        a_rows.append(row)
        b.append(rhs)
    out = []
    for sign in (1, -1):
        c = np.zeros(len(unknown))
        c[col[target]] = sign
        res = linprog(c, A_eq=np.array(a_rows) if a_rows else None,
                      b_eq=np.array(b) if b else None,
                      bounds=[(0, None)] * len(unknown), method="highs")
        out.append(sign * res.fun if res.status == 0 else -sign * float("inf"))
    return out[0], out[1]


@pytest.mark.parametrize("report", REPORTS)
def test_every_small_cell_keeps_its_protection_interval(world, report) -> None:
    db, login = world
    got = released(run(db, login, report).entries)
    want = truth(db, report)
    checked = 0
    for page, entries in got.items():
        for key, value in entries.items():
            count, patrons = want[page][key]
            if value is None and len(patrons) < K:
                lo, hi = _interval(entries, key)
                assert hi >= count + LEVEL - 1e-6, (report, page, key, count, lo, hi)
                assert lo <= max(0, count - LEVEL) + 1e-6, (report, page, key, count, lo, hi)
                checked += 1
    assert checked > 0


def test_runs_after_records_change_return_the_published_page(world) -> None:
    """Checkouts of a published month deleted afterwards (as when patrons are deleted):
    every run over every sub-period returns the published values, and publishing again
    keeps them."""
    db, login = world
    report = "circ_by_branch_itemtype"
    months = month_range(dt.date(2023, 1, 1), dt.date(2023, 4, 1))

    def every_run() -> dict:
        seen: dict = {}
        for a in range(len(months)):
            for b in range(a + 1, len(months) + 1):
                end = months[b] if b < len(months) else dt.date(2023, 5, 1)
                for e in run(db, login, report, months[a], end).entries:
                    key = (e.period, e.measure, e.kind, e.row_value, e.col_value)
                    seen.setdefault(key, set()).add(e.value)
        return seen

    before = every_run()
    assert before and all(len(v) == 1 for v in before.values())
    with db.connect() as c:
        gone = c.execute(f"DELETE FROM {ident(db.name)}.old_issues WHERE issuedate >= "
                         "'2023-02-01' AND issuedate < '2023-03-01' ORDER BY issue_id "
                         "LIMIT 30").rowcount
    assert gone == 30
    again = publish(db, report, dt.date(2023, 1, 1), dt.date(2023, 5, 1))
    assert {r.status for r in again} == {"already published"}
    assert every_run() == before
