"""Install with the packaged rules on Evergreen databases built from the oldest and the
newest supported release's catalog; `rules check` reads the live catalog; a no-op install
records the rules it ran with."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from ils_redact.adapters.evergreen import fixture
from ils_redact.adapters.releases import release_catalogs
from support import EgDb, run_cli, write_rules
from support.parallel import exclusive

RELEASE = {rc.version: rc for rc in release_catalogs("evergreen")}


def release_db(databases, eg_roles, version: str, n: int, run_prefix: str) -> EgDb:
    """A database with the release's schema, owned by the ILS owner, whose
    config.upgrade_log names the release as Evergreen's own upgrade scripts do."""
    owner, app = eg_roles
    name = databases.create(f"rel{version.replace('.', '_')}_", owner=owner)
    # one schema build at a time across parallel workers (see support.parallel)
    with exclusive("schema-build"), psycopg.connect(databases.srv.dsn_for(name)) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(owner)))
        fixture.build_schema(conn, RELEASE[version].catalog())
        conn.execute("INSERT INTO config.upgrade_log (version, install_date) "
                     "VALUES (%s, now())", (version,))
        conn.commit()
    return EgDb(server=databases.srv, name=name, owner=owner, app=app,
                prefix=f"{run_prefix}r{n}_")


def cli(db: EgDb, rules, *args: str):
    return run_cli("--dsn", db.dsn, "--rules", str(rules), *args)


@pytest.mark.parametrize("version", ["3.12.0", "3.17.4"])
def test_install_with_the_packaged_rules(databases, eg_roles, run_prefix, tmp_path,
                                         version) -> None:
    db = release_db(databases, eg_roles, version, 1 if version == "3.12.0" else 2, run_prefix)
    rules = write_rules(tmp_path, db.prefix)
    try:
        res = cli(db, rules, "rules", "check")
        assert res.returncode == 0, res.stderr
        assert f"against database {db.name}: ILS release {version}" in res.stdout
        res = cli(db, rules, "plan")
        assert res.returncode == 0 and f"-- note: ILS release {version}\n" in res.stdout
        res = cli(db, rules, "install", "--quiet")
        assert res.returncode == 0, res.stderr
        res = cli(db, rules, "status")
        assert res.returncode == 0, res.stdout
        assert f"ils release     Evergreen {version} (config.upgrade_log" in res.stdout
        assert "(as installed)" in res.stdout
        # the disclosure role holds exactly the identity columns this release has
        with db.connect() as conn:
            granted = {r[0] for r in conn.execute(
                "SELECT column_name FROM information_schema.column_privileges "
                "WHERE grantee = %s AND table_schema = 'actor' AND table_name = 'usr'",
                (db.role("disclosure"),))}
        assert "family_name" in granted and "guardian_email" not in granted
    finally:
        assert cli(db, rules, "uninstall", "--yes").returncode == 0


def test_a_no_op_install_records_the_rules_it_ran_with(databases, eg_roles, run_prefix,
                                                       tmp_path) -> None:
    """Issue 14: after an upgrade (or an edit that plans nothing) status said "changed
    since install" forever, because an install that changes nothing recorded nothing."""
    db = release_db(databases, eg_roles, "3.17.4", 3, run_prefix)
    rules = write_rules(tmp_path, db.prefix)
    try:
        assert cli(db, rules, "install", "--quiet").returncode == 0
        rules.write_text(rules.read_text() + "# reviewed after the upgrade to 3.17.4\n")
        res = cli(db, rules, "status")
        assert "(changed since install)" in res.stdout
        res = cli(db, rules, "install")
        assert res.returncode == 0 and "nothing to install" in res.stdout
        res = cli(db, rules, "status")
        assert "(as installed)" in res.stdout, res.stdout
        logged = db.scalar("SELECT count(*) FROM ils_redact.install_log WHERE changes = 0")
        assert cli(db, rules, "install").returncode == 0  # recorded once, not every run
        assert db.scalar("SELECT count(*) FROM ils_redact.install_log "
                         "WHERE changes = 0") == logged == 1
    finally:
        assert cli(db, rules, "uninstall", "--yes").returncode == 0


def test_rules_check_reads_the_live_catalog(databases, eg_roles, run_prefix, tmp_path) -> None:
    """With a DSN, `rules check` checks what `plan` checks, on that database: "ok" means
    `plan` accepts the rules there, and an error there is an error here."""
    db = release_db(databases, eg_roles, "3.12.0", 4, run_prefix)
    # rules written for 3.17 with no release marks: fine on the packaged (3.17) reference,
    # wrong on this 3.12 database
    unmarked = write_rules(tmp_path, db.prefix,
                           lambda t: t.split("# ---- release marks")[0])
    res = run_cli("--rules", str(unmarked), "rules", "check")
    assert res.returncode == 0 and ": ok (" in res.stdout
    res = cli(db, unmarked, "rules", "check")
    assert res.returncode == 2
    assert "unknown schema openapi (in relation) openapi.authen_attempt_log" in res.stderr
    assert cli(db, unmarked, "plan").returncode == 2
    # names that all exist, but a plan that cannot be made: still not "ok"
    hardened = write_rules(tmp_path, db.prefix, lambda t: t.replace(
        "  revoke_public_temp: true\n  temp_roles: []",
        f"  revoke_public_temp: true\n  temp_roles: [{run_prefix}nosuch]"))
    assert f"temp_roles: [{run_prefix}nosuch]" in hardened.read_text(encoding="utf-8")
    res = cli(db, hardened, "rules", "check")
    assert res.returncode == 2 and f"temp_roles names {run_prefix}nosuch" in res.stderr
    plan = cli(db, hardened, "plan")
    assert plan.returncode == 2 and plan.stderr.splitlines()[0] == res.stderr.splitlines()[0]
    # and the packaged rules are ok here and plan here
    good = write_rules(tmp_path, db.prefix)
    assert cli(db, good, "rules", "check").returncode == 0
    assert cli(db, good, "plan").returncode == 0


def test_a_role_that_may_not_read_the_upgrade_log_reads_the_catalog(
        databases, eg_roles, run_prefix) -> None:
    """Every restricted role reads the catalog (the query gate does, as the login): the
    release probe must not fail, or abort its transaction, where the role has no USAGE on
    schema config."""
    from ils_redact.backends.postgresql.introspect import read_catalog
    from support import create_role

    db = release_db(databases, eg_roles, "3.17.4", 5, run_prefix)
    login = create_role(databases.srv, f"{run_prefix}nobody")
    with psycopg.connect(db.dsn_as(login)) as conn:
        catalog = read_catalog(conn)
        assert catalog.release is None and "actor.usr" in catalog.relations
        assert conn.execute("SELECT 1").fetchone() == (1,)  # the transaction is usable
    with psycopg.connect(db.dsn) as conn:
        assert read_catalog(conn).release == "3.17.4"
