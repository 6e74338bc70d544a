"""Each hazard seeded into an installed Koha database: verify exits 1 and names it precisely
(code, object, why, fix).  Where it proves something, the hazard is shown to be real as a
restricted login, and the fix is applied as printed and verify passes again.
"""

# ruff: noqa: S608 - test SQL: names quoted with sqltext.ident/account

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pymysql
import pytest

from ils_redact.backends.mariadb.sqltext import account, ident, string
from ils_redact.backends.mariadb.verify.layer_facts import SETTLE_SECONDS
from support.koha import KohaDb
from support.koha_verify import Run, dirty, execute, forget_public, verify_cli


def q(db: KohaDb, table: str) -> str:
    return f"{ident(db.name)}.{ident(table)}"


def role(db: KohaDb, kind: str) -> str:
    return ident(db.role(kind))


# -- seeded hazards: (seed, check) ----------------------------------------------------------

def seed_select_on_issues(db: KohaDb) -> None:
    execute(db, f"GRANT SELECT ON {q(db, 'issues')} TO {role(db, 'disclosure')}")


def check_select_on_issues(db: KohaDb, run: Run) -> None:
    f = run.only("C-TABLE-SELECT", f"{db.name}.issues", "disclosure")
    assert f"holds table-level SELECT on {db.name}.issues (granted directly): every column " \
        "of this confidential table" in f["why"]
    assert f["fix"] == f"REVOKE SELECT ON {q(db, 'issues')} FROM {role(db, 'disclosure')};"
    e = run.only("E-READABLE", f"{db.name}.issues", "disclosure")
    assert "borrowernumber" in e["why"] and "itemnumber" in e["why"]
    assert run.findings("E-READABLE", role="stats") == []
    assert any(d["object"].startswith("revoke ") for d in run.findings("D-DRIFT"))


def seed_definer_view(db: KohaDb) -> None:
    dirty(db)
    execute(db, f"CREATE DEFINER=CURRENT_USER SQL SECURITY DEFINER VIEW "
                f"{q(db, 'loans_per_patron')} AS SELECT borrowernumber, COUNT(*) AS loans "
                f"FROM {q(db, 'issues')} GROUP BY borrowernumber",
            f"GRANT SELECT ON {q(db, 'loans_per_patron')} TO {role(db, 'disclosure')}")


def check_definer_view(db: KohaDb, run: Run) -> None:
    f = run.only("H-OWNER-RIGHTS-VIEW", f"{db.name}.loans_per_patron")
    assert f"view {db.name}.loans_per_patron runs as its definer root@" in f["why"]
    assert f"reads {db.name}.issues: {db.role('disclosure')} may select from it" in f["why"]
    assert f["fix"].startswith(f"REVOKE SELECT ON {q(db, 'loans_per_patron')} FROM "
                               f"{role(db, 'disclosure')};")
    assert "SQL SECURITY INVOKER" in f["fix"]
    e = run.only("E-READABLE", f"{db.name}.loans_per_patron", "disclosure")
    assert "borrowernumber, loans (2 of 2)" in e["why"]
    run.only("H-UNCLASSIFIED-RELATION", f"{db.name}.loans_per_patron")
    # what the finding says is true: a disclosure login reads every patron's loan count
    login = db.login("viewer")
    execute(db, f"GRANT {role(db, 'disclosure')} TO {account(login, '%')}",
            f"SET DEFAULT ROLE {role(db, 'disclosure')} FOR {account(login, '%')}")
    assert db.scalar(f"SELECT COUNT(*) FROM {q(db, 'loans_per_patron')}", user=login) > 100


def seed_membership(db: KohaDb) -> None:
    reports = ident(f"{db.prefix}reports")
    execute(db, f"CREATE ROLE {reports}", f"GRANT SELECT ON {ident(db.name)}.* TO {reports}",
            f"GRANT {reports} TO {role(db, 'disclosure')}")


