"""What ils-redact has (or someone else has) already done to this MariaDB server.

The planner compares the desired state (from the rules) with this *actual* state, read
from the grant tables and information_schema, not with the bookkeeping alone: a grant
added by hand to a restricted role is drift, and the plan revokes it.  The bookkeeping
(``installed_object`` in the layer database) adds what the catalog cannot tell: which
accounts and roles ils-redact created (roles are server-wide: a role of the same name
that is not recorded here belongs to someone else, or to the install for another Koha
database), the prior state of what it changed, and the fingerprints of the layer
objects as the server stored them, so a routine replaced by hand is found.
"""

# ruff: noqa: S608 - MariaDB SQL text is built here: identifiers only through sqltext.ident /
# qname / account, values only through sqltext.literal or driver parameters.

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pymysql

from ...errors import StateError
from ...plan import Installed, InstalledRecords
from .connection import Connection, current_database, scalar, server_version
from .sqltext import ident, string

LAYER_PREFIX = "ils_redact_"
OWNER_HOST = "localhost"


def layer_database(koha_db: str) -> str:
    """The layer's own database for one Koha database: each gets its own."""
    name = LAYER_PREFIX + koha_db
    if len(name) > 64:
        raise StateError(f"the layer database name {name} is longer than MariaDB allows "
                         "(64 characters)", hint="rename the Koha database, or shorten it")
    return name


@dataclass(frozen=True)
class Grant:
    """One privilege held by one grantee (``role`` or ``user@host``)."""

    grantee: str
    level: str  # global | database | table | column | procedure | function
    db: str
    name: str  # table or routine; '' for database and global
    privilege: str  # SELECT, EXECUTE, ...
    column: str = ""

    @property
    def key(self) -> str:
        obj = ".".join(x for x in (self.db, self.name, self.column) if x) or "*"
        return f"grant {self.grantee} {self.privilege} {self.level} {obj}"

    def to_json(self) -> dict[str, Any]:
        return {"grantee": self.grantee, "level": self.level, "db": self.db,
                "name": self.name, "privilege": self.privilege, "column": self.column}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Grant:
        return cls(d["grantee"], d["level"], d["db"], d["name"], d["privilege"],
                   d.get("column") or "")


@dataclass(frozen=True)
class LayerObject:
    objtype: str  # VIEW | PROCEDURE | FUNCTION | TRIGGER
    name: str
    fingerprint: str

    @property
    def key(self) -> str:
        return f"{self.objtype.lower()} {self.name}"


@dataclass
class MariaState(InstalledRecords):
    database: str
    layer: str
    server_version: str
    layer_exists: bool = False
    layer_tables: tuple[str, ...] = ()
    layer_version: int | None = None
    installed: list[Installed] = field(default_factory=list)
    #: role name -> exists as a role; account "user@host" -> exists (and is locked)
    roles: set[str] = field(default_factory=set)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    grants: set[Grant] = field(default_factory=set)
    #: privileges of anyone else on the layer database (blocks uninstall)
    foreign_grants: set[Grant] = field(default_factory=set)
    #: roles and accounts that exist here unrecorded, but recorded by the layer database
    #: of a Koha database that no longer exists: name -> that Koha database
    orphaned_from: dict[str, str] = field(default_factory=dict)
    #: (grantee, role, admin_option) for every mapping that names one of our roles
    mappings: set[tuple[str, str, bool]] = field(default_factory=set)
    #: login "user@host" -> its default role, where that is one of ours
    default_roles: dict[str, str] = field(default_factory=dict)
    objects: dict[str, LayerObject] = field(default_factory=dict)
    settings: dict[str, Any] | None = None
    unfinished_runs: list[dict[str, Any]] = field(default_factory=list)
    #: sha256 of the Koha catalog install recorded (catalog_snapshot), if any
    catalog_sha256: str | None = None
    #: role or account name -> the Koha databases whose layer recorded it (other installs
    #: on this server)
    other_layers: dict[str, list[str]] = field(default_factory=dict)

    @property
    def has_bookkeeping(self) -> bool:
        return "installed_object" in self.layer_tables

    @classmethod
    def empty(cls, database: str, version: str = "") -> MariaState:
        return cls(database=database, layer=layer_database(database), server_version=version)


# -- fingerprints: the same expressions when recording and when reading ------------------

