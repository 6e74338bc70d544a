"""Install, plan, status and uninstall on MariaDB: idempotent, diff-based, resumable after
a kill, and an uninstall that leaves the Koha objects and the grant tables as they were."""

# ruff: noqa: S608 - test SQL: names quoted with sqltext.ident/account

from __future__ import annotations

import signal
import time

import pytest

from ils_redact.backends import mariadb as m
from ils_redact.backends.mariadb.sqltext import account, ident, string
from ils_redact.errors import StateError
from ils_redact.stats import all_reports
from support.koha import (
    PASSWORD,
    KohaDb,
    MariaServer,
    popen_cli,
    run_cli,
    snapshot,
    write_koha_rules,
)


def test_install_opens_the_roles_last_and_grants_koha_only_to_definers(koha: KohaDb) -> None:
    # (a second install changing nothing, status and drift: tests/test_parity.py)
    plan = koha.install()
    assert plan.changes(), "a fresh database needs changes"
    kinds = {s.kind for s in plan.steps}
    assert {"bootstrap", "create-account", "create-role", "layer", "generated",
            "grant"} <= kinds
    # the restricted roles are opened last: every grant to a role comes after every other
    # change, so an interrupted install leaves nothing readable
    def role_grant(s) -> bool:
        return s.kind == "grant" and "@" not in s.target.split()[1]

    last_other = max(i for i, s in enumerate(plan.steps)
                     if s.kind != "record" and not role_grant(s))
    first_role_grant = min(i for i, s in enumerate(plan.steps) if role_grant(s))
    assert first_role_grant > last_other
    # roles exist as roles, the definer is a locked account
    assert koha.scalar("SELECT is_role FROM mysql.user WHERE User = %s AND Host = ''",
                       (koha.role("disclosure"),)) == "Y"
    assert koha.scalar("SELECT JSON_VALUE(Priv, '$.account_locked') FROM mysql.global_priv "
                       "WHERE User = %s AND Host = 'localhost'", (koha.owner,)) in ("1", "true")
    # nothing of the Koha database was granted to a role people get: only to the definer
    # account and to the statistics reports' definer role (granted to nobody)
    assert sorted(koha.rows("SELECT User FROM mysql.tables_priv WHERE Db = %s UNION "
                            "SELECT User FROM mysql.columns_priv WHERE Db = %s UNION "
                            "SELECT User FROM mysql.db WHERE Db = %s",
                            (koha.name, koha.name, koha.name))) == sorted(
        [(koha.owner,), (koha.role("stats_owner"),)])


def _scope_five(c, layer: str) -> None:
    """Patrons 37, 74, ... 185 in the administrator's own scope, statistics fresh."""
    c.execute(f"INSERT INTO {layer}.scope (patron_id, grantee, grantee_user, grantee_host, "
              "all_fields, expires_at, created_by, created_at) SELECT seq * 37, CURRENT_USER(), "
              "SUBSTRING_INDEX(CURRENT_USER(), '@', 1), SUBSTRING_INDEX(CURRENT_USER(), '@', -1), "
              "1, UTC_TIMESTAMP() + INTERVAL 1 DAY, 'test', UTC_TIMESTAMP() FROM seq_1_to_5")
    c.execute(f"ANALYZE TABLE {layer}.scope").fetchall()


def test_identity_view_uses_indexes(installed: KohaDb) -> None:
    """With a scope of a few patrons, the view reads the scope index and then borrowers
    by primary key (eq_ref), never a scan of borrowers."""
    layer = ident(installed.layer)
    with installed.connect() as c:
        _scope_five(c, layer)
        plan = c.execute(f"EXPLAIN FORMAT=JSON SELECT * FROM {layer}.borrowers").fetchone()[0]
        assert len(c.execute(f"SELECT * FROM {layer}.borrowers").fetchall()) == 5
    assert '"table_name": "sc"' in plan and '"key": "scope_account"' in plan
    borrowers = plan.split('"table_name": "t"')[1].split("}")[0]
    assert '"access_type": "eq_ref"' in borrowers and '"key": "PRIMARY"' in borrowers
    # the ILS table is read in place (the view merges): no temporary copy of its rows; the
    # two materialised derived tables are the scope and the clock (one row, a constant)
    assert '"table_name": "<derived' in plan and plan.count('"materialized"') == 2
    assert '"access_type": "system"' in plan


