"""Koha on MariaDB: real servers only.

The server comes from ``ILS_REDACT_TEST_MARIADB_DSN`` (an administrator DSN such as
``mysql://root@127.0.0.1:3306/``), else a testcontainers ``mariadb`` where Docker answers,
else ``mysql://root@127.0.0.1:3306/`` if it answers; otherwise the tests fail (they are
never skipped).  Accounts, roles and databases are server-wide and the server is shared,
so each run uses its own prefix for all of them and drops them at the end.

Every test here carries the ``mariadb`` marker, so a CI run that already ran them can
deselect them (``-m "not mariadb"``) in its second pass over another PostgreSQL.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pymysql
import pytest
from kohasupport import KohaDb, MariaServer

from ils_redact.backends.mariadb.connection import parse_dsn

#: every account, role and database this run creates starts with this (the layer
#: databases with ils_redact_ + this).  Not called PREFIX: tests/conftest.py's PREFIX is
#: imported by name elsewhere, and conftest modules replace each other in sys.modules.
KOHA_PREFIX = f"ikt{secrets.token_hex(3)}_"
HERE = Path(__file__).resolve().parent
DEFAULT_DSN = "mysql://root@127.0.0.1:3306/"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "mariadb: runs against a MariaDB server (Koha)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.mariadb)


def _answers(dsn: str) -> bool:
    try:
        p = parse_dsn(dsn)
        pymysql.connect(host=p["host"], port=p["port"], user=p["user"],
                        password=p["password"], connect_timeout=3).close()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not here"
        return False


@contextmanager
def _container() -> Iterator[str]:
    from testcontainers.mysql import MySqlContainer  # type: ignore[import-untyped]

    with MySqlContainer("mariadb:11.4", username="root", password="ilsredact",
                        dbname="test") as c:
        yield (f"mysql://root:ilsredact@{c.get_container_host_ip()}:"
               f"{c.get_exposed_port(3306)}/")


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaServer]:
    dsn = os.environ.get("ILS_REDACT_TEST_MARIADB_DSN")
    if dsn:
        srv = MariaServer(dsn, "env", KOHA_PREFIX)
    else:
        from ils_redact.servers import docker_answers

        if docker_answers():
            with _container() as url:
                srv = MariaServer(url, "testcontainers", KOHA_PREFIX)
                try:
                    yield srv
                finally:
                    srv.cleanup()
                return
        if not _answers(DEFAULT_DSN):
            pytest.fail("no MariaDB server: set ILS_REDACT_TEST_MARIADB_DSN, start Docker, "
                        f"or run MariaDB at {DEFAULT_DSN}")
        srv = MariaServer(DEFAULT_DSN, "local", KOHA_PREFIX)
    try:
        yield srv
    finally:
        srv.cleanup()


@pytest.fixture
def koha(mariadb: MariaServer) -> Iterator[KohaDb]:
    """A Koha-shaped database (all 293 tables, 2,000 patrons), not installed, with a role
    prefix of its own.  Databases are pooled: building 293 InnoDB tables takes seconds
    on a busy server, so after a test its layer, accounts and roles are dropped and the
    database is reused only if every table's SHOW CREATE and checksum is as built."""
    db = mariadb.koha_db(patrons=2_000)
    try:
        yield db
    finally:
        mariadb.release(db)


@pytest.fixture
def installed(koha: KohaDb) -> KohaDb:
    koha.install()
    return koha


@pytest.fixture(scope="module")
def installed_module(mariadb: MariaServer) -> Iterator[KohaDb]:
    """One installed Koha database shared by the read-only tests of a module."""
    db = mariadb.koha_db(patrons=2_000)
    db.install()
    try:
        yield db
    finally:
        mariadb.release(db)
