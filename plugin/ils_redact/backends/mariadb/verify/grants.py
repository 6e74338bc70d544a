"""Every privilege on the MariaDB server, read from the grant tables, and who may act as whom.

The catalog proof needs what the server would allow, not what ils-redact recorded, so this
reads the grant tables themselves (``mysql.global_priv``, ``db``, ``tables_priv``,
``columns_priv``, ``procs_priv``, ``roles_mapping``, ``proxies_priv``), for every account
and role on the server: a privilege can reach a restricted role from anywhere.

How MariaDB combines them, as modelled here:

* a role's privileges include those of every role granted to it, transitively;
* a login acts with its own privileges plus one active role (and that role's closure); it
  may ``SET ROLE`` to any role granted to it, so across sessions it reaches all of them;
* ``PUBLIC`` (MariaDB 10.11+) is a role every account has: its privileges, and those of
  the roles granted to it, apply to every session whatever role is active (checked on
  10.11: a role granted to PUBLIC needs no ``SET ROLE``);
* database-level grants name a pattern (``koha\\_%``, ``%``) with ``LIKE`` wildcards;
* global privileges are the ``access`` bit mask of ``mysql.global_priv`` (decoded below in
  the server's own order; ``tests/koha/test_verify_catalog.py`` checks it against
  ``SHOW GRANTS``);
* ``GRANT PROXY ON 'u'@'h' TO p`` lets ``p``, when an authentication plugin that maps
  users (PAM with ``pam_user_map``) says so, log in *as* ``u``: with u's privileges and
  roles, while ``USER()`` stays p's own name.  ``Proxied_user`` is a pattern with ``%``
  and ``_``; a row with an empty proxied user (``root@localhost``'s default, the right to
  grant PROXY) names no login.

Grantee keys are those of :class:`~ils_redact.backends.mariadb.state.Grant`: ``role``,
``user@host``, ``PUBLIC``; an anonymous account is ``@host``.
"""

# ruff: noqa: S608 - fixed SQL text over the grant tables, no input in it

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field, replace
from functools import lru_cache

from ..connection import Connection
from ..planner import grant_sql
from ..sqltext import account, grantee_sql, ident
from ..state import DB_PRIVS, Grant, priv_name, priv_set

PUBLIC = "PUBLIC"

#: bit i of ``mysql.global_priv``'s ``access`` (privilege.h, MariaDB 10.5-11.x)
ACCESS_BITS = (
    "SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "RELOAD", "SHUTDOWN",
    "PROCESS", "FILE", "GRANT OPTION", "REFERENCES", "INDEX", "ALTER", "SHOW DATABASES",
    "SUPER", "CREATE TEMPORARY TABLES", "LOCK TABLES", "EXECUTE", "REPLICATION SLAVE",
    "BINLOG MONITOR", "CREATE VIEW", "SHOW VIEW", "CREATE ROUTINE", "ALTER ROUTINE",
    "CREATE USER", "EVENT", "TRIGGER", "CREATE TABLESPACE", "DELETE HISTORY", "SET USER",
    "FEDERATED ADMIN", "CONNECTION ADMIN", "READ_ONLY ADMIN", "REPLICATION SLAVE ADMIN",
    "REPLICATION MASTER ADMIN", "BINLOG ADMIN", "BINLOG REPLAY", "SLAVE MONITOR",
)

def decode_access(access: int) -> list[str]:
    """Global privilege names of an ``access`` bit mask."""
    out = []
    for i in range(max(access.bit_length(), 0)):
        if access >> i & 1:
            out.append(ACCESS_BITS[i] if i < len(ACCESS_BITS) else f"privilege bit {i}")
    return out


def grantee_key(user: str, host: str) -> str:
    return f"{user}@{host}" if host or not user else user


