"""The MariaDB engine (Koha): the :class:`~ils_redact.engine.Engine` interface over this
package's modules."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pymysql

from ...catalog import Catalog
from ...checks.report import Report
from ...engine import Engine
from ...errors import IlsRedactError
from ...plan import Plan
from ...rules import Rules
from ...sdc.model import ReportSource
from . import apply, connection, introspect, layer, orphaned, planner, procedures, replication
from . import query as query_mod
from . import staff as staff_mod
from .state import layer_database


class MariaDBEngine(Engine):
    name: ClassVar[str] = "mariadb"
    label: ClassVar[str] = "MariaDB"
    dialect: ClassVar[str] = "mysql"
    transactional_ddl: ClassVar[bool] = False
    schemes: ClassVar[tuple[str, ...]] = ("mysql", "mariadb")
    stats_autocommit: ClassVar[bool] = True

    # -- connection ------------------------------------------------------------------
    def owns(self, conn: Any) -> bool:
        return isinstance(conn, pymysql.connections.Connection)

    def connect(self, dsn: str, **kwargs: Any) -> connection.Connection:
        kwargs.pop("application_name", None)  # MariaDB has no such session attribute
        kwargs.pop("keep_search_path", None)  # nor a search path (see the PostgreSQL engine)
        return connection.connect(dsn, **kwargs)

    def connect_as(self, dsn: str, login: str, password: str,
                   **kwargs: Any) -> connection.Connection:
        # PyMySQL reads no option file unless asked (read_default_file) and no variable
        return self.connect(dsn, user=login, password=password, **kwargs)

    def password_was_checked(self, conn: Any) -> bool:
        return connection.password_was_checked(conn)

    def dsn_has_password(self, dsn: str) -> bool:
        return bool(connection.parse_dsn(dsn).get("password"))

    def require_primary(self, conn: Any, action: str) -> None:
        connection.require_primary(conn, action)

    def read_only_reason(self, conn: Any) -> str | None:
        return connection.read_only_reason(conn)

    def current_database(self, conn: Any) -> str:
        return connection.current_database(conn)

    def server_version(self, conn: Any) -> str:
        return connection.server_version(conn)

    def is_connection_lost(self, exc: BaseException) -> bool:
        args = getattr(exc, "args", ())
        code = args[0] if args and isinstance(args[0], int) else 0
        return isinstance(exc, pymysql.err.OperationalError) and code in (2006, 2013, 2055)

    def broken(self, conn: Any) -> bool:
        return not getattr(conn, "open", False)

    @property
    def driver_error(self) -> type[Exception]:
        return pymysql.err.MySQLError

    def describe_error(self, exc: BaseException) -> tuple[str, str]:
        args = getattr(exc, "args", ())
        code = args[0] if args and isinstance(args[0], int) else 0
        return f"error {code}", query_mod.describe_error(code, None)

    def write_refused(self, exc: BaseException) -> str | None:
        if isinstance(exc, pymysql.err.MySQLError) and exc.args and exc.args[0] == 1290:
            return ("the server refused a write: it runs with --read-only (a replica); run "
                    "it against the primary")
        return None

    # -- catalog, state, plans ---------------------------------------------------------
    def read_catalog(self, conn: Any) -> Catalog:
        return introspect.read_catalog(conn)

    def session_catalog(self, conn: Any) -> Catalog:
        """What install recorded: a restricted login sees no Koha table in
        information_schema."""
        return introspect.recorded_catalog(conn)

    def recorded_catalog(self, conn: Any) -> Catalog:
        return introspect.recorded_catalog(conn)

    def read_state(self, conn: Any, rules: Rules) -> Any:
        return apply.state_for(conn, rules)

    @property
    def plan_class(self) -> type[Plan]:
        return planner.MariaPlan

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
        plan, blocking = apply.compute_uninstall_plan(conn)
        return plan, blocking

    def uninstall(self, conn: Any, *, lock_timeout: str = "10s",
                  discard_audit: bool = False) -> Plan:
        return apply.uninstall(conn, lock_timeout=lock_timeout, discard_audit=discard_audit)

    def status(self, conn: Any, rules: Rules, *, reports: ReportSource) -> dict[str, Any]:
        return apply.status(conn, rules, reports=reports)

    def audit_entries(self, conn: Any) -> int:
        return apply.audit_entries(conn, layer_database(connection.current_database(conn)))

    def run_statement(self, conn: Any, statement: str) -> None:
        conn.execute(statement).fetchall()

    def layer_files(self) -> list[Any]:
        return list(layer.layer_files())

    def layer_schema(self, database: str) -> str:
        """The layer database of a Koha database."""
        return layer_database(database)

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
        return staff_mod

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
        return query_mod.QUERY_BACKEND

    def verify(self, conn: Any, rules: Rules, *, reports: ReportSource,
               ils_config: Path | str | None = None,
               backup_roles: tuple[str, ...] = (), exhaustive: bool = False,
               strict: bool = False) -> Report:
        if backup_roles:
            raise IlsRedactError("--backup-role applies to PostgreSQL (row-level security "
                                 "breaks backup logins there); MariaDB has none")
        from .verify import verify

        return verify(conn, rules, reports=reports, ils_config=ils_config, exhaustive=exhaustive,
                      strict=strict)


ENGINE = MariaDBEngine()
