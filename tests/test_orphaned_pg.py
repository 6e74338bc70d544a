"""A database dropped without ``uninstall`` leaves its roles (cluster-wide) behind: a later
install with that prefix names the vanished database and the logins still holding its
roles, never takes the roles over (their members would get the new database's rights),
and ``uninstall --orphaned DATABASE`` removes them, with the staff logins ils-redact
created, after confirmation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from ils_redact.backends import postgresql as pg
from ils_redact.stats import all_reports
from support import EgDb, create_role, run_cli, write_rules


@pytest.fixture
def other(eg_db: EgDb, eg_template: str, run_prefix: str) -> Iterator[EgDb]:
    """A second Evergreen-shaped database on the same server, nothing installed."""
    name = f"{run_prefix}orph{eg_db.prefix.rsplit('_', 2)[-2]}"
    with psycopg.connect(eg_db.server.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(eg_template)))
    try:
        yield EgDb(server=eg_db.server, name=name, owner=eg_db.owner, app=eg_db.app,
                   prefix=eg_db.prefix)
    finally:
        with psycopg.connect(eg_db.server.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


def roles_like(db: EgDb, prefix: str) -> list[str]:
    with psycopg.connect(db.server.dsn, autocommit=True) as conn:
        return [r[0] for r in conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE %s ORDER BY 1", (prefix + "%",))]


def drop_database(db: EgDb) -> None:
    with psycopg.connect(db.server.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(db.name)))


def installed_with_staff(db: EgDb, tmp: Path) -> tuple[Path, str, str]:
    """Installed, with a login ils-redact created (clerk) and one that existed (dana)."""
    with db.connect(autocommit=False) as conn:
        pg.install(conn, db.rules, reports=all_reports)
    rules = write_rules(tmp, db.prefix)
    clerk, dana = f"{db.prefix}clerk", create_role(db.server, f"{db.prefix}dana")
    for args in (("staff", "grant", clerk, "--role", "admin", "--create"),
                 ("staff", "grant", dana, "--role", "disclosure")):
        res = run_cli("--dsn", db.dsn, "--rules", str(rules), *args)
        assert res.returncode == 0, res.stderr
    return rules, clerk, dana


def test_a_dropped_database_leaves_roles_that_are_never_taken_over(
        eg_db: EgDb, other: EgDb, tmp_path: Path) -> None:
    rules, clerk, dana = installed_with_staff(eg_db, tmp_path)
    layer_roles = [eg_db.role(k) for k in ("admin", "disclosure", "export_owner", "exporter",
                                           "owner", "stats", "stats_owner")]
    drop_database(eg_db)
    assert roles_like(eg_db, eg_db.prefix) == sorted([*layer_roles, clerk, dana])

    # a later install with the prefix: refused, naming the vanished database and the people
    res = run_cli("--dsn", other.dsn, "--rules", str(rules), "install")
    assert res.returncode == 2, res.stdout
    line = res.stderr.strip()
    assert line.startswith(f"ils-redact: error: role {eg_db.prefix}")
    assert (f"belongs to the ils-redact install in database {eg_db.name}, which no longer "
            "exists (it was dropped without `ils-redact uninstall`); logins still holding "
            f"its roles: {clerk}, {dana}; its roles are never taken over, because their "
            "members would get this database's rights (remove them with `ils-redact "
            f"uninstall --orphaned {eg_db.name}` (from any database of this cluster), or "
            "choose another role_prefix)") in line
    assert other.scalar("SELECT to_regclass('ils_redact.meta')") is None

    # without --yes and without a terminal: shown, not done
    res = run_cli("--dsn", other.dsn, "uninstall", "--orphaned", eg_db.name)
    assert res.returncode == 2
    assert res.stderr.strip() == ("ils-redact: error: confirm the removal: run interactively "
                                  "or pass --yes")
    assert f"database {eg_db.name} no longer exists" in res.stdout
    assert f"  login {clerk} (created by ils-redact for {eg_db.name})" in res.stdout
    assert f"  {dana} stops being a member of {eg_db.role('exporter')}" in res.stdout
    assert roles_like(eg_db, eg_db.prefix) == sorted([*layer_roles, clerk, dana])

    # a database that never had the layer, and still exists: nothing is left for it
    res = run_cli("--dsn", other.dsn, "uninstall", "--orphaned", other.name, "--yes")
    assert res.returncode == 2
    assert f"no role or login of an ils-redact install for database {other.name}" in res.stderr

    # confirmed (from any database: here the server's postgres database)
    res = run_cli("--dsn", eg_db.server.dsn_for("postgres"), "--format", "json",
                  "uninstall", "--orphaned", eg_db.name, "--yes")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["roles"] == sorted(layer_roles) and out["logins"] == [clerk]
    assert out["members"] == {dana: [eg_db.role("exporter")]}
    assert roles_like(eg_db, eg_db.prefix) == [dana]  # a login ils-redact did not create

    # the prefix is free again; dana gets nothing in the new database
    res = run_cli("--dsn", other.dsn, "--rules", str(rules), "install")
    assert res.returncode == 0, res.stderr
    assert other.scalar("SELECT pg_has_role(%s, %s, 'MEMBER')",
                        (dana, eg_db.role("exporter"))) is False


def test_a_database_created_again_under_the_same_name(eg_db: EgDb, tmp_path: Path,
                                                       eg_template: str) -> None:
    """Dropped and created again (a restore that left the layer out): the roles are
    orphaned too, and install says so instead of "an uninstall was interrupted"."""
    rules, clerk, dana = installed_with_staff(eg_db, tmp_path)
    drop_database(eg_db)
    with psycopg.connect(eg_db.server.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(eg_db.name), sql.Identifier(eg_template)))
    res = run_cli("--dsn", eg_db.dsn, "--rules", str(rules), "install")
    assert res.returncode == 2
    assert (f"exists but the ils_redact schema does not: database {eg_db.name} was dropped "
            "and created again without `ils-redact uninstall`, or an uninstall was "
            f"interrupted; logins still holding its roles: {clerk}, {dana} (remove the roles "
            f"with `ils-redact uninstall --orphaned {eg_db.name}`") in res.stderr
    res = run_cli("--dsn", eg_db.dsn, "uninstall", "--orphaned", eg_db.name, "--yes")
    assert res.returncode == 0, res.stderr
    assert f"database {eg_db.name} exists without the layer" in res.stdout
    assert roles_like(eg_db, eg_db.prefix) == [dana]
    res = run_cli("--dsn", eg_db.dsn, "--rules", str(rules), "install")
    assert res.returncode == 0, res.stderr


def test_orphaned_refuses_an_installed_database(eg_db: EgDb, tmp_path: Path) -> None:
    with eg_db.connect(autocommit=False) as conn:
        pg.install(conn, eg_db.rules, reports=all_reports)
    before = roles_like(eg_db, eg_db.prefix)
    res = run_cli("--dsn", eg_db.server.dsn_for("postgres"), "uninstall", "--orphaned",
                  eg_db.name, "--yes")
    assert res.returncode == 2
    assert res.stderr.strip() == (
        f"ils-redact: error: database {eg_db.name} still exists and has ils-redact "
        f"installed: its roles are not orphaned (run `ils-redact uninstall` against database "
        f"{eg_db.name})")
    assert roles_like(eg_db, eg_db.prefix) == before


def test_orphaned_roles_that_hold_something_elsewhere_are_kept(eg_db: EgDb, other: EgDb,
                                                               tmp_path: Path) -> None:
    """DROP ROLE would take a grant someone made in another database with it: refused,
    listing it, nothing changed (as uninstall does)."""
    installed_with_staff(eg_db, tmp_path)
    drop_database(eg_db)
    with other.connect() as conn:
        conn.execute(sql.SQL("GRANT SELECT ON config.copy_status TO {}").format(
            sql.Identifier(eg_db.role("stats"))))
    before = roles_like(eg_db, eg_db.prefix)
    res = run_cli("--dsn", other.dsn, "uninstall", "--orphaned", eg_db.name, "--yes")
    assert res.returncode == 2
    assert (f"uninstall --orphaned refused, nothing was changed: role {eg_db.role('stats')} "
            "holds privileges on table config.copy_status") in res.stderr
    # from another database, the object is named by its database
    res = run_cli("--dsn", eg_db.server.dsn_for("postgres"), "uninstall", "--orphaned",
                  eg_db.name, "--yes")
    assert res.returncode == 2
    assert (f"role {eg_db.role('stats')} holds privileges on objects in database "
            f"{other.name}") in res.stderr
    assert roles_like(eg_db, eg_db.prefix) == before
    with other.connect() as conn:
        conn.execute(sql.SQL("REVOKE SELECT ON config.copy_status FROM {}").format(
            sql.Identifier(eg_db.role("stats"))))


def test_a_predefined_role_given_by_hand_to_another_owner_role_blocks(
        eg_db: EgDb, tmp_path: Path) -> None:
    """Install makes only the layer's owner (recorded kind ``owner``) a member of
    pg_signal_backend; the same membership given by hand to the statistics owner (whose
    name also ends in ``_owner``) is not ils-redact's: it blocks, and is named."""
    installed_with_staff(eg_db, tmp_path)
    stats_owner = eg_db.role("stats_owner")
    assert stats_owner.endswith("_owner")
    with psycopg.connect(eg_db.server.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("GRANT pg_signal_backend TO {}").format(
            sql.Identifier(stats_owner)))
    drop_database(eg_db)
    try:
        res = run_cli("--dsn", eg_db.server.dsn_for("postgres"), "uninstall", "--orphaned",
                      eg_db.name, "--yes")
        assert res.returncode == 2, res.stdout
        assert f"role {stats_owner} was made a member of pg_signal_backend" in res.stderr
        assert eg_db.role("owner") not in res.stderr  # its memberships are install's
    finally:
        with psycopg.connect(eg_db.server.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("REVOKE pg_signal_backend FROM {}").format(
                sql.Identifier(stats_owner)))
    res = run_cli("--dsn", eg_db.server.dsn_for("postgres"), "uninstall", "--orphaned",
                  eg_db.name, "--yes")
    assert res.returncode == 0, res.stderr
    left = roles_like(eg_db, eg_db.prefix)
    assert stats_owner not in left and eg_db.role("owner") not in left, left