def check_membership(db: KohaDb, run: Run) -> None:
    dis, reports = db.role("disclosure"), f"{db.prefix}reports"
    f = run.only("C-MEMBERSHIP", f"{dis} -> {reports}", "disclosure")
    assert f"{dis} acts with the privileges of role {reports}" in f["why"]
    assert f"{reports} holds 1 privileges (SELECT on {db.name}.*)" in f["why"]
    assert f["fix"] == f"REVOKE {ident(reports)} FROM {ident(dis)};"
    d = run.only("C-DATABASE", f"{db.name}.*", "disclosure")
    assert f"(through {dis} -> {reports}): it covers every table of the Koha database" \
        in d["why"]
    assert len(run.findings("E-READABLE", role="disclosure")) == 293
    assert run.findings("E-READABLE", role="exporter") == []
    assert any(x["object"] == f"revoke-role role {dis}" for x in run.findings("D-DRIFT"))


def _procedure(db: KohaDb) -> None:
    dirty(db)
    execute(db, f"CREATE DEFINER=CURRENT_USER PROCEDURE {q(db, 'loans_of')}(IN p BIGINT) "
                "READS SQL DATA SQL SECURITY DEFINER "
                "SELECT itemnumber, issuedate FROM issues WHERE borrowernumber = p")


def seed_definer_procedure_public(db: KohaDb) -> None:
    _procedure(db)
    execute(db, f"GRANT EXECUTE ON PROCEDURE {q(db, 'loans_of')} TO PUBLIC")


def check_definer_procedure_public(db: KohaDb, run: Run) -> None:
    f = run.only("H-SECURITY-DEFINER", f"procedure {db.name}.loans_of")
    assert f"SQL SECURITY DEFINER procedure {db.name}.loans_of runs as root@" in f["why"]
    assert f"PUBLIC may execute it; its text reads {db.name}.issues" in f["why"]
    assert f["fix"] == f"REVOKE EXECUTE ON PROCEDURE {q(db, 'loans_of')} FROM PUBLIC;"
    p = run.only("H-PUBLIC-GRANT", f"procedure {db.name}.loans_of")
    assert f"PUBLIC holds EXECUTE on procedure {db.name}.loans_of" in p["why"]
    for kind in ("disclosure", "stats", "exporter"):  # PUBLIC's is everyone's
        e = run.only("E-FUNCTION", f"procedure {db.name}.loans_of", kind)
        assert "runs as root@" in e["why"]
        c = run.only("C-PRIVILEGE", f"procedure {db.name}.loans_of", kind)
        assert "(through PUBLIC)" in c["why"]
    _prove_the_procedure_leaks(db)


def seed_definer_procedure_role(db: KohaDb) -> None:
    _procedure(db)
    execute(db, f"GRANT EXECUTE ON PROCEDURE {q(db, 'loans_of')} TO {role(db, 'disclosure')}")


def check_definer_procedure_role(db: KohaDb, run: Run) -> None:
    f = run.only("H-SECURITY-DEFINER", f"procedure {db.name}.loans_of")
    assert f"{db.role('disclosure')} may execute it; its text reads {db.name}.issues" \
        in f["why"] and "PUBLIC" not in f["why"]
    assert f["fix"] == (f"REVOKE EXECUTE ON PROCEDURE {q(db, 'loans_of')} FROM "
                        f"{role(db, 'disclosure')};")
    run.only("E-FUNCTION", f"procedure {db.name}.loans_of", "disclosure")
    assert run.findings("E-FUNCTION", role="exporter") == []
    assert run.findings("H-PUBLIC-GRANT") == []
    _prove_the_procedure_leaks(db)