def fingerprint_sql(objtype: str, layer: str, name: str) -> str:
    """A scalar subquery: sha256 of how the server stores one layer object (definition,
    definer, security, sql_mode, comment), or NULL if it does not exist."""
    db, nm = string(layer), string(name)
    if objtype == "VIEW":
        return ("(SELECT SHA2(CONCAT_WS('|', VIEW_DEFINITION, DEFINER, SECURITY_TYPE, "
                "ALGORITHM), 256) FROM information_schema.VIEWS "
                f"WHERE TABLE_SCHEMA = {db} AND TABLE_NAME = {nm})")
    if objtype == "TRIGGER":
        return ("(SELECT SHA2(CONCAT_WS('|', ACTION_STATEMENT, DEFINER, EVENT_MANIPULATION, "
                "ACTION_TIMING, EVENT_OBJECT_TABLE, SQL_MODE), 256) "
                f"FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = {db} "
                f"AND TRIGGER_SCHEMA = {db} AND TRIGGER_NAME = {nm})")
    return ("(SELECT SHA2(CONCAT_WS('|', param_list, returns, body, definer, security_type, "
            "sql_mode, comment), 256) FROM mysql.proc "
            f"WHERE db = {db} AND name = {nm} AND type = {string(objtype)})")


_OBJECTS = """
SELECT 'VIEW', TABLE_NAME, SHA2(CONCAT_WS('|', VIEW_DEFINITION, DEFINER, SECURITY_TYPE,
       ALGORITHM), 256) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %(db)s
UNION ALL
SELECT 'TRIGGER', TRIGGER_NAME, SHA2(CONCAT_WS('|', ACTION_STATEMENT, DEFINER,
       EVENT_MANIPULATION, ACTION_TIMING, EVENT_OBJECT_TABLE, SQL_MODE), 256)
FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = %(db)s AND TRIGGER_SCHEMA = %(db)s
UNION ALL
SELECT type, name, SHA2(CONCAT_WS('|', param_list, returns, body, definer, security_type,
       sql_mode, comment), 256) FROM mysql.proc WHERE db = %(db)s
"""

# -- privileges ------------------------------------------------------------------------------

#: ``mysql.db`` privilege columns -> privilege names (verify reads the same table)
DB_PRIVS = {
    "Select_priv": "SELECT", "Insert_priv": "INSERT", "Update_priv": "UPDATE",
    "Delete_priv": "DELETE", "Create_priv": "CREATE", "Drop_priv": "DROP",
    "Grant_priv": "GRANT OPTION", "References_priv": "REFERENCES", "Index_priv": "INDEX",
    "Alter_priv": "ALTER", "Create_tmp_table_priv": "CREATE TEMPORARY TABLES",
    "Lock_tables_priv": "LOCK TABLES", "Create_view_priv": "CREATE VIEW",
    "Show_view_priv": "SHOW VIEW", "Create_routine_priv": "CREATE ROUTINE",
    "Alter_routine_priv": "ALTER ROUTINE", "Execute_priv": "EXECUTE",
    "Event_priv": "EVENT", "Trigger_priv": "TRIGGER",
    "Delete_history_priv": "DELETE HISTORY",
}


def _grantee(user: str, host: str) -> str:
    return f"{user}@{host}" if host else user


def priv_set(value: Any) -> list[str]:
    if not value:
        return []
    if isinstance(value, set | frozenset):
        return sorted(value)
    return [v for v in str(value).split(",") if v]


def priv_name(p: str) -> str:
    p = p.upper()
    return {"GRANT": "GRANT OPTION", "SHOW VIEW": "SHOW VIEW"}.get(p, p)


