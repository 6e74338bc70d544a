"""Roles and accounts left behind by a Koha database dropped without ``uninstall``.

On MariaDB the bookkeeping lives in the layer's own database (``ils_redact_<koha db>``),
which ``DROP DATABASE koha`` does not touch: the roles, the definer account and the staff
logins ils-redact created stay recorded there, and ``uninstall --orphaned koha`` removes
exactly them (and the layer database) with the plan ``uninstall`` would have run, once a
person has confirmed.  Two things are not possible, and are said so:

* if the layer database was dropped too, nothing records which roles and accounts
  ils-redact created (MariaDB roles and accounts carry no comment, unlike PostgreSQL's
  ``COMMENT ON ROLE``): they must be found and dropped by hand;
* MariaDB keeps the privileges on a dropped database's tables (``mysql.tables_priv``,
  ``columns_priv``): a Koha database created again under the same name gives the old
  definer account and roles their column grants back, and the old layer database serves
  it as before.  That is how a restore works; ``--orphaned`` refuses while the Koha
  database exists.

The layer database holds the audit log, the only record of what was disclosed: it is not
dropped while it holds entries unless ``--discard-audit`` is given (archive it first with
``mysqldump``: ``audit export`` needs the Koha database).
"""

# ruff: noqa: S608 - MariaDB SQL text is built here: identifiers only through sqltext.ident /
# qname, values only through driver parameters.

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...errors import StateError
from ...plan import Plan
from .apply import _execute, _session, audit_entries
from .connection import Connection, get_lock, release_lock, require_mariadb, scalar
from .connection import require_admin as _require_admin
from .state import MariaState, layer_database, read_state
from .uninstall import blockers, plan_uninstall, recorded_names


@dataclass
class Orphans:
    database: str
    layer: str
    exists: bool = False
    roles: list[str] = field(default_factory=list)
    accounts: list[str] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    members: dict[str, list[str]] = field(default_factory=dict)
    kept: dict[str, str] = field(default_factory=dict)
    blockers: list[str] = field(default_factory=list)
    audit_entries: int = 0
    state: MariaState | None = None

    def to_json(self) -> dict[str, Any]:
        return {"database": self.database, "database_exists": self.exists,
                "layer_database": self.layer, "roles": self.roles,
                "accounts": self.accounts, "logins": self.logins, "members": self.members,
                "kept_logins": self.kept, "blockers": self.blockers,
                "audit_entries": self.audit_entries}


def require_admin(conn: Connection) -> None:
    require_mariadb(conn)
    _require_admin(conn, "uninstall --orphaned")


def _exists(conn: Connection, schema: str) -> bool:
    return bool(scalar(conn, "SELECT COUNT(*) FROM information_schema.SCHEMATA "
                             "WHERE SCHEMA_NAME = %s", (schema,)))


def find(conn: Connection, database: str, *, discard_audit: bool = False) -> Orphans:
    layer = layer_database(database)
    out = Orphans(database, layer)
    if _exists(conn, database):
        raise StateError(f"Koha database {database} still exists: its roles are not orphaned",
                         hint=f"run `ils-redact uninstall` against database {database}")
    if not _exists(conn, layer):
        raise StateError(
            f"neither Koha database {database} nor its layer database {layer} exists: "
            "MariaDB roles and accounts carry no mark of who made them, so which of them "
            f"ils-redact created for {database} is no longer recorded anywhere",
            hint="find them by hand (SELECT User, Host, is_role FROM mysql.user) and drop "
                 "them with DROP ROLE / DROP USER")
    state = read_state(conn, [], "", database)
    if not state.has_bookkeeping:
        raise StateError(f"database {layer} exists but holds no ils-redact bookkeeping",
                         hint="it was not created by ils-redact; nothing is removed")
    roles, owner = recorded_names(state)
    state = read_state(conn, roles, owner, database)
    out.state = state
    out.roles = sorted(r for r in roles if r in state.roles)
    out.accounts = sorted(f"{i.detail['name']}@{i.detail['host']}"
                          for i in state.installed_of("account")
                          if f"{i.detail['name']}@{i.detail['host']}" in state.users)
    created = {f"{i.detail['name']}@{i.detail['host']}" for i in state.installed_of("login")}
    out.logins = sorted(created)
    # the administrator who installed holds each role WITH ADMIN OPTION (MariaDB's own
    # mapping for a role's creator): not a person who acts in it
    admins = {(i.detail.get("admin", ""), i.detail["name"]) for i in state.installed_of("role")}
    members: dict[str, set[str]] = {}
    for member, role, _admin in sorted(state.mappings):
        if (role in roles and member not in created and member not in out.accounts
                and (member, role) not in admins and "@" in member):
            members.setdefault(member, set()).add(role)
    out.members = {m: sorted(rs) for m, rs in members.items()}
    out.blockers = blockers(state)
    out.audit_entries = audit_entries(conn, layer)
    if out.audit_entries and not discard_audit:
        out.blockers.append(
            f"the audit log in {layer} holds {out.audit_entries} entries, the only record of "
            f"what was disclosed (archive it: mysqldump {layer} audit_log > audit.sql, then "
            "pass --discard-audit)")
    return out


def plan(orphans: Orphans) -> Plan:
    assert orphans.state is not None
    p = plan_uninstall(orphans.state)
    p.action = "uninstall --orphaned"
    return p


def remove(conn: Connection, database: str, *, discard_audit: bool = False
           ) -> tuple[Orphans, Plan]:
    """Under the install lock of that database: find again, then run the uninstall plan the
    bookkeeping gives (logins' default roles, logins, roles, definer, layer database)."""
    _session(conn, 10)
    get_lock(conn, database, 10)
    try:
        orphans = find(conn, database, discard_audit=discard_audit)
        if orphans.blockers:
            raise StateError("uninstall --orphaned refused, nothing was changed: "
                             + "; ".join(orphans.blockers),
                             hint="remove these by hand, then run it again")
        p = plan(orphans)
        _execute(conn, p, orphans.layer, progress=False)
    finally:
        release_lock(conn, database)
    return orphans, p

