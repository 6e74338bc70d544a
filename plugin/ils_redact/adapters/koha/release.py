"""Which Koha release a database is at: the ``Version`` system preference.

Koha's installer and every database update write ``systempreferences.Version`` as
``MAJOR.MMPPDDD`` (``23.0502000`` is 23.05.02, database revision 000).
"""

from __future__ import annotations

import re
from typing import Any

from ...releases import Release

_KOHA_VERSION = re.compile(r"^(\d+)\.(\d{2})(\d{2})(\d{3})$")


def parse_koha_version(value: str) -> str | None:
    """``23.0502000`` -> ``23.05.02``; also accepts ``23.05.02.000``."""
    value = value.strip()
    m = _KOHA_VERSION.match(value)
    if m:
        return f"{int(m[1])}.{m[2]}.{m[3]}"
    m = re.match(r"^(\d+)\.(\d{2})\.(\d{2})(\.\d+)?$", value)
    if m:
        return f"{int(m[1])}.{m[2]}.{m[3]}"
    return None


def detect_release(conn: Any, database: str | None = None) -> Release | None:
    if database is None:
        row = conn.execute("SELECT DATABASE()").fetchone()
        database = row[0] if row else None
    if not database:
        return None
    from ...backends.mariadb.basetable import NotBaseTable, read_base_table, table_type

    # a base table only: a view in its place (the Koha account may make one) would run
    # its author's code with this connection's privileges (backends/mariadb/basetable.py)
    if table_type(conn, database, "systempreferences") is None:
        return None
    try:
        rows = read_base_table(conn, database, "systempreferences",
                               "variable = 'Version'", limit=1)
    except NotBaseTable as exc:
        return Release("koha", None, "systempreferences.Version", exc.message)
    except Exception:  # noqa: BLE001 - no SELECT on it: the release stays unknown
        return Release("koha", None, "systempreferences.Version", "not readable")
    value = rows[0].get("value") if rows else None
    if value is None:
        return Release("koha", None, "systempreferences.Version", "not set")
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    version = parse_koha_version(str(value))
    return Release("koha", version, "systempreferences.Version",
                   "" if version else f"unreadable value {value!r}")
