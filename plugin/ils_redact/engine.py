"""The engine interface: everything that differs between PostgreSQL and MariaDB, named.

One :class:`Engine` object per server kind (``backends.get_backend(name)`` returns it;
``backends.engine_for(conn)`` finds the one a connection belongs to).  The CLI, the
console and the services (plan, verify, disclosure, stats, the query gate) ask this
object and nothing else: no ``isinstance`` on a driver's connection, no module looked up
by name, no engine fact written into engine-neutral text.  The shape follows alembic's
``DefaultImpl`` (one implementation object per dialect, the neutral code calls its
methods) and psycopg's ``pq/abc.py`` (the interface stated once, implementations checked
against it).

The interface has four groups:

- identity: :attr:`name`, :attr:`label`, :attr:`dialect` (sqlglot's), whether DDL is
  transactional (:attr:`transactional_ddl`: PostgreSQL runs an install in one
  transaction; MariaDB commits each DDL statement, so an install is ordered to be safe
  to interrupt) and the messages that depend on it;
- connection, catalog and state: connect, the primary/replica check, the catalog, the
  layer's state, the install/uninstall plans, the one place a plan's statements run;
- the engine's parts for the services, each an object or module with the same names on
  both engines: :attr:`procedures` (the layer's disclosure procedures), :attr:`staff`,
  :attr:`orphaned`, :meth:`query_backend` (the gated query runner),
  :attr:`stats_runner` and :meth:`verify` (the engine's checks, in the vocabulary of
  ``ils_redact.checks``);
- error description for people: a driver error as fixed text (never the server's text,
  which can carry values).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any, ClassVar

from .catalog import Catalog
from .errors import IlsRedactError

if TYPE_CHECKING:
    from pathlib import Path

    from .checks.report import Report
    from .plan import InstallContext, InstallPass, Plan
    from .rules import Rules
    from .sdc.model import ReportSource


#: SQLSTATE class (first two characters) -> what the restricted user is told
SQLSTATE_CLASSES: dict[str, str] = {
    "08": "connection exception",
    "0A": "feature not supported",
    "21": "cardinality violation",
    "22": "data exception",
    "23": "integrity constraint violation",
    "25": "invalid transaction state",
    "28": "invalid authorization",
    "2F": "SQL routine exception",
    "38": "external routine exception",
    "39": "external routine invocation exception",
    "40": "transaction rollback",
    "42": "syntax error or access rule violation",
    "53": "insufficient resources",
    "54": "program limit exceeded",
    "55": "object not in prerequisite state",
    "57": "operator intervention",
    "58": "system error",
    "P0": "PL/pgSQL error",
    "XX": "internal error",
}


@dataclass(frozen=True)
class RequestCheck:
    """The layer's own check of a request for a gated query, and the fields it covers."""

    ok: bool
    reason: str | None
    columns: tuple[str, ...]


@dataclass(frozen=True)
class QueryBackend:
    """What differs between servers in the gated query runner (``query.run.run_gated``);
    the order of events does not.

    ``names`` gives (how unqualified names resolve for this login, what the ``query``
    audit entry records of it); ``audit_append`` and ``log_refusal`` write without
    committing (the runner commits with ``disclosure.db.commit_audited``);
    ``log_refusal`` returns None when this login may not write the log.  ``failure``
    turns a driver error into (sqlstate, the server's text for ``--debug``, the fixed
    description the user is told, the fields of the ``query.failed`` entry).
    """

    dialect: str
    names: Callable[[Any, Catalog], tuple[tuple[str, ...], dict[str, Any]]]
    check_request: Callable[[Any, int], RequestCheck]
    audit_append: Callable[[Any, str, int | None, dict[str, Any]], int]
    log_refusal: Callable[[Any, int | None, str], int | None]
    run_read_only: Callable[..., tuple[tuple[str, ...], list[tuple[Any, ...]], bool]]
    driver_error: type[Exception]
    failure: Callable[[Any], tuple[str | None, str, str, dict[str, Any]]]


class Privileges(ABC):
    """The engine's privileges on ILS and layer objects, for the diff that
    ``plan.revoke_drift`` and ``plan.grant_missing`` write once.  A privilege is the
    engine's own value type, hashable, with ``key`` (its bookkeeping object) and
    ``to_json()``."""

    @abstractmethod
    def desired(self, ctx: InstallContext) -> set[Any]:
        """Exactly what the layer's roles must hold."""

    @abstractmethod
    def actual(self, ctx: InstallContext) -> set[Any]:
        """What the layer's roles hold now."""

    @abstractmethod
    def groups(self, privileges: set[Any]) -> list[list[Any]]:
        """Privileges in the groups one statement grants, in plan order."""

    @abstractmethod
    def grant_sql(self, group: list[Any], revoke: bool = False) -> str: ...

    @abstractmethod
    def target(self, privilege: Any) -> str:
        """The step's target, for people."""

    @abstractmethod
    def holder(self, privilege: Any) -> str:
        """The role (or account) that holds it."""

    @abstractmethod
    def why(self, ctx: InstallContext, privilege: Any) -> str:
        """Why the rules give it (the grant step's comment)."""

    @abstractmethod
    def records_sql(self, ctx: InstallContext,
                    rows: list[tuple[str, str, Any, Any]]) -> str:
        """One statement recording bookkeeping rows (kind, object, detail, prior)."""

    @abstractmethod
    def unrecord_sql(self, ctx: InstallContext, keys: list[str]) -> str: ...