def _prove_the_procedure_leaks(db: KohaDb) -> None:
    """As a login in the disclosure role: the loans of a patron nobody asked about."""
    login = db.login("caller")
    execute(db, f"GRANT {role(db, 'disclosure')} TO {account(login, '%')}",
            f"SET DEFAULT ROLE {role(db, 'disclosure')} FOR {account(login, '%')}")
    patron = db.scalar(f"SELECT borrowernumber FROM {q(db, 'issues')} LIMIT 1")
    with db.connect(login) as c:
        assert c.execute(f"CALL {q(db, 'loans_of')}(%s)", (patron,)).fetchall()


def seed_unclassified(db: KohaDb) -> None:
    execute(db, f"CREATE TABLE {q(db, 'patron_reading_challenge')} (borrowernumber INT, "
                "book VARCHAR(200))",
            f"ALTER TABLE {q(db, 'borrowers')} ADD COLUMN favourite_genre VARCHAR(50)")


def check_unclassified(db: KohaDb, run: Run) -> None:
    f = run.only("H-UNCLASSIFIED-RELATION", f"{db.name}.patron_reading_challenge")
    assert "is not in the rules (new since they were written, e.g. a Koha upgrade?)" \
        in f["why"]
    c = run.only("H-UNCLASSIFIED-COLUMN", f"{db.name}.borrowers.favourite_genre")
    assert "list favourite_genre under identity.borrowers.columns or .withheld" in c["fix"]
    for kind in ("disclosure", "stats", "exporter", "admin"):  # closed meanwhile
        assert run.check(f"empirical/{kind}/{db.name}.patron_reading_challenge")[
            "detail"] == "closed"
    # nothing to grant or revoke; the catalog install recorded for the gate is stale
    drift = run.findings("D-DRIFT")
    assert [d["object"] for d in drift] == [f"catalog {db.layer}.catalog_snapshot"], drift


def seed_global_select_on_staff_login(db: KohaDb) -> None:
    login = db.login("clerk")
    execute(db, f"GRANT {role(db, 'disclosure')} TO {account(login, '%')}",
            f"GRANT SELECT ON *.* TO {account(login, '%')}")


def check_global_select_on_staff_login(db: KohaDb, run: Run) -> None:
    login = f"{db.prefix}clerk"
    f = run.only("C-LOGIN", f"login {login}@%", "disclosure")
    assert f"{login}@% acts as {db.role('disclosure')} ({login}@% -> " \
        f"{db.role('disclosure')}) and holds global SELECT (it reads every column of every " \
        "table of every database" in f["why"]
    assert f["fix"] == (f"REVOKE {role(db, 'disclosure')} FROM {account(login, '%')}; and "
                        "give the person a separate login")
    assert run.findings("C-GLOBAL") == []  # the role itself holds nothing global


def seed_global_file_on_stats(db: KohaDb) -> None:
    execute(db, f"GRANT FILE, SHOW DATABASES ON *.* TO {role(db, 'stats')}")


def check_global_file_on_stats(db: KohaDb, run: Run) -> None:
    f = run.only("C-GLOBAL", "*.* (FILE, SHOW DATABASES)", "stats")
    assert "FILE: it reads and writes files on the server" in f["why"]
    assert "SHOW DATABASES: it lists every database" in f["why"]
    assert f["fix"] == f"REVOKE FILE, SHOW DATABASES ON *.* FROM {role(db, 'stats')};"


def seed_unlocked_definer(db: KohaDb) -> None:
    execute(db, f"ALTER USER {account(db.owner, 'localhost')} ACCOUNT UNLOCK")


def check_unlocked_definer(db: KohaDb, run: Run) -> None:
    f = run.only("H-DEFINER-UNLOCKED", f"account {db.owner}@localhost")
    assert "is not locked and has no password: whoever logs in as it reads the identity " \
        "columns of every patron" in f["why"]
    assert f["fix"].startswith(f"ALTER USER {account(db.owner, 'localhost')} ACCOUNT LOCK;")
    run.only("D-DRIFT", f"alter-account {db.owner}@localhost")
    assert "NOT locked" in run.check("catalog/definer")["detail"]