def _handler_reads(c) -> dict[str, int]:
    return {k: int(v) for k, v in c.execute("SHOW SESSION STATUS LIKE 'Handler_read%'")}


def test_identity_lookup_uses_indexes(installed: KohaDb) -> None:
    """The lookup procedure reads a few index entries per scoped patron, never a scan
    of borrowers (EXPLAIN does not reach into a CALL: the session's handler counters
    do)."""
    layer = ident(installed.layer)
    with installed.connect() as c:
        _scope_five(c, layer)
        # the first call of a connection loads the procedure and the functions it calls
        # from mysql.proc (index reads of their own): measure the calls after it
        c.rows(f"CALL {layer}.lookup_borrowers('[]')")
        for arg, want in (("NULL", 5), ("'[37, 74, 1]'", 2)):
            before = _handler_reads(c)
            assert len(c.rows(f"CALL {layer}.lookup_borrowers({arg})")) == want
            after = _handler_reads(c)
            scanned = after["Handler_read_rnd_next"] - before["Handler_read_rnd_next"]
            keyed = after["Handler_read_key"] - before["Handler_read_key"]
            assert scanned < 50, f"{arg}: {scanned} rows read by scan"  # borrowers: 2,000
            assert 0 < keyed <= 40, f"{arg}: {keyed} index lookups"


def test_drift_is_repaired(installed: KohaDb) -> None:
    """A grant added by hand to a restricted role is revoked; a view replaced by hand is
    created again; an unlocked definer is locked again."""
    dis = installed.role("disclosure")
    with installed.connect() as c:
        c.execute(f"GRANT SELECT ON {ident(installed.name)}.issues TO {ident(dis)}")
        c.execute(f"CREATE OR REPLACE VIEW {ident(installed.layer)}.borrowers AS "
                  f"SELECT borrowernumber, surname FROM {ident(installed.name)}.borrowers")
        c.execute(f"ALTER USER {account(installed.owner, 'localhost')} ACCOUNT UNLOCK")
        st = m.status(c, installed.rules, reports=all_reports)
        assert not st["in_sync"]
        drift = " | ".join(st["drift"])
        assert "revoke" in drift and "generated view borrowers" in drift
        assert "alter-account" in drift
    installed.install()
    with installed.connect() as c:
        assert m.compute_install_plan(c, installed.rules, reports=all_reports).steps == []
        assert c.execute("SELECT COUNT(*) FROM mysql.tables_priv WHERE User = %s AND "
                         "Table_name = 'issues'", (dis,)).fetchone()[0] == 0
        view = c.execute("SELECT VIEW_DEFINITION, SECURITY_TYPE FROM information_schema.VIEWS "
                         "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'borrowers'",
                         (installed.layer,)).fetchone()
    assert "scope" in view[0] and view[1] == "DEFINER"


def test_tampered_layer_routine_is_repaired(installed: KohaDb) -> None:
    with installed.connect() as c:
        c.execute(f"DROP TRIGGER {ident(installed.layer)}.audit_log_no_delete")
        c.execute(f"CREATE OR REPLACE DEFINER = {account(installed.owner, 'localhost')} "
                  f"PROCEDURE {ident(installed.layer)}.request_approve(IN p_request BIGINT) "
                  "SELECT NULL")
        plan = m.compute_install_plan(c, installed.rules, reports=all_reports)
    keys = {s.target for s in plan.steps if s.kind == "repair"}
    assert keys == {"trigger audit_log_no_delete", "procedure request_approve"}
    installed.install()
    with installed.connect() as c:
        assert m.compute_install_plan(c, installed.rules, reports=all_reports).steps == []
        assert c.execute("SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE "
                         "EVENT_OBJECT_SCHEMA = %s", (installed.layer,)).fetchone()[0] == 9


