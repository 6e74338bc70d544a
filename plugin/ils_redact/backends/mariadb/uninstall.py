"""Undo exactly what install (and ``staff grant``) recorded, and refuse when that would
not be exact.

After uninstall the grant tables (``mysql.global_priv``, ``db``, ``tables_priv``,
``columns_priv``, ``procs_priv``, ``roles_mapping``) hold what they held before install,
and the Koha database was never touched (the MariaDB backend changes no Koha object: no
row-level security to enable).  Dropping a role or an account silently drops every
privilege and role mapping it has, so anything in that set that ils-redact did not put
there is refused, with a list of what is in the way: a grant added by hand to a
restricted role, someone else's privilege on the layer database, one of our roles granted
to a login by hand, a login whose default role is ours.

Order: logins' default roles first (``DROP ROLE`` leaves a dangling default behind), then
the logins ils-redact created, the roles, the definer account, and the layer database
last, because it holds the bookkeeping: an interrupted uninstall runs again.
"""

# ruff: noqa: S608 - MariaDB SQL text is built here: identifiers only through sqltext.ident /
# qname / account, values only through sqltext.literal or driver parameters.

from __future__ import annotations

from ...errors import StateError
from ...plan import Step
from .planner import MariaPlan
from .sqltext import account, grantee_sql, ident, literal
from .state import MariaState, user_of


def recorded_names(state: MariaState) -> tuple[list[str], str]:
    """(role names, definer account user) from the bookkeeping."""
    roles = [i.detail["name"] for i in state.installed_of("role")]
    owners = [i.detail["name"] for i in state.installed_of("account")]
    return roles, owners[0] if owners else ""


def _ours(state: MariaState) -> tuple[set[str], set[str]]:
    roles, owner = recorded_names(state)
    accounts = {f"{i.detail['name']}@{i.detail['host']}" for i in state.installed_of("account")}
    return set(roles), accounts


def blockers(state: MariaState) -> list[str]:
    """Everything that uninstall would change and that ils-redact did not do."""
    roles, accounts = _ours(state)
    recorded = {i.object for i in state.installed}
    out: list[str] = []
    for g in sorted(state.grants, key=lambda g: g.key):
        if (g.grantee in roles or g.grantee in accounts) and g.key not in recorded:
            col = f" column {g.column}" if g.column else ""
            obj = ".".join(x for x in (g.db, g.name) if x) or "*.*"
            out.append(f"{g.grantee} holds {g.privilege} on {g.level} {obj}{col}, which "
                       "ils-redact did not grant")
    for g in sorted(state.foreign_grants, key=lambda g: g.key):
        obj = ".".join(x for x in (g.db, g.name) if x)
        out.append(f"{g.grantee} holds {g.privilege} on {g.level} {obj} in the layer "
                   "database (not granted by ils-redact)")
    members = {(i.detail["login"], i.detail["role"]) for i in state.installed_of("membership")}
    admins = {(i.detail.get("admin", ""), i.detail["name"]) for i in state.installed_of("role")}
    for member, role, admin in sorted(state.mappings):
        if role in roles:
            if (member, role) in members or (admin and (member, role) in admins):
                continue
            out.append(f"role {role} is granted to {member} (not by ils-redact)")
        elif member in roles:
            out.append(f"role {member} was made a member of {role} (not by ils-redact)")
    for login, role in sorted(state.default_roles.items()):
        if role in roles and (login, role) not in members:
            out.append(f"{login} has {role} as its default role (not set by ils-redact)")
    return out


def plan_uninstall(state: MariaState) -> MariaPlan:
    if not state.has_bookkeeping:
        raise StateError(f"ils-redact is not installed in database {state.database}")
    plan = MariaPlan(action="uninstall", database=state.database, engine="mariadb",
                     server_version=state.server_version)
    steps = plan.steps
    logins = {f"{i.detail['name']}@{i.detail['host']}" for i in state.installed_of("login")}
    for rec in state.installed_of("membership"):
        login, role = rec.detail["login"], rec.detail["role"]
        if login in logins or state.default_roles.get(login) != role:
            continue
        steps.extend(restore_default_role(login, rec.prior))
    for login in sorted(logins):
        steps.append(Step("drop-login", login, f"DROP USER IF EXISTS {grantee_sql(login)}",
                          "staff login created by ils-redact"))
    roles, owner = recorded_names(state)
    for role in roles:
        if role in state.roles:
            steps.append(Step("drop-role", f"role {role}", f"DROP ROLE {ident(role)}",
                              "its privileges and role mappings go with it"))
    for rec in state.installed_of("account"):
        acct = f"{rec.detail['name']}@{rec.detail['host']}"
        if acct in state.users:
            steps.append(Step("drop-account", acct,
                              f"DROP USER {account(rec.detail['name'], rec.detail['host'])}",
                              "the definer account; its column grants go with it"))
    if state.layer_exists:
        steps.append(Step("drop-layer", state.layer, f"DROP DATABASE {ident(state.layer)}",
                          "the layer's objects (bookkeeping, scope, requests, audit log)"))
    return plan


def restore_default_role(login: str, prior: dict | None) -> list[Step]:
    """Put a login's default role back as it was.  ``SET DEFAULT ROLE NONE`` leaves an
    empty ``default_role`` key in mysql.global_priv where there was none; the UPDATE
    removes exactly that text, so the row is byte for byte what it was."""
    before = (prior or {}).get("default_role") or ""
    who = grantee_sql(login)
    if before:
        return [Step("default-role", login, f"SET DEFAULT ROLE {ident(before)} FOR {who}",
                     f"{login}: its default role was {before}")]
    user, _, host = login.rpartition("@")
    return [
        Step("default-role", login, f"SET DEFAULT ROLE NONE FOR {who}",
             f"{login} had no default role"),
        Step("default-role", login,
             "UPDATE mysql.global_priv SET Priv = REPLACE(Priv, ',\"default_role\":\"\"', '') "
             f"WHERE User = {literal(user)} AND Host = {literal(host)} "
             "AND JSON_VALUE(Priv, '$.default_role') = ''",
             "remove the empty default_role key SET DEFAULT ROLE NONE leaves behind"),
    ]


__all__ = ["blockers", "plan_uninstall", "recorded_names", "restore_default_role", "user_of"]