ANON_HOST = "nowhere.invalid"


def seed_anonymous_with_the_role(db: KohaDb) -> None:
    host = f"{db.prefix}{ANON_HOST}"  # no client comes from there: nobody else's login
    execute(db, f"CREATE USER {account('', host)}",
            f"GRANT {role(db, 'disclosure')} TO {account('', host)}")


def check_anonymous_with_the_role(db: KohaDb, run: Run) -> None:
    host = f"{db.prefix}{ANON_HOST}"
    f = run.only("H-ANONYMOUS", f"account ''@{host}")
    assert f"anonymous account ''@'{host}' (no password): anyone who connects from " \
        f"'{host}' without an account of their own is this account, and it acts as " \
        f"{db.role('disclosure')} (@{host} -> {db.role('disclosure')})" in f["why"]
    assert f["fix"] == f"DROP USER {account('', host)};"


def seed_public_select(db: KohaDb) -> None:
    execute(db, f"GRANT SELECT ON {q(db, 'issues')} TO PUBLIC")


def check_public_select(db: KohaDb, run: Run) -> None:
    f = run.only("H-PUBLIC-GRANT", f"{db.name}.issues")
    assert f"PUBLIC holds SELECT on {db.name}.issues: a confidential Koha table" in f["why"]
    assert f["fix"] == f"REVOKE SELECT ON {q(db, 'issues')} FROM PUBLIC;"
    for kind in ("disclosure", "stats", "exporter"):
        c = run.only("C-TABLE-SELECT", f"{db.name}.issues", kind)
        assert "(through PUBLIC)" in c["why"]
        run.only("E-READABLE", f"{db.name}.issues", kind)


def seed_unscoped_view(db: KohaDb) -> None:
    cols = ", ".join(ident(c) for c in db.rules.identity[0].columns)
    execute(db, f"CREATE OR REPLACE ALGORITHM=MERGE DEFINER={account(db.owner, 'localhost')} "
                f"SQL SECURITY DEFINER VIEW {ident(db.layer)}.borrowers AS "
                f"SELECT {cols} FROM {q(db, 'borrowers')}")


def check_unscoped_view(db: KohaDb, run: Run) -> None:
    f = run.only("E-ROWS", f"{db.layer}.borrowers", "disclosure")
    assert f"in a session that no approved request names, {db.layer}.borrowers returned " \
        "2,000 rows of patrons: the view no longer limits rows" in f["why"]
    run.only("D-DRIFT", "generated view borrowers")


def seed_unscoped_lookup(db: KohaDb) -> None:
    """lookup_borrowers re-created without its scope filter (same definer, same grant)."""
    cols = ", ".join(ident(c) for c in db.rules.identity[0].columns)
    execute(db, f"CREATE OR REPLACE DEFINER={account(db.owner, 'localhost')} PROCEDURE "
                f"{ident(db.layer)}.lookup_borrowers(IN p_patrons LONGTEXT) READS SQL DATA "
                f"SQL SECURITY DEFINER SELECT {cols} FROM {q(db, 'borrowers')}")


def check_unscoped_lookup(db: KohaDb, run: Run) -> None:
    f = run.only("E-ROWS", f"procedure {db.layer}.lookup_borrowers", "disclosure")
    assert f"CALL {db.layer}.lookup_borrowers(NULL) returned 2,000 rows of patrons: the " \
        "procedure no longer limits rows" in f["why"]
    run.only("D-DRIFT", "generated procedure lookup_borrowers")


def seed_layer_routine_definer(db: KohaDb) -> None:
    """log_refusal re-created as it is, but with the administrator as its definer."""
    with db.connect() as c:
        _, mode, text = c.execute(
            f"SHOW CREATE PROCEDURE {ident(db.layer)}.log_refusal").fetchone()[:3]
        c.execute("SET SESSION sql_mode = %s", (mode,))
        c.execute(re.sub(r"^CREATE DEFINER=\S+ PROCEDURE `log_refusal`",
                         f"CREATE OR REPLACE DEFINER=CURRENT_USER PROCEDURE "
                         f"{ident(db.layer)}.`log_refusal`", text, count=1))


