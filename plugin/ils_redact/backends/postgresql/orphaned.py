"""Roles left behind by a database dropped without ``uninstall``.

Roles are cluster-wide, databases are not: ``DROP DATABASE`` takes the layer's schema and
its bookkeeping with it and leaves the roles, each still marked (``COMMENT ON ROLE``) with
the name of the database it was made for, and the staff logins ils-redact created for it
(marked ``ils-redact-login:``).  Such roles are never adopted by a later install: their
members (staff logins) would inherit whatever the new database gives the roles, without
anybody having granted it to them there.  ``ils-redact uninstall --orphaned DATABASE``,
run from any database of the cluster, removes them once a person has confirmed.

A role is orphaned when the database its marker names does not exist, or exists without
the layer (dropped and created again under the same name, e.g. by a restore that left the
layer out).  It is not removed while it still owns or holds anything in any database:
that is listed instead, as ``uninstall`` does.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from ...errors import StateError
from ...plan import Plan, Step
from .connection import pinned_options, require_superuser
from .planner import OWNER_PREDEFINED
from .state import MARKER, parse_marker

#: the comment ``staff grant --create`` puts on a login it creates
LOGIN_MARKER = "ils-redact-login:"


def login_marker(database: str) -> str:
    return LOGIN_MARKER + json.dumps({"database": database}, sort_keys=True)


def parse_login_marker(comment: str | None) -> str | None:
    """The database a login was created for, or None."""
    if not comment or not comment.startswith(LOGIN_MARKER):
        return None
    try:
        data = json.loads(comment[len(LOGIN_MARKER):])
    except json.JSONDecodeError:
        return None
    return data.get("database") if isinstance(data, dict) else None


@dataclass
class Orphans:
    """What a vanished database left on the cluster."""

    database: str
    exists: bool  # a database of that name exists (without the layer)
    roles: list[str] = field(default_factory=list)
    #: staff logins ils-redact created for the database
    logins: list[str] = field(default_factory=list)
    #: login -> the orphaned roles it is a member of (other than logins dropped with them)
    members: dict[str, list[str]] = field(default_factory=dict)
    #: created logins that are kept, and why (a member of another role, owns something)
    kept: dict[str, str] = field(default_factory=dict)
    blockers: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"database": self.database, "database_exists": self.exists,
                "roles": self.roles, "logins": self.logins, "members": self.members,
                "kept_logins": self.kept, "blockers": self.blockers}


_MARKED = """
SELECT r.rolname, shobj_description(r.oid, 'pg_authid')
FROM pg_roles r WHERE shobj_description(r.oid, 'pg_authid') LIKE 'ils-redact%%'
ORDER BY 1
"""

_MEMBERS = """
SELECT m.rolname, g.rolname FROM pg_auth_members a
JOIN pg_roles m ON m.oid = a.member JOIN pg_roles g ON g.oid = a.roleid
WHERE g.rolname = ANY (%(roles)s) OR m.rolname = ANY (%(roles)s)
ORDER BY 1, 2
"""

# what these roles own or hold in any database that still exists, and on shared objects
_SHDEPEND = """
SELECT r.rolname, sd.deptype, coalesce(d.datname, ''), sd.dbid = 0,
       sd.dbid = (SELECT oid FROM pg_database WHERE datname = current_database()),
       o.type, o.identity
FROM pg_shdepend sd
JOIN pg_roles r ON r.oid = sd.refobjid AND sd.refclassid = 'pg_authid'::regclass
LEFT JOIN pg_database d ON d.oid = sd.dbid
LEFT JOIN LATERAL (
    SELECT * FROM pg_identify_object(sd.classid, sd.objid, sd.objsubid)
    WHERE sd.dbid = 0
       OR sd.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
) o ON true
WHERE r.rolname = ANY (%s) AND sd.deptype IN ('o', 'a', 'i', 'r')
ORDER BY 1, 3, 6, 7
"""

_DEPTYPE = {"o": "owns", "a": "holds privileges on", "r": "is named in",
            "i": "holds initial privileges on"}


def marked(conn: psycopg.Connection, kinds: dict[str, str] | None = None
           ) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(database -> the layer roles marked for it, database -> the logins created for it);
    ``kinds``, when given, is filled with role -> the kind its marker records."""
    roles: dict[str, list[str]] = defaultdict(list)
    logins: dict[str, list[str]] = defaultdict(list)
    for name, comment in conn.execute(_MARKED).fetchall():
        if comment.startswith(MARKER):
            m = parse_marker(comment)
            if m and isinstance(m.get("database"), str):
                roles[m["database"]].append(name)
                if kinds is not None and isinstance(m.get("kind"), str):
                    kinds[name] = m["kind"]
        else:
            db = parse_login_marker(comment)
            if db:
                logins[db].append(name)
    return dict(roles), dict(logins)


def _databases(conn: psycopg.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()}


def vanished(conn: psycopg.Connection) -> dict[str, list[str]]:
    """database that no longer exists -> the layer roles still marked for it."""
    roles, _ = marked(conn)
    existing = _databases(conn)
    return {db: names for db, names in roles.items() if db not in existing}


def holders(conn: psycopg.Connection, roles: list[str]) -> list[str]:
    """Logins that are members of any of ``roles`` (the people who keep them)."""
    return sorted({m for m, g in conn.execute(_MEMBERS, {"roles": roles}).fetchall()
                   if g in roles and m not in roles})


