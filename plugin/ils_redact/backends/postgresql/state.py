"""What ils-redact has (or someone else has) already done to this database.

The planner compares the desired state (from the rules) with this *actual* state read
from the catalog, not with the bookkeeping alone: a grant added by hand to a restricted
role is drift, and the plan revokes it.  The bookkeeping (``ils_redact.installed_object``)
adds what the catalog cannot tell: the prior state of what install touched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import psycopg

from ...plan import Installed, InstalledRecords
from ...rules import Rules
from .connection import current_database, one_row, server_version

MARKER = "ils-redact:"
LAYER_SCHEMA = "ils_redact"
#: the statistics reports' schema (layer v3): managed by the layer files and the planner
STATS_SCHEMA = "ils_redact_stats"


@dataclass(frozen=True)
class Priv:
    """One privilege held by one of our roles on an ILS object."""

    role: str
    objtype: str  # database | schema | table | column | function | sequence
    object: str  # qualified name, function signature, or database name
    privilege: str  # SELECT, USAGE, EXECUTE, CONNECT, ...
    column: str | None = None

    @property
    def key(self) -> str:
        tail = f".{self.column}" if self.column else ""
        return f"grant {self.role} {self.privilege} {self.objtype} {self.object}{tail}"

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "objtype": self.objtype, "object": self.object,
                "privilege": self.privilege, "column": self.column}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Priv:
        return cls(d["role"], d["objtype"], d["object"], d["privilege"], d.get("column"))


@dataclass(frozen=True)
class RoleInfo:
    name: str
    superuser: bool
    bypassrls: bool
    login: bool
    createrole: bool
    createdb: bool
    replication: bool
    marker: dict[str, Any] | None  # parsed from COMMENT ON ROLE, None if not ours


@dataclass(frozen=True)
class PolicyInfo:
    table: str
    name: str
    permissive: bool
    roles: tuple[str, ...]
    command: str
    qual: str | None
    comment: str | None


@dataclass
class PgState(InstalledRecords):
    database: str
    server_version: str
    roles: dict[str, RoleInfo]
    layer_version: int | None
    installed: list[Installed] = field(default_factory=list)
    privileges: set[Priv] = field(default_factory=set)
    policies: dict[tuple[str, str], PolicyInfo] = field(default_factory=dict)
    public_connect: bool = True
    #: PUBLIC holds TEMP on this database (explicitly, or through the default ACL)
    public_temp: bool = True
    #: (grantee, privilege) of the database's ACL; grantee "public" for PUBLIC
    database_acl: frozenset[tuple[str, str]] = frozenset()
    #: which of the rules' hardening.temp_roles exist
    existing_roles: frozenset[str] = frozenset()
    #: ils_redact.setting, when the layer has it
    settings: dict[str, Any] | None = None
    #: signature -> (owner, comment) of the functions in the layer's schema
    layer_functions: dict[str, tuple[str, str | None]] = field(default_factory=dict)

    @classmethod
    def empty(cls, database: str, version: str = "") -> PgState:
        """The state of a database ils-redact has never touched (offline planning)."""
        return cls(database=database, server_version=version, roles={}, layer_version=None)


def parse_marker(comment: str | None) -> dict[str, Any] | None:
    if not comment or not comment.startswith(MARKER):
        return None
    try:
        data = json.loads(comment[len(MARKER):])
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def make_marker(database: str, kind: str) -> str:
    return MARKER + json.dumps({"database": database, "kind": kind}, sort_keys=True)


_ROLES = """
SELECT r.rolname, r.rolsuper, r.rolbypassrls, r.rolcanlogin, r.rolcreaterole,
       r.rolcreatedb, r.rolreplication, shobj_description(r.oid, 'pg_authid')
FROM pg_roles r WHERE r.rolname = ANY (%s)
"""

# Privileges held directly by the given roles on objects outside the layer's schema.
_PRIVS = """
WITH roles AS (SELECT oid, rolname FROM pg_roles WHERE rolname = ANY (%(roles)s))
SELECT r.rolname, 'database', d.datname, x.privilege_type, NULL
FROM pg_database d, aclexplode(d.datacl) x JOIN roles r ON r.oid = x.grantee
WHERE d.datname = current_database()
UNION ALL
SELECT r.rolname, 'schema', n.nspname, x.privilege_type, NULL
FROM pg_namespace n, aclexplode(n.nspacl) x JOIN roles r ON r.oid = x.grantee
WHERE n.nspname <> ALL (%(skip)s)
UNION ALL
SELECT r.rolname, CASE WHEN c.relkind = 'S' THEN 'sequence' ELSE 'table' END,
       n.nspname || '.' || c.relname, x.privilege_type, NULL
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
     aclexplode(c.relacl) x JOIN roles r ON r.oid = x.grantee
