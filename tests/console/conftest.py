"""The staff console against real servers, driven by a real browser.

A library per engine (Evergreen on PostgreSQL, Koha on MariaDB), installed, with staff
logins that have passwords: a clerk (admin + disclosure), a director (admin), a board
member (stats).  The console runs in this process on a free loopback port; the browser is
Debian's headless Chromium through its chromedriver (Selenium never downloads one).
Screenshots go to ``tests/console/screenshots/<engine>/`` (ignored by git) for review.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from ils_redact.stats import all_reports
from support.console import PASSWORD, SCREENSHOTS, Browser, Library

HERE = Path(__file__).resolve().parent


# -- Evergreen on PostgreSQL ----------------------------------------------------------------

@pytest.fixture(scope="session")
def scram_server() -> Iterator[Any]:
    """An embedded PostgreSQL that asks every role but its superuser ``postgres`` for a
    password (scram-sha-256), set up by the code ``demo --serve`` uses.  The console
    refuses logins a server lets in without checking the password, and the project's
    shared PostgreSQL trusts everyone (its pg_hba.conf is not ours to change), so the
    console's PostgreSQL tests run here; the trust attack plays on the shared server
    (test_attacks.py::test_any_password_is_refused_when_the_server_does_not_ask)."""
    from ils_redact.servers import embedded_server, require_passwords

    with embedded_server() as srv:
        require_passwords(srv)
        yield srv


@pytest.fixture(scope="module")
def pg_library(scram_server: Any, run_prefix: str,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Library]:
    from ils_redact.adapters.evergreen import fixture
    from ils_redact.backends import postgresql as pg
    from ils_redact.backends.postgresql import staff
    from ils_redact.rules import load_rules
    from ils_redact.verify import verify
    from support import write_rules

    server = scram_server
    tmp = tmp_path_factory.mktemp("console_pg")
    name = f"{run_prefix}console"
    prefix = f"{name}_"
    owner, app_role, dba = f"{prefix}eg_owner", f"{prefix}eg_app", f"{prefix}dba"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        for role, extra in ((owner, "LOGIN"), (app_role, "LOGIN"), (dba, "LOGIN SUPERUSER")):
            conn.execute(sql.SQL("CREATE ROLE {} " + extra + " PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(PASSWORD)))
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(name), sql.Identifier(owner)))
    rules_path = write_rules(tmp, prefix)
    rules = load_rules(rules_path)
    dsn = server.dsn_for(name)
    try:
        with psycopg.connect(dsn) as conn:
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(owner)))
            fixture.build_schema(conn)
            fixture.fill(conn, patrons=2_000, circulations=10_000)
            conn.commit()
        with pg.connect(dsn) as conn:
            pg.install(conn, rules, reports=all_reports)
        clerk, director, board = f"{prefix}clerk", f"{prefix}director", f"{prefix}board"
        with pg.connect(dsn) as conn:
            for login, kind, create in ((clerk, "admin", True), (clerk, "disclosure", False),
                                        (director, "admin", True), (board, "stats", True)):
                plan = staff.plan_grant(conn, rules, login, kind, create=create,
                                        password=PASSWORD)
                conn.rollback()
                staff.apply(conn, plan)
                conn.commit()
            barcodes = [r[0] for r in conn.execute(
                "SELECT c.barcode FROM actor.card c JOIN actor.usr u ON u.id = c.usr "
                "WHERE c.active AND NOT u.deleted ORDER BY u.id LIMIT 3").fetchall()]
            conn.commit()
        report = tmp / "verify.json"
        with pg.connect(dsn) as conn:
            report.write_text(json.dumps(verify(conn, rules).to_json()), encoding="utf-8")
        lib = Library(engine="postgresql", dsn=_without_user(dsn), rules=rules,
                      rules_path=rules_path, clerk=clerk, director=director, board=board,
                      superuser=dba, ils_owner=owner, barcodes=barcodes,
                      verify_report=report, superuser_dsn=dsn)
        lib.serve()
        try:
            yield lib
        finally:
            lib.running.stop()
    finally:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))
            for (role,) in conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s",
                                        (prefix.replace("_", r"\_") + "%",)).fetchall():
                conn.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(role)))
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def _without_user(dsn: str) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    d = conninfo_to_dict(dsn)
    for k in ("user", "password"):
        d.pop(k, None)
    return make_conninfo(**d)  # type: ignore[arg-type]


# -- Koha on MariaDB --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def koha_library(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Library]:
    import secrets

    from ils_redact.rules import load_rules
    from ils_redact.verify import verify
    from support.koha import PASSWORD as KOHA_PASSWORD
    from support.koha import MariaServer, write_koha_rules

    dsn = os.environ.get("ILS_REDACT_TEST_MARIADB_DSN", "mysql://root@127.0.0.1:3306/")
    srv = MariaServer(dsn, "env", f"ict{secrets.token_hex(3)}_")
    tmp = tmp_path_factory.mktemp("console_koha")
    try:
        db = srv.koha_db(patrons=2_000)
        _tiny_branch(db)
        rules_path = write_koha_rules(tmp, db.prefix)
        rules = load_rules(rules_path)
        db.install(rules)
        clerk = db.login("clerk", "admin", "disclosure")
        director = db.login("director", "admin")
        board = db.login("board", "stats")
        with db.connect(autocommit=True) as c:
            barcodes = [r[0] for r in c.execute(
                f"SELECT cardnumber FROM `{db.name}`.borrowers "  # noqa: S608 - a test name
                "WHERE cardnumber IS NOT NULL "
                "ORDER BY borrowernumber LIMIT 3").fetchall()]
            # Koha's own account (all of the Koha database) and an administrator
            owner, dba = f"{db.prefix}kohaapp", f"{db.prefix}dba"
            for user in (owner, dba):
                c.execute(f"CREATE USER '{user}'@'%%' IDENTIFIED BY %s", (KOHA_PASSWORD,))
            c.execute(f"GRANT ALL ON `{db.name}`.* TO '{owner}'@'%'")
            c.execute(f"GRANT ALL ON *.* TO '{dba}'@'%'")
        report = tmp / "verify.json"
        with db.connect(autocommit=False) as c:
            report.write_text(json.dumps(verify(c, rules).to_json()), encoding="utf-8")
        lib = Library(engine="mariadb", dsn=_maria_dsn(srv.dsn_for(db.name)), rules=rules,
                      rules_path=rules_path, clerk=clerk, director=director, board=board,
                      superuser=dba, ils_owner=owner, barcodes=barcodes,
                      verify_report=report, superuser_dsn=db.dsn, password=KOHA_PASSWORD)
        lib.serve()
        try:
            yield lib
        finally:
            lib.running.stop()
    finally:
        srv.cleanup()


def _tiny_branch(db: Any) -> None:
    """Checkouts at a branch with two patrons (March 2024), which the generated Koha data
    lacks: its cells must come out suppressed (as tests/koha/test_stats.py adds them)."""
    from ils_redact.adapters.koha import fixture
    from ils_redact.backends.mariadb.sqltext import ident

    with db.connect() as c:
        c.execute(f"USE {ident(db.name)}")
        fixture.insert_rows(c, "old_issues", 4, {
            "issue_id": "900000 + seq", "borrowernumber": "IF(seq % 2 = 0, 499, 998)",
            "itemnumber": "seq", "issuer_id": "1", "branchcode": "'TPL'",
            "issuedate": "'2024-03-05 10:00:00' + INTERVAL seq DAY",
            "date_due": "'2024-03-30'", "returndate": "'2024-03-25'",
            "renewals_count": "0", "unseen_renewals": "0", "onsite_checkout": "0"})


def _maria_dsn(dsn: str) -> str:
    """The DSN without its account: ``mysql://host:port/db``."""
    from urllib.parse import urlsplit

    u = urlsplit(dsn)
    return f"{u.scheme}://{u.hostname}:{u.port or 3306}{u.path}"


@pytest.fixture(scope="module", params=["postgresql", pytest.param(
    "mariadb", marks=pytest.mark.mariadb)])
def library(request: pytest.FixtureRequest) -> Library:
    name = "pg_library" if request.param == "postgresql" else "koha_library"
    return request.getfixturevalue(name)


# -- the browser ------------------------------------------------------------------------------

@pytest.fixture
def browsers(library: Library) -> Iterator[Any]:
    """``browsers("clerk")``: a new browser (context) with screenshots under the engine."""
    made: list[Browser] = []

    def make(name: str) -> Browser:
        b = Browser(name, SCREENSHOTS / library.engine)
        made.append(b)
        return b

    try:
        yield make
    finally:
        for b in made:
            b.close()
