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
from psycopg import sql

from ...plan import Installed, InstalledRecords
from ...rules import Rules
from .connection import current_database, one_row, server_version
from .counters import ACL_SQL, counters_for
from .introspect import arg_types, function_ident, temp_schema

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
    #: the object as SQL, built from its catalog row by OID, every part quoted by
    #: sql.Identifier (threat model row 16); None for privileges derived from the rules
    ident: sql.Composable | None = field(default=None, compare=False, hash=False, repr=False)
    #: the object lives in a session's temporary schema (pg_temp_N): not diffed
    temporary: bool = field(default=False, compare=False, hash=False)

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
    inherit: bool = False


@dataclass(frozen=True)
class PolicyInfo:
    table: str
    name: str
    permissive: bool
    roles: tuple[str, ...]
    command: str
    qual: str | None
    comment: str | None


@dataclass(frozen=True)
class LayerObject:
    """One object of the layer's schemas (or one of the schemas), and who owns it."""

    kind: str  # schema | table | view | materialized view | sequence | function | ...
    name: str  # for people: schema.name, or a function's signature
    schema: str
    owner: str
    #: the object as SQL, built by OID (see introspect)
    ident: sql.Composable = field(compare=False, hash=False, repr=False)


@dataclass(frozen=True)
class CounterAcl:
    """Who holds SELECT (a view) or EXECUTE (a function) on one row counter."""

    public: bool
    roles: frozenset[str]


@dataclass
class PgState(InstalledRecords):
    database: str
    server_version: str
    roles: dict[str, RoleInfo]
    layer_version: int | None
    installed: list[Installed] = field(default_factory=list)
    #: what the layer's roles hold outside its schemas (temporary schemas excluded)
    privileges: set[Priv] = field(default_factory=set)
    #: what they hold on objects in sessions' temporary schemas: planted there by
    #: another login (our roles create nothing), gone when that session ends; never
    #: diffed, only reported, and revoked by uninstall (which must drop the roles)
    temp_privileges: set[Priv] = field(default_factory=set)
    policies: dict[tuple[str, str], PolicyInfo] = field(default_factory=dict)
    public_connect: bool = True
    #: PUBLIC holds TEMP on this database (explicitly, or through the default ACL)
    public_temp: bool = True
    #: (grantee, privilege) of the database's ACL; grantee "public" for PUBLIC
    database_acl: frozenset[tuple[str, str]] = frozenset()
    #: every role of the cluster
    existing_roles: frozenset[str] = frozenset()
    #: ils_redact.setting, when the layer has it
    settings: dict[str, Any] | None = None
    #: signature -> (owner, comment) of the functions in the layer's schema
    layer_functions: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    #: every database of the cluster (a role's marker may name one that is gone)
    databases: frozenset[str] = frozenset()
    #: role of the rules -> the roles (logins) that are members of it
    role_members: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: signature (as in layer_functions) -> the function as SQL, built by OID
    layer_function_idents: dict[str, sql.Composable] = field(default_factory=dict)
    #: every object of the layer's schemas (and the schemas), with its owner
    layer_objects: list[LayerObject] = field(default_factory=list)
    #: role memberships of the whole cluster: (member, group), direct grants only
    memberships: frozenset[tuple[str, str]] = frozenset()
    #: roles that can log in (cluster-wide)
    logins: frozenset[str] = frozenset()
    #: roles with SUPERUSER (cluster-wide)
    superusers: frozenset[str] = frozenset()
    #: roles that own or hold a privilege on something in this database, its ACL
    #: included (objects in temporary schemas excepted): the ILS's own roles
    users_here: frozenset[str] = frozenset()
    #: the row counters (hardening.revoke_public_counters): key -> who holds them
    counters: dict[str, CounterAcl] = field(default_factory=dict)
    #: the database's owner
    database_owner: str = ""
    #: read from a live database (False: offline planning from a catalog file)
    live: bool = True

    def members_of(self, group: str) -> set[str]:
        """Direct members of ``group``."""
        return {m for m, g in self.memberships if g == group}

    def reach(self, role: str) -> set[str]:
        """Every role ``role`` is a member of, directly or through others (itself too)."""
        out, todo = {role}, [role]
        while todo:
            cur = todo.pop()
            for m, g in self.memberships:
                if m == cur and g not in out:
                    out.add(g)
                    todo.append(g)
        return out

    def reached_by(self, role: str) -> set[str]:
        """Every role that is a member of ``role``, directly or through others."""
        out, todo = set(), [role]
        while todo:
            cur = todo.pop()
            for m, g in self.memberships:
                if g == cur and m not in out and m != role:
                    out.add(m)
                    todo.append(m)
        return out

    @classmethod
    def empty(cls, database: str, version: str = "") -> PgState:
        """The state of a database ils-redact has never touched (offline planning)."""
        return cls(database=database, server_version=version, roles={}, layer_version=None,
                   live=False)


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
       r.rolcreatedb, r.rolreplication, shobj_description(r.oid, 'pg_authid'), r.rolinherit
