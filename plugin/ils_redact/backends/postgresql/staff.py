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
from .connection import current_database, one_row, require_superuser, run_statement
from .hardening import temp_sql
from .orphaned import login_marker
from .planner import record_sql, unrecord_sql
from .state import read_state


@dataclass(frozen=True)
class LoginInfo:
    name: str
    superuser: bool
    bypassrls: bool
    login: bool
    replication: bool = False


def _login(conn: psycopg.Connection, name: str) -> LoginInfo | None:
    row = conn.execute("SELECT rolname, rolsuper, rolbypassrls, rolcanlogin, rolreplication "
                       "FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
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
    if kind in ("disclosure", "stats", "admin") and info is not None:
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
        # marked, so that `uninstall --orphaned` finds it if the database is dropped
        steps.append(Step("comment-login", login, sql.SQL("COMMENT ON ROLE {} IS {}").format(
            sql.Identifier(login), sql.Literal(login_marker(database))).as_string(None)))
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
    # TEMP that install gave back to the login (it used the database before) is not for
    # a login that acts in a layer role: it would create temporary functions there
    temp = state.record(f"temp grant {login}")
    if temp is not None and temp.detail.get("auto") and (login, "TEMPORARY") in \
            state.database_acl:
        steps.append(Step("revoke-temp", login, temp_sql("REVOKE", database, login),
                          f"{login} acts as {kind}: no temporary tables or functions "
                          "(hardening.revoke_public_temp)"))
        steps.append(Step("record", login, unrecord_sql(f"temp grant {login}")))
    return plan


def _refuse_bypass(conn: psycopg.Connection, rules: Rules, login: str, info: LoginInfo,
                   kind: str) -> None:
    why = None
    if info.superuser:
        why = "it is a superuser, and superusers bypass row-level security"
    elif info.bypassrls:
        why = "it has BYPASSRLS, so row-level security would not limit it"
    elif info.replication:
        why = ("it has REPLICATION: pg_basebackup copies every file of the cluster and a "
               "logical slot decodes every change of every table, past every grant and row "
               "policy")
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
            run_statement(conn, step.sql)


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
        "JOIN pg_roles m ON m.oid = a.member WHERE g.rolname = ANY (%s) "
        "AND NOT m.rolname = ANY (%s) ORDER BY 1, 2",
        (list(roles), list(roles))).fetchall()  # the layer's own (export_owner) are no staff
    return [{"login": m, "role": roles[g], "group": g, "superuser": su, "bypassrls": by,
             "can_login": lg, "created_by_ils_redact": m in created}
            for m, g, su, by, lg in rows]


def console_login(conn: psycopg.Connection, rules: Rules, kinds: tuple[str, ...]
                  ) -> tuple[str, set[str]] | None:
    """What the console may act for, on the session's own connection: (database, the
    role kinds of ``kinds`` the login holds), or None when the login is unknown.
    :class:`Refused` as ``staff grant`` refuses (a superuser, BYPASSRLS, the ILS
    owner); driver errors as the driver raised them."""
    row = conn.execute("SELECT session_user").fetchone()
    user = str(one_row(row, "session_user")[0])
    info = _login(conn, user)
    if info is None:
        return None
    try:
        _refuse_bypass(conn, rules, user, info, "console")
    except Refused as exc:  # "will not grant the console role to X: why", as said here
        why = exc.message.split(f"{user}: ", 1)[-1]
        raise Refused(f"the console does not accept {user}: {why}") from None
    database = current_database(conn)
    roles = rules.roles(database)
    names = {roles[k]: k for k in kinds}
    held = {names[r] for (r,) in conn.execute(
        "SELECT rolname FROM pg_roles WHERE rolname = ANY (%s) "
        "AND pg_has_role(session_user, oid, 'MEMBER')", (list(names),)).fetchall()}
    conn.rollback()
    return database, held