def read_grants(conn: Connection, *, users: list[str] | None = None,
                db: str | None = None) -> set[Grant]:
    """Privileges from the grant tables, for the given user names (roles and accounts)
    or on the given database."""
    params: list[str | None]
    if users is not None:
        if not users:
            return set()
        ph = ", ".join(["%s"] * len(users))
        where, params = f"User IN ({ph})", list(users)
    else:
        where, params = "Db = %s", [db]
    out: set[Grant] = set()
    cols = ", ".join(DB_PRIVS)
    for row in conn.execute(f"SELECT Host, User, Db, {cols} FROM mysql.db WHERE {where}",
                            params).fetchall():
        host, user, dbname = row[:3]
        for flag, name in zip(row[3:], DB_PRIVS.values(), strict=True):
            if flag == "Y":
                out.add(Grant(_grantee(user, host), "database", dbname, "", name))
    for host, user, dbname, table, privs in conn.execute(
            f"SELECT Host, User, Db, Table_name, Table_priv FROM mysql.tables_priv WHERE {where}",
            params).fetchall():
        for p in priv_set(privs):
            out.add(Grant(_grantee(user, host), "table", dbname, table, priv_name(p)))
    for host, user, dbname, table, column, privs in conn.execute(
            "SELECT Host, User, Db, Table_name, Column_name, Column_priv FROM mysql.columns_priv "
            f"WHERE {where}", params).fetchall():
        for p in priv_set(privs):
            out.add(Grant(_grantee(user, host), "column", dbname, table, priv_name(p), column))
    for host, user, dbname, routine, rtype, privs in conn.execute(
            "SELECT Host, User, Db, Routine_name, Routine_type, Proc_priv FROM mysql.procs_priv "
            f"WHERE {where}", params).fetchall():
        for p in priv_set(privs):
            out.add(Grant(_grantee(user, host), str(rtype).lower(), dbname, routine,
                          priv_name(p)))
    if users is not None:
        for grantee, priv in conn.execute(
                "SELECT GRANTEE, PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES "
                "WHERE PRIVILEGE_TYPE <> 'USAGE'").fetchall():
            user, host = _parse_grantee(grantee)
            if user in users:
                out.add(Grant(_grantee(user, host), "global", "", "", priv))
    return out


def user_of(grantee: str) -> str:
    """The user (or role) name of a grantee key."""
    user, at, _ = grantee.rpartition("@")
    return user if at else grantee


def _parse_grantee(text: str) -> tuple[str, str]:
    """``'user'@'host'`` (or ``'role'@''``) as information_schema prints it."""
    user, _, host = text.rpartition("@")
    if not _:
        user, host = text, ""
    return user.strip("'").replace("''", "'"), host.strip("'").replace("''", "'")


def _other_layers(conn: Connection, layer: str, names: list[str]) -> dict[str, list[str]]:
    """Which other layer databases on this server recorded these roles or accounts."""
    out: dict[str, list[str]] = {}
    others = [r[0] for r in conn.execute(
        "SELECT TABLE_SCHEMA FROM information_schema.TABLES WHERE TABLE_NAME = "
        "'installed_object' AND TABLE_SCHEMA LIKE %s AND TABLE_SCHEMA <> %s ORDER BY 1",
        (LAYER_PREFIX.replace("_", "\\_") + "%", layer)).fetchall()]
    ph = ", ".join(["%s"] * len(names))
    for other in others:
        lq = f"`{str(other).replace('`', '``')}`"
        try:
            found = conn.execute(
                f"SELECT JSON_VALUE(detail, '$.name') FROM {lq}.installed_object "
                f"WHERE kind IN ('role', 'account') AND JSON_VALUE(detail, '$.name') IN ({ph})",
                names).fetchall()
        except pymysql.err.MySQLError:  # not ours to read, or not a layer after all
            continue
        for (name,) in found:
            out.setdefault(str(name), []).append(str(other)[len(LAYER_PREFIX):])
    return out