FROM pg_roles r WHERE r.rolname = ANY (%s)
"""

# Everything in the layer's schemas, and the schemas, with owners and names as parts.
# Sequences that belong to a table (identity, serial) follow their table's owner.
_LAYER_OBJECTS = sql.SQL("""
SELECT 'schema', n.nspname::text, n.nspname::text, pg_get_userbyid(n.nspowner)::text,
       ARRAY[n.nspname::text], NULL::text[][]
FROM pg_namespace n WHERE n.nspname = ANY (%(schemas)s)
UNION ALL
SELECT CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
                      WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'foreign table' ELSE 'table' END,
       n.nspname || '.' || c.relname, n.nspname::text, pg_get_userbyid(c.relowner)::text,
       ARRAY[n.nspname::text, c.relname::text], NULL
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY (%(schemas)s) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass
                  AND d.deptype IN ('a', 'i') AND c.relkind = 'S')
UNION ALL
SELECT CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate'
                      ELSE 'function' END,
       n.nspname || '.' || p.proname || '(' || oidvectortypes(p.proargtypes) || ')',
       n.nspname::text, pg_get_userbyid(p.proowner)::text,
       ARRAY[n.nspname::text, p.proname::text], {args}
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = ANY (%(schemas)s)
UNION ALL
SELECT CASE t.typtype WHEN 'd' THEN 'domain' ELSE 'type' END, n.nspname || '.' || t.typname,
       n.nspname::text, pg_get_userbyid(t.typowner)::text,
       ARRAY[n.nspname::text, t.typname::text], NULL
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE n.nspname = ANY (%(schemas)s) AND t.typrelid = 0
  AND NOT (t.typcategory = 'A' AND t.typelem <> 0)
ORDER BY 2
""").format(args=arg_types("p"))

# Roles that own or hold a privilege on an object of this database (pg_shdepend), or
# are named in its ACL, leaving out objects in sessions' temporary schemas
_USERS_HERE = sql.SQL("""
SELECT DISTINCT r.rolname::text FROM pg_shdepend sd
JOIN pg_roles r ON r.oid = sd.refobjid
LEFT JOIN pg_class c ON sd.classid = 'pg_class'::regclass AND c.oid = sd.objid
LEFT JOIN pg_proc p ON sd.classid = 'pg_proc'::regclass AND p.oid = sd.objid
LEFT JOIN pg_type t ON sd.classid = 'pg_type'::regclass AND t.oid = sd.objid
LEFT JOIN pg_namespace n ON n.oid = coalesce(c.relnamespace, p.pronamespace,
                                             t.typnamespace)
WHERE sd.refclassid = 'pg_authid'::regclass AND sd.deptype IN ('o', 'a')
  AND sd.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND NOT coalesce({temp}, false)
UNION
SELECT pg_get_userbyid(x.grantee)::text FROM pg_database d, aclexplode(d.datacl) x
WHERE d.datname = current_database() AND x.grantee <> 0
UNION
SELECT pg_get_userbyid(d.datdba)::text FROM pg_database d
WHERE d.datname = current_database()
""").format(temp=temp_schema("n"))

# Privileges held directly by the given roles on objects outside the layer's schemas:
# (role, object type, object as text for people and bookkeeping, privilege, column, the
# object's name parts, a function's argument types, temporary).  The text column is only
# ever shown or compared, never run: SQL naming the object is built from the parts.
_PRIVS = sql.SQL("""
WITH roles AS (SELECT oid, rolname FROM pg_roles WHERE rolname = ANY (%(roles)s))
SELECT r.rolname::text, 'database'::text, d.datname::text, x.privilege_type::text,
       NULL::text, ARRAY[d.datname::text], NULL::text[], false
FROM pg_database d, aclexplode(d.datacl) x JOIN roles r ON r.oid = x.grantee
WHERE d.datname = current_database()
UNION ALL
SELECT r.rolname, 'schema', n.nspname::text, x.privilege_type, NULL, ARRAY[n.nspname::text],
       NULL, {temp}
FROM pg_namespace n, aclexplode(n.nspacl) x JOIN roles r ON r.oid = x.grantee
WHERE n.nspname <> ALL (%(skip)s)
UNION ALL
SELECT r.rolname, CASE WHEN c.relkind = 'S' THEN 'sequence' ELSE 'table' END,
       n.nspname || '.' || c.relname, x.privilege_type, NULL,
       ARRAY[n.nspname::text, c.relname::text], NULL, {temp}
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
     aclexplode(c.relacl) x JOIN roles r ON r.oid = x.grantee
