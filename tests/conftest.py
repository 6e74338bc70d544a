"""Real servers only.

The server comes from ``ILS_REDACT_TEST_DSN`` (a superuser DSN, e.g. the local PostgreSQL
15), else a testcontainers ``postgres`` where Docker answers, else an embedded PostgreSQL
18.  Roles are cluster-wide and CI shares the server, so each run uses its own role
prefix and databases and drops them at the end, even when tests fail.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from ils_redact.servers import Server, any_server

RUN_ID = secrets.token_hex(3)
#: every role and database this run creates starts with this
PREFIX = f"irt{RUN_ID}_"


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    with any_server() as srv:
        try:
            yield srv
        finally:
            cleanup_run(srv)


def cleanup_run(srv: Server) -> None:
    """Drop this run's databases, then its roles."""
    with psycopg.connect(srv.dsn, autocommit=True) as conn:
        dbs = [r[0] for r in conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (PREFIX + "%",))]
        for db in dbs:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                         .format(sql.Identifier(db)))
        roles = [r[0] for r in conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE %s ORDER BY rolname DESC",
            (PREFIX + "%",))]
        for role in roles:
            conn.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture(scope="session")
def run_prefix() -> str:
    return PREFIX


class Databases:
    """Creates databases named after the run and drops them at teardown."""

    def __init__(self, srv: Server) -> None:
        self.srv = srv
        self.made: list[str] = []
        self.n = 0

    def create(self, label: str = "db", owner: str | None = None,
               template: str | None = None) -> str:
        self.n += 1
        name = f"{PREFIX}{label}{self.n}"
        with psycopg.connect(self.srv.dsn, autocommit=True) as conn:
            q = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if template:
                q += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
            if owner:
                q += sql.SQL(" OWNER {}").format(sql.Identifier(owner))
            conn.execute(q)
        self.made.append(name)
        return name

    def drop(self, name: str) -> None:
        with psycopg.connect(self.srv.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                         .format(sql.Identifier(name)))
        if name in self.made:
            self.made.remove(name)

    def drop_all(self) -> None:
        for name in list(self.made):
            self.drop(name)


@pytest.fixture
def databases(server: Server) -> Iterator[Databases]:
    dbs = Databases(server)
    try:
        yield dbs
    finally:
        dbs.drop_all()


def pytest_report_header(config: pytest.Config) -> list[str]:
    src = "ILS_REDACT_TEST_DSN" if os.environ.get("ILS_REDACT_TEST_DSN") else \
        "testcontainers or embedded PostgreSQL"
    return [f"ils-redact: server from {src}; run prefix {PREFIX}"]


# -- Evergreen databases -------------------------------------------------------------------

_db_counter = iter(range(1, 10_000))


@pytest.fixture(scope="session")
def eg_roles(server: Server) -> tuple[str, str]:
    """The ILS owner (a non-superuser, as a careful library runs it) and a non-owner ILS
    role that the ILS application uses."""
    from support import create_role

    owner = create_role(server, f"{PREFIX}eg_owner")
    app = create_role(server, f"{PREFIX}eg_app")
    return owner, app


@pytest.fixture(scope="session")
def eg_template(server: Server, eg_roles: tuple[str, str]) -> str:
    """A template database built once per run from the real Evergreen catalog facts
    (all 510 tables and 137 views) with a small deterministic data set."""
    from ils_redact.adapters.evergreen import fixture

    owner, app = eg_roles
    name = f"{PREFIX}egtemplate"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(name), sql.Identifier(owner)))
    with psycopg.connect(server.dsn_for(name)) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(owner)))
        fixture.build_schema(conn)
        fixture.fill(conn, patrons=2_000, circulations=10_000)
        schemas = [r[0] for r in conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspowner = current_user::regrole")]
        for s in schemas:
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {0} TO {1}; "
                                 "GRANT ALL ON ALL TABLES IN SCHEMA {0} TO {1}").format(
                sql.Identifier(s), sql.Identifier(app)))
        conn.commit()
    with psycopg.connect(server.dsn_for(name), autocommit=True) as conn:
        conn.execute("ANALYZE")
    return name


@pytest.fixture
def eg_db(server: Server, eg_template: str, eg_roles: tuple[str, str]):
    """A fresh copy of the Evergreen template with its own ils-redact role prefix."""
    from support import EgDb

    n = next(_db_counter)
    name = f"{PREFIX}eg{n}"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(eg_template)))
    db = EgDb(server=server, name=name, owner=eg_roles[0], app=eg_roles[1],
              prefix=f"{PREFIX}{n}_")
    try:
        yield db
    finally:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))
            for (role,) in conn.execute(
                    "SELECT rolname FROM pg_roles WHERE rolname LIKE %s",
                    (db.prefix + "%",)).fetchall():
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