def read_state(conn: Connection, role_names: list[str], owner: str,
               database: str | None = None) -> MariaState:
    """``role_names``: the roles the rules name; ``owner``: the definer account's user."""
    db = database or current_database(conn)
    st = MariaState(database=db, layer=layer_database(db), server_version=server_version(conn))
    st.layer_exists = bool(scalar(
        conn, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
        (st.layer,)))
    if st.layer_exists:
        st.layer_tables = tuple(r[0] for r in conn.execute(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
            "ORDER BY 1", (st.layer,)).fetchall())
    lq = f"`{st.layer.replace('`', '``')}`"
    if "meta" in st.layer_tables:
        v = scalar(conn, f"SELECT value FROM {lq}.meta WHERE `key` = 'layer_version'")
        st.layer_version = int(v) if v is not None else None
    if st.has_bookkeeping:
        st.installed = [
            Installed(k, o, json.loads(d) if d else {}, json.loads(p) if p else None)
            for k, o, d, p in conn.execute(
                f"SELECT kind, object, detail, prior FROM {lq}.installed_object "
                "ORDER BY id").fetchall()]
    if "install_run" in st.layer_tables:
        st.unfinished_runs = [
            {"id": i, "action": a, "steps_done": d, "steps_total": t, "last_step": s,
             "started_at": str(at)}
            for i, a, d, t, s, at in conn.execute(
                f"SELECT id, action, steps_done, steps_total, last_step, started_at "
                f"FROM {lq}.install_run WHERE finished_at IS NULL ORDER BY id").fetchall()]
    if "setting" in st.layer_tables:
        st.settings = {k: json.loads(v) for k, v in conn.execute(
            f"SELECT `key`, value FROM {lq}.setting").fetchall()}
    if "catalog_snapshot" in st.layer_tables:
        st.catalog_sha256 = scalar(conn, f"SELECT sha256 FROM {lq}.catalog_snapshot WHERE id = 1")

    names = sorted(set(role_names) | {owner} | {
        i.detail.get("name", "") for i in st.installed if i.kind in ("role", "account")})
    names = [n for n in names if n]
    if names:
        ph = ", ".join(["%s"] * len(names))
        for user, host, is_role, priv in conn.execute(
                f"SELECT u.User, u.Host, u.is_role, g.Priv FROM mysql.user u "
                f"LEFT JOIN mysql.global_priv g ON g.User = u.User AND g.Host = u.Host "
                f"WHERE u.User IN ({ph})", names).fetchall():
            if is_role == "Y":
                st.roles.add(user)
            else:
                info = json.loads(priv) if priv else {}
                st.users[f"{user}@{host}"] = {"locked": bool(info.get("account_locked")),
                                              "plugin": info.get("plugin", "")}
        recorded = {i.detail.get("name") for i in st.installed}
        unrecorded = sorted({u.rpartition("@")[0] for u in st.users} | st.roles)
        st.orphaned_from = recorded_elsewhere(
            conn, [n for n in unrecorded if n not in recorded])
        st.grants = read_grants(conn, users=names)
        st.mappings = {
            (_grantee(u, h), r, a == "Y") for h, u, r, a in conn.execute(
                f"SELECT Host, User, Role, Admin_option FROM mysql.roles_mapping "
                f"WHERE Role IN ({ph}) OR User IN ({ph})", names + names).fetchall()}
        for user, host, role in conn.execute(
                "SELECT User, Host, JSON_VALUE(Priv, '$.default_role') FROM mysql.global_priv "
                "WHERE JSON_VALUE(Priv, '$.default_role') IN (" + ph + ")", names).fetchall():
            st.default_roles[f"{user}@{host}"] = role
    if names:
        st.other_layers = _other_layers(conn, st.layer, names)
    if st.layer_exists:
        st.foreign_grants = {g for g in read_grants(conn, db=st.layer)
                             if user_of(g.grantee) not in names}
        st.objects = {
            f"{t.lower()} {n}": LayerObject(t, n, fp) for t, n, fp in conn.execute(
                _OBJECTS, {"db": st.layer}).fetchall()}
    return st


def recorded_elsewhere(conn: Connection, names: list[str]) -> dict[str, str]:
    """name (role or account user) -> the Koha database whose layer database records it,
    for layer databases whose Koha database no longer exists."""
    out: dict[str, str] = {}
    if not names:
        return out
    layers = [r[0] for r in conn.execute(
        "SELECT TABLE_SCHEMA FROM information_schema.TABLES WHERE TABLE_NAME = "
        "'installed_object' AND TABLE_SCHEMA LIKE %s", (LAYER_PREFIX.replace("_", "\\_")
                                                        + "%",)).fetchall()]
    for layer in layers:
        koha = layer[len(LAYER_PREFIX):]
        if scalar(conn, "SELECT COUNT(*) FROM information_schema.SCHEMATA "
                        "WHERE SCHEMA_NAME = %s", (koha,)):
            continue
        ph = ", ".join(["%s"] * len(names))
        for (name,) in conn.execute(
                f"SELECT JSON_VALUE(detail, '$.name') FROM {ident(layer)}.installed_object "
                f"WHERE kind IN ('role', 'account', 'login') AND JSON_VALUE(detail, '$.name') "
                f"IN ({ph})", names).fetchall():
            out.setdefault(name, koha)
    return out
