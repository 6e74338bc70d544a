"""The statements verify prints as fixes: identifiers quoted by psycopg, never by hand.

A fix is pasted into psql by a sysadmin, so a role or table whose name needs quoting must
come out quoted (STYLE 3); ``psycopg.sql`` renders without a connection.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from psycopg import sql

_SIGNATURE = re.compile(r"^([^.]+)\.([^(]+)\((.*)\)$")


def ident(name: str) -> sql.Identifier:
    """``schema.table`` -> a quoted two-part identifier; a role or schema -> one part."""
    return sql.Identifier(*name.split(".", 1))


def role(name: str) -> sql.Composable:
    return sql.SQL("PUBLIC") if name == "PUBLIC" else sql.Identifier(name)


def roles(names: Iterable[str]) -> sql.Composable:
    """``PUBLIC, "a", "b"``: PUBLIC first, then the roles in order."""
    names = sorted(set(names), key=lambda n: (n != "PUBLIC", n))
    return sql.SQL(", ").join(role(n) for n in names)


def function(signature: str) -> sql.Composable:
    """``schema.name(arg types)`` as printed by ``oidvectortypes`` -> quoted name, the
    argument types as PostgreSQL printed them."""
    m = _SIGNATURE.match(signature)
    if not m:
        return sql.SQL(signature)
    return sql.SQL("{}.{}({})").format(sql.Identifier(m[1]), sql.Identifier(m[2]),
                                       sql.SQL(m[3]))


def stmt(template: str, note: str = "", **parts: sql.Composable) -> str:
    """Render ``template`` with its ``{name}`` parts (already quoted composables), then
    ``note`` (plain words for the person reading the fix)."""
    return sql.SQL(template).format(**parts).as_string(None) + note  # type: ignore[arg-type]