def layer_installed_in(conn: psycopg.Connection, database: str) -> bool:
    """Whether ``database`` has the layer's bookkeeping (connecting to it if needed)."""
    q = "SELECT to_regclass('ils_redact.installed_object') IS NOT NULL"
    here = conn.execute("SELECT current_database()").fetchone()
    if here and here[0] == database:
        row = conn.execute(q).fetchone()
        return bool(row and row[0])
    password = conn.info.password  # conn.info.dsn leaves it out
    dsn = make_conninfo(conn.info.dsn, dbname=database,
                        **({"password": password} if password else {}))
    try:
        with psycopg.connect(dsn, autocommit=True,
                             options=pinned_options(dsn, None)) as other:
            row = other.execute(q).fetchone()
            return bool(row and row[0])
    except psycopg.OperationalError as exc:
        first = (str(exc).strip().splitlines() or ["connection failed"])[-1]
        raise StateError(f"database {database} exists, and whether ils-redact is installed "
                         f"there cannot be seen: {first}",
                         hint=f"run it connected to database {database}") from None


def require_admin(conn: psycopg.Connection) -> None:
    require_superuser(conn, "uninstall --orphaned")


def find(conn: psycopg.Connection, database: str, *, discard_audit: bool = False) -> Orphans:
    """What ``uninstall --orphaned DATABASE`` would remove, and what stands in its way.
    (``discard_audit``: for the MariaDB backend's API; here the audit log went with the
    database.)"""
    exists = database in _databases(conn)
    if exists and layer_installed_in(conn, database):
        raise StateError(f"database {database} still exists and has ils-redact installed: "
                         "its roles are not orphaned",
                         hint=f"run `ils-redact uninstall` against database {database}")
    kinds: dict[str, str] = {}
    all_roles, all_logins = marked(conn, kinds)
    out = Orphans(database, exists, sorted(all_roles.get(database, [])),
                  sorted(all_logins.get(database, [])))
    if not out.roles and not out.logins:
        raise StateError(f"no role or login of an ils-redact install for database {database} "
                         "is left on this server", hint="nothing to remove")
    ours = out.roles + out.logins
    memberships = conn.execute(_MEMBERS, {"roles": ours}).fetchall()
    members: dict[str, set[str]] = defaultdict(set)
    for member, group in memberships:
        if group in out.roles and member not in out.roles:
            members[member].add(group)
        elif (member in out.roles and group in OWNER_PREDEFINED
              and kinds.get(member) == "owner"):
            continue  # install made the layer's owner a member (planner.OWNER_PREDEFINED)
        elif member in out.roles and group not in out.roles:
            out.blockers.append(f"role {member} was made a member of {group} (not by "
                                "ils-redact)")
        elif member in out.logins and group not in out.roles:
            out.kept[member] = f"also a member of {group}"
    for role, deptype, db, shared, here, otype, ident in conn.execute(
            _SHDEPEND, (ours,)).fetchall():
        what = f"{otype} {ident}" if (shared or here) and otype else f"objects in database {db}"
        line = f"{_DEPTYPE.get(deptype, 'depends on')} {what}"
        if role in out.logins:
            out.kept.setdefault(role, line)
        else:
            out.blockers.append(f"role {role} {line}")
    out.logins = [name for name in out.logins if name not in out.kept]
    out.members = {m: sorted(gs) for m, gs in sorted(members.items()) if m not in out.logins}
    return out


def plan(orphans: Orphans) -> Plan:
    p = Plan(action="uninstall --orphaned", database=orphans.database, engine="postgresql")
    for name in orphans.logins:
        p.steps.append(Step("drop-role", f"role {name}", sql.SQL("DROP ROLE {}").format(
            sql.Identifier(name)).as_string(None),
            f"staff login ils-redact created for database {orphans.database}"))
    for name in orphans.roles:
        p.steps.append(Step("drop-role", f"role {name}", sql.SQL("DROP ROLE {}").format(
            sql.Identifier(name)).as_string(None),
            f"ils-redact role of database {orphans.database}"))
    return p


def remove(conn: psycopg.Connection, database: str, *, discard_audit: bool = False
           ) -> tuple[Orphans, Plan]:
    """Find, check again and drop, in one transaction."""
    with conn.transaction():
        conn.execute("SET LOCAL lock_timeout = '10s'")
        orphans = find(conn, database)
        if orphans.blockers:
            raise StateError("uninstall --orphaned refused, nothing was changed: "
                             + "; ".join(orphans.blockers),
                             hint="remove these by hand, then run it again")
        p = plan(orphans)
        for step in p.steps:
            conn.execute(step.sql)  # composed above, no input
    return orphans, p


def refusal(role: str, marker_db: str, members: list[str]) -> StateError:
    """Why install will not take a role whose database has vanished."""
    who = (f"; logins still holding its roles: {', '.join(members)}" if members else
           "; no login holds its roles")
    return StateError(
        f"role {role} belongs to the ils-redact install in database {marker_db}, which no "
        f"longer exists (it was dropped without `ils-redact uninstall`){who}; its roles are "
        "never taken over, because their members would get this database's rights",
        hint=f"remove them with `ils-redact uninstall --orphaned {marker_db}` (from any "
             "database of this cluster), or choose another role_prefix")
