"""Run code as a restricted role from the superuser's session, where the role cannot
leave.

``SET ROLE`` in a superuser's session is no boundary: code that runs as the role (a view's
function the planner folds, a row policy the table's owner wrote) can ``RESET ROLE`` and
go on as the superuser (the fourth review).  Inside a SECURITY DEFINER function PostgreSQL
refuses to change the role, so the tool creates such a function in ``pg_temp``, makes the
role its owner, calls it once and drops it: verify's empirical probes and ``stats
publish``'s counting run this way.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql


def call_as(conn: psycopg.Connection, role: str, create: str, signature: str,
            args: tuple[Any, ...]) -> Any:
    """Run ``create`` (a ``CREATE FUNCTION pg_temp.name(...) ... SECURITY DEFINER``, a
    constant of ours), make ``role`` the owner, call it with ``args`` and drop it; the
    value it returned.  ``signature`` is ``pg_temp.name(type, ...)`` as in ``create``."""
    name, _, types = signature.partition("(")
    casts = ", ".join(f"%s::{t.strip()}" for t in types.rstrip(")").split(",") if t.strip())
    conn.execute(create)  # a constant: no parameters, so nothing in it is a placeholder
    conn.execute(sql.SQL("ALTER FUNCTION {} OWNER TO {}").format(
        sql.SQL(signature), sql.Identifier(role)))
    row = conn.execute(sql.SQL("SELECT {}({})").format(sql.SQL(name), sql.SQL(casts)),
                       args).fetchone()
    conn.execute(sql.SQL("DROP FUNCTION {}").format(sql.SQL(signature)))
    return row[0] if row else None
