"""ils-redact verify on Koha (MariaDB): a clean install verifies with exit 0 and changes
nothing; the report's shape; the allow-list against what install grants; the probe login.

Real server only: a Koha-shaped database (all 293 tables, 2,000 patrons) with the layer
installed, verified by the real console script in a subprocess.
"""

# ruff: noqa: S608 - test SQL: names quoted with sqltext.ident/account

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from ils_redact.backends import mariadb as m
from ils_redact.backends.mariadb.generated import generated_objects
from ils_redact.backends.mariadb.planner import desired_grants, names_for
from ils_redact.backends.mariadb.sqltext import account, ident
from ils_redact.backends.mariadb.verify import context
from ils_redact.backends.mariadb.verify.expect import RESTRICTED_KINDS, sig
from ils_redact.backends.mariadb.verify.grants import read_server_grants
from ils_redact.backends.mariadb.verify.hazards import CLASSES
from ils_redact.backends.mariadb.verify.probe import probe_name, probe_session
from ils_redact.stats import all_reports
from support.koha import KohaDb, write_koha_rules
from support.koha_verify import execute, full_snapshot, probe_logins, verify_cli
from support.koha_workflow import Staff

KINDS = ("disclosure", "stats", "exporter", "admin")


@pytest.fixture(scope="module")
def world(installed_module: KohaDb) -> tuple[KohaDb, Staff]:
    """An installed database with the staff of a real workflow: admins, an exporter, two
    logins in the disclosure role, and an approved request (a scope that is not the
    probe's)."""
    db = installed_module
    staff = Staff.create(db)
    staff.request(staff.alice, [101, 202], grantee=staff.dora, approve_as=staff.bob)
    return db, staff


def test_clean_install_verifies_and_changes_nothing(world, tmp_path: Path) -> None:
    db, staff = world
    logins = (staff.alice, staff.bob, staff.dora, staff.erin)
    before = full_snapshot(db, logins)
    run = verify_cli(db, tmp_path)
    assert run.returncode == 0, run.explain()
    assert full_snapshot(db, logins) == before  # grant tables, SHOW CREATE, layer rows
    assert probe_logins(db) == []
    data = run.data
    assert data is not None and data["ok"] and data["exit_code"] == 0
    assert data["engine"] == "MariaDB" and data["database"] == db.name
    assert data["roles"] == {k: db.role(k) for k in KINDS}
    assert run.findings() == []

    # one check per role, per role and relation, per role's routines, per hazard, drift
    ids = [c["id"] for c in data["checks"]]
    layer = db.rows("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
                    (db.layer,))[0][0]
    relations = 293 + layer
    lookups = {"disclosure": 1}  # the disclosure role's lookup procedure: its rows
    for kind in KINDS:
        assert f"catalog/{kind}" in ids and f"empirical/{kind}/functions" in ids
        assert sum(1 for i in ids if i.startswith(f"empirical/{kind}/")) == \
            relations + 1 + lookups.get(kind, 0)
    assert "catalog/definer" in ids
    assert [i for i in ids if i.startswith("hazard/")] == [f"hazard/{c}" for c in CLASSES]
    assert ids[-1] == "drift"
    assert len(ids) == len(set(ids)) == 5 + 4 * (relations + 1) + 1 + len(CLASSES) + 1
    assert run.check(f"empirical/disclosure/lookup/{db.layer}.lookup_borrowers")["detail"] == \
        "no row outside the scope"

    # as the disclosure role: the view's identity columns, nothing of Koha's own tables
    n = len(db.rules.identity[0].columns)
    assert run.check(f"empirical/disclosure/{db.layer}.borrowers")["detail"] == \
        f"{n} of {n} columns readable"
    assert run.check(f"empirical/disclosure/{db.layer}.scope_patrons")["detail"] == \
        "3 of 3 columns readable"
    for kind in KINDS:
        assert run.check(f"empirical/{kind}/{db.name}.borrowers")["detail"] == "closed"
        assert run.check(f"empirical/{kind}/{db.name}.issues")["detail"] == "closed"
        assert run.check(f"empirical/{kind}/{db.layer}.trace")["detail"] == "closed"
        if kind != "admin":
            assert run.check(f"empirical/{kind}/{db.layer}.audit_log")["detail"] == "closed"
    assert run.check(f"empirical/admin/{db.layer}.audit_log")["detail"] == \
        "8 of 8 columns readable"  # admins read the requests and the audit log
    assert run.check(f"empirical/stats/{db.layer}.borrowers")["detail"] == "closed"
    assert ", 6 callable;" in run.check("empirical/disclosure/functions")["detail"]
    assert ", 2 callable;" in run.check("empirical/exporter/functions")["detail"]
    assert ", 7 callable;" in run.check("empirical/admin/functions")["detail"]
    reports = db.scalar("SELECT COUNT(*) FROM information_schema.ROUTINES WHERE "
                        "ROUTINE_SCHEMA = %s AND (ROUTINE_NAME LIKE 'report\\_%%' OR "
                        "ROUTINE_NAME IN ('stats_reports', 'stats_publications'))", (db.layer,))
    assert reports > 2  # the reports, their catalog and the published months
    assert f", {reports} callable;" in run.check("empirical/stats/functions")["detail"]
    # logins: two in the disclosure role, alice in the exporter role; root's automatic
    # admin mapping from CREATE ROLE is not a staff login
    assert run.check("catalog/disclosure")["detail"].endswith("2 logins")
    assert run.check("catalog/exporter")["detail"].endswith("1 logins")
    assert run.check("catalog/admin")["detail"].endswith("3 logins")  # alice, bob, carol
    definer = run.check("catalog/definer")["detail"]
    assert "account locked" in definer and f"{db.role('stats_owner')}: " in definer
    assert definer.endswith("granted to 0")
    assert run.check("hazard/reporter")["status"] == "skipped"
    assert data["summary"]["violations"] == 0