def check_layer_routine_definer(db: KohaDb, run: Run) -> None:
    for kind in ("disclosure", "exporter"):
        f = run.only("C-LAYER-FUNCTION", f"procedure {db.layer}.log_refusal", kind)
        assert "runs as root@" in f["why"]
        assert f"the layer defines it as {db.owner}@localhost with SQL SECURITY DEFINER" \
            in f["why"]
    run.only("D-DRIFT", "repair procedure log_refusal")


def seed_stats_owner_granted(db: KohaDb) -> None:
    login = db.login("analyst")
    execute(db, f"GRANT {role(db, 'stats_owner')} TO {account(login, '%')}")


def check_stats_owner_granted(db: KohaDb, run: Run) -> None:
    owner, login = db.role("stats_owner"), f"{db.prefix}analyst"
    f = run.only("C-DEFINER", f"role {owner}")
    assert f"the definer role {owner} is granted to {login}@%: it is granted to nobody" \
        in f["why"]
    assert f["fix"] == f"REVOKE {role(db, 'stats_owner')} FROM {account(login, '%')};"
    assert run.check("catalog/definer")["detail"].endswith("granted to 1")
    # what the finding says is true: the login reads a counted Koha column row by row
    with db.connect(login) as c:
        c.execute(f"SET ROLE {role(db, 'stats_owner')}")
        assert c.execute(f"SELECT COUNT(*) FROM {q(db, 'issues')}").fetchone()[0] > 0


def grant_proxy(db: KohaDb, proxied: tuple[str, str], proxy: tuple[str, str]) -> None:
    """``GRANT PROXY ON proxied TO proxy``, written into the grant table: only an account
    holding PROXY WITH GRANT OPTION (root@localhost, over the socket) may run the
    statement, and the tests connect over TCP.  Dropping the proxy login removes it."""
    execute(db, "INSERT INTO mysql.proxies_priv (Host, User, Proxied_host, Proxied_user, "
                f"With_grant, Grantor) VALUES ({string(proxy[1])}, {string(proxy[0])}, "
                f"{string(proxied[1])}, {string(proxied[0])}, 0, 'root@localhost')",
            "FLUSH PRIVILEGES")


def seed_proxy_definer(db: KohaDb) -> None:
    grant_proxy(db, (db.owner, "localhost"), (db.login("relay"), "%"))


def check_proxy_definer(db: KohaDb, run: Run) -> None:
    relay = f"{db.prefix}relay"
    f = run.only("H-PROXY", f"account {relay}@%")
    assert f["severity"] == "violation"
    assert f"{relay}@% holds PROXY ON '{db.owner}'@'localhost', which covers " \
        f"{db.owner}@localhost, the layer's definer" in f["why"]
    assert f["fix"].startswith(f"REVOKE PROXY ON {account(db.owner, 'localhost')} FROM "
                               f"{account(relay, '%')};")


SEEDS: dict[str, tuple[Callable[[KohaDb], None], Callable[[KohaDb, Run], None]]] = {
    "select-on-issues": (seed_select_on_issues, check_select_on_issues),
    "definer-view": (seed_definer_view, check_definer_view),
    "membership": (seed_membership, check_membership),
    "definer-procedure-public": (seed_definer_procedure_public, check_definer_procedure_public),
    "definer-procedure-role": (seed_definer_procedure_role, check_definer_procedure_role),
    "unclassified": (seed_unclassified, check_unclassified),
    "global-select-staff-login": (seed_global_select_on_staff_login,
                                  check_global_select_on_staff_login),
    "global-file-stats": (seed_global_file_on_stats, check_global_file_on_stats),
    "unlocked-definer": (seed_unlocked_definer, check_unlocked_definer),
    "anonymous": (seed_anonymous_with_the_role, check_anonymous_with_the_role),
    "public-select": (seed_public_select, check_public_select),
    "unscoped-view": (seed_unscoped_view, check_unscoped_view),
    "unscoped-lookup": (seed_unscoped_lookup, check_unscoped_lookup),
    "layer-routine-definer": (seed_layer_routine_definer, check_layer_routine_definer),
    "stats-owner-granted": (seed_stats_owner_granted, check_stats_owner_granted),
    "proxy-definer": (seed_proxy_definer, check_proxy_definer),
}

