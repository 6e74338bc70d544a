"""The statements verify prints as fixes: identifiers quoted by psycopg, never by hand.

A fix is pasted into psql by a sysadmin, so a role or table whose name needs quoting must
come out quoted (STYLE 3); ``psycopg.sql`` renders without a connection.  Names are
attacker-controlled (threat model row 16): a function is named by the parts verify read
for it by OID (``Held.ident``, ``introspect.function_idents``), never by a signature the
catalog printed, and a role by ``role`` (one identifier, whatever it contains).
"""

from __future__ import annotations

from collections.abc import Iterable

from psycopg import sql


def ident(name: str) -> sql.Identifier:
    """A relation, ``schema.table`` -> a quoted two-part identifier (roles: ``role``)."""
    return sql.Identifier(*name.split(".", 1))


def role(name: str) -> sql.Composable:
    return sql.SQL("PUBLIC") if name == "PUBLIC" else sql.Identifier(name)


def roles(names: Iterable[str]) -> sql.Composable:
    """``PUBLIC, "a", "b"``: PUBLIC first, then the roles in order."""
    names = sorted(set(names), key=lambda n: (n != "PUBLIC", n))
    return sql.SQL(", ").join(role(n) for n in names)


def stmt(template: str, note: str = "", **parts: sql.Composable) -> str:
    """Render ``template`` with its ``{name}`` parts (already quoted composables), then
    ``note`` (plain words for the person reading the fix)."""
    return sql.SQL(template).format(**parts).as_string(None) + note