@lru_cache(maxsize=512)
def _pattern(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def db_covers(pattern: str, database: str) -> bool:
    """Whether a database-level grant's ``Db`` (a LIKE pattern) covers ``database``."""
    return bool(_pattern(pattern).fullmatch(database))


@dataclass(frozen=True)
class Account:
    """A row of ``mysql.global_priv``: a login, a role, or PUBLIC."""

    user: str
    host: str
    is_role: bool
    locked: bool = False
    default_role: str | None = None
    plugin: str = ""
    no_password: bool = False
    access: int = 0

    @property
    def key(self) -> str:
        return grantee_key(self.user, self.host)

    @property
    def is_login(self) -> bool:
        return not self.is_role and self.user != PUBLIC

    @property
    def anonymous(self) -> bool:
        return not self.is_role and self.user == ""

    @property
    def sql(self) -> str:
        return grantee_sql(self.key)


@dataclass(frozen=True)
class Proxy:
    """A row of ``mysql.proxies_priv``: ``proxy`` may log in as ``proxied_user@proxied_host``."""

    user: str
    host: str
    proxied_user: str
    proxied_host: str
    with_grant: bool = False

    @property
    def key(self) -> str:
        return grantee_key(self.user, self.host)

    def covers(self, acct: Account) -> bool:
        """Whether this row lets its proxy log in as ``acct``."""
        if not self.proxied_user or not acct.is_login:
            return False
        return bool(_pattern(self.proxied_user).fullmatch(acct.user)) and (
            self.proxied_host == acct.host
            or bool(_pattern(self.proxied_host or "%").fullmatch(acct.host)))

    @property
    def sql(self) -> str:
        return (f"REVOKE PROXY ON {account(self.proxied_user, self.proxied_host)} FROM "
                f"{account(self.user, self.host)}; (as an account that may grant PROXY, "
                "such as root@localhost over the socket)")


@dataclass(frozen=True)
class Held:
    """A privilege a role acts with: the grant, and how it gets it (``direct``, ``PUBLIC``
    or ``membership``), with the chain of role grants from the role to the grantee."""

    grant: Grant
    source: str
    path: tuple[str, ...]

    @property
    def grantee(self) -> str:
        return self.grant.grantee


@dataclass
class ServerGrants:
    accounts: dict[str, Account] = field(default_factory=dict)
    grants: dict[str, set[Grant]] = field(default_factory=lambda: defaultdict(set))
    #: grantee key -> {(role granted to it, with admin option)}
    mappings: dict[str, set[tuple[str, bool]]] = field(default_factory=lambda: defaultdict(set))
    proxies: list[Proxy] = field(default_factory=list)

    # -- the role graph --------------------------------------------------------------
    def roles_of(self, key: str) -> set[str]:
        return {r for r, _ in self.mappings.get(key, ())}

    def closure(self, key: str) -> dict[str, tuple[str, ...]]:
        """Every grantee whose privileges ``key`` acts with (itself included) -> the chain
        of role grants that gets there.  For a login: across every role it may SET."""
        out: dict[str, tuple[str, ...]] = {key: (key,)}
        todo = [key]
        while todo:
            cur = todo.pop()
            for role in sorted(self.roles_of(cur)):
                if role not in out:
                    out[role] = out[cur] + (role,)
                    todo.append(role)
        return out

    @property
    def public(self) -> dict[str, tuple[str, ...]]:
        """PUBLIC and the roles granted to it: everyone's."""
        return self.closure(PUBLIC)

    def holders(self, role: str, *, skip: frozenset[tuple[str, str]] = frozenset()
                ) -> dict[str, tuple[str, ...]]:
        """Every login that can act as ``role`` -> the chain (login, ..., role).  ``skip``
        leaves out (grantee, role) edges, e.g. the installer's automatic admin mapping."""
        out = {}
        for key, acct in self.accounts.items():
            if not acct.is_login:
                continue
            path = self.path_to(key, role, skip)
            if path:
                out[key] = path
        return out

    def path_to(self, start: str, goal: str, skip: frozenset[tuple[str, str]] = frozenset()
              ) -> tuple[str, ...] | None:
        seen: dict[str, tuple[str, ...]] = {start: (start,)}
        todo = [start]
        while todo:
            cur = todo.pop(0)
            for role in sorted(self.roles_of(cur)):
                if (cur, role) in skip or role in seen:
                    continue
                seen[role] = seen[cur] + (role,)
                if role == goal:
                    return seen[role]
                todo.append(role)
        return None

    def admin_option(self, key: str, role: str) -> bool:
        return (role, True) in self.mappings.get(key, set())

    # -- privileges ------------------------------------------------------------------
    def own(self, key: str) -> set[Grant]:
        return self.grants.get(key, set())

    def effective(self, role: str) -> list[Held]:
        """What a session with ``role`` active may do: the role's closure and PUBLIC's."""
        out = []
        for other, path in sorted(self.closure(role).items()):
            source = "direct" if other == role else "membership"
            out += [Held(g, source, path) for g in self.own(other)]
        for other, path in sorted(self.public.items()):
            out += [Held(g, "PUBLIC", path) for g in self.own(other)]
        return out


_GLOBAL = "SELECT User, Host, Priv FROM mysql.global_priv"
_DB = "SELECT Host, Db, User, " + ", ".join(DB_PRIVS) + " FROM mysql.db"
_TABLES = "SELECT Host, Db, User, Table_name, Table_priv FROM mysql.tables_priv"
_COLUMNS = ("SELECT Host, Db, User, Table_name, Column_name, Column_priv "
            "FROM mysql.columns_priv")
_ROUTINES = ("SELECT Host, Db, User, Routine_name, Routine_type, Proc_priv "
             "FROM mysql.procs_priv")
_MAPPINGS = "SELECT Host, User, Role, Admin_option FROM mysql.roles_mapping"
_PROXIES = ("SELECT User, Host, Proxied_user, Proxied_host, With_grant "
            "FROM mysql.proxies_priv")


def read_server_grants(conn: Connection) -> ServerGrants:
    """Every account, role, privilege and role grant on the server."""
    sg = ServerGrants()
    for user, host, priv in conn.execute(_GLOBAL).fetchall():
        info = json.loads(priv) if priv else {}
        acct = Account(
            user=user, host=host, is_role=bool(info.get("is_role")) or user == PUBLIC,
            locked=bool(info.get("account_locked")), default_role=info.get("default_role") or None,
            plugin=info.get("plugin", ""), access=int(info.get("access", 0)),
            no_password=(info.get("plugin", "") in ("", "mysql_native_password",
                                                    "mysql_old_password")
                         and not info.get("authentication_string") and not info.get("auth_or")))
        sg.accounts[acct.key] = acct
        for p in decode_access(acct.access):
            sg.grants[acct.key].add(Grant(acct.key, "global", "", "", p))
    for row in conn.execute(_DB).fetchall():
        host, db, user = row[:3]
        for flag, p in zip(row[3:], DB_PRIVS.values(), strict=True):
            if flag == "Y":
                sg.grants[grantee_key(user, host)].add(Grant(grantee_key(user, host),
                                                             "database", db, "", p))
    for host, db, user, table, privs in conn.execute(_TABLES).fetchall():
        key = grantee_key(user, host)
        for p in priv_set(privs):
            sg.grants[key].add(Grant(key, "table", db, table, priv_name(p)))
    for host, db, user, table, column, privs in conn.execute(_COLUMNS).fetchall():
        key = grantee_key(user, host)
        for p in priv_set(privs):
            sg.grants[key].add(Grant(key, "column", db, table, priv_name(p), column))
    for host, db, user, routine, rtype, privs in conn.execute(_ROUTINES).fetchall():
        key = grantee_key(user, host)
        for p in priv_set(privs):
            sg.grants[key].add(Grant(key, str(rtype).lower(), db, routine, priv_name(p)))
    for host, user, role, admin in conn.execute(_MAPPINGS).fetchall():
        sg.mappings[grantee_key(user, host)].add((role, admin == "Y"))
    sg.proxies = [Proxy(str(u), str(h), str(pu), str(ph), bool(w))
                  for u, h, pu, ph, w in conn.execute(_PROXIES).fetchall()]
    return sg


def describe(g: Grant) -> str:
    """``SELECT on koha.issues``, ``SELECT (email) on koha.borrowers``, ``EXECUTE on
    procedure layer.export``, ``FILE on *.*``, ``SELECT on koha\\_%.*``."""
    if g.level == "global":
        return f"{g.privilege} on *.*"
    if g.level == "database":
        return f"{g.privilege} on {g.db}.*"
    if g.level == "column":
        return f"{g.privilege} ({g.column}) on {g.db}.{g.name}"
    if g.level in ("procedure", "function", "package", "package body"):
        return f"{g.privilege} on {g.level} {g.db}.{g.name}"
    return f"{g.privilege} on {g.db}.{g.name}"


def revoke_sql(grants: list[Grant], grantee: str | None = None) -> str:
    """One REVOKE for grants of one grantee on one object (columns listed), as the
    planner writes it, ended with ``;`` for a fix to paste."""
    if grantee is not None:
        grants = [replace(g, grantee=grantee) for g in grants]
    return grant_sql(grants, revoke=True) + ";"


def revoke_role_sql(role: str, grantee: str) -> str:
    return f"REVOKE {ident(role)} FROM {grantee_sql(grantee)};"


def by_object(grants: list[Grant]) -> dict[tuple[str, str, str, str], list[Grant]]:
    """Grants grouped per (grantee, level, db, name), in a stable order."""
    out: dict[tuple[str, str, str, str], list[Grant]] = defaultdict(list)
    for g in sorted(grants, key=lambda g: (g.grantee, g.level, g.db, g.name, g.privilege,
                                           g.column)):
        out[(g.grantee, g.level, g.db, g.name)].append(g)
    return out