class Engine(ABC):
    """One database server kind.  Subclasses live in ``backends/<name>/engine.py``."""

    #: the adapter's ``engine`` value and the backend's package name
    name: ClassVar[str]
    #: how people call the server
    label: ClassVar[str]
    #: sqlglot's dialect name for the gate and the linters
    dialect: ClassVar[str]
    #: DDL runs inside a transaction (an interrupted install leaves nothing behind)
    transactional_ddl: ClassVar[bool]
    #: URI schemes of a DSN for this server (a DSN with none of them is PostgreSQL's
    #: libpq conninfo)
    schemes: ClassVar[tuple[str, ...]] = ()

    # -- messages that depend on the engine ------------------------------------------
    @property
    def interrupted(self) -> str:
        """What an interrupted command left behind."""
        if self.transactional_ddl:
            return "interrupted; nothing was committed"
        return (f"interrupted; {self.label} commits each DDL statement as it runs, so an "
                "install, uninstall or staff change may be part done: run it again to "
                "finish it")

    # -- connection ------------------------------------------------------------------
    @abstractmethod
    def owns(self, conn: Any) -> bool:
        """Whether ``conn`` is a connection to this kind of server."""

    @abstractmethod
    def connect(self, dsn: str, **kwargs: Any) -> Any:
        """Open a connection (a context manager that closes it).  PostgreSQL pins the
        session's ``search_path`` to the built-in schema unless ``keep_search_path=True``
        (the query gate's own sessions); MariaDB ignores it."""

    @abstractmethod
    def dsn_has_password(self, dsn: str) -> bool:
        """Whether the DSN carries a password (the console refuses one)."""

    @abstractmethod
    def connect_as(self, dsn: str, login: str, password: str, **kwargs: Any) -> Any:
        """Connect as ``login`` with ``password`` and nothing else the environment holds
        (the console's logins): no password file, service file or password variable."""

    def console_dsn_problem(self, dsn: str) -> str | None:
        """Why the console cannot log staff in through ``dsn`` with exactly the password
        they type (a credential the DSN or the environment would add), or None."""
        return None

    @abstractmethod
    def password_was_checked(self, conn: Any) -> bool:
        """Whether the server authenticated this connection by its password.  A server
        that let it in without asking (PostgreSQL trust/peer/ident/cert, a MariaDB
        account authenticated by the client's socket) proved nothing about who typed
        the password, so the console refuses such a login."""

    @abstractmethod
    def require_primary(self, conn: Any, action: str) -> None:
        """Refuse ``action`` (a command that writes) on a replica, in one line."""

    @abstractmethod
    def read_only_reason(self, conn: Any) -> str | None:
        """Why this server takes no writes, or None."""

    @abstractmethod
    def current_database(self, conn: Any) -> str: ...

    @abstractmethod
    def server_version(self, conn: Any) -> str: ...

    @abstractmethod
    def is_connection_lost(self, exc: BaseException) -> bool:
        """Whether a driver error means the connection is gone."""

    @abstractmethod
    def broken(self, conn: Any) -> bool:
        """Whether the connection can no longer be used."""

    @property
    @abstractmethod
    def driver_error(self) -> type[Exception]:
        """The base class of the driver's errors."""

    @abstractmethod
    def describe_error(self, exc: BaseException) -> tuple[str, str]:
        """(the error's code for logs, fixed text for people) of a driver error."""

    @abstractmethod
    def write_refused(self, exc: BaseException) -> str | None:
        """One line for a write the server refused because it is read-only (a server
        demoted while the command ran, a read-only transaction), or None."""

    # -- catalog, state, plans ---------------------------------------------------------
    @abstractmethod
    def read_catalog(self, conn: Any) -> Catalog: ...

    def session_catalog(self, conn: Any) -> Catalog:
        """The catalog a restricted login's gated query is checked against (what it can
        read of the live catalog, or what install recorded when it can read none)."""
        return self.read_catalog(conn)

    @abstractmethod
    def read_state(self, conn: Any, rules: Rules) -> Any:
        """The layer's state: what install created and recorded, and what is there."""

    #: the class of this engine's plans (how a script is rendered for its client)
    @property
    @abstractmethod
    def plan_class(self) -> type[Plan]: ...

    @property
    @abstractmethod
    def install_passes(self) -> tuple[InstallPass, ...]:
        """The sections of the install plan, in order (``plan.plan_install`` runs them)."""

    @property
    @abstractmethod
    def privileges(self) -> Privileges: ...

    # ``reports`` (the install, verify and publish calls): the statistics reports the rules
    # define on a catalog, as a callable (``ils_redact.stats.all_reports``); the service
    # hands it down, so no engine imports the statistics service or the query gate

    @abstractmethod
    def compute_install_plan(self, conn: Any, rules: Rules, *, reports: ReportSource) -> Plan: ...

    @abstractmethod
    def offline_install_plan(self, rules: Rules, catalog: Catalog, *,
                             reports: ReportSource) -> Plan: ...

    @abstractmethod
    def install(self, conn: Any, rules: Rules, *, reports: ReportSource,
                lock_timeout: str = "10s", expect: str | None = None) -> Plan: ...

    @abstractmethod
    def compute_uninstall_plan(self, conn: Any) -> tuple[Plan, list[str]]: ...

    @abstractmethod
    def uninstall(self, conn: Any, *, lock_timeout: str = "10s",
                  discard_audit: bool = False) -> Plan: ...

    @abstractmethod
    def status(self, conn: Any, rules: Rules, *, reports: ReportSource) -> dict[str, Any]: ...

    @abstractmethod
    def audit_entries(self, conn: Any) -> int:
        """How many entries the layer's audit log holds."""

    @abstractmethod
    def run_statement(self, conn: Any, statement: str) -> None:
        """The one choke point where a plan's statement runs (logged with --debug)."""

    @abstractmethod
    def layer_schema(self, database: str) -> str:
        """Where the layer's tables, views and routines live for ILS database
        ``database`` (PostgreSQL: a schema in it; MariaDB: a database of its own)."""

    @abstractmethod
    def layer_files(self) -> list[Any]:
        """The layer's versioned SQL files, oldest first."""

    @abstractmethod
    def replication_status(self, conn: Any) -> dict[str, Any]: ...

    @abstractmethod
    def replication_text(self, status: dict[str, Any]) -> list[str]: ...

    # -- the engine's parts for the services ---------------------------------------------
    @property
    @abstractmethod
    def procedures(self) -> Any:
        """The layer's disclosure procedures as the workflow calls them: ``call``,
        ``query``, ``table``, ``clock_sql``, ``normalize_request``, ``commit_audited``,
        ``audit_select``."""

    @property
    @abstractmethod
    def staff(self) -> Any:
        """``plan_grant``, ``plan_revoke``, ``apply``, ``members``, ``console_login``."""

    @property
    @abstractmethod
    def orphaned(self) -> Any:
        """``require_admin``, ``find``, ``remove`` for a database dropped without
        uninstall."""

    @property
    @abstractmethod
    def stats_runner(self) -> Any:
        """``list_reports`` and ``run_report`` on a statistics login's connection."""

    #: the statistics runner needs autocommit (each statement commits its work rows)
    stats_autocommit: ClassVar[bool] = False

    @abstractmethod
    def stats_publish(self, conn: Any, rules: Rules, catalog: Catalog, name: str,
                      months: list[Any] | None, *, reports: ReportSource) -> list[Any]:
        """``stats publish``: count, suppress and record months of report ``name`` (the
        administrator's connection); the months' results."""

    @abstractmethod
    def query_backend(self) -> Any:
        """The gated query runner's engine part (``query.run.QueryBackend``)."""

    @abstractmethod
    def verify(self, conn: Any, rules: Rules, *, reports: ReportSource,
               ils_config: Path | str | None = None, backup_roles: tuple[str, ...] = (),
               exhaustive: bool = False, strict: bool = False) -> Report:
        """Every check of ``ils-redact verify`` on this server (``backends/<engine>/
        verify/``)."""

    def __repr__(self) -> str:
        return f"<engine {self.name}>"


