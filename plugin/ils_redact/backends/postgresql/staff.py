"""Which database logins act in which ils-redact role, so nobody hand-writes GRANTs.

Granting is a small plan of its own (printed, then applied in one transaction) and is
recorded in the layer's bookkeeping, so uninstall knows which logins it created.  A
restricted role is never granted to a login that would bypass row-level security: a
superuser, a BYPASSRLS role, or the ILS owner (table owners are not subject to RLS).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from ...errors import IlsRedactError, Refused, StateError
from ...plan import Plan, Step
from ...rules import Rules
from .connection import current_database, one_row, require_superuser
from .planner import record_sql, unrecord_sql
from .state import read_state


@dataclass(frozen=True)
class LoginInfo:
    name: str
    superuser: bool
    bypassrls: bool
    login: bool


def _login(conn: psycopg.Connection, name: str) -> LoginInfo | None:
    row = conn.execute("SELECT rolname, rolsuper, rolbypassrls, rolcanlogin FROM pg_roles "
                       "WHERE rolname = %s", (name,)).fetchone()
    return LoginInfo(*row) if row else None


def plan_grant(conn: psycopg.Connection, rules: Rules, login: str, kind: str, *,
               create: bool = False, password: str | None = None) -> Plan:
    database = current_database(conn)
    state = read_state(conn, rules)
    if not state.is_installed:
        raise StateError(f"ils-redact is not installed in database {database}")
    plan = Plan(action="staff grant", database=database, engine="postgresql")
    ours = set(rules.roles(database).values())
    if login in ours:
        raise Refused(f"{login} is an ils-redact role, not a staff login")
    info = _login(conn, login)
    if info is None and not create:
        raise IlsRedactError(f"no login {login}", hint="pass --create to create it")
    if info is not None and not info.login:
        raise Refused(f"{login} cannot log in (NOLOGIN): grant roles to people's logins")
    if kind in ("disclosure", "stats") and info is not None:
        _refuse_bypass(conn, rules, login, info, kind)
    group = rules.staff_role(kind, database)
    steps = plan.steps
    if info is None:
        q = sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS").format(sql.Identifier(login))
        if password:
            hashed = conn.pgconn.encrypt_password(password.encode(), login.encode(),
                                                  b"scram-sha-256").decode()
            q += sql.SQL(" PASSWORD {}").format(sql.Literal(hashed))
        steps.append(Step("create-login", login, q.as_string(None),
                          f"staff login {login} (the password is sent hashed)"))
        steps.append(Step("record", login, record_sql("login", f"login {login}",
                                                      {"name": login})))
    member = conn.execute("SELECT pg_has_role(%s, %s, 'MEMBER')", (login, group)).fetchone() \
        if info is not None else (False,)
    if not member or not member[0]:
        steps.append(Step("grant-role", login, sql.SQL("GRANT {} TO {}").format(
            sql.Identifier(group), sql.Identifier(login)).as_string(None),
            f"{login} acts as {kind}"))
        key = f"membership {group} {login}"
        if not state.record(key):
            steps.append(Step("record", login, record_sql("membership", key,
                                                          {"group": group, "login": login})))
    return plan


def _refuse_bypass(conn: psycopg.Connection, rules: Rules, login: str, info: LoginInfo,
                   kind: str) -> None:
    why = None
    if info.superuser:
        why = "it is a superuser, and superusers bypass row-level security"
    elif info.bypassrls:
        why = "it has BYPASSRLS, so row-level security would not limit it"
    else:
        owner = conn.execute(
            "SELECT pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname || '.' || c.relname = %s",
            (rules.patron.relation,)).fetchone()
        if owner and one_row(conn.execute("SELECT pg_has_role(%s, %s, 'MEMBER')",
                                          (login, owner[0])).fetchone(),
                             f"pg_has_role({login}, {owner[0]})")[0]:
            why = (f"it is (or is a member of) {owner[0]}, the owner of the ILS tables, and "
                   "table owners are not subject to row-level security")
    if why:
        raise Refused(f"will not grant the {kind} role to {login}: {why}",
                      hint="create a separate login for this person")


def plan_revoke(conn: psycopg.Connection, rules: Rules, login: str, kind: str) -> Plan:
    database = current_database(conn)
    state = read_state(conn, rules)
    plan = Plan(action="staff revoke", database=database, engine="postgresql")
    group = rules.staff_role(kind, database)
    direct = conn.execute(
        "SELECT 1 FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid "
        "JOIN pg_roles m ON m.oid = a.member WHERE g.rolname = %s AND m.rolname = %s",
        (group, login)).fetchone()
    if not direct:
        raise IlsRedactError(f"{login} is not a member of {group}")
    plan.steps.append(Step("revoke-role", login, sql.SQL("REVOKE {} FROM {}").format(
        sql.Identifier(group), sql.Identifier(login)).as_string(None)))
    key = f"membership {group} {login}"
    if state.record(key):
        plan.steps.append(Step("record", login, unrecord_sql(key)))
    return plan


def apply(conn: psycopg.Connection, plan: Plan) -> None:
    require_superuser(conn, plan.action)
    with conn.transaction():
        for step in plan.steps:
            conn.execute(step.sql)  # type: ignore[arg-type]


def members(conn: psycopg.Connection, rules: Rules) -> list[dict[str, Any]]:
    database = current_database(conn)
    roles = {v: k for k, v in rules.roles(database).items()}
    created = set()
    if one_row(conn.execute("SELECT to_regclass('ils_redact.installed_object')").fetchone(),
               "to_regclass('ils_redact.installed_object')")[0]:
        created = {r[0] for r in conn.execute(
            "SELECT detail->>'name' FROM ils_redact.installed_object WHERE kind = 'login'")}
    rows = conn.execute(
        "SELECT m.rolname, g.rolname, m.rolsuper, m.rolbypassrls, m.rolcanlogin "
        "FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid "
        "JOIN pg_roles m ON m.oid = a.member WHERE g.rolname = ANY (%s) ORDER BY 1, 2",
        (list(roles),)).fetchall()
    return [{"login": m, "role": roles[g], "group": g, "superuser": su, "bypassrls": by,
             "can_login": lg, "created_by_ils_redact": m in created}
            for m, g, su, by, lg in rows]
