"""Install, re-install, plan and uninstall on a database shaped like Evergreen.

Every property is checked on a real server through a real connection, as the role the
property is about; nothing is mocked.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from ils_redact.backends import postgresql as pg
from ils_redact.stats import all_reports
from support import EgDb, create_role, dump_schema, run_cli, snapshot, write_rules


def install(db: EgDb):
    with db.connect(autocommit=False) as conn:
        return pg.install(conn, db.rules, reports=all_reports)


def test_plan_is_what_install_runs(eg_db: EgDb, tmp_path: Path) -> None:
    rules = write_rules(tmp_path, eg_db.prefix)
    planned = run_cli("--dsn", eg_db.dsn, "--rules", str(rules), "--format", "json", "plan")
    assert planned.returncode == 0, planned.stderr
    import json

    digest = json.loads(planned.stdout)["sha256"]
    res = run_cli("--dsn", eg_db.dsn, "--rules", str(rules), "install", "--expect", digest[:16])
    assert res.returncode == 0, res.stderr
    # the same review no longer matches the (now empty) plan: refused, nothing applied
    res2 = run_cli("--dsn", eg_db.dsn, "--rules", str(rules), "install", "--expect", digest[:16])
    assert res2.returncode == 2
    assert "no longer the one reviewed" in res2.stderr


def test_older_layer_is_upgraded_by_the_newer_files_only(eg_db: EgDb, monkeypatch) -> None:
    """A database installed by an earlier release (layer v3: scope_patron_ids in SQL)
    gets exactly the newer files from the next install, keeps its function's owner and
    grants, and the disclosure role's row scope still holds."""
    from ils_redact.backends.postgresql import planner

    files = planner.layer_files()
    with monkeypatch.context() as m:  # the files up to v4 only; v3's function below
        m.setattr(planner, "layer_files", lambda: [f for f in files if f.version <= 4])
        install(eg_db)
    owner_before = eg_db.scalar("SELECT proowner::regrole::text FROM pg_proc "
                                "WHERE oid = 'ils_redact.scope_patron_ids'::regproc")
    acl_before = eg_db.scalar("SELECT proacl::text FROM pg_proc "
                              "WHERE oid = 'ils_redact.scope_patron_ids'::regproc")
    with eg_db.connect() as conn:  # what layer v3 left
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(eg_db.role("owner"))))
        conn.execute("""
            CREATE OR REPLACE FUNCTION ils_redact.scope_patron_ids() RETURNS bigint[]
                LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
            AS $fn$ SELECT coalesce(array_agg(DISTINCT s.patron_id ORDER BY s.patron_id),
                                    '{}'::bigint[]) FROM ils_redact.scope s
                    WHERE s.grantee = session_user AND s.expires_at > statement_timestamp()
            $fn$""")
        conn.execute("RESET ROLE")
        conn.execute("UPDATE ils_redact.meta SET value = '3' WHERE key = 'layer_version'")
    with eg_db.connect(autocommit=False) as conn:
        plan = pg.compute_install_plan(conn, eg_db.rules, reports=all_reports)
        conn.rollback()
    # the v4 and v5 files, one statement per step
    assert [(s.kind, s.target) for s in plan.changes()] == [
        ("layer", f"ils_redact layer v{f.version}") for f in files if f.version > 3
        for _ in f.statements(eg_db.rules.roles(eg_db.name), eg_db.owner)
    ], plan.render()
    install(eg_db)
    assert eg_db.scalar("SELECT l.lanname FROM pg_proc p JOIN pg_language l "
                        "ON l.oid = p.prolang WHERE p.oid = "
                        "'ils_redact.scope_patron_ids'::regproc") == "plpgsql"
    assert eg_db.scalar("SELECT value FROM ils_redact.meta "
                        "WHERE key = 'layer_version'") == str(files[-1].version)
    assert eg_db.scalar("SELECT proowner::regrole::text FROM pg_proc "
                        "WHERE oid = 'ils_redact.scope_patron_ids'::regproc") == owner_before
    assert eg_db.scalar("SELECT proacl::text FROM pg_proc "
                        "WHERE oid = 'ils_redact.scope_patron_ids'::regproc") == acl_before
    assert install(eg_db).empty
    # as the disclosure role, with no scope: no patron row
    with eg_db.connect() as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(eg_db.role("disclosure"))))
        assert conn.execute("SELECT count(*) FROM actor.usr").fetchone()[0] == 0