def test_uninstall_restores_show_create_and_grant_tables(koha: KohaDb) -> None:
    # a login that existed before install, and is made staff through ils-redact
    existing = f"{koha.prefix}preexisting"
    with koha.connect() as c:
        c.execute(f"CREATE USER {account(existing, '%')} IDENTIFIED BY {string(PASSWORD)}")
    before = snapshot(koha, (existing,))
    koha.install()
    koha.login("clerk", "admin")                   # created by ils-redact
    koha.login("preexisting", "admin", "disclosure", existing=True)
    assert snapshot(koha, (existing,)) != before
    with koha.connect() as c:
        plan, blocking = m.compute_uninstall_plan(c)
    assert blocking == []
    koha.uninstall()
    after = snapshot(koha, (existing,))
    for key in before:
        assert after[key] == before[key], key
    assert after == before


def test_uninstall_refuses_what_it_did_not_do(installed: KohaDb) -> None:
    dis = installed.role("disclosure")
    with installed.connect() as c:
        c.execute(f"GRANT SELECT ON {ident(installed.name)}.items TO {ident(dis)}")
        c.execute(f"CREATE USER {account(installed.prefix + 'eve', '%')}")
        c.execute(f"GRANT {ident(dis)} TO {account(installed.prefix + 'eve', '%')}")
    with pytest.raises(StateError) as exc:
        installed.uninstall()
    msg = str(exc.value)
    assert "items" in msg and f"granted to {installed.prefix}eve@%" in msg
    assert installed.scalar("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE "
                            "SCHEMA_NAME = %s", (installed.layer,)) == 1


def test_uninstall_keeps_a_non_empty_audit_log(installed: KohaDb) -> None:
    with installed.connect(autocommit=False) as c:
        c.execute(f"CALL {ident(installed.layer)}.log_refusal('query', NULL, 'x')").fetchall()
        c.commit()
    with pytest.raises(StateError, match="audit log holds 1 entries"):
        installed.uninstall(discard_audit=False)
    installed.uninstall(discard_audit=True)


def test_roles_of_someone_else_are_refused(koha: KohaDb) -> None:
    with koha.connect() as c:
        c.execute(f"CREATE ROLE {ident(koha.role('disclosure'))}")
        with pytest.raises(StateError, match="was not created by ils-redact"):
            m.compute_install_plan(c, koha.rules, reports=all_reports)


def test_two_koha_databases_on_one_server(mariadb: MariaServer) -> None:
    """Each Koha database gets its own layer database; the same prefix for both is
    refused, because roles are server-wide."""
    a, b = mariadb.koha_db(), mariadb.koha_db()
    try:
        a.install()
        with b.connect() as c:
            with pytest.raises(StateError, match="server-wide") as exc:
                m.compute_install_plan(c, a.rules, reports=all_reports)  # a's prefix on b
        # the message itself says whose the role is and what to write in the rules
        msg = exc.value.message
        assert f"belongs to the install for database {a.name}" in msg
        assert "put {database} in role_prefix" in msg and "ils_redact_{database}_" in msg
        b.install()
        assert a.layer != b.layer
        assert a.scalar("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME "
                        "IN (%s, %s)", (a.layer, b.layer)) == 2
    finally:
        mariadb.release(a)
        mariadb.release(b)


