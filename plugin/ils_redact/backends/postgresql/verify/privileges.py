"""Effective privileges of roles, as PostgreSQL itself computes them.

``has_table_privilege`` and friends answer for a role *as that role*: through its own
grants, through PUBLIC, through inherited memberships and through predefined roles such as
``pg_read_all_data``.  That is the ground truth verify compares with the allow-list; the
ACLs are read only to say where a privilege comes from (a direct grant, PUBLIC, or a
membership).  One set-based query per object type, so a full Evergreen catalog (650
relations, 5,000 columns, 400 sequences) is answered in milliseconds per role.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from ..introspect import SYSTEM_SCHEMAS, arg_types, function_ident

TABLE_PRIVS = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
COLUMN_PRIVS = ("SELECT", "INSERT", "UPDATE", "REFERENCES")
SEQUENCE_PRIVS = ("USAGE", "SELECT", "UPDATE")

#: not a system schema, nor a session's temporary one
_NOT_SYSTEM = sql.SQL("n.nspname <> ALL (%(system)s) AND n.nspname NOT LIKE 'pg\\_temp\\_%%' "
                      "AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%%'")


@dataclass(frozen=True)
class Held:
    """One privilege a role holds.  ``source``: owner | direct | PUBLIC | membership."""

    role: str
    objtype: str  # table | column | sequence | schema | function | database
    object: str
    privilege: str
    column: str | None = None
    source: str = "membership"
    #: a function as SQL, built by OID (threat model row 16); None for other objects
    ident: sql.Composable | None = field(default=None, compare=False, hash=False, repr=False)


def _source(owner: bool, direct: bool, public: bool) -> str:
    return "owner" if owner else "direct" if direct else "PUBLIC" if public else "membership"


def _origin(owner: str, acl: str, kind: str, priv: str) -> sql.Composable:
    """Three booleans: the role owns the object, holds ``priv`` by a direct grant, or
    PUBLIC holds it (the ACL, or the built-in default where the ACL is NULL)."""
    return sql.SQL("""
    pg_get_userbyid({owner}) = r.rolname AS is_owner,
    EXISTS (SELECT 1 FROM aclexplode({acl}) x WHERE x.grantee = r.oid
            AND x.privilege_type = {priv}) AS direct,
    EXISTS (SELECT 1 FROM aclexplode(coalesce({acl}, acldefault({kind}, {owner}))) x
            WHERE x.grantee = 0 AND x.privilege_type = {priv}) AS public
""").format(owner=sql.SQL(owner), acl=sql.SQL(acl), kind=sql.Literal(kind), priv=sql.SQL(priv))


_ROLES = sql.SQL("WITH r AS (SELECT oid, rolname FROM pg_roles WHERE rolname = ANY (%(roles)s))")

_TABLES = sql.SQL("""{roles}
SELECT r.rolname, n.nspname || '.' || c.relname, p.priv, {origin}
FROM r CROSS JOIN pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN unnest(%(privs)s::text[]) p(priv)
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {not_system}
  AND has_table_privilege(r.oid, c.oid, p.priv)
""").format(roles=_ROLES, origin=_origin("c.relowner", "c.relacl", "r", "p.priv"),
            not_system=_NOT_SYSTEM)

# column privileges not already covered by the table-level privilege of the same name
_COLUMNS = sql.SQL("""{roles},
rel AS MATERIALIZED (
    SELECT r.oid AS roid, r.rolname, c.oid AS relid, n.nspname || '.' || c.relname AS rel,
           p.priv
    FROM r CROSS JOIN pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    CROSS JOIN unnest(%(privs)s::text[]) p(priv)
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {not_system}
      AND has_any_column_privilege(r.oid, c.oid, p.priv)
      AND NOT has_table_privilege(r.oid, c.oid, p.priv))
SELECT rel.rolname, rel.rel, a.attname, rel.priv,
       EXISTS (SELECT 1 FROM aclexplode(a.attacl) x WHERE x.grantee = rel.roid
               AND x.privilege_type = rel.priv),
       EXISTS (SELECT 1 FROM aclexplode(a.attacl) x WHERE x.grantee = 0
               AND x.privilege_type = rel.priv)
FROM rel JOIN pg_attribute a ON a.attrelid = rel.relid AND a.attnum > 0 AND NOT a.attisdropped
WHERE has_column_privilege(rel.roid, rel.relid, a.attnum, rel.priv)
""").format(roles=_ROLES, not_system=_NOT_SYSTEM)

_SEQUENCES = sql.SQL("""{roles}
SELECT r.rolname, n.nspname || '.' || c.relname, p.priv, {origin}
FROM r CROSS JOIN pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN unnest(%(privs)s::text[]) p(priv)
WHERE c.relkind = 'S' AND {not_system}
  AND has_sequence_privilege(r.oid, c.oid, p.priv)
