"""How the disclosure workflow calls the layer's procedures on MariaDB.

``call(conn, name, args)`` has the shape of the PostgreSQL dispatch in
``ils_redact.disclosure.db``: the same names, the same arguments, rows back.  MariaDB
has no arrays, so lists travel as JSON text; aware datetimes are turned into the UTC
``DATETIME(6)`` values the layer stores.  A procedure's SIGNAL (an input the database
refuses) becomes :class:`Refused`, as PostgreSQL's RAISE does.

MariaDB activates one role at a time (a login has at most one default role).  A member
of staff who is both an admin and an exporter gets one of them by default; when a call
or a query is denied, the role that grants it is activated (``SET ROLE``) among those
the login was granted, and the statement is tried again.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pymysql

from ...errors import Refused
from .connection import Connection, current_database
from .sqltext import qname
from .state import layer_database

#: procedures the client calls (each returns one result set), and the role kind that
#: may call each.  No role calls audit_append: the query gate's entries go through
#: query_log, which takes its three actions only.
PROCEDURES = {
    "patron_lookup": "admin", "request_create": "admin", "request_approve": "admin",
    "request_end": "admin", "sweep_expired": "admin", "export": "exporter",
    "log_refusal": None, "query_log": "disclosure",
}
_DENIED = (1142, 1143, 1370)  # table, column, routine access denied
#: innodb_lock_wait_timeout ran out
_LOCK_WAIT = 1205
_SIGNAL = 1644


def layer_of(conn: Connection) -> str:
    layer = getattr(conn, "_ils_redact_layer", None)
    if layer is None:
        layer = layer_database(current_database(conn))
        conn._ils_redact_layer = layer
    return layer


def table(conn: Connection, name: str) -> str:
    """A layer table as SQL (``ils_redact_koha``.``request``)."""
    return qname(layer_of(conn), name)


def clock_sql(conn: Connection) -> str:
    """The layer's clock as SQL: the server's clock in UTC (SYSDATE), which SET timestamp
    does not move."""
    return f"{qname(layer_of(conn), 'clock_utc')}()"


def _arg(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return json.dumps([_plain(v) for v in value])
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value
    return value


def _plain(v: Any) -> Any:
    return v if isinstance(v, int | float | str) or v is None else str(v)


def _message(exc: pymysql.err.MySQLError) -> str:
    return str(exc.args[1]) if len(exc.args) > 1 else str(exc)


def _activate(conn: Connection, kind: str | None) -> bool:
    """SET ROLE to a granted role of the wanted kind (its name ends with the kind); True
    if the role changed."""
    rows = conn.execute(
        "SELECT ROLE_NAME FROM information_schema.APPLICABLE_ROLES "
        "ORDER BY IS_DEFAULT = 'YES' DESC, ROLE_NAME").fetchall()
    current = conn.execute("SELECT CURRENT_ROLE()").fetchone()
    active = current[0] if current else None
    kinds = [kind] if kind else ["admin", "exporter", "disclosure"]
    for k in kinds:
        for (role,) in rows:
            if role != active and str(role).endswith(k):
                conn.execute(f"SET ROLE `{str(role).replace('`', '``')}`")
                return True
    return False


def _run(conn: Connection, sql: str, params: Any, kind: str | None, *,
         denied_refuses: bool = True) -> list[tuple]:
    """Run one statement and read its one result set (and the status packets after a
    CALL).  A SIGNAL becomes :class:`Refused` with its text; a denial activates the
    granted role of ``kind`` and tries once more, and if still denied becomes
    :class:`Refused` (or, with ``denied_refuses=False``, stays the driver's error for
    the caller to name); any other error is the driver's."""
    tried = False
    while True:
        try:
            return conn.rows(sql, params)
        except pymysql.err.MySQLError as exc:
            code = exc.args[0] if exc.args else 0
            if code == _SIGNAL:
                raise Refused(_message(exc)) from None
            if code == _LOCK_WAIT:
                # a session holds the row in an open transaction (an admin's SELECT ...
                # FOR UPDATE on the request, a grantee vetoing its own revoke): say so
                # instead of the driver's traceback; nothing was changed
                raise Refused("a row this needs is locked by another session's open "
                              "transaction (MariaDB error 1205): nothing was changed; try "
                              "again, or end that session (SHOW PROCESSLIST, KILL)") from None
            if code in _DENIED and not tried:
                tried = True
                if _activate(conn, kind):
                    continue
            if code in _DENIED and denied_refuses:
                raise Refused(_message(exc)) from None
            raise


def call(conn: Connection, name: str, args: list[Any]) -> list[tuple]:
    if name not in PROCEDURES:
        raise ValueError(name)
    kind = PROCEDURES[name]
    proc = qname(layer_of(conn), name)
    params = tuple(_arg(a) for a in args)
    rows = _run(conn, f"CALL {proc}({', '.join(['%s'] * len(params))})", params, kind)
    if name == "patron_lookup":
        return [(r[0], r[1], json.loads(r[2]) if isinstance(r[2], str) else r[2]) for r in rows]
    return rows


def query(conn: Connection, sql_text: str, params: list[Any] | None = None) -> list[tuple]:
    """A query on the layer's tables (requests, audit log): as an admin."""
    return _run(conn, sql_text, tuple(_arg(p) for p in params or ()), "admin")


_DATETIMES = ("expires_at", "created_at", "approved_at", "ended_at")


def normalize_request(row: dict[str, Any]) -> dict[str, Any]:
    """A request row as the PostgreSQL backend returns it: columns as a list, times as
    aware UTC datetimes."""
    out = dict(row)
    if isinstance(out.get("columns"), str):
        out["columns"] = json.loads(out["columns"])
    for k in _DATETIMES:
        v = out.get(k)
        if isinstance(v, dt.datetime) and v.tzinfo is None:
            out[k] = v.replace(tzinfo=dt.timezone.utc)
    return out


#: the audit log's fields, in the text form the procedure that hashed them used: ``at`` is
#: a UTC DATETIME(6), the detail the JSON text as stored (``%%``: the driver formats
#: parameters into the statement)
_AUDIT_SELECT = ("SELECT seq, DATE_FORMAT(at, '%%Y-%%m-%%dT%%H:%%i:%%s.%%fZ'), actor, action, "
                 "request_id, detail, prev_hash, hash FROM {table}")

#: MariaDB writes no trace line per export (``audit reconcile`` has nothing to read)
TRACES_EXPORTS = False


def audit_select(conn: Connection) -> str:
    return _AUDIT_SELECT.format(table=table(conn, "audit_log"))


def audit_by_seq(conn: Connection, seqs: list[int]) -> list[tuple]:
    """The audit rows with these sequence numbers (the whole log, filtered here)."""
    wanted = set(seqs)
    return [r for r in query(conn, audit_select(conn) + " ORDER BY seq") if r[0] in wanted]


def commit_audited(conn: Connection, limit: float, *, what: str) -> None:
    """COMMIT: MariaDB bounds its own wait for a semi-synchronous replica
    (``rpl_semi_sync_master_timeout``)."""
    conn.commit()
