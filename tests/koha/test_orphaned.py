"""A Koha database dropped without ``uninstall``: its layer database survives with the
bookkeeping, so a later install with the prefix names the vanished database, never takes
its roles over, and ``uninstall --orphaned DATABASE`` removes exactly what ils-redact
created for it.  When the layer database is gone too, nothing records what was created:
said in one line."""

# ruff: noqa: S608 - test SQL with quoted names

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ils_redact.backends.mariadb.sqltext import account, ident
from support.koha import KohaDb, MariaServer, run_cli, write_koha_rules
from support.koha_workflow import Staff


@pytest.fixture
def two(mariadb: MariaServer) -> Iterator[tuple[KohaDb, KohaDb]]:
    """Two Koha databases of their own (not from the pool: one is dropped), the second
    with the first's role prefix."""
    first = mariadb.koha_db(patrons=100, fresh=True)
    second = mariadb.koha_db(patrons=100, fresh=True)
    other = KohaDb(server=mariadb, name=second.name, prefix=first.prefix)
    try:
        yield first, other
    finally:
        for db in (first, second):
            db.drop()


def accounts_like(srv: MariaServer, prefix: str) -> list[str]:
    with srv.connect() as c:
        return sorted(f"{u}@{h}" if r == "N" else u for u, h, r in c.execute(
            "SELECT User, Host, is_role FROM mysql.user WHERE User LIKE %s",
            (prefix.replace("_", "\\_") + "%",)).fetchall())


def test_a_dropped_koha_database_leaves_roles_that_are_never_taken_over(
        two: tuple[KohaDb, KohaDb], mariadb: MariaServer, tmp_path: Path) -> None:
    db, other = two
    db.install()
    staff = Staff.create(db)
    staff.request(staff.alice, [11], approve_as=staff.bob)  # an audit log worth keeping
    with mariadb.connect() as c:
        c.execute(f"CREATE USER {account(db.prefix + 'dana', '%')} IDENTIFIED BY 'x'")
    dana = db.login("dana", "disclosure", existing=True)
    left = accounts_like(mariadb, db.prefix)
    with mariadb.connect() as c:
        c.execute(f"DROP DATABASE {ident(db.name)}")
    rules = write_koha_rules(tmp_path, db.prefix)

    res = run_cli("--dsn", other.dsn, "--rules", str(rules), "install")
    assert res.returncode == 2, res.stdout
    line = res.stderr.strip()
    assert line.startswith(f"ils-redact: error: {db.prefix}")
    assert (f"belongs to the ils-redact install for Koha database {db.name}, which no longer "
            f"exists (dropped without `ils-redact uninstall`; its layer database {db.layer} "
            "remains)") in line
    assert (f"it is never taken over, because its members would get this database's rights "
            f"(remove it with `ils-redact uninstall --orphaned {db.name}`") in line
    assert accounts_like(mariadb, db.prefix) == left

    server_dsn = mariadb.dsn_for("")
    # the audit log is the only record of what was disclosed: not dropped by default
    res = run_cli("--dsn", server_dsn, "uninstall", "--orphaned", db.name, "--yes")
    assert res.returncode == 2
    assert (f"the audit log in {db.layer} holds") in res.stderr
    assert "pass --discard-audit" in res.stderr
    assert accounts_like(mariadb, db.prefix) == left

    res = run_cli("--dsn", server_dsn, "--format", "json", "uninstall", "--orphaned", db.name,
                  "--discard-audit", "--yes")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["roles"] == sorted(db.role(k) for k in ("admin", "disclosure", "exporter",
                                                       "stats", "stats_owner"))
    assert out["accounts"] == [f"{db.owner}@localhost"]
    assert sorted(out["logins"]) == sorted(f"{u}@%" for u in (staff.alice, staff.bob,
                                                             staff.carol, staff.dora, staff.erin))
    assert out["members"] == {f"{dana}@%": [db.role("exporter")]}
    assert accounts_like(mariadb, db.prefix) == [f"{dana}@%"]
    with mariadb.connect() as c:
        assert not c.execute("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE "
                             "SCHEMA_NAME = %s", (db.layer,)).fetchone()[0]
        assert c.execute("SELECT JSON_VALUE(Priv, '$.default_role') FROM mysql.global_priv "
                         "WHERE User = %s", (dana,)).fetchone()[0] in (None, "")

    # the prefix is free again
    res = run_cli("--dsn", other.dsn, "--rules", str(rules), "install")
    assert res.returncode == 0, res.stderr


def test_orphaned_what_is_not_possible(two: tuple[KohaDb, KohaDb], mariadb: MariaServer
                                       ) -> None:
    db, other = two
    db.install()
    server_dsn = mariadb.dsn_for("")
    res = run_cli("--dsn", server_dsn, "uninstall", "--orphaned", db.name, "--yes")
    assert res.returncode == 2
    assert res.stderr.strip() == (
        f"ils-redact: error: Koha database {db.name} still exists: its roles are not orphaned "
        f"(run `ils-redact uninstall` against database {db.name})")
    left = accounts_like(mariadb, db.prefix)
    with mariadb.connect() as c:
        c.execute(f"DROP DATABASE {ident(db.name)}")
        c.execute(f"DROP DATABASE {ident(db.layer)}")
    res = run_cli("--dsn", server_dsn, "uninstall", "--orphaned", db.name, "--yes")
    assert res.returncode == 2
    assert res.stderr.strip().startswith(
        f"ils-redact: error: neither Koha database {db.name} nor its layer database "
        f"{db.layer} exists: MariaDB roles and accounts carry no mark of who made them")
    assert accounts_like(mariadb, db.prefix) == left