def test_the_vetted_layer_grants_are_what_install_grants(world) -> None:
    """expect.LAYER_GRANTS lists the layer's grants to restricted roles by hand; the planner
    has its own list.  Both directions: every vetted grant is made, and nothing else."""
    db, _ = world
    with db.connect(autocommit=False) as c:
        ctx = context(c, db.rules, reports=all_reports)
        c.rollback()
    catalog = ctx.catalog
    n = names_for(db.rules, db.name, db.layer)
    planned = desired_grants(db.rules, catalog, n, generated_objects(db.rules, catalog,
                                                                     db.layer), ctx.reports)
    for kind in RESTRICTED_KINDS:
        exp = ctx.expect[kind]
        held = {sig(g) for g in ctx.grants.own(db.role(kind))}
        assert held == set(exp.required | exp.allowed), kind
        assert {sig(g) for g in planned if g.grantee == db.role(kind)} == held, kind
    assert {x[2] for x in ctx.expect["exporter"].required} == {"export", "log_refusal",
                                                                "catalog_snapshot"}
    # nobody may append to the audit log but the layer's own routines
    assert not any(x[2] == "audit_append" for k in RESTRICTED_KINDS
                   for x in ctx.expect[k].required | ctx.expect[k].allowed)
    # the statistics role: nothing required by hand, what the statistics layer recorded
    # allowed (its reports and their catalog, EXECUTE only)
    stats = ctx.expect["stats"]
    assert stats.required == frozenset() and stats.allowed
    assert {(lv, p) for lv, _, _, p, _ in stats.allowed} == {("procedure", "EXECUTE")}
    assert {n for _, _, n, _, _ in stats.allowed} >= {"stats_reports"}
    assert ("table", db.layer, "borrowers", "SELECT", "") in ctx.expect["disclosure"].required