# -- the registry: engine objects by name (``backends/__init__`` re-exports it) --------

#: engine name -> the module whose ``ENGINE`` is its :class:`Engine` (imported on first use:
#: a PostgreSQL user need not have the MariaDB driver loaded, and the reverse)
BACKENDS = {"postgresql": "ils_redact.backends.postgresql.engine",
            "mariadb": "ils_redact.backends.mariadb.engine"}
#: how people call each server (for messages before an engine is loaded)
LABELS = {"postgresql": "PostgreSQL", "mariadb": "MariaDB"}


def get_backend(engine: str) -> Engine:
    """The engine object of ``engine`` (``postgresql`` or ``mariadb``)."""
    try:
        module = BACKENDS[engine]
    except KeyError:
        raise IlsRedactError(f"no backend for engine {engine!r}",
                             hint=f"known: {', '.join(BACKENDS)}") from None
    found: Engine = import_module(module).ENGINE
    return found


def engines() -> list[Engine]:
    return [get_backend(name) for name in BACKENDS]


def engine_for(conn: Any) -> Engine:
    """The engine a connection belongs to."""
    for engine in engines():
        if engine.owns(conn):
            return engine
    raise IlsRedactError(f"not a connection of a known server: {type(conn).__name__}")


def dsn_engine(dsn: str) -> str:
    """``mariadb`` for a mysql:// or mariadb:// URI, else ``postgresql`` (URI or libpq
    key=value conninfo)."""
    scheme = dsn.split("://", 1)[0].lower() if "://" in dsn else ""
    return "mariadb" if scheme in ("mysql", "mariadb") else "postgresql"


def engine_for_dsn(dsn: str) -> Engine:
    return get_backend(dsn_engine(dsn))
