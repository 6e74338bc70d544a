"""How the workflow calls the layer's functions, whatever the backend.

PostgreSQL exposes them as functions (``SELECT * FROM ils_redact.f(...)``); the MariaDB
backend provides procedures of the same names and arguments.  Each engine's
``procedures`` part calls them (``backends/<engine>/procedures.py``); this module asks
the engine the connection belongs to.  Values are always passed as parameters; the
function names come from this package, never from input.
"""

from __future__ import annotations

from typing import Any

from ..backends import engine_for
from ..errors import CommitUnconfirmed

__all__ = ["COMMIT_TIMEOUT", "CommitUnconfirmed", "call", "clock_sql", "commit_audited",
           "normalize_request", "query", "table", "traces_exports"]

_NAMES = frozenset({
    "patron_lookup", "request_create", "request_approve", "request_end", "sweep_expired",
    "export", "log_refusal",
})


def call(conn: Any, name: str, args: list[Any]) -> list[tuple]:
    if name not in _NAMES:
        raise ValueError(name)
    rows: list[tuple] = engine_for(conn).procedures.call(conn, name, args)
    return rows


def query(conn: Any, sql_text: str, params: list[Any] | None = None) -> list[tuple]:
    rows: list[tuple] = engine_for(conn).procedures.query(conn, sql_text, params)
    return rows


def table(conn: Any, name: str) -> str:
    """One of the layer's tables as SQL: ``ils_redact.request`` on PostgreSQL, the layer
    database of this Koha database on MariaDB (``ils_redact_koha``.``request``)."""
    return str(engine_for(conn).procedures.table(conn, name))


def clock_sql(conn: Any) -> str:
    """SQL for the time the layer decides expiry by: the statement's time on PostgreSQL
    (as the row policy compares it); on MariaDB the server clock in UTC, which
    ``SET timestamp`` does not move (NOW() and UTC_TIMESTAMP() follow it)."""
    return str(engine_for(conn).procedures.clock_sql(conn))


def normalize_request(conn: Any, row: dict[str, Any]) -> dict[str, Any]:
    """A request row as PostgreSQL returns it (MariaDB: JSON columns, naive UTC times)."""
    out: dict[str, Any] = engine_for(conn).procedures.normalize_request(row)
    return out


def audit_select(conn: Any) -> str:
    """SELECT of the audit log's fields, in the text form the layer hashed them."""
    return str(engine_for(conn).procedures.audit_select(conn))


def audit_by_seq(conn: Any, seqs: list[int]) -> list[tuple]:
    rows: list[tuple] = engine_for(conn).procedures.audit_by_seq(conn, seqs)
    return rows


def traces_exports(conn: Any) -> bool:
    """Whether the server's log holds a trace line per export (``audit reconcile``)."""
    return bool(engine_for(conn).procedures.TRACES_EXPORTS)


#: how long the CLI waits for the COMMIT of a transaction that wrote the audit log
COMMIT_TIMEOUT = 30.0


def commit_audited(conn: Any, timeout: float | None = None, *, what: str = "the change"
                   ) -> None:
    """COMMIT a transaction that wrote the audit log, within ``timeout`` seconds (default
    :data:`COMMIT_TIMEOUT`): a commit waiting for a synchronous standby that is gone
    becomes one clear :class:`CommitUnconfirmed` (see the engine's ``commit_audited``)."""
    limit = COMMIT_TIMEOUT if timeout is None else timeout
    engine_for(conn).procedures.commit_audited(conn, limit, what=what)