""").format(roles=_ROLES, origin=_origin("c.relowner", "c.relacl", "s", "p.priv"),
            not_system=_NOT_SYSTEM)

_SCHEMAS = sql.SQL("""{roles}
SELECT r.rolname, n.nspname, p.priv, {origin}
FROM r CROSS JOIN pg_namespace n CROSS JOIN unnest(ARRAY['USAGE', 'CREATE']) p(priv)
WHERE {not_system} AND has_schema_privilege(r.oid, n.oid, p.priv)
""").format(roles=_ROLES, origin=_origin("n.nspowner", "n.nspacl", "n", "p.priv"),
            not_system=_NOT_SYSTEM)

_DATABASE = sql.SQL("""{roles}
SELECT r.rolname, d.datname, p.priv, {origin}
FROM r CROSS JOIN pg_database d
CROSS JOIN unnest(ARRAY['CONNECT', 'CREATE', 'TEMPORARY']) p(priv)
WHERE d.datname = current_database() AND has_database_privilege(r.oid, d.oid, p.priv)
""").format(roles=_ROLES, origin=_origin("d.datdba", "d.datacl", "d", "p.priv"))

# functions that matter: every function in the layer's schemas, and every SECURITY
# DEFINER function anywhere (an invoker function runs with the caller's own rights),
# sessions' temporary schemas included: a definer function planted there and granted
# to a restricted role hands it its owner's rights while that session lasts
_FUNCTIONS = sql.SQL("""{roles}
SELECT r.rolname, n.nspname || '.' || f.proname || '(' || oidvectortypes(f.proargtypes) || ')',
       'EXECUTE', {origin}, n.nspname::text, f.proname::text, {args}
FROM r CROSS JOIN pg_proc f JOIN pg_namespace n ON n.oid = f.pronamespace
WHERE {not_system} AND (f.prosecdef OR n.nspname = ANY (%(layer)s))
  AND has_function_privilege(r.oid, f.oid, 'EXECUTE')
""").format(roles=_ROLES, origin=_origin("f.proowner", "f.proacl", "f", "'EXECUTE'"),
            not_system=sql.SQL("n.nspname <> ALL (%(system)s)"), args=arg_types("f"))


def effective(conn: psycopg.Connection, roles: list[str], layer_schemas: list[str]
              ) -> dict[str, list[Held]]:
    """role -> every privilege it holds that verify judges (see the queries)."""
    params = {"roles": sorted(set(roles)), "system": list(SYSTEM_SCHEMAS),
              "layer": layer_schemas}
    privs = list(TABLE_PRIVS) + (["MAINTAIN"] if conn.info.server_version >= 170000 else [])
    out: dict[str, list[Held]] = defaultdict(list)
    for role, obj, priv, owner, direct, public in conn.execute(
            _TABLES, {**params, "privs": privs}):
        out[role].append(Held(role, "table", obj, priv, None, _source(owner, direct, public)))
    for role, obj, col, priv, direct, public in conn.execute(
            _COLUMNS, {**params, "privs": list(COLUMN_PRIVS)}):
        out[role].append(Held(role, "column", obj, priv, col, _source(False, direct, public)))
    for role, obj, priv, owner, direct, public in conn.execute(
            _SEQUENCES, {**params, "privs": list(SEQUENCE_PRIVS)}):
        out[role].append(Held(role, "sequence", obj, priv, None,
                              _source(owner, direct, public)))
    for query, objtype in ((_SCHEMAS, "schema"), (_DATABASE, "database")):
        for role, obj, priv, owner, direct, public in conn.execute(query, params):
            out[role].append(Held(role, objtype, obj, priv, None,
                                  _source(owner, direct, public)))
    for role, obj, priv, owner, direct, public, schema, name, args in conn.execute(
            _FUNCTIONS, params):
        out[role].append(Held(role, "function", obj, priv, None, _source(owner, direct, public),
                              ident=function_ident(schema, name, args)))
    return dict(out)


@dataclass(frozen=True)
class Owned:
    owner: str
    objtype: str  # relation | sequence | function | schema | database
    object: str


_OWNED = """
SELECT pg_get_userbyid(c.relowner), CASE c.relkind WHEN 'S' THEN 'sequence' ELSE 'relation' END,
       n.nspname || '.' || c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
  AND pg_get_userbyid(c.relowner) = ANY (%(roles)s)
UNION ALL
SELECT pg_get_userbyid(p.proowner), 'function',
       n.nspname || '.' || p.proname || '(' || oidvectortypes(p.proargtypes) || ')'
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE pg_get_userbyid(p.proowner) = ANY (%(roles)s)
UNION ALL
SELECT pg_get_userbyid(n.nspowner), 'schema', n.nspname FROM pg_namespace n
WHERE pg_get_userbyid(n.nspowner) = ANY (%(roles)s)
UNION ALL
SELECT pg_get_userbyid(d.datdba), 'database', d.datname FROM pg_database d
WHERE d.datname = current_database() AND pg_get_userbyid(d.datdba) = ANY (%(roles)s)
"""


def owned(conn: psycopg.Connection, roles: list[str]) -> dict[str, list[Owned]]:
    """role -> objects it owns in this database (and the database itself)."""
    out: dict[str, list[Owned]] = defaultdict(list)
    for owner, objtype, obj in conn.execute(_OWNED, {"roles": sorted(set(roles))}):
        out[owner].append(Owned(owner, objtype, obj))
    return dict(out)
