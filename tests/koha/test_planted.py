"""The Koha application account plants views over Koha's tables (atk-koha B1).

The Koha account holds ``ALL`` on the Koha database without GRANT OPTION, as koha-create
makes it.  It renames ``systempreferences`` and ``saved_sql`` and puts ``SQL SECURITY
INVOKER`` views of the same names in their place whose WHERE calls its own ``SQL
SECURITY INVOKER`` function: whoever reads the view runs the function with their own
privileges.  ils-redact, run as root, reads ``systempreferences`` (release detection:
status, plan, install, verify, rules check) and ``saved_sql`` (lint --koha-saved-sql):
it must read neither view, and verify must report the views, the function and the scope
rows such a function would write.
"""

# ruff: noqa: S608 - test SQL: names quoted with sqltext.ident/account

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ils_redact.backends.mariadb.sqltext import account, ident, string
from support.koha import PASSWORD, KohaDb, run_cli, write_koha_rules
from support.koha_verify import verify_cli


def app_account(db: KohaDb) -> str:
    """The Koha application account: ALL on the Koha database, no GRANT OPTION."""
    app = f"{db.prefix}app"
    with db.connect() as c:
        c.execute(f"CREATE USER {account(app, '%')} IDENTIFIED BY {string(PASSWORD)}")
        c.execute(f"GRANT ALL ON {ident(db.name)}.* TO {account(app, '%')}")
    return app


def plant(db: KohaDb, app: str) -> None:
    """As the Koha account: a MyISAM loot table (a ROLLBACK keeps its rows), an INVOKER
    function that writes who ran it (and, when it can, scope rows into the layer), and
    INVOKER views over the renamed tables."""
    layer = ident(db.layer)
    stmts = [
        "CREATE TABLE zz_loot (at DATETIME(6), cu VARCHAR(200), what VARCHAR(64)) "
        "ENGINE=MyISAM",
        "CREATE FUNCTION zz_pwn(p_what VARCHAR(64)) RETURNS INT DETERMINISTIC MODIFIES SQL "
        "DATA SQL SECURITY INVOKER BEGIN "
        "DECLARE CONTINUE HANDLER FOR SQLEXCEPTION BEGIN END; "
        f"IF CURRENT_USER() NOT LIKE {string(app + '@%')} THEN "
        "INSERT INTO zz_loot VALUES (SYSDATE(6), CURRENT_USER(), p_what); "
        f"INSERT INTO {layer}.scope (patron_id, grantee, grantee_user, grantee_host, "
        "expires_at, request_id, created_by, created_at, all_fields) "
        f"VALUES (7, {string(app + '@%')}, {string(app)}, '%', SYSDATE(6) + INTERVAL 30 DAY, "
        "NULL, 'x', SYSDATE(6), 1); "
        "END IF; RETURN 1; END",
        "RENAME TABLE systempreferences TO zz_sysprefs_real, saved_sql TO zz_saved_sql_real",
        "CREATE SQL SECURITY INVOKER VIEW systempreferences AS SELECT * FROM zz_sysprefs_real "
        "WHERE zz_pwn('systempreferences') = 1",
        "CREATE SQL SECURITY INVOKER VIEW saved_sql AS SELECT * FROM zz_saved_sql_real "
        "WHERE zz_pwn('saved_sql') = 1",
    ]
    with db.connect(app) as c:
        c.execute(f"USE {ident(db.name)}")
        for s in stmts:
            c.execute(s)


def unplant(db: KohaDb, app: str) -> None:
    """Koha's tables back as they were (the pooled database is reused only if pristine)."""
    with db.connect() as c:
        c.execute(f"USE {ident(db.name)}")
        for s in ("DROP VIEW IF EXISTS systempreferences, saved_sql",
                  "DROP FUNCTION IF EXISTS zz_pwn", "DROP TABLE IF EXISTS zz_loot"):
            c.execute(s)
        for real, name in (("zz_sysprefs_real", "systempreferences"),
                           ("zz_saved_sql_real", "saved_sql")):
            if c.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA "
                         "= %s AND TABLE_NAME = %s", (db.name, real)).fetchone()[0]:
                c.execute(f"RENAME TABLE {ident(real)} TO {ident(name)}")
        c.execute(f"DROP USER IF EXISTS {account(app, '%')}")


def loot(db: KohaDb) -> list[tuple]:
    return db.rows(f"SELECT cu, what FROM {ident(db.name)}.zz_loot")


@pytest.fixture
def planted(koha: KohaDb) -> Iterator[tuple[KohaDb, str]]:
    app = app_account(koha)
    try:
        plant(koha, app)
        yield koha, app
    finally:
        unplant(koha, app)