def seed_namesake(db: KohaDb) -> None:
    """A second account of a staff login's name, made by hand (staff grant refuses it):
    the day it gets a role, the identity views could not tell the two apart."""
    login = db.login("clerk", "disclosure")
    execute(db, f"CREATE USER {account(login, 'localhost')}")


def check_namesake(db: KohaDb, run: Run) -> None:
    login = f"{db.prefix}clerk"
    f = run.only("H-NAMESAKE", f"login name {login}")
    assert f"accounts {login}@%, {login}@localhost share the user name {login}" in f["why"]
    assert "keys scope and the audit log on the account" in f["why"]
    assert f["fix"] == f"DROP USER {account(login, 'localhost')};"


def seed_unlogged_export(db: KohaDb) -> None:
    """The attack: export, take the document, roll back (the audit entry with it)."""
    import time

    from support.koha_workflow import Staff

    staff = Staff.create(db)
    rid = staff.request(staff.alice, [33], approve_as=staff.bob)
    with db.connect(staff.alice, autocommit=False) as c:
        c.execute(f"SET ROLE {role(db, 'exporter')}")
        document = c.rows(f"CALL {ident(db.layer)}.export(%s, 'csv')", (rid,))[0][1]
        c.rollback()
    assert document and "patron33@example.org" in document
    time.sleep(SETTLE_SECONDS + 1)


def check_unlogged_export(db: KohaDb, run: Run) -> None:
    [f] = run.findings("H-TRACE-UNLOGGED")
    assert f"{db.prefix}alice@% exported request " in f["why"]
    assert "its audit entry" in f["why"] and "is not in the log" in f["why"]


def seed_transactional_trace(db: KohaDb) -> None:
    execute(db, f"ALTER TABLE {ident(db.layer)}.trace ENGINE=InnoDB")


def check_transactional_trace(db: KohaDb, run: Run) -> None:
    f = run.only("H-TRACE", f"{db.layer}.trace")
    assert "is InnoDB, a transactional engine" in f["why"]


SEEDS.update({
    "namesake": (seed_namesake, check_namesake),
    "unlogged-export": (seed_unlogged_export, check_unlogged_export),
    "transactional-trace": (seed_transactional_trace, check_transactional_trace),
})

#: the fix as printed restores a clean verify (the others need more than one statement, or
#: a decision: classify a table, drop a view, give a person a second login)
FIXABLE = {"select-on-issues": "C-TABLE-SELECT", "membership": "C-MEMBERSHIP",
           "unlocked-definer": "H-DEFINER-UNLOCKED", "public-select": "H-PUBLIC-GRANT",
           "global-file-stats": "C-GLOBAL", "anonymous": "H-ANONYMOUS",
           "stats-owner-granted": "C-DEFINER", "namesake": "H-NAMESAKE",
           "transactional-trace": "H-TRACE"}


