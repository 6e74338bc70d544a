"""The role-membership graph: which roles a role can act as, and who can act as it.

Roles are cluster-wide and membership chains carry privileges (threat model fact 13).  A
member can use a group's rights by inheriting them or by ``SET ROLE``; for a verifier both
open the same door, so an edge counts when either is possible: on PostgreSQL 16+ when the
grant has ``INHERIT`` or ``SET``, before 16 always (``SET ROLE`` to any role one is a
member of, through any chain, is allowed whatever ``rolinherit`` says).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import psycopg


@dataclass(frozen=True)
class RoleAttrs:
    name: str
    superuser: bool
    bypassrls: bool
    createrole: bool
    login: bool
    replication: bool


@dataclass
class RoleGraph:
    roles: dict[str, RoleAttrs]
    #: member -> groups it can act as directly
    groups: dict[str, set[str]]
    #: group -> its direct members
    members: dict[str, set[str]]

    def reach(self, role: str) -> dict[str, tuple[str, ...]]:
        """Every role ``role`` can act as (itself included) -> the chain that gets there."""
        out: dict[str, tuple[str, ...]] = {role: (role,)}
        todo = [role]
        while todo:
            cur = todo.pop()
            for g in sorted(self.groups.get(cur, ())):
                if g not in out:
                    out[g] = out[cur] + (g,)
                    todo.append(g)
        return out

    def reached_by(self, role: str) -> set[str]:
        """Every role that can act as ``role`` (itself excluded)."""
        out: set[str] = set()
        todo = [role]
        while todo:
            for m in self.members.get(todo.pop(), ()):
                if m not in out and m != role:
                    out.add(m)
                    todo.append(m)
        return out

    def logins_reaching(self, role: str) -> list[str]:
        return sorted(r for r in self.reached_by(role)
                      if r in self.roles and self.roles[r].login)


def read_graph(conn: psycopg.Connection) -> RoleGraph:
    roles = {
        r[0]: RoleAttrs(*r) for r in conn.execute(
            "SELECT rolname, rolsuper, rolbypassrls, rolcreaterole, rolcanlogin, rolreplication "
            "FROM pg_roles")
    }
    if conn.info.server_version >= 160000:
        edges = conn.execute(
            "SELECT m.rolname, g.rolname FROM pg_auth_members a "
            "JOIN pg_roles m ON m.oid = a.member JOIN pg_roles g ON g.oid = a.roleid "
            "WHERE a.inherit_option OR a.set_option").fetchall()
    else:
        edges = conn.execute(
            "SELECT m.rolname, g.rolname FROM pg_auth_members a "
            "JOIN pg_roles m ON m.oid = a.member JOIN pg_roles g ON g.oid = a.roleid"
        ).fetchall()
    groups: dict[str, set[str]] = defaultdict(set)
    members: dict[str, set[str]] = defaultdict(set)
    for member, group in edges:
        groups[member].add(group)
        members[group].add(member)
    return RoleGraph(roles, dict(groups), dict(members))


def chain(path: tuple[str, ...]) -> str:
    """``a -> b -> c`` for messages."""
    return " -> ".join(path)