WHERE n.nspname <> ALL (%(skip)s)
UNION ALL
SELECT r.rolname, 'column', n.nspname || '.' || c.relname, x.privilege_type, a.attname::text,
       ARRAY[n.nspname::text, c.relname::text], NULL, {temp}
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace,
     aclexplode(a.attacl) x JOIN roles r ON r.oid = x.grantee
WHERE a.attnum > 0 AND NOT a.attisdropped AND n.nspname <> ALL (%(skip)s)
UNION ALL
SELECT r.rolname, 'function',
       n.nspname || '.' || p.proname || '(' || oidvectortypes(p.proargtypes) || ')',
       x.privilege_type, NULL, ARRAY[n.nspname::text, p.proname::text],
       {args}, {temp}
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace,
     aclexplode(p.proacl) x JOIN roles r ON r.oid = x.grantee
WHERE n.nspname <> ALL (%(skip)s)
""").format(temp=temp_schema("n"), args=arg_types("p"))


def _priv(role: str, objtype: str, obj: str, privilege: str, column: str | None,
          parts: list[str], argtypes: list[list[str]] | None, temporary: bool) -> Priv:
    ident = (function_ident(parts[0], parts[1], argtypes) if objtype == "function"
             else sql.Identifier(*parts))
    return Priv(role, objtype, obj, privilege, column, ident=ident, temporary=temporary)


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
        name: RoleInfo(name, su, bypass, login, crole, cdb, repl, parse_marker(comment), inh)
        for name, su, bypass, login, crole, cdb, repl, comment, inh in conn.execute(
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
    layer_functions: dict[str, tuple[str, str | None]] = {}
    layer_function_idents: dict[str, sql.Composable] = {}
    for sig, owner, comment, schema, name, args in conn.execute(sql.SQL(
            "SELECT p.oid::regprocedure::text, pg_get_userbyid(p.proowner), "
            "obj_description(p.oid, 'pg_proc'), n.nspname, p.proname, {} "
            "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname IN ('ils_redact', 'ils_redact_stats')").format(arg_types("p"))):
        layer_functions[sig] = (owner, comment)
        layer_function_idents[sig] = function_ident(schema, name, args)
    layer_objects = [
        LayerObject(kind, name, schema, owner,
                    function_ident(parts[0], parts[1], args) if args is not None
                    else sql.Identifier(*parts))
        for kind, name, schema, owner, parts, args in conn.execute(
            _LAYER_OBJECTS, {"schemas": [LAYER_SCHEMA, STATS_SCHEMA]})]
    cluster = conn.execute(
        "SELECT rolname::text, rolcanlogin, rolsuper FROM pg_roles").fetchall()
    memberships = frozenset(conn.execute(
        "SELECT m.rolname::text, g.rolname::text FROM pg_auth_members a "
        "JOIN pg_roles m ON m.oid = a.member JOIN pg_roles g ON g.oid = a.roleid").fetchall())
    counters = counters_for(conn.info.server_version)
    counter_acl = {
        key: CounterAcl(bool(public), frozenset(held))
        for key, public, held in conn.execute(ACL_SQL, {
            "keys": [c.key for c in counters], "kinds": [c.kind for c in counters]})}
    held = [_priv(*row) for row in conn.execute(
        _PRIVS, {"roles": role_names, "skip": [LAYER_SCHEMA, STATS_SCHEMA, "pg_catalog",
                                               "information_schema", "pg_toast"]})]
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
    members: dict[str, list[str]] = {}
    for member, group in conn.execute(
            "SELECT m.rolname, g.rolname FROM pg_auth_members a JOIN pg_roles m "
            "ON m.oid = a.member JOIN pg_roles g ON g.oid = a.roleid "
            "WHERE g.rolname = ANY (%s) ORDER BY 1", (role_names,)).fetchall():
        members.setdefault(group, []).append(member)
    return PgState(
        databases=frozenset(r[0] for r in conn.execute("SELECT datname FROM pg_database")),
        role_members={g: tuple(ms) for g, ms in members.items()},
        database=database,
        server_version=server_version(conn),
        roles=roles,
        layer_version=layer_version,
        installed=installed,
        privileges={p for p in held if not p.temporary},
        temp_privileges={p for p in held if p.temporary},
        policies=policies,
        public_connect=bool(pub and pub[0]),
        public_temp=bool(pub and pub[1]),
        database_acl=database_acl,
        existing_roles=frozenset(r for r, _, _ in cluster),
        settings=settings,
        layer_functions=layer_functions,
        layer_function_idents=layer_function_idents,
        layer_objects=layer_objects,
        memberships=memberships,
        logins=frozenset(r for r, login, _ in cluster if login),
        superusers=frozenset(r for r, _, su in cluster if su),
        users_here=frozenset(r[0] for r in conn.execute(_USERS_HERE, {})),
        database_owner=str(one_row(conn.execute(
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database "
            "WHERE datname = current_database()").fetchone(), "pg_database")[0]),
        counters=counter_acl,
    )