def test_global_privileges_are_decoded_as_the_server_prints_them(koha: KohaDb) -> None:
    """The access bit mask of mysql.global_priv, decoded, against SHOW GRANTS."""
    user = f"{koha.prefix}bits"
    privs = ["SELECT", "PROCESS", "FILE", "SHOW DATABASES", "SUPER", "CREATE USER",
             "REPLICATION SLAVE", "BINLOG MONITOR", "SET USER", "SLAVE MONITOR"]
    execute(koha, f"CREATE USER {account(user, '%')}",
            f"GRANT {', '.join(privs)} ON *.* TO {account(user, '%')}")
    with koha.connect() as c:
        shown = c.execute(f"SHOW GRANTS FOR {account(user, '%')}").fetchone()[0]
        sg = read_server_grants(c)
    decoded = {g.privilege for g in sg.own(f"{user}@%") if g.level == "global"}
    printed = set(re.match(r"GRANT (.*) ON \*\.\* TO", shown)[1].split(", "))
    assert decoded == printed == set(privs)


def test_probe_login_is_locked_holds_only_the_roles_and_is_dropped(world) -> None:
    db, _ = world
    roles = [db.role(k) for k in KINDS]
    with db.connect(autocommit=False) as admin:
        with probe_session(admin, roles) as s:
            user, host = s.execute("SELECT CURRENT_USER()").fetchone()[0].rsplit("@", 1)
            assert user.startswith("ils_redact_probe_")
            locked = db.scalar("SELECT JSON_VALUE(Priv, '$.account_locked') FROM "
                               "mysql.global_priv WHERE User = %s AND Host = %s", (user, host))
            assert locked in ("1", "true")  # locked again while its session works
            assert s.execute("SELECT CURRENT_ROLE()").fetchone()[0] is None
            grants = {r[0] for r in s.execute("SHOW GRANTS").fetchall()}
            usage = [g for g in grants if g.startswith("GRANT USAGE ON *.* TO ")]
            assert len(usage) == 1 and "IDENTIFIED BY PASSWORD" in usage[0]
            assert grants - set(usage) == {f"GRANT `{r}` TO `{user}`@`{host}`" for r in roles}
        assert probe_logins(db) == []


def test_a_stale_probe_login_is_a_warning(world, tmp_path: Path) -> None:
    db, _ = world
    user = probe_name(now=time.time() - 3600)
    who = account(user, "192.0.2.1")
    execute(db, f"CREATE USER {who} ACCOUNT LOCK")
    try:
        run = verify_cli(db, tmp_path)
        assert run.returncode == 0, run.explain()
        f = run.only("H-STALE-PROBE", f"account {user}@192.0.2.1")
        assert f["severity"] == "warning" and f["fix"] == f"DROP USER {who};"
        assert verify_cli(db, tmp_path, "--strict").returncode == 1
    finally:
        execute(db, f"DROP USER IF EXISTS {who}")


def test_needs_an_administrator(world, tmp_path: Path) -> None:
    db, staff = world
    run = verify_cli(db, tmp_path, user=staff.alice)
    assert run.returncode == 2
    assert f"verify must run as an administrator account; {staff.alice}@%" in run.stderr


def test_another_administrator_is_told_who_can_verify(world, tmp_path: Path) -> None:
    """MariaDB lets only a holder WITH ADMIN OPTION grant a role, ALL PRIVILEGES or not:
    verify says so before it changes anything, and names the account that can."""
    db, _ = world
    dba = f"{db.prefix}dba"
    execute(db, f"CREATE USER {account(dba, '%')} IDENTIFIED BY 'Sekr1t-pw'",
            f"GRANT ALL PRIVILEGES ON *.* TO {account(dba, '%')} WITH GRANT OPTION")
    try:
        run = verify_cli(db, tmp_path, user=dba)
        assert run.returncode == 2
        assert f"{dba}@% does not hold {db.role('disclosure')}, {db.role('stats')}, " \
            f"{db.role('exporter')}, {db.role('admin')} WITH ADMIN OPTION" in run.stderr
        installer = db.scalar("SELECT CURRENT_USER()")
        assert f"run verify as {installer} (the account that ran install" in run.stderr
        assert probe_logins(db) == []
    finally:
        execute(db, f"DROP USER {account(dba, '%')}")


