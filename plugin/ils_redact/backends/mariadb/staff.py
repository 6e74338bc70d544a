"""Which MariaDB logins act in which ils-redact role, so nobody hand-writes GRANTs.

A login is an account, ``user@host``; ``alice`` names the one account called alice (or,
with ``--create``, creates ``'alice'@'%'``).  Granting is a small plan of its own
(printed, then applied statement by statement) and is recorded in the layer's
bookkeeping with the login's previous default role, so uninstall restores it exactly.

The role becomes the login's DEFAULT ROLE when the login has none.  MariaDB has one
default role per login; a login that is admin and exporter keeps the first as default,
and the CLI activates the other when it needs it (``SET ROLE``; see procedures.py).

A layer role (admin included: its patron lookup is bounded and traced) is never granted
to a login that can read the Koha tables anyway (a global privilege, or any privilege on
the Koha database: the Koha application account, an administrator), because the role
would limit nothing there.  A login is an account, not a name: ``staff grant`` creates
no user name with ``@`` in it and refuses a name another account already has.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ...errors import IlsRedactError, Refused, StateError
from ...plan import Plan, Step
from ...rules import Rules
from .apply import _execute, _session, state_for
from .connection import Connection, current_database, get_lock, release_lock, require_admin
from .planner import ROLE_KINDS, records_sql, unrecord_sql
from .sqltext import account, grantee_sql, ident, string
from .state import layer_database, read_grants
from .uninstall import restore_default_role


def _accounts(conn: Connection, user: str) -> list[tuple[str, str, str]]:
    return [(u, h, r) for u, h, r in conn.execute(
        "SELECT u.User, u.Host, JSON_VALUE(g.Priv, '$.default_role') FROM mysql.user u "
        "JOIN mysql.global_priv g ON g.User = u.User AND g.Host = u.Host "
        "WHERE u.User = %s AND u.is_role = 'N'", (user,)).fetchall()]


def resolve_login(conn: Connection, login: str, *, create: bool = False
                  ) -> tuple[str, str, str | None, bool]:
    """(user, host, current default role, exists) for ``user`` or ``user@host``."""
    user, at, host = login.rpartition("@")
    if not at:
        user, host = login, ""
    if not user:
        raise Refused("will not grant a role to the anonymous account")
    found = _accounts(conn, user)
    if host:
        found = [a for a in found if a[1] == host]
    if len(found) > 1:
        raise IlsRedactError(f"{user} names {len(found)} accounts ("
                             + ", ".join(f"{u}@{h}" for u, h, _ in found) + ")",
                             hint="name one as user@host")
    if found:
        u, h, r = found[0]
        return u, h, r or None, True
    if not create:
        raise IlsRedactError(f"no login {login}", hint="pass --create to create it")
    if "@" in user:
        raise IlsRedactError(
            f"will not create a login named {user!r}: a user name with '@' reads like "
            "another user's name and host ('name@host'); choose a name without '@'")
    return user, host or "%", None, False


def _namesakes(conn: Connection, user: str, host: str) -> list[str]:
    """Other accounts with this user name: the layer keys scope on the account, and its
    fast path tells accounts apart by name and host pattern only."""
    return [f"{u}@{h}" for u, h, _ in _accounts(conn, user) if h != host]


def _refuse_bypass(conn: Connection, user: str, host: str, kind: str, koha: str) -> None:
    grants = read_grants(conn, users=[user])
    mine = [g for g in grants if g.grantee == f"{user}@{host}"]
    glob = sorted({g.privilege for g in mine if g.level == "global"})
    local = sorted({g.privilege for g in mine if g.db == koha})
    why = None
    if glob:
        why = f"it holds global privileges ({', '.join(glob)}) that reach the Koha tables"
    elif local:
        why = (f"it holds privileges on the Koha database {koha} ({', '.join(local)}): "
               "it reads the tables directly, the role would limit nothing")
    if why:
        raise Refused(f"will not grant the {kind} role to {user}@{host}: {why}",
                      hint="create a separate login for this person")


def native_password_hash(password: str) -> str:
    """mysql_native_password's stored form, so the password never appears in SQL."""
    inner = hashlib.sha1(password.encode("utf-8")).digest()
    return "*" + hashlib.sha1(inner).hexdigest().upper()


def plan_grant(conn: Connection, rules: Rules, login: str, kind: str, *,
               create: bool = False, password: str | None = None) -> Plan:
    database = current_database(conn)
    state = state_for(conn, rules)
    if not state.is_installed:
        raise StateError(f"ils-redact is not installed in database {database}")
    layer = layer_database(database)
    plan = Plan(action="staff grant", database=database, engine="mariadb")
    roles = rules.roles(database)
    ours = {roles[k] for k in ROLE_KINDS} | {roles["owner"]}
    user, host, default, exists = resolve_login(conn, login, create=create)
    if user in ours:
        raise Refused(f"{user} is an ils-redact role or account, not a staff login")
    acct = f"{user}@{host}"
    if exists:
        _refuse_bypass(conn, user, host, kind, database)
    others = _namesakes(conn, user, host)
    if others:
        raise Refused(f"will not {'create' if not exists else 'grant a role to'} {acct}: "
                      f"{', '.join(others)} has the same user name, and ils-redact keys "
                      "scope and the audit log on the account",
                      hint="give each person a login name of their own")
    group = rules.staff_role(kind, database)
    steps = plan.steps
    if not exists:
        steps.append(Step("record", acct, records_sql(layer, [
            ("login", f"login {acct}", {"name": user, "host": host}, None)])))
        q = f"CREATE USER {account(user, host)}"
        if password:
            q += f" IDENTIFIED BY PASSWORD {string(native_password_hash(password))}"
        steps.append(Step("create-login", acct, q,
                          f"staff login {acct} (the password is sent hashed)"))
    member = (acct, group, False) in state.mappings or (acct, group, True) in state.mappings
    key = f"membership {group} {acct}"
    if not member:
        if not state.record(key):
            steps.append(Step("record", acct, records_sql(layer, [
                ("membership", key, {"login": acct, "role": group, "kind": kind},
                 {"default_role": default})])))
        steps.append(Step("grant-role", acct, f"GRANT {ident(group)} TO {account(user, host)}",
                          f"{acct} acts as {kind}"))
    if not default:
        steps.append(Step("default-role", acct,
                          f"SET DEFAULT ROLE {ident(group)} FOR {account(user, host)}",
                          f"{acct} has {group} active when it logs in"))
    return plan


