"""ils-redact verify on a clean install: exit 0, every check present, nothing changed.

Real servers only: an Evergreen-shaped database (510 tables, 137 views, 2,000 patrons) with
the layer installed, verified by the real console script in a subprocess.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg import sql

from ils_redact.backends import postgresql as pg
from ils_redact.backends.postgresql.state import read_state
from ils_redact.verify import verify
from ils_redact.verify.expect import expectations
from ils_redact.verify.hazards import CLASSES
from ils_redact.verify.stats_layer import layer_roles, read_stats_layer
from support import EgDb, create_role, snapshot, write_rules
from verify_support import install, verify_cli

RELATIONS = """
SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
"""


@pytest.fixture
def installed(eg_db: EgDb) -> EgDb:
    return install(eg_db)


def test_clean_install_verifies_and_changes_nothing(installed: EgDb, tmp_path: Path) -> None:
    db = installed
    before = snapshot(db)
    run = verify_cli(db, tmp_path)
    assert run.returncode == 0, run.explain()
    assert snapshot(db) == before  # schema dump, roles, policies, RLS flags, memberships
    data = run.data
    assert data is not None and data["ok"] and data["exit_code"] == 0
    assert data["roles"] == {k: db.role(k) for k in ("disclosure", "stats", "exporter")}

    # one check per role, per role and relation, per role's functions, per hazard, drift
    ids = [c["id"] for c in data["checks"]]
    relations = db.scalar(RELATIONS)
    assert relations > 640
    for kind in ("disclosure", "stats", "exporter"):
        assert f"catalog/{kind}" in ids and f"empirical/{kind}/functions" in ids
        assert sum(1 for i in ids if i.startswith(f"empirical/{kind}/")) == relations + 1
    assert [i for i in ids if i.startswith("hazard/")] == [f"hazard/{c}" for c in CLASSES]
    assert ids[-1] == "drift"
    assert len(ids) == len(set(ids)) == 3 + 3 * (relations + 1) + len(CLASSES) + 1

    # the only findings on a default PostgreSQL: TEMP through PUBLIC, as a warning
    assert {(f["code"], f["severity"]) for f in run.findings()} == {("H-TEMP", "warning")}
    assert run.check("hazard/reporter")["status"] == "skipped"
    # as the disclosure role: exactly the identity columns, and nothing of circulation
    usr = db.rules.identity_table("actor.usr")
    assert run.check("empirical/disclosure/actor.usr")["detail"] == \
        f"{len(usr.columns)} of 50 columns readable"
    assert run.check("empirical/disclosure/action.circulation")["detail"] == "closed"
    assert run.check("empirical/stats/actor.usr")["detail"] == "closed"
    assert "callable" in run.check("empirical/exporter/functions")["detail"]


def test_junit_has_one_case_per_check(installed: EgDb, tmp_path: Path) -> None:
    run = verify_cli(installed, tmp_path)
    assert run.returncode == 0, run.explain()
    root = run.junit_root()
    cases = root.findall("./testsuite/testcase")
    assert int(root.get("tests")) == len(cases) == len(run.data["checks"])
    assert root.get("failures") == "0" and root.get("skipped") == "1"
    names = {(c.get("classname"), c.get("name")) for c in cases}
    assert ("ils_redact.verify.catalog", "disclosure") in names
    assert ("ils_redact.verify.empirical.disclosure", "action.circulation") in names
    assert ("ils_redact.verify.hazard", "owner-rights-view") in names
    assert ("ils_redact.verify", "drift") in names
    temp = next(c for c in cases if c.get("name") == "temp")
    assert temp.find("failure") is None and "warning: H-TEMP" in temp.find("system-out").text
    skipped = next(c for c in cases if c.get("name") == "reporter")
    assert "--ils-config" in skipped.find("skipped").get("message")


def test_text_report(installed: EgDb, tmp_path: Path) -> None:
    run = verify_cli(installed, tmp_path, fmt="text")
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "catalog/disclosure" in out and "empirical/disclosure" in out
    assert "hazard/temp" in out and "warn" in out
    assert "verify: all rules hold:" in out and "(exit 0)" in out


def test_strict_fails_on_temp_until_public_loses_it(installed: EgDb, tmp_path: Path) -> None:
    db = installed
    run = verify_cli(db, tmp_path, "--strict")
    assert run.returncode == 1  # strict: the warning fails
    assert run.codes("warning") == {"H-TEMP"} and run.codes() == set()
    assert run.data["summary"]["violations"] == 3  # one per restricted role
    assert run.check("hazard/temp")["status"] == "fail"
    fix = run.findings("H-TEMP")[0]["fix"]
    assert fix.startswith(f'REVOKE TEMPORARY ON DATABASE "{db.name}" FROM PUBLIC;')
    with db.connect() as conn:  # the fix, as printed
        conn.execute(sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(
            sql.Identifier(db.name)))
    run = verify_cli(db, tmp_path, "--strict")
    assert run.returncode == 0, run.explain()
    assert run.findings() == []


def test_the_vetted_layer_grants_are_what_install_grants(installed: EgDb) -> None:
    """expect.LAYER_EXECUTE lists the layer's grants to restricted roles by hand: this
    keeps the list and the SQL files honest in both directions."""
    db = installed
    with db.connect(autocommit=False) as conn:
        catalog = pg.read_catalog(conn)
        state = read_state(conn, db.rules)
        stats = read_stats_layer(conn, layer_roles(conn, set(db.rules.roles(db.name).values()),
                                                   db.name))
        exp = expectations(db.rules, catalog, state, stats)
        for kind in ("disclosure", "stats", "exporter"):
            held = {r[0] for r in conn.execute(
                "SELECT n.nspname || '.' || p.proname || '(' || oidvectortypes(p.proargtypes) "
                "|| ')' FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname LIKE 'ils\\_redact%%' "
                "AND has_function_privilege(%s, p.oid, 'EXECUTE')", (db.role(kind),))}
            e = exp[kind]
            assert e.functions | e.owns <= held, kind  # every vetted grant is made
            assert held <= e.functions | e.owns | e.may_call, kind  # and nothing else
        conn.rollback()
    assert exp["exporter"].functions == {"ils_redact.export(bigint, text)",
                                         "ils_redact.log_refusal(text, bigint, text)"}
    assert exp["disclosure"].owns == {"ils_redact.export(bigint, text)"}
    assert exp["stats"].columns == frozenset() and exp["exporter"].columns == frozenset()


def test_exhaustive_reading_agrees_with_the_shortcut(installed: EgDb) -> None:
    """The shortcut proves a relation closed with one query naming no column; reading
    every column alone must find exactly the same, here with a leak seeded in."""
    db = installed
    with db.connect() as conn:
        conn.execute(sql.SQL("GRANT SELECT (usrname, passwd) ON actor.usr TO {}").format(
            sql.Identifier(db.role("disclosure"))))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA action TO {0}; "
                             "GRANT SELECT (id) ON action.circulation TO {0}").format(
            sql.Identifier(db.role("stats"))))
    with db.connect(autocommit=False) as conn:
        fast = verify(conn, db.rules)
        slow = verify(conn, db.rules, exhaustive=True)

    def outcome(report):
        return {(c.id, c.status(), c.detail, tuple(sorted(str(f) for f in c.findings)))
                for c in report.checks if c.id.startswith("empirical/")}

    assert outcome(fast) == outcome(slow)
    leak = fast.check("empirical/disclosure/actor.usr").findings
    assert [f.code for f in leak] == ["E-READABLE"] and "usrname, passwd" in leak[0].why
    assert fast.check("empirical/stats/action.circulation").findings[0].code == "E-READABLE"


def test_not_installed_is_an_error_with_a_junit_error(eg_db: EgDb, tmp_path: Path) -> None:
    run = verify_cli(eg_db, tmp_path)
    assert run.returncode == 2
    assert f"ils-redact is not installed in database {eg_db.name}" in run.stderr
    err = run.junit_root().find("./testsuite/testcase/error")
    assert err is not None and "not installed" in err.get("message")


def test_needs_a_superuser(installed: EgDb, tmp_path: Path) -> None:
    run = verify_cli(installed, tmp_path, user=installed.owner)
    assert run.returncode == 2
    assert f"verify must run as a superuser; {installed.owner} is not" in run.stderr


def test_rules_naming_a_missing_table_are_an_error(installed: EgDb, tmp_path: Path) -> None:
    rules = write_rules(tmp_path, installed.prefix,
                        lambda t: t.replace("  actor.usr_privacy_waiver:", "  actor.usr_waiver:"))
    run = verify_cli(installed, tmp_path, rules=rules)
    assert run.returncode == 2
    assert "unknown relation actor.usr_waiver" in run.stderr


def test_logins_in_the_restricted_roles_are_judged(installed: EgDb, tmp_path: Path) -> None:
    """A staff login in the exporter role is fine; one that is also a member of the ILS
    owner is not (owners are not bound by row-level security)."""
    db = installed
    clerk = create_role(db.server, f"{db.prefix}clerk", member_of=(db.role("exporter"),))
    run = verify_cli(db, tmp_path)
    assert run.returncode == 0, run.explain()
    assert "1 logins" in run.check("catalog/exporter")["detail"]
    # a grant of its own to the login: judged too
    with db.connect() as conn:
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA action TO {0}; "
                             "GRANT SELECT (usr) ON action.circulation TO {0}").format(
            sql.Identifier(clerk)))
    run = verify_cli(db, tmp_path)
    assert run.returncode == 1
    (f,) = run.findings("C-LOGIN", f"login {clerk}")
    assert "also holds privileges on 1 relations the restricted role is closed to " \
        "(action.circulation)" in f["why"]
    with db.connect() as conn:
        conn.execute(sql.SQL("REVOKE SELECT (usr) ON action.circulation FROM {0}; "
                             "REVOKE USAGE ON SCHEMA action FROM {0}").format(
            sql.Identifier(clerk)))
    with db.connect() as conn:
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(db.owner),
                                                      sql.Identifier(clerk)))
    run = verify_cli(db, tmp_path)
    assert run.returncode == 1
    (f, *more) = run.findings("C-LOGIN", f"login {clerk}")
    assert f"through {clerk} -> {db.owner} owns" in f["why"] and f["role"] == "exporter"
    assert f["fix"].startswith(f'REVOKE "{db.role("exporter")}" FROM "{clerk}";')