def test_killed_install_resumes(koha: KohaDb, tmp_path) -> None:
    """Kill the CLI mid-install (blocked on a metadata lock after the layer files): what
    ran stays, nothing is readable by a restricted role, status says the run is
    unfinished, and the next install finishes it."""
    rules = write_koha_rules(tmp_path, koha.prefix)
    locker = m.connect(koha.dsn, autocommit=True)
    try:
        locker.execute(f"LOCK TABLES {ident(koha.name)}.borrowers WRITE")
        proc = popen_cli("--dsn", koha.dsn, "--rules", str(rules), "install", "-q",
                         "--lock-timeout", "60s")
        deadline = time.time() + 60
        waiting = False
        while time.time() < deadline and proc.poll() is None:
            waiting = bool(locker.execute(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE STATE LIKE "
                "'Waiting for table metadata lock%%' AND DB IN (%s, %s)",
                (koha.name, koha.layer)  # install creates the layer's objects from its database
            ).fetchone()[0])
            if waiting:
                break
            time.sleep(0.05)
        assert waiting, proc.communicate(timeout=10)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        locker.execute("UNLOCK TABLES")
    finally:
        locker.close()
    time.sleep(0.5)  # the server notices the closed connection
    with koha.connect() as c:
        st = m.status(c, koha.rules, reports=all_reports)
        assert st["unfinished_runs"] and not st["in_sync"]
        # nothing was granted to a restricted role yet
        for kind in ("disclosure", "exporter", "admin", "stats"):
            grants = [r[0] for r in c.execute(f"SHOW GRANTS FOR {ident(koha.role(kind))}")]
            assert grants == [f"GRANT USAGE ON *.* TO `{koha.role(kind)}`"], grants
        plan = m.compute_install_plan(c, koha.rules, reports=all_reports)
        assert any("stopped after" in n for n in plan.notes)
    done = run_cli("--dsn", koha.dsn, "--rules", str(rules), "install", "-q")
    assert done.returncode == 0, done.stderr
    with koha.connect() as c:
        st = m.status(c, koha.rules, reports=all_reports)
        assert st["in_sync"], st
        assert m.compute_install_plan(c, koha.rules, reports=all_reports).steps == []


def test_cli_refuses_a_dsn_of_the_other_engine(tmp_path, koha: KohaDb) -> None:
    rules = write_koha_rules(tmp_path, koha.prefix)
    out = run_cli("--dsn", "postgresql://postgres@127.0.0.1:5432/evergreen", "--rules",
                  str(rules), "status")
    assert out.returncode == 2
    assert "koha on MariaDB" in out.stderr and "PostgreSQL" in out.stderr
    out = run_cli("--dsn", koha.dsn, "status")  # default rules: Evergreen
    assert out.returncode == 2 and "MariaDB server" in out.stderr


def test_bad_rules_exit_2_with_file_and_line(tmp_path, koha: KohaDb) -> None:
    rules = write_koha_rules(tmp_path, koha.prefix,
                             lambda t: t.replace("      - surname\n", "      - surnam\n", 1))
    out = run_cli("--dsn", koha.dsn, "--rules", str(rules), "plan")
    assert out.returncode == 2
    line = next(i for i, x in enumerate(rules.read_text().splitlines(), 1)
                if x.strip() == "- surnam")
    assert f"{rules}:{line}: unknown column" in out.stderr and "surname" in out.stderr
    out = run_cli("--rules", str(rules), "rules", "check")
    assert out.returncode == 2 and f"{rules}:{line}" in out.stderr


def test_fingerprints_read_only_the_layer_database(mariadb: MariaServer) -> None:
    # CI failed once on this: the trigger fingerprint filtered on TRIGGER_SCHEMA, which
    # MariaDB cannot use to pick a database, so it opened every table of every database;
    # a table another session was altering was "skipped since its definition is being
    # modified by concurrent DDL", a warning that the recording INSERT (strict mode) turns
    # into an error, and install stopped halfway.  EXPLAIN says how many databases it reads.
    from ils_redact.backends.mariadb.state import _OBJECTS, fingerprint_sql

    with mariadb.connect() as c:
        for objtype in ("VIEW", "TRIGGER", "PROCEDURE"):
            sql = "SELECT " + fingerprint_sql(objtype, "ils_redact_nowhere", "x")
            extras = [str(r[-1]) for r in c.execute("EXPLAIN " + sql).fetchall()]
            assert not any("all databases" in e for e in extras), (objtype, extras)
        extras = [str(r[-1]) for r in c.execute(
            "EXPLAIN " + _OBJECTS, {"db": "ils_redact_nowhere"}).fetchall()]
        assert extras and not any("all databases" in e for e in extras), extras
