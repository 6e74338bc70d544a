"""Install with the packaged Koha preset on a database built from every supported release's
catalog; the release is read from systempreferences.Version.  A table the release has but
the rules do not know (what a later Koha upgrade adds) stays closed and verify names it."""

from __future__ import annotations

import re

import pytest

from ils_redact.adapters.koha import fixture
from ils_redact.adapters.releases import release_catalogs
from ils_redact.backends.mariadb.sqltext import ident
from support.koha import KohaDb, MariaServer, run_cli, snapshot, write_koha_rules
from support.koha_verify import verify_cli

pytestmark = pytest.mark.mariadb

RELEASE = {rc.version: rc for rc in release_catalogs("koha")}


def release_db(srv: MariaServer, version: str, n: int) -> KohaDb:
    """The release's tables (no foreign keys: they play no part here), and the Version
    system preference as Koha's installer writes it."""
    name = f"{srv.prefix}rel{version.replace('.', '_')}_{n}"
    with srv.connect() as c:
        c.execute(f"CREATE DATABASE {ident(name)}")
    with srv.connect(name) as c:
        for rel in RELEASE[version].to_json()["relations"]:
            c.execute(fixture.create_table_statement(rel))
        major, minor = version.split(".")
        c.execute("INSERT INTO systempreferences (variable, value) VALUES ('Version', %s)",
                  (f"{major}.{minor}00000",))
    return KohaDb(server=srv, name=name, prefix=f"{srv.prefix}r{n}_")


@pytest.mark.parametrize("version", list(RELEASE))
def test_install_with_the_packaged_preset(mariadb: MariaServer, tmp_path, version) -> None:
    db = release_db(mariadb, version, 10 + list(RELEASE).index(version))
    has_preferred_name = RELEASE[version].catalog().relation("borrowers").column(
        "preferred_name") is not None
    rules = write_koha_rules(tmp_path, db.prefix)

    def cli(*args: str):
        return run_cli("--dsn", db.dsn, "--rules", str(rules), *args)

    try:
        before = snapshot(db)
        res = cli("rules", "check")
        assert res.returncode == 0, res.stderr
        assert f"against database {db.name}: ILS release {version}.00" in res.stdout
        res = cli("plan")
        assert res.returncode == 0 and f"-- note: ILS release {version}.00\n" in res.stdout
        res = cli("install", "--quiet")
        assert res.returncode == 0, res.stderr
        res = cli("status")
        assert res.returncode == 0, res.stdout
        assert f"ils release     Koha {version}.00 (systempreferences.Version)" in res.stdout
        # the disclosure view has exactly the identity columns this release has
        cols = {r[0] for r in db.rows(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s "
            "AND TABLE_NAME = 'borrowers'", (db.layer,))}
        assert "surname" in cols and ("preferred_name" in cols) == has_preferred_name
        # what a later upgrade adds, unknown to the rules: closed to every layer role, and
        # verify names it
        with db.server.connect(db.name) as c:
            c.execute(f"CREATE TABLE {ident('zz_reading_challenge')} (borrowernumber INT, "
                      "book VARCHAR(200))")
        run = verify_cli(db, tmp_path, rules=rules)
        f = run.only("H-UNCLASSIFIED-RELATION", f"{db.name}.zz_reading_challenge")
        assert "is not in the rules" in f["why"]
        for kind in ("disclosure", "stats", "exporter", "admin"):
            assert run.check(f"empirical/{kind}/{db.name}.zz_reading_challenge")[
                "detail"] == "closed", kind
        with db.server.connect(db.name) as c:
            c.execute(f"DROP TABLE {ident('zz_reading_challenge')}")
        # a no-op install after an edit that plans nothing records the rules
        rules.write_text(rules.read_text() + "# reviewed\n")
        assert "(changed since install)" in cli("status").stdout
        res = cli("install")
        assert res.returncode == 0 and "nothing to install" in res.stdout
        assert "(as installed)" in cli("status").stdout
        assert cli("uninstall", "--yes").returncode == 0
        assert snapshot(db) == before
    finally:
        db.drop()


def test_rules_check_reads_the_live_koha_catalog(mariadb: MariaServer, tmp_path) -> None:
    db = release_db(mariadb, "23.05", 3)
    # the preset without the mark on borrowers.preferred_name (added after 23.05)
    unmarked = write_koha_rules(tmp_path, db.prefix, lambda t: re.sub(
        r"(?m)^    borrowers\.preferred_name: \{since: \"[0-9.]+\"\}\n", "", t))
    assert "borrowers.preferred_name:" not in unmarked.read_text()
    try:
        res = run_cli("--rules", str(unmarked), "rules", "check")
        assert res.returncode == 0  # the packaged reference is the newest Koha
        res = run_cli("--dsn", db.dsn, "--rules", str(unmarked), "rules", "check")
        assert res.returncode == 2 and "unknown column koha" not in res.stderr
        assert f"unknown column {db.name}.borrowers.preferred_name" in res.stderr
        assert run_cli("--dsn", db.dsn, "--rules", str(unmarked), "plan").returncode == 2
    finally:
        db.drop()