def test_edited_rules_plan_only_the_difference(eg_db: EgDb, tmp_path: Path) -> None:
    install(eg_db)
    # drop one identity column (email) from the allow-list: the plan revokes just that
    rules_path = write_rules(tmp_path, eg_db.prefix, lambda t: t.replace(
        "      - email\n", "", 1).replace(
        "    withheld:\n      usrname:",
        '    withheld:\n      email: "not disclosed here"\n      usrname:', 1))
    from ils_redact.rules import load_rules

    rules = load_rules(rules_path)
    with eg_db.connect(autocommit=False) as conn:
        plan = pg.compute_install_plan(conn, rules, reports=all_reports)
        conn.rollback()
    changes = plan.changes()
    # the revoke, the allow-list setting and the export function that reads it: nothing else
    assert sorted(s.kind for s in changes) == [
        "function", "function-comment", "revoke", "settings"], plan.render()
    revoke = next(s for s in changes if s.kind == "revoke")
    grantee = eg_db.role("disclosure")
    expected = f'REVOKE SELECT ("email") ON "actor"."usr" FROM "{grantee}"'  # noqa: S608
    assert revoke.sql == expected
    with eg_db.connect(autocommit=False) as conn:
        pg.install(conn, rules, reports=all_reports)
    dis = eg_db.role("disclosure")
    assert not eg_db.scalar("SELECT has_column_privilege(%s, 'actor.usr', 'email', 'SELECT')",
                            (dis,))
    assert eg_db.scalar("SELECT has_column_privilege(%s, 'actor.usr', 'family_name', 'SELECT')",
                        (dis,))
    # and uninstall after the edit is still exact
    with eg_db.connect(autocommit=False) as conn:
        pg.uninstall(conn)


def test_drift_is_repaired_and_uninstall_revokes_it(eg_db: EgDb) -> None:
    """A grant added by hand to a layer role is drift: install revokes it.  Uninstall no
    longer refuses it (any login may plant a grant on its own objects to a layer role,
    threat model row 16): the roles' DROP OWNED BY revokes it, the plan's notes say so,
    and the schema is as it was before install."""
    before = dump_schema(eg_db)
    install(eg_db)
    dis = eg_db.role("disclosure")
    with eg_db.connect() as conn:
        conn.execute(sql.SQL("GRANT SELECT ON actor.usr TO {}").format(sql.Identifier(dis)))
    with eg_db.connect(autocommit=False) as conn:
        plan = pg.install(conn, eg_db.rules, reports=all_reports)
    assert [s.kind for s in plan.changes()] == ["revoke"]
    assert not eg_db.scalar("SELECT has_table_privilege(%s, 'actor.usr', 'SELECT')", (dis,))
    with eg_db.connect() as conn:
        conn.execute(sql.SQL("GRANT SELECT ON actor.usr TO {}").format(sql.Identifier(dis)))
    with eg_db.connect(autocommit=False) as conn:
        plan, blocking = pg.compute_uninstall_plan(conn)
        conn.rollback()
    assert blocking == []
    assert any("SELECT" in n or "actor.usr" in n for n in plan.notes), plan.notes
    with eg_db.connect(autocommit=False) as conn:
        pg.uninstall(conn)
    assert dump_schema(eg_db) == before


def test_install_refuses_when_not_superuser(eg_db: EgDb) -> None:
    before = snapshot(eg_db)
    with eg_db.connect(user=eg_db.owner, autocommit=False) as conn:
        with pytest.raises(Exception, match="superuser"):
            pg.install(conn, eg_db.rules, reports=all_reports)
    assert snapshot(eg_db) == before