@pytest.mark.parametrize("name", list(SEEDS))
def test_seeded_hazard_fails_verify(installed: KohaDb, tmp_path: Path, name: str) -> None:
    db = installed
    seed, check = SEEDS[name]
    host = f"{db.prefix}{ANON_HOST}"
    try:
        seed(db)
        run = verify_cli(db, tmp_path)
        assert run.returncode == 1, run.stdout[-3000:] + run.stderr
        check(db, run)
        assert run.data["ok"] is False
        if name in FIXABLE:
            fix = run.findings(FIXABLE[name])[0]["fix"]
            execute(db, fix.split(";")[0])
            again = verify_cli(db, tmp_path)
            assert again.returncode == 0, again.explain()
    finally:
        execute(db, f"DROP USER IF EXISTS {account('', host)}")
        forget_public(db)


def test_text_report_names_the_hazard(installed: KohaDb, tmp_path: Path) -> None:
    seed_select_on_issues(installed)
    run = verify_cli(installed, tmp_path, fmt="text")
    assert run.returncode == 1
    out = run.stdout
    assert f"VIOLATION  C-TABLE-SELECT  {installed.name}.issues  [disclosure]" in out
    assert f"fix: REVOKE SELECT ON {q(installed, 'issues')} FROM " \
        f"{role(installed, 'disclosure')};" in out
    assert "the rules do NOT hold" in out and "(exit 1)" in out


def test_probing_a_routine_never_runs_its_body(installed: KohaDb, tmp_path: Path) -> None:
    """Every routine a restricted role may call is called with one argument too many: the
    server refuses before the body.  Here a PUBLIC definer procedure and function that
    would write a row: verify finds both, and no row is written."""
    db = installed
    extra = f"{db.prefix}extra"
    execute(db, f"CREATE DATABASE {ident(extra)}",
            f"CREATE TABLE {ident(extra)}.calls (n INT)",
            f"CREATE DEFINER=CURRENT_USER PROCEDURE {ident(extra)}.touch(IN p INT) "
            f"MODIFIES SQL DATA SQL SECURITY DEFINER INSERT INTO {ident(extra)}.calls VALUES (p)",
            f"CREATE DEFINER=CURRENT_USER FUNCTION {ident(extra)}.touched() RETURNS INT "
            f"MODIFIES SQL DATA SQL SECURITY DEFINER BEGIN INSERT INTO {ident(extra)}.calls "
            "VALUES (0); RETURN 1; END",
            f"GRANT EXECUTE ON PROCEDURE {ident(extra)}.touch TO PUBLIC",
            f"GRANT EXECUTE ON FUNCTION {ident(extra)}.touched TO PUBLIC")
    try:
        run = verify_cli(db, tmp_path)
        assert run.returncode == 1
        for kind in ("disclosure", "stats", "exporter"):
            run.only("E-FUNCTION", f"procedure {extra}.touch", kind)
            run.only("E-FUNCTION", f"function {extra}.touched", kind)
        h = run.only("H-SECURITY-DEFINER", f"procedure {extra}.touch")
        assert "its text names no protected table" in h["why"]
        assert db.scalar(f"SELECT COUNT(*) FROM {ident(extra)}.calls") == 0
        # and the probe is not blind: the same call with the right arguments does write
        with db.connect() as c:
            c.execute(f"CALL {ident(extra)}.touch(7)")
        assert db.scalar(f"SELECT COUNT(*) FROM {ident(extra)}.calls") == 1
    finally:
        execute(db, f"DROP DATABASE IF EXISTS {ident(extra)}")
        forget_public(db)


def test_a_login_with_admin_option_on_a_restricted_role(installed: KohaDb,
                                                        tmp_path: Path) -> None:
    db = installed
    login = db.login("lead")
    execute(db, f"GRANT {role(db, 'exporter')} TO {account(login, '%')} WITH ADMIN OPTION")
    run = verify_cli(db, tmp_path)
    assert run.returncode == 1
    f = run.only("C-LOGIN", f"login {login}@%", "exporter")
    assert f"holds {db.role('exporter')} WITH ADMIN OPTION: it can give " \
        f"{db.role('exporter')} to any login" in f["why"]
    assert f["fix"] == (f"REVOKE ADMIN OPTION FOR {role(db, 'exporter')} FROM "
                        f"{account(login, '%')};")
    execute(db, f["fix"].rstrip(";"))
    assert verify_cli(db, tmp_path).returncode == 0


