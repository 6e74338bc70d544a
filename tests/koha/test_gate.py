"""The query gate on Koha/MariaDB against a real install, and ``lint --koha-saved-sql``.

Allowed cases are rewritten by the gate (MySQL dialect) and executed as a login in the
disclosure role: the rewrite reads the layer's definer views and the scope view, and
must return exactly what root gets from the Koha table for the request's patrons.
Refused cases are also run as written with the gate switched off: the database refuses
them by itself.
"""

# ruff: noqa: S608 - test SQL: names quoted with sqltext.ident

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest
import yaml

from ils_redact.backends import mariadb as m
from ils_redact.backends.mariadb.sqltext import ident
from ils_redact.gate import Gate
from support.koha import PASSWORD, KohaDb, MariaServer, run_cli, write_koha_rules
from support.koha_workflow import Staff

CASES = yaml.safe_load((Path(__file__).parent / "cases" / "gate_mysql.yaml").read_text())[
    "cases"]
PATRONS = [13, 26, 39]


@pytest.fixture(scope="module")
def world(mariadb: MariaServer) -> Iterator[tuple[KohaDb, Staff, int, Gate]]:
    db = mariadb.koha_db()
    db.install()
    staff = Staff.create(db)
    rid = staff.request(staff.alice, PATRONS, grantee=staff.dora, approve_as=staff.bob)
    staff.request(staff.alice, [14], grantee=staff.dora, approve_as=staff.bob)  # another
    with db.connect() as c:
        catalog = m.read_catalog(c)
    gate = Gate(db.rules, catalog, "disclosure", request_id=rid, dialect="mariadb")
    try:
        yield db, staff, rid, gate
    finally:
        mariadb.release(db)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_gate_case_on_the_real_server(world, case) -> None:
    db, staff, rid, gate = world
    result = gate.check(case["sql"])
    if case["expect"] == "allow":
        assert result.ok, result.findings
        assert f"`{db.layer}`.`scope_patrons`" in result.sql
        assert f"`{db.name}`.`borrowers`" not in result.sql  # the view, not the table
        with db.connect(staff.dora) as c:
            got = [tuple(r) for r in c.execute(result.sql).fetchall()]
        truth = case["truth"].format(patrons=", ".join(map(str, PATRONS)))
        with db.connect() as c:
            c.execute(f"USE {ident(db.name)}")
            want = [tuple(r) for r in c.execute(truth).fetchall()]
        assert got == want and got, (result.sql, got, want)
        return
    assert not result.ok
    codes = {f.code for f in result.findings}
    assert set(case["codes"]) <= codes, result.findings
    assert set(case.get("objects", ())) <= {f.object for f in result.findings}, \
        result.findings
    # the gate switched off: the database refuses the text as written
    with db.connect(staff.dora) as c:
        if case.get("db") == "null":
            assert c.execute(case["sql"]).fetchall() == ((None,),)
            return
        if case.get("db") == "allowed":  # server state: the gate is the only layer
            assert c.execute(case["sql"]).fetchall()
            return
        with pytest.raises(pymysql.err.MySQLError) as exc:
            c.execute(case["sql"]).fetchall()
    # 1305: a function MariaDB does not have (regexp_like with flags)
    assert exc.value.args[0] in (1142, 1143, 1044, 1046, 1064, 1045, 1370, 1305), exc.value


def test_the_request_narrows_the_callers_scope(world) -> None:
    """dora's scope holds two requests; the rewrite for one of them returns its patrons
    only, while the view alone returns both."""
    db, staff, rid, gate = world
    sql = gate.check("SELECT borrowernumber FROM borrowers ORDER BY 1").sql
    with db.connect(staff.dora) as c:
        assert [r[0] for r in c.execute(sql).fetchall()] == PATRONS
        assert sorted(r[0] for r in c.execute(
            f"SELECT borrowernumber FROM {ident(db.layer)}.borrowers")) == sorted([*PATRONS, 14])


def test_lint_koha_saved_sql(world, tmp_path) -> None:
    db, _, _, _ = world
    rules = str(write_koha_rules(tmp_path, db.prefix))
    out = run_cli("--dsn", db.dsn, "--rules", rules, "--format", "json", "lint",
                  "--koha-saved-sql")
    assert out.returncode == 1, out.stderr  # some reports expose circulation data
    data = json.loads(out.stdout)
    by_name = {f["path"].split(": ", 1)[1]: f for f in data["files"]}
    assert len(by_name) == db.scalar(f"SELECT COUNT(*) FROM {ident(db.name)}.saved_sql")
    assert by_name["Branch list"]["verdict"] == "no-patron-data"
    assert by_name["Items by item type"]["verdict"] in ("statistics", "no-patron-data")
    hist = by_name["Reading history of a patron"]  # has a <<Borrowernumber>> parameter
    assert hist["verdict"] == "exposes"
    assert {e["relation"].split(".")[-1] for e in hist["exposes"]} >= {"old_issues"}
    overdue = by_name["Patrons with overdues"]
    assert overdue["verdict"] == "exposes"
    assert {"issues", "borrowers"} <= {e["relation"].split(".")[-1]
                                       for e in overdue["exposes"]}
    text = run_cli("--dsn", db.dsn, "--rules", rules, "lint", "--koha-saved-sql")
    assert "saved_sql 5: Reading history of a patron: exposes" in text.stdout
    assert text.returncode == 1


def test_lint_koha_saved_sql_as_a_restricted_login_is_refused(world, tmp_path) -> None:
    db, staff, _, _ = world
    rules = str(write_koha_rules(tmp_path, db.prefix))
    out = run_cli("--dsn", db.dsn_as(staff.dora, PASSWORD), "--rules", rules, "lint",
                  "--koha-saved-sql")
    assert out.returncode != 0 and "saved_sql" not in out.stdout