def test_killed_install_leaves_database_unchanged(eg_db: EgDb, tmp_path: Path) -> None:
    """Block the install half-way (a lock held on actor.usr_address), kill the client,
    check.  (Not actor.usr: a fresh install locks the patron table first, to keep two
    installs apart, and would wait there before changing anything.)"""
    before = snapshot(eg_db)
    rules = write_rules(tmp_path, eg_db.prefix)
    blocker = psycopg.connect(eg_db.dsn)
    blocker.execute("LOCK TABLE actor.usr_address IN ACCESS EXCLUSIVE MODE")
    exe = Path(sys.executable).parent / "ils-redact"
    proc = subprocess.Popen([str(exe), "--dsn", eg_db.dsn, "--rules", str(rules), "install",
                             "--lock-timeout", "120s"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        waited = None
        for _ in range(300):
            waited = eg_db.scalar(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND pid <> %s", (blocker.info.backend_pid,))
            if waited:
                break
            time.sleep(0.1)
        assert waited, "install never reached the locked table"
        # half-way: roles and the layer's schema exist inside the install's open transaction
        assert eg_db.scalar("SELECT query FROM pg_stat_activity WHERE pid = %s",
                            (waited,)).startswith(("GRANT", "ALTER", "CREATE"))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        blocker.rollback()
        blocker.close()
    for _ in range(300):
        if not eg_db.scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (waited,)):
            break
        time.sleep(0.1)
    assert snapshot(eg_db) == before
    assert eg_db.scalar("SELECT to_regnamespace('ils_redact')") is None


def test_owner_and_app_role_keep_working_and_owner_dump_keeps_layer(eg_db: EgDb) -> None:
    install(eg_db)
    with eg_db.connect() as conn:  # something for the dump to carry
        conn.execute("INSERT INTO ils_redact.scope (patron_id, grantee, expires_at) "
                     "VALUES (1, 'nobody', now() + interval '1 day')")
    for user in (eg_db.owner, eg_db.app):
        with eg_db.connect(user) as conn:
            n = conn.execute("SELECT count(*) FROM actor.usr").fetchone()[0]
            assert n == 2000
            assert conn.execute("SELECT count(*) FROM action.circulation").fetchone()[0] == 10000
            assert conn.execute("SELECT count(*) FROM actor.card").fetchone()[0] >= 2000
            with conn.transaction(force_rollback=True):
                conn.execute("UPDATE actor.usr SET family_name = family_name || 'x' "
                             "WHERE id = 7")
                conn.execute("DELETE FROM actor.usr_address WHERE usr = 8")
                conn.execute("INSERT INTO actor.card (id, usr, barcode, active) "
                             "VALUES (999999, 9, 'test-barcode-9', false)")
                conn.execute("UPDATE action.circulation SET checkin_time = now() "
                             "WHERE id = 3")
    dump = subprocess.run(
        [__import__("ils_redact.servers", fromlist=["pg_tool"]).pg_tool("pg_dump"),
         "-d", eg_db.dsn_as(eg_db.owner)], capture_output=True, text=True)
    assert dump.returncode == 0, dump.stderr
    assert "CREATE SCHEMA ils_redact;" in dump.stdout
    assert "COPY ils_redact.scope" in dump.stdout
    assert "nobody" in dump.stdout


def test_two_databases_on_one_server(eg_db: EgDb, server, eg_template, eg_roles,
                                     run_prefix: str, tmp_path: Path) -> None:
    """Roles are cluster-wide: each database has its own prefix; one database's
    uninstall leaves the other intact; reusing a prefix is refused."""
    from support import EgDb as Db

    PREFIX = run_prefix
    other_name = f"{PREFIX}egother"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(other_name), sql.Identifier(eg_template)))
    other = Db(server=server, name=other_name, owner=eg_roles[0], app=eg_roles[1],
               prefix=f"{PREFIX}other_")
    try:
        install(eg_db)
        # same prefix in another database: refused, nothing changed
        before = snapshot(other)
        clash = write_rules(tmp_path, eg_db.prefix)
        res = run_cli("--dsn", other.dsn, "--rules", str(clash), "install")
        assert res.returncode == 2
        assert f"belongs to the ils-redact install in database {eg_db.name}" in res.stderr
        assert snapshot(other) == before
        # its own prefix: fine
        install(other)
        other_snapshot = snapshot(other)
        with eg_db.connect(autocommit=False) as conn:
            pg.uninstall(conn)
        assert snapshot(other) == other_snapshot
        assert other.scalar("SELECT count(*) FROM pg_roles WHERE rolname LIKE %s",
                            (other.prefix + "%",)) == 7  # the seven role kinds
        with other.connect(autocommit=False) as conn:
            pg.uninstall(conn)
    finally:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(other_name)))
            for (role,) in conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s",
                                        (other.prefix + "%",)).fetchall():
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_database_prefix_placeholder(eg_db: EgDb, tmp_path: Path) -> None:
    rules = write_rules(tmp_path, eg_db.prefix, lambda t: t.replace(
        f"role_prefix: {eg_db.prefix}", f"role_prefix: {eg_db.prefix}{{database}}_"))
    res = run_cli("--dsn", eg_db.dsn, "--rules", str(rules), "install", "-q")
    assert res.returncode == 0, res.stderr
    name = f"{eg_db.prefix}{eg_db.name}_disclosure"
    assert eg_db.scalar("SELECT count(*) FROM pg_roles WHERE rolname = %s", (name,)) == 1


def test_uninstall_refuses_role_used_elsewhere(eg_db: EgDb) -> None:
    install(eg_db)
    dis = eg_db.role("disclosure")
    with eg_db.connect() as conn:
        conn.execute("CREATE TABLE public.not_ours (a int)")
        conn.execute(sql.SQL("ALTER TABLE public.not_ours OWNER TO {}").format(
            sql.Identifier(dis)))
    before = snapshot(eg_db)
    with eg_db.connect(autocommit=False) as conn:
        with pytest.raises(Exception, match="owns table public.not_ours"):
            pg.uninstall(conn)
    assert snapshot(eg_db) == before


def test_staff_membership_survives_nothing_after_uninstall(eg_db: EgDb, run_prefix) -> None:
    install(eg_db)
    login = create_role(eg_db.server, f"{eg_db.prefix}clerk",
                        member_of=(eg_db.role("disclosure"),))
    with eg_db.connect(autocommit=False) as conn:
        pg.uninstall(conn)
    assert eg_db.scalar("SELECT count(*) FROM pg_auth_members a JOIN pg_roles r "
                        "ON r.oid = a.member WHERE r.rolname = %s", (login,)) == 0