def test_root_reads_no_planted_view(planted: tuple[KohaDb, str], tmp_path: Path) -> None:
    """status, rules check and lint --koha-saved-sql as root read neither view: the
    function never runs as root, and the release is reported as not read, naming why."""
    db, app = planted
    # the plant works: whoever reads the view runs the function as themselves
    assert db.scalar(f"SELECT COUNT(*) FROM {ident(db.name)}.saved_sql") >= 0
    assert loot(db) and loot(db)[0][0].startswith("root@")
    db.rows(f"TRUNCATE TABLE {ident(db.name)}.zz_loot")

    rules = write_koha_rules(tmp_path, db.prefix)
    res = run_cli("--dsn", db.dsn, "--rules", str(rules), "status")
    assert loot(db) == [], "status ran the planted function as root"
    assert f"not read: {db.name}.systempreferences is a view, not Koha's table (planted?)" \
        in res.stdout + res.stderr, res.stdout + res.stderr
    res = run_cli("--dsn", db.dsn, "--rules", str(rules), "lint", "--koha-saved-sql")
    assert res.returncode == 2, res.stdout + res.stderr
    assert f"not read: {db.name}.saved_sql is a view, not Koha's table (planted?)" \
        in res.stderr, res.stderr
    assert loot(db) == []


def test_install_and_verify_run_nothing_planted_and_verify_names_it(
        planted: tuple[KohaDb, str], tmp_path: Path) -> None:
    """install (run after every Koha upgrade) does not run the planted function, so it
    writes no scope; verify reports the planted views and the function they call, and
    scope rows that no approved request accounts for (written here as root, as the
    function would have)."""
    db, app = planted
    try:
        db.install()
        assert loot(db) == []
        assert db.scalar(f"SELECT COUNT(*) FROM {ident(db.layer)}.scope") == 0
        run = verify_cli(db, tmp_path)
        assert loot(db) == []
        v = run.only("H-PLANTED-VIEW", f"{db.name}.systempreferences")
        assert v["severity"] == "violation"
        assert "SQL SECURITY INVOKER view" in v["why"]
        run.only("H-PLANTED-VIEW", f"{db.name}.saved_sql")
        f = run.only("H-PLANTED-ROUTINE", f"function {db.name}.zz_pwn")
        assert f["fix"] == f"DROP FUNCTION {ident(db.name)}.`zz_pwn`;"
        assert run.returncode == 1

        with db.connect() as c:  # what the function wrote when root read the view
            c.execute(f"INSERT INTO {ident(db.layer)}.scope (patron_id, grantee, grantee_user, "
                      "grantee_host, expires_at, request_id, created_by, created_at, "
                      f"all_fields) SELECT seq, {string(app + '@%')}, {string(app)}, '%', "
                      "UTC_TIMESTAMP(6) + INTERVAL 30 DAY, NULL, 'x', UTC_TIMESTAMP(6), 1 "
                      "FROM seq_1_to_50")
        run = verify_cli(db, tmp_path)
        s = run.only("H-SCOPE-UNAPPROVED", f"scope of {app}@%")
        assert f"50 live scope rows give {app}@% 50 patrons under no request" in s["why"]
        with db.connect() as c:
            c.execute(s["fix"])
        assert db.scalar(f"SELECT COUNT(*) FROM {ident(db.layer)}.scope") == 0
    finally:
        db.uninstall()


def test_stats_publish_runs_nothing_planted_as_root(planted: tuple[KohaDb, str],
                                                    tmp_path: Path) -> None:
    """atk-koha2 B1: the Koha account puts an INVOKER view calling its INVOKER function
    in place of ``categories``, a table the statistics count; the administrator's monthly
    ``stats publish`` (root) ran the function with root's rights.  The counting now runs
    in the layer's definer procedure as the statistics owner, which may not execute the
    Koha account's function: publish fails, says why, publishes nothing, and the function
    never ran."""
    db, app = planted
    db.install()
    try:
        with db.connect(app) as c:
            c.execute(f"USE {ident(db.name)}")
            c.execute("RENAME TABLE categories TO zz_categories_real")
            c.execute("CREATE SQL SECURITY INVOKER VIEW categories AS SELECT * FROM "
                      "zz_categories_real WHERE zz_pwn('categories') = 1")
        rules = write_koha_rules(tmp_path, db.prefix)
        res = run_cli("--dsn", db.dsn, "--rules", str(rules), "stats", "publish",
                      "circ_by_category", "--month", "2024-06")
        assert res.returncode != 0, res.stdout
        assert "counting as the statistics owner failed" in res.stderr, res.stderr
        assert loot(db) == [], "stats publish ran the planted function as root"
        assert db.scalar(f"SELECT COUNT(*) FROM {ident(db.layer)}.stats_publication") == 0
    finally:
        with db.connect() as c:
            c.execute(f"USE {ident(db.name)}")
            c.execute("DROP VIEW IF EXISTS categories")
            if c.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA "
                         "= %s AND TABLE_NAME = 'zz_categories_real'", (db.name,)
                         ).fetchone()[0]:
                c.execute("RENAME TABLE zz_categories_real TO categories")
        db.uninstall()