def plan_revoke(conn: Connection, rules: Rules, login: str, kind: str) -> Plan:
    database = current_database(conn)
    state = state_for(conn, rules)
    layer = layer_database(database)
    plan = Plan(action="staff revoke", database=database, engine="mariadb")
    group = rules.staff_role(kind, database)
    user, host, default, _ = resolve_login(conn, login)
    acct = f"{user}@{host}"
    if not any(m == acct and r == group for m, r, _ in state.mappings):
        raise IlsRedactError(f"{acct} is not a member of {group}")
    rec = state.record(f"membership {group} {acct}")
    if default == group:
        steps = restore_default_role(acct, rec.prior if rec else None)
        plan.steps.extend(steps)
    plan.steps.append(Step("revoke-role", acct,
                           f"REVOKE {ident(group)} FROM {grantee_sql(acct)}"))
    if rec:
        plan.steps.append(Step("record", acct, unrecord_sql(layer, rec.object)))
    return plan


def apply(conn: Connection, plan: Plan) -> None:
    require_admin(conn, plan.action)
    _session(conn, 10)
    get_lock(conn, plan.database, 10)
    try:
        _execute(conn, plan, layer_database(plan.database), progress=False)
    finally:
        release_lock(conn, plan.database)


def members(conn: Connection, rules: Rules) -> list[dict[str, Any]]:
    database = current_database(conn)
    state = state_for(conn, rules)
    roles = {v: k for k, v in rules.roles(database).items() if k in ROLE_KINDS}
    created = {f"{i.detail['name']}@{i.detail['host']}" for i in state.installed_of("login")}
    out = []
    for member, group, _admin in sorted(state.mappings):
        if group not in roles or "@" not in member:
            continue
        rec = state.record(f"membership {group} {member}")
        if rec is None and _admin:
            continue  # the installer's automatic admin mapping
        user, _, host = member.rpartition("@")
        priv = conn.execute("SELECT Priv FROM mysql.global_priv WHERE User = %s AND Host = %s",
                            (user, host)).fetchone()
        info = json.loads(priv[0]) if priv else {}
        out.append({"login": member, "role": roles[group], "group": group,
                    "superuser": bool(info.get("access")), "bypassrls": False,
                    "default": info.get("default_role") == group,
                    "global_privileges": bool(info.get("access")),
                    "created_by_ils_redact": member in created})
    return out


def console_login(conn: Connection, rules: Rules, kinds: tuple[str, ...]
                  ) -> tuple[str, set[str]] | None:
    """``staff grant``'s refusal, read from what the login may see of itself: MariaDB
    shows an account its own grants in information_schema (not the grant tables).
    (database, the role kinds of ``kinds`` the login holds); :class:`Refused` for an
    account that reaches the Koha tables by itself."""
    from .connection import current_account

    user, host = current_account(conn)
    koha = current_database(conn)
    grantee = "'" + user.replace("'", "''") + "'@'" + host.replace("'", "''") + "'"
    glob = sorted({str(p) for (p,) in conn.rows(
        "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES "
        "WHERE GRANTEE = %s AND PRIVILEGE_TYPE <> 'USAGE'", (grantee,))})
    local = sorted({str(p) for (p,) in conn.rows(
        "SELECT PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES "
        "WHERE GRANTEE = %s AND TABLE_SCHEMA = %s UNION "
        "SELECT PRIVILEGE_TYPE FROM information_schema.TABLE_PRIVILEGES "
        "WHERE GRANTEE = %s AND TABLE_SCHEMA = %s UNION "
        "SELECT PRIVILEGE_TYPE FROM information_schema.COLUMN_PRIVILEGES "
        "WHERE GRANTEE = %s AND TABLE_SCHEMA = %s", (grantee, koha) * 3)})
    if glob:
        raise Refused(f"{user}@{host} holds global privileges ({', '.join(glob)}) "
                      "that reach the Koha tables")
    if local:
        raise Refused(f"{user}@{host} holds privileges on the Koha database {koha} "
                      f"({', '.join(local)}): it reads the tables directly")
    roles = rules.roles(koha)
    names = {roles[k]: k for k in kinds}
    held = {names[str(r)] for (r,) in conn.rows(
        "SELECT ROLE_NAME FROM information_schema.APPLICABLE_ROLES") if str(r) in names}
    conn.rollback()
    return koha, held