WHERE n.nspname <> ALL (%(skip)s)
UNION ALL
SELECT r.rolname, 'column', n.nspname || '.' || c.relname, x.privilege_type, a.attname
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace,
     aclexplode(a.attacl) x JOIN roles r ON r.oid = x.grantee
WHERE a.attnum > 0 AND NOT a.attisdropped AND n.nspname <> ALL (%(skip)s)
UNION ALL
SELECT r.rolname, 'function',
       n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
       x.privilege_type, NULL
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace,
     aclexplode(p.proacl) x JOIN roles r ON r.oid = x.grantee
WHERE n.nspname <> ALL (%(skip)s)
"""

_POLICIES = """
SELECT n.nspname || '.' || c.relname, p.polname, p.polpermissive,
       ARRAY(SELECT CASE WHEN r = 0 THEN 'public' ELSE pg_get_userbyid(r) END
             FROM unnest(p.polroles) r ORDER BY 1),
       p.polcmd, pg_get_expr(p.polqual, p.polrelid), obj_description(p.oid, 'pg_policy')
FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
"""


def read_state(conn: psycopg.Connection, rules: Rules) -> PgState:
    database = current_database(conn)
    role_names = list(rules.roles(database).values())
    roles = {
        name: RoleInfo(name, su, bypass, login, crole, cdb, repl, parse_marker(comment))
        for name, su, bypass, login, crole, cdb, repl, comment in conn.execute(
            _ROLES, (role_names,))
    }
    row = conn.execute(
        "SELECT to_regclass('ils_redact.meta') IS NOT NULL").fetchone()
    layer_version = None
    installed: list[Installed] = []
    if row and row[0]:
        v = conn.execute(
            "SELECT value FROM ils_redact.meta WHERE key = 'layer_version'").fetchone()
        layer_version = int(v[0]) if v else 0
        installed = [Installed(k, o, d or {}, p) for k, o, d, p in conn.execute(
            "SELECT kind, object, detail, prior FROM ils_redact.installed_object ORDER BY id")]
    settings = None
    if one_row(conn.execute("SELECT to_regclass('ils_redact.setting') IS NOT NULL").fetchone(),
               "to_regclass('ils_redact.setting')")[0]:
        settings = {k: v for k, v in conn.execute("SELECT key, value FROM ils_redact.setting")}
    layer_functions = {
        sig: (owner, comment) for sig, owner, comment in conn.execute(
            "SELECT p.oid::regprocedure::text, pg_get_userbyid(p.proowner), "
            "obj_description(p.oid, 'pg_proc') FROM pg_proc p "
            "JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname IN ('ils_redact', 'ils_redact_stats')")
    }
    privs = {
        Priv(role, objtype, obj, priv, col)
        for role, objtype, obj, priv, col in conn.execute(
            _PRIVS, {"roles": role_names, "skip": [LAYER_SCHEMA, STATS_SCHEMA, "pg_catalog",
                                                   "information_schema", "pg_toast"]})
    }
    policies = {
        (t, name): PolicyInfo(t, name, perm, tuple(r), cmd, qual, comment)
        for t, name, perm, r, cmd, qual, comment in conn.execute(_POLICIES)
    }
    pub = conn.execute(
        "SELECT d.datacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(d.datacl) x "
        "WHERE x.grantee = 0 AND x.privilege_type = 'CONNECT'), "
        "d.datacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(d.datacl) x "
        "WHERE x.grantee = 0 AND x.privilege_type = 'TEMPORARY') "
        "FROM pg_database d WHERE d.datname = current_database()").fetchone()
    database_acl = frozenset(conn.execute(
        "SELECT CASE WHEN x.grantee = 0 THEN 'public' ELSE pg_get_userbyid(x.grantee) END, "
        "x.privilege_type FROM pg_database d, aclexplode(d.datacl) x "
        "WHERE d.datname = current_database()").fetchall())
    return PgState(
        database=database,
        server_version=server_version(conn),
        roles=roles,
        layer_version=layer_version,
        installed=installed,
        privileges=privs,
        policies=policies,
        public_connect=bool(pub and pub[0]),
        public_temp=bool(pub and pub[1]),
        database_acl=database_acl,
        existing_roles=frozenset(r[0] for r in conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname = ANY (%s)",
            (list(getattr(getattr(rules, "hardening", None), "temp_roles", ())),))),
        settings=settings,
        layer_functions=layer_functions,
    )
