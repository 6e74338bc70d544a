"""``ils-redact query`` on Koha/MariaDB, end to end: the real console script, a full
install, a login in the disclosure role (role access) and requests approved for it by
another login.  Every property is checked against the database: the rows (against root's
own read of the Koha table), the audit entries before and after, READ ONLY, the statement
time limit, the row cap, and what an error shows."""

# ruff: noqa: S608 - test SQL: names quoted with sqltext.ident

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ils_redact.adapters import get_adapter
from ils_redact.backends.mariadb.sqltext import account, ident
from ils_redact.disclosure import audit
from ils_redact.query import QueryFailed, QueryRefused, run_query
from support.koha import (
    PASSWORD,
    KohaDb,
    MariaServer,
    catalog_for,
    popen_cli,
    run_cli,
    write_koha_rules,
)
from support.koha_workflow import Staff

PATRONS = [13, 26, 39]
#: 10^12 combinations (a recursive CTE alone stops at max_recursive_iterations, 1,000)
SLOW = ("WITH RECURSIVE r (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 1000) "
        "SELECT COUNT(*) AS n FROM r a, r b, r c, r d")


@dataclasses.dataclass
class World:
    db: KohaDb
    staff: Staff
    rid: int  # approved for dora: PATRONS, every identity column
    rules: Path

    def query(self, sql: str, *args: str, user: str | None = None,
              rules: Path | None = None) -> subprocess.CompletedProcess:
        return run_cli("--dsn", self.db.dsn_as(user or self.staff.dora, PASSWORD),
                       "--rules", str(rules or self.rules), "query", *args, sql)

    def entries(self, request_id: int | None = None) -> list[dict]:
        with self.db.connect() as c:
            return [e.to_json() for e in audit.entries(c, request_id=request_id)]

    def rules_with(self, tmp: Path, old: str, new: str) -> Path:
        def edit(text: str) -> str:
            assert old in text
            return text.replace(old, new, 1)
        return write_koha_rules(tmp, self.db.prefix, edit)


@pytest.fixture(scope="module")
def world(mariadb: MariaServer, tmp_path_factory) -> Iterator[World]:
    db = mariadb.koha_db()
    db.install()
    staff = Staff.create(db)
    rid = staff.request(staff.alice, PATRONS, grantee=staff.dora, approve_as=staff.bob)
    rules = write_koha_rules(tmp_path_factory.mktemp("query"), db.prefix)
    try:
        yield World(db, staff, rid, rules)
    finally:
        mariadb.release(db)


def root_rows(db: KohaDb, sql: str, params=None) -> list[tuple]:
    with db.connect() as c:
        c.execute(f"USE {ident(db.name)}")
        return [tuple(r) for r in c.execute(sql, params).fetchall()]


