"""The PostgreSQL engine (Evergreen): the :class:`~ils_redact.engine.Engine` interface
over this package's modules."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import psycopg

from ...catalog import Catalog
from ...checks.report import Report
from ...engine import Engine
from ...plan import Plan
from ...rules import Rules
from ...sdc.model import ReportSource
from . import apply, connection, introspect, orphaned, planner, procedures, replication, staff
from . import state as state_mod


class PostgresEngine(Engine):
    name: ClassVar[str] = "postgresql"
    label: ClassVar[str] = "PostgreSQL"
    dialect: ClassVar[str] = "postgres"
    transactional_ddl: ClassVar[bool] = True
    schemes: ClassVar[tuple[str, ...]] = ("postgresql", "postgres")

    # -- connection ------------------------------------------------------------------
    def owns(self, conn: Any) -> bool:
        return isinstance(conn, psycopg.Connection)

    def connect(self, dsn: str, **kwargs: Any) -> psycopg.Connection:
        return connection.connect(dsn, **kwargs)

    def connect_as(self, dsn: str, login: str, password: str,
                   **kwargs: Any) -> psycopg.Connection:
        return connection.connect_as(dsn, login, password, **kwargs)

    def console_dsn_problem(self, dsn: str) -> str | None:
        from psycopg.conninfo import conninfo_to_dict

        try:
            params = conninfo_to_dict(dsn)
        except psycopg.ProgrammingError:
            return None  # dsn_has_password says it is invalid
        if params.get("service") or params.get("passfile"):
            return ("give --dsn as host, port and dbname: a service or password file "
                    "would add a credential to staff logins")
        if connection.service_in_environment():
            return ("PGSERVICE is set in the console's environment: libpq would add that "
                    "service's parameters (a password, a certificate) to staff logins; "
                    "unset it (PGPASSWORD and PGPASSFILE are ignored)")
        return None

    def password_was_checked(self, conn: Any) -> bool:
        # libpq's PQconnectionUsedPassword: the server asked for the password (md5,
        # scram-sha-256, password, ldap, pam, radius); false under trust, peer, ident,
        # cert, gss or sspi
        return bool(conn.pgconn.used_password)

    def dsn_has_password(self, dsn: str) -> bool:
        from psycopg.conninfo import conninfo_to_dict

        from ...errors import IlsRedactError

        try:
            return bool(conninfo_to_dict(dsn).get("password"))
        except psycopg.ProgrammingError as exc:
            raise IlsRedactError(f"invalid DSN: {exc}") from None

    def require_primary(self, conn: Any, action: str) -> None:
        connection.require_primary(conn, action)

    def read_only_reason(self, conn: Any) -> str | None:
        return connection.read_only_reason(conn)

    def current_database(self, conn: Any) -> str:
        return connection.current_database(conn)

    def server_version(self, conn: Any) -> str:
        return connection.server_version(conn)

    def is_connection_lost(self, exc: BaseException) -> bool:
        state = getattr(exc, "sqlstate", None)
        return isinstance(exc, psycopg.OperationalError) and (
            state is None or state.startswith("08"))

    def broken(self, conn: Any) -> bool:
        return bool(conn.broken or conn.closed)

    @property
    def driver_error(self) -> type[Exception]:
        return psycopg.Error

    def describe_error(self, exc: BaseException) -> tuple[str, str]:
        from .query import describe_sqlstate

        state = getattr(exc, "sqlstate", None)
        return f"SQLSTATE {state}", describe_sqlstate(state)

    def write_refused(self, exc: BaseException) -> str | None:
        if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):  # SQLSTATE 25006
            primary = exc.diag.message_primary or "read-only transaction"
            return (f"the server refused a write: {primary} (a hot standby "
                    "or read-only session: run it against the primary)")
        return None

    # -- catalog, state, plans ---------------------------------------------------------
    def read_catalog(self, conn: Any) -> Catalog:
        return introspect.read_catalog(conn)

    def read_state(self, conn: Any, rules: Rules) -> state_mod.PgState:
        return state_mod.read_state(conn, rules)

    @property
    def plan_class(self) -> type[Plan]:
        return Plan

    @property
    def install_passes(self) -> tuple[Any, ...]:
        return planner.INSTALL_PASSES

    @property
    def privileges(self) -> Any:
        return planner.PRIVILEGES

    def compute_install_plan(self, conn: Any, rules: Rules, *, reports: ReportSource) -> Plan:
        return apply.compute_install_plan(conn, rules, reports=reports)

    def offline_install_plan(self, rules: Rules, catalog: Catalog, *,
                             reports: ReportSource) -> Plan:
        return apply.offline_install_plan(rules, catalog, reports=reports)

    def install(self, conn: Any, rules: Rules, *, reports: ReportSource,
                lock_timeout: str = "10s", expect: str | None = None) -> Plan:
        return apply.install(conn, rules, reports=reports, lock_timeout=lock_timeout,
                             expect=expect)

    def compute_uninstall_plan(self, conn: Any) -> tuple[Plan, list[str]]:
        return apply.compute_uninstall_plan(conn)

    def uninstall(self, conn: Any, *, lock_timeout: str = "10s",
                  discard_audit: bool = False) -> Plan:
        return apply.uninstall(conn, lock_timeout=lock_timeout, discard_audit=discard_audit)

    def status(self, conn: Any, rules: Rules, *, reports: ReportSource) -> dict[str, Any]:
        return apply.status(conn, rules, reports=reports)

    def audit_entries(self, conn: Any) -> int:
        return apply.audit_entries(conn)

    def run_statement(self, conn: Any, statement: str) -> None:
        connection.run_statement(conn, statement)

    def layer_schema(self, database: str) -> str:
        return "ils_redact"

    def layer_files(self) -> list[Any]:
        return list(planner.layer_files())

    def replication_status(self, conn: Any) -> dict[str, Any]:
        return replication.replication_status(conn)

    def replication_text(self, status: dict[str, Any]) -> list[str]:
        return replication.replication_text(status)

    # -- parts -----------------------------------------------------------------------
    @property
    def procedures(self) -> Any:
        return procedures

    @property
    def staff(self) -> Any:
        return staff

    @property
    def orphaned(self) -> Any:
        return orphaned

    @property
    def stats_runner(self) -> Any:
        from . import stats_run

        return stats_run

    def stats_publish(self, conn: Any, rules: Rules, catalog: Catalog, name: str,
                      months: list[Any] | None, *, reports: ReportSource) -> list[Any]:
        from .stats_publish import publish

        return publish(conn, rules, catalog, name, months, reports=reports)

    def query_backend(self) -> Any:
        from .query import QUERY_BACKEND

        return QUERY_BACKEND

    def verify(self, conn: Any, rules: Rules, *, reports: ReportSource,
               ils_config: Path | str | None = None,
               backup_roles: tuple[str, ...] = (), exhaustive: bool = False,
               strict: bool = False) -> Report:
        from .verify import verify

        return verify(conn, rules, reports=reports, ils_config=ils_config,
                      backup_roles=backup_roles, exhaustive=exhaustive, strict=strict)


ENGINE = PostgresEngine()