def test_install_is_what_verify_expects_after_an_upgrade_of_the_rules(installed: KohaDb,
                                                                    tmp_path: Path) -> None:
    """Identity columns taken out of the rules: until install runs again, the view still
    shows them (drift, and the definer's extra grants); after install, verify passes."""
    db = installed
    rules = write_koha_rules(tmp_path, db.prefix, lambda t: t.replace(
        "      - fax\n", "", 1).replace("    withheld:\n",
                                      "    withheld:\n      fax: dropped\n", 1))
    run = verify_cli(db, tmp_path, rules=rules)
    assert run.returncode == 1
    assert run.findings("D-DRIFT")
    f = run.only("C-DEFINER", f"{db.name}.borrowers")
    assert "SELECT (fax) on" in f["why"]
    assert f["fix"] == f"REVOKE SELECT (`fax`) ON {ident(db.name)}.`borrowers` FROM " \
                       f"{account(db.owner, 'localhost')};"
    from ils_redact.rules import load_rules

    with db.connect(autocommit=False) as c:
        m.install(c, load_rules(rules), reports=all_reports)
    run = verify_cli(db, tmp_path, rules=rules)
    assert run.returncode == 0, run.explain()


def test_the_stats_role_may_hold_what_the_statistics_layer_recorded(installed: KohaDb,
                                                                    tmp_path: Path) -> None:
    """The statistics layer is not hard-coded: a report routine of the layer, defined by the
    layer's definer, may be granted to the stats role once install has recorded the grant
    (as the installer records every grant before it runs it).  Unrecorded, it is a
    violation like any other."""
    db = installed
    layer, stats = ident(db.layer), ident(db.role("stats"))
    execute(db, f"CREATE DEFINER={account(db.owner, 'localhost')} PROCEDURE "
                f"{layer}.stats_demo(IN p INT) READS SQL DATA SQL SECURITY DEFINER "
                f"SELECT COUNT(*) FROM {ident(db.name)}.borrowers",
            f"GRANT EXECUTE ON PROCEDURE {layer}.stats_demo TO {stats}")
    reports = db.scalar("SELECT COUNT(*) FROM information_schema.ROUTINES WHERE "
                        "ROUTINE_SCHEMA = %s AND (ROUTINE_NAME LIKE 'report\\_%%' OR "
                        "ROUTINE_NAME IN ('stats_reports', 'stats_publications'))", (db.layer,))
    run = verify_cli(db, tmp_path)
    assert run.returncode == 1
    run.only("C-PRIVILEGE", f"procedure {db.layer}.stats_demo", "stats")
    run.only("E-FUNCTION", f"procedure {db.layer}.stats_demo", "stats")
    h = run.only("H-SECURITY-DEFINER", f"procedure {db.layer}.stats_demo")
    assert f"its text reads {db.name}.borrowers" in h["why"]

    from ils_redact.backends.mariadb.state import Grant

    g = Grant(db.role("stats"), "procedure", db.layer, "stats_demo", "EXECUTE")
    execute(db, f"INSERT INTO {layer}.installed_object (kind, object, detail, installed_by, "
                f"installed_at) VALUES ('grant', '{g.key}', '{json.dumps(g.to_json())}', "
                "CURRENT_USER(), UTC_TIMESTAMP(6))")
    run = verify_cli(db, tmp_path)
    for check in ("catalog/stats", "empirical/stats/functions", "hazard/security-definer"):
        assert run.check(check)["status"] == "pass", run.explain()
    assert f", {reports + 1} callable;" in run.check("empirical/stats/functions")["detail"]
    # the planner of this version does not plan it: drift says so, and nothing else fails
    assert {f["code"] for f in run.findings()} == {"D-DRIFT"}
    # a recorded grant on the disclosure workflow's own objects is never the stats role's
    g2 = Grant(db.role("stats"), "table", db.layer, "scope", "SELECT")
    execute(db, f"GRANT SELECT ON {layer}.scope TO {stats}",
            f"INSERT INTO {layer}.installed_object (kind, object, detail, installed_by, "
            f"installed_at) VALUES ('grant', '{g2.key}', '{json.dumps(g2.to_json())}', "
            "CURRENT_USER(), UTC_TIMESTAMP(6))")
    run = verify_cli(db, tmp_path)
    run.only("C-PRIVILEGE", f"{db.layer}.scope", "stats")
    run.only("E-READABLE", f"{db.layer}.scope", "stats")
