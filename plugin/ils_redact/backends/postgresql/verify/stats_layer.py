"""What the statistics role may hold: the aggregate relations the layer installs for it.

Kept apart on purpose.  The statistics layer (schema ``ils_redact_stats``) is being built
separately, so verify does not hard-code its objects: it reads what the layer installed.
An object in ``ils_redact_stats`` counts as the layer's when a layer role owns it (one of
the five roles the rules name, or any role whose ``COMMENT ON ROLE`` carries the
ils-redact marker for this database, such as a separate statistics owner).  On those
objects, and only for the stats role:

* SELECT (table-level too) on the views and EXECUTE on the functions is allowed
  (not required: the layer grants its reports to the stats role, not their helpers).
  Tables there (layer 6's publication tables: the released values, read only through
  the report functions) are not the stats role's: judged like any other relation;
* the owner-rights-view and SECURITY DEFINER hazards do not apply: aggregating over every
  patron is their purpose, and the statistics layer's own tests prove the k threshold.

Anything else the stats role holds is judged like any other restricted role's holdings.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from ..state import MARKER, parse_marker

STATS_SCHEMA = "ils_redact_stats"


@dataclass(frozen=True)
class StatsLayer:
    schema: str | None  # the schema, when it exists and a layer role owns it
    relations: frozenset[str]
    functions: frozenset[str]  # signatures, ``schema.name(types)``

    @classmethod
    def none(cls) -> StatsLayer:
        return cls(None, frozenset(), frozenset())


def layer_roles(conn: psycopg.Connection, named: set[str], database: str) -> set[str]:
    """The rules' roles plus any role marked as ils-redact's for this database."""
    out = set(named)
    for name, comment in conn.execute(
            "SELECT rolname, shobj_description(oid, 'pg_authid') FROM pg_roles "
            "WHERE shobj_description(oid, 'pg_authid') LIKE %s", (MARKER + "%",)):
        marker = parse_marker(comment)
        if marker and marker.get("database") == database:
            out.add(name)
    return out


def read_stats_layer(conn: psycopg.Connection, roles: set[str]) -> StatsLayer:
    row = conn.execute(
        "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = %s",
        (STATS_SCHEMA,)).fetchone()
    if row is None or row[0] not in roles:
        return StatsLayer.none()
    rels = {r[0] for r in conn.execute(
        "SELECT n.nspname || '.' || c.relname FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind IN ('v', 'm') "
        "AND pg_get_userbyid(c.relowner) = ANY (%s)", (STATS_SCHEMA, sorted(roles)))}
    funcs = {r[0] for r in conn.execute(
        "SELECT n.nspname || '.' || p.proname || '(' || oidvectortypes(p.proargtypes) || ')' "
        "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = %s AND pg_get_userbyid(p.proowner) = ANY (%s)",
        (STATS_SCHEMA, sorted(roles)))}
    return StatsLayer(STATS_SCHEMA, frozenset(rels), frozenset(funcs))
