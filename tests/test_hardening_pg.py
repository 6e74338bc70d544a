"""hardening.revoke_public_temp: TEMP taken from PUBLIC, recorded, and given back."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from psycopg import errors

from ils_redact.backends import postgresql as pg
from ils_redact.rules.model import HardeningSettings
from support import EgDb, create_role, run_cli, write_rules


def public_temp(db: EgDb) -> bool:
    return db.scalar(
        "SELECT d.datacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(d.datacl) x "
        "WHERE x.grantee = 0 AND x.privilege_type = 'TEMPORARY') FROM pg_database d "
        "WHERE d.datname = current_database()")


def can_create_temp(db: EgDb, user: str) -> bool:
    with db.connect(user) as conn:
        try:
            conn.execute("CREATE TEMP TABLE t_probe (a int)")
            return True
        except errors.InsufficientPrivilege:
            return False


def test_temp_is_revoked_from_public_recorded_and_restored(eg_db: EgDb) -> None:
    member = create_role(eg_db.server, f"{eg_db.prefix}reader")
    hardened = dataclasses.replace(eg_db.rules, hardening=HardeningSettings(
        revoke_public_temp=True, temp_roles=(eg_db.app, eg_db.owner)))
    with eg_db.connect(autocommit=False) as conn:
        pg.install(conn, eg_db.rules)
    with eg_db.connect() as conn:
        conn.execute(f'GRANT "{eg_db.role("disclosure")}" TO "{member}"')
    assert public_temp(eg_db) and can_create_temp(eg_db, member)  # PostgreSQL's default

    with eg_db.connect(autocommit=False) as conn:
        plan = pg.install(conn, hardened)
    assert [s.kind for s in plan.changes()] == ["revoke-temp", "grant-temp", "grant-temp"]
    assert not public_temp(eg_db)
    assert not can_create_temp(eg_db, member)
    with eg_db.connect(member) as conn:
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("CREATE FUNCTION pg_temp.leak(text) RETURNS boolean LANGUAGE sql "
                         "AS 'SELECT true'")
    assert can_create_temp(eg_db, eg_db.app) and can_create_temp(eg_db, eg_db.owner)
    with eg_db.connect(autocommit=False) as conn:  # idempotent
        assert pg.install(conn, hardened).empty

    with eg_db.connect(autocommit=False) as conn:  # the setting turned off: as before
        plan = pg.install(conn, eg_db.rules)
    assert sorted(s.kind for s in plan.changes()) == ["grant-temp", "revoke-temp", "revoke-temp"]
    assert public_temp(eg_db) and can_create_temp(eg_db, member)
    assert eg_db.scalar("SELECT count(*) FROM pg_database d, aclexplode(d.datacl) x "
                        "WHERE d.datname = current_database() AND x.grantee <> 0 "
                        "AND x.grantee <> d.datdba") == 0


def test_uninstall_gives_temp_back_to_public(eg_db: EgDb) -> None:
    hardened = dataclasses.replace(eg_db.rules, hardening=HardeningSettings(
        revoke_public_temp=True, temp_roles=(eg_db.app,)))
    with eg_db.connect(autocommit=False) as conn:
        pg.install(conn, hardened)
    assert not public_temp(eg_db)
    with eg_db.connect(autocommit=False) as conn:
        pg.uninstall(conn)
    assert public_temp(eg_db)
    assert eg_db.scalar("SELECT count(*) FROM pg_database d, aclexplode(d.datacl) x "
                        "WHERE d.datname = current_database() AND x.grantee <> 0 "
                        "AND x.grantee <> d.datdba") == 0


def test_unknown_temp_role_is_an_error(eg_db: EgDb, tmp_path: Path) -> None:
    rules = write_rules(tmp_path, eg_db.prefix, lambda t: t.replace(
        "  revoke_public_temp: false\n  temp_roles: []",
        "  revoke_public_temp: true\n  temp_roles: [no_such_role_anywhere]"))
    res = run_cli("--dsn", eg_db.dsn, "--rules", str(rules), "install")
    assert res.returncode == 2
    assert "hardening.temp_roles names no_such_role_anywhere, which does not exist" in res.stderr
    assert public_temp(eg_db)
