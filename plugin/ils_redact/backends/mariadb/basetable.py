"""Reading a Koha relation with an administrator's connection: base tables only.

The Koha application account holds every privilege on the Koha database (``GRANT ALL ON
koha.*``, as koha-create makes it), so it can rename a table Koha owns and put an ``SQL
SECURITY INVOKER`` view of the same name in its place whose ``WHERE`` calls its own
``SQL SECURITY INVOKER`` function.  Whoever then reads the view runs that function with
*their* privileges: root reading ``systempreferences`` to learn the release would copy
every account's password hash, write scope rows into the layer or add role mappings
(Aria grant tables, which no ROLLBACK undoes).  A base table runs nothing on SELECT (no
SELECT triggers; generated columns may use built-in functions only), so ils-redact reads
Koha data with an administrator's connection from base tables only:

* ``information_schema.TABLES.TABLE_TYPE`` is checked first, so a view is reported by
  name ("not read: ... is a view, not Koha's table (planted?)");
* the rows are then read with ``HANDLER ... OPEN``, which MariaDB refuses for anything
  but a base table.  The check and the read are not one statement, and the Koha account
  could swap a view in between; HANDLER makes that swap fail instead of run its code.

HANDLER returns whole rows (``*``) read in index or table order, filtered by a ``WHERE``
of our own text (no Koha routine can be named there).
"""

# ruff: noqa: S608 - identifiers only through sqltext.qname/ident

from __future__ import annotations

from typing import Any

import pymysql

from ...errors import IlsRedactError
from .sqltext import ident, qname

#: what a read of many rows returns at most (saved_sql: a library keeps hundreds)
MAX_ROWS = 100_000
_NOT_BASE_TABLE = 1347  # ER_WRONG_OBJECT: "'db.x' is not of type 'BASE TABLE'"


class NotBaseTable(IlsRedactError):
    """A relation ils-redact reads as an administrator is not a base table."""


def not_read(database: str, table: str, kind: str) -> str:
    what = "a view" if kind == "VIEW" else f"a {kind.lower()}"
    return (f"not read: {database}.{table} is {what}, not Koha's table (planted?); "
            "a view in its place would run its author's code with this login's privileges")


def table_type(conn: Any, database: str, table: str) -> str | None:
    """``BASE TABLE``, ``VIEW``, ``SEQUENCE``, ``SYSTEM VERSIONED`` ... or None (absent)."""
    row = conn.execute("SELECT TABLE_TYPE FROM information_schema.TABLES "
                       "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                       (database, table)).fetchone()
    return str(row[0]) if row else None


def read_base_table(conn: Any, database: str, table: str, where: str = "",
                    limit: int = MAX_ROWS) -> list[dict[str, Any]]:
    """The rows of ``database.table`` (each a dict by column name), read with HANDLER.

    Raises :class:`NotBaseTable` for anything that is not a base table (checked before,
    and again by HANDLER itself), and lets a privilege error through."""
    kind = table_type(conn, database, table)
    if kind is None:
        raise NotBaseTable(f"not read: {database}.{table} does not exist")
    if kind not in ("BASE TABLE", "SYSTEM VERSIONED"):
        raise NotBaseTable(not_read(database, table, kind))
    handle = ident("ils_redact_read")
    try:
        conn.execute(f"HANDLER {qname(database, table)} OPEN AS {handle}")
    except pymysql.err.MySQLError as exc:
        if exc.args and exc.args[0] == _NOT_BASE_TABLE:
            raise NotBaseTable(not_read(database, table, "VIEW")) from None
        raise
    try:
        cond = f" WHERE {where}" if where else ""
        cur = conn.execute(f"HANDLER {handle} READ FIRST{cond} LIMIT {int(limit)}")
        names = [d[0] for d in cur.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    finally:
        conn.execute(f"HANDLER {handle} CLOSE")