def test_allowed_query_returns_scoped_patrons_and_is_logged(world: World) -> None:
    text = "SELECT borrowernumber, surname, dateofbirth FROM borrowers ORDER BY borrowernumber"
    res = world.query(text, "--profile", "disclosure", "--request", str(world.rid),
                      "--format", "json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["columns"] == ["borrowernumber", "surname", "dateofbirth"]
    want = root_rows(world.db, "SELECT borrowernumber, surname, CAST(dateofbirth AS CHAR) "
                     "FROM borrowers WHERE borrowernumber IN (13, 26, 39) ORDER BY 1")
    assert [tuple(r) for r in doc["rows"]] == want and len(want) == 3
    summary = json.loads(res.stderr.strip().splitlines()[-1])
    assert summary["rows"] == 3 and summary["capped"] is False
    # two entries: before the read (what runs) and after (what was printed)
    entries = world.entries(world.rid)
    query_e, finished = entries[-2], entries[-1]
    assert (query_e["action"], finished["action"]) == ("query", "query.finished")
    assert query_e["actor"] == finished["actor"] == f"{world.staff.dora}@%"
    assert query_e["detail"]["sql_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    sql = query_e["detail"]["sql"]
    assert f"`{world.db.layer}`.`scope_patrons` WHERE `request_id` = {world.rid}" in sql
    assert f"FROM `{world.db.layer}`.`borrowers`" in sql and f"`{world.db.name}`" not in sql
    assert query_e["detail"]["profile"] == "disclosure"
    assert finished["detail"]["sha256"] == hashlib.sha256(res.stdout.encode()).hexdigest()
    assert finished["detail"]["rows"] == 3
    assert finished["detail"]["query_seq"] == query_e["seq"] == summary["audit_seq"]
    with world.db.connect() as c:
        assert audit.verify(c).ok


def test_star_gives_the_request_columns_of_scoped_patrons(world: World) -> None:
    res = world.query("SELECT * FROM borrowers", "--profile", "disclosure", "--request",
                      str(world.rid), "--format", "json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["columns"][:3] == ["borrowernumber", "cardnumber", "surname"]
    assert "password" not in doc["columns"] and "borrowernotes" not in doc["columns"]
    assert sorted(r[0] for r in doc["rows"]) == PATRONS


def test_refused_query_names_the_finding_and_is_logged(world: World) -> None:
    before = len(world.entries())
    res = world.query("SELECT b.surname\nFROM borrowers b JOIN issues i "
                      "ON i.borrowernumber = b.borrowernumber", "--profile", "disclosure",
                      "--request", str(world.rid))
    assert res.returncode == 1 and res.stdout == ""
    assert f"R-CONFIDENTIAL-RELATION {world.db.name}.issues 2:" in res.stderr
    new = world.entries()[before:]
    assert [e["action"] for e in new] == ["query.refused"]
    assert new[0]["request_id"] == world.rid and new[0]["actor"] == f"{world.staff.dora}@%"
    assert "R-CONFIDENTIAL-RELATION" in new[0]["detail"]["reason"]


def test_unapproved_or_foreign_request_is_refused(world: World) -> None:
    staff = world.staff
    draft = staff.request(staff.alice, [14], grantee=staff.dora)
    res = world.query("SELECT surname FROM borrowers", "--profile", "disclosure",
                      "--request", str(draft))
    assert res.returncode == 1 and "not approved" in res.stderr
    assert world.entries(draft)[-1]["action"] == "query.refused"
    # approved for dora: erin (also in the disclosure role) gets nothing
    res = world.query("SELECT surname FROM borrowers", "--profile", "disclosure",
                      "--request", str(world.rid), user=staff.erin)
    assert res.returncode == 1 and f"approved for {staff.dora}" in res.stderr
    # a login outside the disclosure role cannot even have it checked
    res = world.query("SELECT surname FROM borrowers", "--profile", "disclosure",
                      "--request", str(world.rid), user=staff.bob)
    assert res.returncode == 1 and "not a member of the disclosure role" in res.stderr
    # and no request at all is a usage error
    res = world.query("SELECT surname FROM borrowers", "--profile", "disclosure")
    assert res.returncode == 2 and "--request" in res.stderr


def test_court_order_for_some_fields_is_not_queried(world: World) -> None:
    """Queries read the views, which serve whole rows: a court order naming some fields is
    refused (and logged); its fields go to the officer through the logged export."""
    staff = world.staff
    rid = staff.request(staff.alice, PATRONS, grantee=staff.dora, basis="court-order",
                        columns=["borrowers.surname"], approve_as=staff.bob)
    res = world.query("SELECT surname FROM borrowers ORDER BY surname", "--profile",
                      "disclosure", "--request", str(rid), "--format", "json")
    assert res.returncode == 1 and res.stdout == ""
    assert "names only some identity fields" in res.stderr, res.stderr
    assert world.entries(rid)[-1]["action"] == "query.refused"


def test_rewrite_applies_the_request_checks_of_query(world: World) -> None:
    """``rewrite --request`` as the disclosure login checks the request as ``query`` does
    (one code path): a court order naming only surname is refused by both (the layer's
    views serve whole rows, so such a request is disclosed by the logged export only),
    a request covering every identity field is rewritten, and a request approved for
    another login is refused."""
    staff = world.staff
    narrow = staff.request(staff.alice, PATRONS, grantee=staff.dora, basis="court-order",
                           columns=["borrowers.surname"], approve_as=staff.bob)
    whole = staff.request(staff.alice, PATRONS, grantee=staff.dora, approve_as=staff.bob)

    def rewrite(rid: int, text: str, user: str | None = None) -> subprocess.CompletedProcess:
        return run_cli("--dsn", world.db.dsn_as(user or staff.dora, PASSWORD), "--rules",
                       str(world.rules), "rewrite", "--profile", "disclosure", "--request",
                       str(rid), text)

    for text in ("SELECT surname FROM borrowers", "SELECT dateofbirth FROM borrowers"):
        res = rewrite(narrow, text)
        assert res.returncode != 0 and res.stdout == "", res.stdout
        assert "disclosed by the logged export only" in res.stderr, res.stderr
        q = world.query(text, "--profile", "disclosure", "--request", str(narrow))
        assert q.returncode != 0 and "disclosed by the logged export only" in q.stderr
    ok = rewrite(whole, "SELECT surname FROM borrowers")
    assert ok.returncode == 0, ok.stderr
    assert f"`request_id` = {whole}" in ok.stdout
    res = rewrite(whole, "SELECT surname FROM borrowers", user=staff.erin)
    assert res.returncode == 1 and f"approved for {staff.dora}" in res.stderr, res.stderr


def test_database_error_is_not_echoed(world: World) -> None:
    """A query the gate allows and the server refuses: only the error's number and class
    are shown and logged; ``--debug`` adds the server's text."""
    text = "SELECT (SELECT surname FROM borrowers) AS s"
    res = world.query(text, "--profile", "disclosure", "--request", str(world.rid))
    assert res.returncode == 1, res.stderr
    assert ("a subquery returned more than one row (MariaDB error 1242, SQLSTATE 21000)"
            in res.stderr)
    assert "Subquery returns" not in res.stderr and res.stdout == ""
    entries = world.entries(world.rid)
    assert [e["action"] for e in entries[-2:]] == ["query", "query.failed"]
    assert entries[-1]["detail"]["error_code"] == 1242
    assert entries[-1]["detail"]["sqlstate"] == "21000"
    assert "Subquery returns" not in json.dumps(entries[-1])
    dbg = run_cli("--dsn", world.db.dsn_as(world.staff.dora, PASSWORD), "--rules",
                  str(world.rules), "--debug", "query", "--profile", "disclosure",
                  "--request", str(world.rid), text)
    assert dbg.returncode == 1 and "Subquery returns more than 1 row" in dbg.stderr


def test_read_only_holds(world: World, tmp_path: Path) -> None:
    """A function that writes, allow-listed by a careless rules file: the gate lets it
    through and the READ ONLY transaction stops it."""
    db, dora = world.db, world.staff.dora
    koha = ident(db.name)
    with db.connect() as c:
        c.execute(f"CREATE TABLE {koha}.ils_redact_written (n INT) ENGINE=InnoDB")
        c.execute(f"CREATE FUNCTION {koha}.ils_redact_write() RETURNS INT MODIFIES SQL DATA "
                  f"SQL SECURITY INVOKER BEGIN INSERT INTO {koha}.ils_redact_written "
                  "VALUES (1); RETURN 1; END")
        c.execute(f"GRANT EXECUTE ON FUNCTION {koha}.ils_redact_write TO {account(dora, '%')}")
        c.execute(f"GRANT INSERT ON {koha}.ils_redact_written TO {account(dora, '%')}")
    try:
        rules = world.rules_with(tmp_path, "  functions: []",
                                 f"  functions: [{db.name}.ils_redact_write]")
        res = world.query(f"SELECT {db.name}.ils_redact_write() AS n", "--profile",
                          "disclosure", "--request", str(world.rid), rules=rules)
        assert res.returncode == 1, res.stdout
        assert "read-only transaction (MariaDB error 1792" in res.stderr
        assert db.scalar(f"SELECT COUNT(*) FROM {koha}.ils_redact_written") == 0
        # the same login, outside the gate, can write: the transaction mode did it
        with db.connect(dora) as c:
            c.execute(f"SELECT {koha}.ils_redact_write()").fetchall()
        assert db.scalar(f"SELECT COUNT(*) FROM {koha}.ils_redact_written") == 1
    finally:
        with db.connect() as c:
            c.execute(f"REVOKE ALL PRIVILEGES ON FUNCTION {koha}.ils_redact_write "
                      f"FROM {account(dora, '%')}")
            c.execute(f"REVOKE INSERT ON {koha}.ils_redact_written FROM {account(dora, '%')}")
            c.execute(f"DROP FUNCTION {koha}.ils_redact_write")
            c.execute(f"DROP TABLE {koha}.ils_redact_written")


def test_statement_time_limit_holds(world: World, tmp_path: Path) -> None:
    rules = world.rules_with(tmp_path, "statement_timeout_ms: 5000", "statement_timeout_ms: 200")
    t = time.monotonic()
    res = world.query(SLOW, "--profile", "disclosure", "--request", str(world.rid),
                      rules=rules)
    assert res.returncode == 1, res.stdout
    assert time.monotonic() - t < 30
    assert "statement timeout (max_statement_time) (MariaDB error 1969" in res.stderr
    entries = world.entries(world.rid)
    assert [e["action"] for e in entries[-2:]] == ["query", "query.failed"]
    assert entries[-2]["detail"]["statement_timeout_ms"] == 200
    assert entries[-1]["detail"]["error_code"] == 1969


def test_row_cap_holds(world: World, tmp_path: Path) -> None:
    many = ("WITH RECURSIVE r (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5000) "
            "SELECT n FROM r")
    res = world.query(many, "--profile", "disclosure", "--request", str(world.rid),
                      "--format", "csv")
    assert res.returncode == 0, res.stderr
    assert len(res.stdout.splitlines()) == 1 + 1000
    assert json.loads(res.stderr.splitlines()[-1])["capped"] is True
    rules = world.rules_with(tmp_path, "row_cap: 1000", "row_cap: 1")
    res = world.query("SELECT borrowernumber FROM borrowers ORDER BY borrowernumber LIMIT 50",
                      "--profile", "disclosure", "--request", str(world.rid), "--format",
                      "json", rules=rules)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["rows"] == [[PATRONS[0]]]
    entry = [e for e in world.entries(world.rid) if e["action"] == "query"][-1]
    assert entry["detail"]["sql"].endswith("LIMIT 1") and entry["detail"]["row_cap"] == 1


def test_a_client_that_dies_leaves_the_first_entry(world: World, tmp_path: Path) -> None:
    rules = world.rules_with(tmp_path, "statement_timeout_ms: 5000",
                             "statement_timeout_ms: 120000")
    proc = popen_cli("--dsn", world.db.dsn_as(world.staff.dora, PASSWORD), "--rules",
                     str(rules), "query", "--profile", "disclosure", "--request",
                     str(world.rid), SLOW)
    try:
        thread = None
        for _ in range(1200):  # the CLI starts, checks the request, logs, then reads
            thread = world.db.scalar(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s "
                "AND INFO LIKE 'SET STATEMENT max_statement_time%%'", (world.staff.dora,))
            if thread:
                break
            time.sleep(0.05)
        assert thread, "the gated query never started"
        with world.db.connect() as c:
            c.execute(f"KILL CONNECTION {int(thread)}")
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1, err
    assert "MariaDB error" in err and "Lost connection" not in err
    actions = [e["action"] for e in world.entries(world.rid)]
    assert actions[-1] == "query" and "query.finished" not in actions[-1:]


def test_csv_and_table_output_are_defused(world: World) -> None:
    res = world.query("SELECT '=HYPERLINK(1)' AS a, CONCAT(CHAR(27 USING utf8mb4), '[31mred') AS b",
                      "--profile", "disclosure", "--request", str(world.rid), "--format",
                      "csv")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[1].startswith("'=HYPERLINK(1)")
    res = world.query("SELECT CONCAT(CHAR(27 USING utf8mb4), '[31mred') AS b", "--profile",
                      "disclosure", "--request", str(world.rid))
    assert res.returncode == 0 and "\x1b" not in res.stdout and "?[31mred" in res.stdout


def test_sql_modes_of_the_session_change_nothing(world: World) -> None:
    """What the gate read is what runs: a login whose session has ANSI_QUOTES or
    PIPES_AS_CONCAT gets the same rows (the statement pins the layer's sql_mode)."""
    db, dora = world.db, world.staff.dora
    catalog = catalog_for(get_adapter("koha"), db.name)
    text = "SELECT CONCAT(surname, '|', 'x') AS s FROM borrowers ORDER BY borrowernumber"
    outs = []
    for mode in ("", "ANSI_QUOTES,PIPES_AS_CONCAT,NO_BACKSLASH_ESCAPES"):
        with db.connect(dora, autocommit=False) as c:
            c.execute("SET SESSION sql_mode = %s", (mode,))
            outs.append(run_query(c, db.rules, catalog, text, request_id=world.rid).rows)
    assert outs[0] == outs[1] and len(outs[0]) == 3


def test_library_refusals_raise_and_stats_profile_reads_nothing(world: World) -> None:
    db = world.db
    catalog = catalog_for(get_adapter("koha"), db.name)
    with db.connect(world.staff.dora, autocommit=False) as c:
        with pytest.raises(QueryRefused) as exc:
            run_query(c, db.rules, catalog, "SELECT password FROM borrowers",
                      request_id=world.rid)
        assert {f.code for f in exc.value.findings} == {"R-SECRET-COLUMN"}
        assert exc.value.audit_seq
    stats = db.login("statsman", "stats")
    before = len(world.entries())
    with db.connect(stats, autocommit=False) as c:
        out = run_query(c, db.rules, catalog, "SELECT 1 + 2 AS n", profile="stats")
        assert out.rows == [(3,)] and out.query_seq is None
        with pytest.raises(QueryRefused) as exc:
            run_query(c, db.rules, catalog, "SELECT surname FROM borrowers", profile="stats")
        assert "R-NOT-PERMITTED" in {f.code for f in exc.value.findings}
        # a timeout as the stats login: an error, nothing logged
        with pytest.raises(QueryFailed):
            run_query(c, dataclasses.replace(db.rules, gate=dataclasses.replace(
                db.rules.gate, statement_timeout_ms=100)), catalog, SLOW, profile="stats")
    assert len(world.entries()) == before