def test_a_role_granted_to_public(installed: KohaDb, tmp_path: Path) -> None:
    """MariaDB 10.11: a role granted to PUBLIC is every session's, with no SET ROLE."""
    db = installed
    execute(db, f"GRANT {role(db, 'exporter')} TO PUBLIC")
    try:
        run = verify_cli(db, tmp_path)
        assert run.returncode == 1
        f = run.only("H-PUBLIC-GRANT", f"role {db.role('exporter')}")
        assert f"an ils-redact role: every account may act as {db.role('exporter')}" in f["why"]
        assert f["fix"] == f"REVOKE {role(db, 'exporter')} FROM PUBLIC;"
        # it is real: a login with no role calls the export procedure's refusal path
        login = db.login("nobody")
        with db.connect(login) as c:
            with pytest.raises(pymysql.err.MySQLError) as exc:
                c.execute(f"CALL {ident(db.layer)}.export(1)").fetchall()
            assert exc.value.args[0] == 1318  # allowed: only the argument count is wrong
    finally:
        execute(db, f"REVOKE {role(db, 'exporter')} FROM PUBLIC")


def test_a_proxy_onto_a_staff_login_is_a_warning(installed: KohaDb, tmp_path: Path) -> None:
    """PROXY on a login in a restricted role (here by a pattern that matches it): the proxy
    would act with the role outside its grants.  A warning (the scope and the audit log
    see the proxy's own name); --strict fails on it.  Proxying itself needs a PAM-style
    plugin this server does not have, so the test is of the grant tables."""
    db = installed
    dina = db.login("dina", "disclosure")
    relay = db.login("relay2")
    pattern = dina[:-2] + "%"  # matches dina, and no definer
    grant_proxy(db, (pattern, "%"), (relay, "%"))
    run = verify_cli(db, tmp_path)
    assert run.returncode == 0, run.explain()
    f = run.only("H-PROXY", f"account {relay}@%")
    assert f["severity"] == "warning"
    assert f"which covers {dina}@%: with an authentication plugin that maps users, it acts " \
        f"as {db.role('exporter')} ({dina}@% -> " in f["why"]
    assert f["fix"].startswith(f"REVOKE PROXY ON {account(pattern, '%')} FROM "
                               f"{account(relay, '%')};")
    assert verify_cli(db, tmp_path, "--strict").returncode == 1
    execute(db, f"DROP USER {account(relay, '%')}")  # the fix's effect (see grant_proxy)
    assert verify_cli(db, tmp_path, "--strict").returncode == 0


def test_lookups_no_request_followed_are_warnings(installed: KohaDb, tmp_path: Path) -> None:
    """An admin who looks patrons up and names them in no request (within the bound a
    request has) is reported, once the hour in which a request could follow is over:
    the trace row is written as patron_lookup writes it, two hours ago."""
    db = installed
    carl = db.login("carl", "admin")
    with db.connect(carl) as c:
        c.rows(f"CALL {ident(db.layer)}.patron_lookup('[11, 12]', NULL)")
    execute(db, f"INSERT INTO {ident(db.layer)}.trace (at, account, action, request_id, "
                "patrons, detail, conn) SELECT at - INTERVAL 2 HOUR, account, action, "
                f"request_id, patrons, detail, conn FROM {ident(db.layer)}.trace "
                f"WHERE account = {string(carl + '@%')}")
    run = verify_cli(db, tmp_path)
    assert run.returncode == 0, run.explain()  # a warning: within what a request may name
    f = run.only("H-TRACE-LOOKUP", f"login {carl}@%")
    assert f["severity"] == "warning"
    assert "looked up 2 patrons that no request of theirs (approved by another login) " \
        "named within the hour (patron ids 11, 12)" in f["why"]
