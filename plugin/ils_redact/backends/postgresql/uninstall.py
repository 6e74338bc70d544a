"""Undo exactly what install recorded, and refuse when that would not be exact.

After uninstall, ``pg_dump --schema-only`` of the database is what it was before install
and the roles are gone.  A role cannot be dropped while it owns or holds something, and
dropping what it holds that ils-redact did not give it would change the database behind
the sysadmin's back, so those cases are refused with a list of what is in the way.
"""

from __future__ import annotations

from collections import defaultdict

import psycopg
from psycopg import sql

from ...errors import StateError
from ...plan import Plan, Step
from .planner import _grouped, grant_sql, qname, temp_sql
from .state import LAYER_SCHEMA, STATS_SCHEMA, PgState, Priv

_SHDEPEND = """
SELECT r.rolname, sd.deptype,
       CASE WHEN sd.dbid = 0 THEN '' ELSE coalesce(d.datname, '?') END,
       sd.dbid = 0 OR sd.dbid = (SELECT oid FROM pg_database WHERE datname = current_database()),
       o.type, o.schema, o.identity
FROM pg_shdepend sd
JOIN pg_roles r ON r.oid = sd.refobjid AND sd.refclassid = 'pg_authid'::regclass
LEFT JOIN pg_database d ON d.oid = sd.dbid
LEFT JOIN LATERAL (
    SELECT * FROM pg_identify_object(sd.classid, sd.objid, sd.objsubid)
    WHERE sd.dbid = 0
       OR sd.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
) o ON true
WHERE r.rolname = ANY (%s)
ORDER BY 1, 3, 5, 7
"""

_DEPTYPE = {"o": "owns", "a": "holds privileges on", "r": "is named in",
            "i": "holds initial privileges on", "t": "is referenced by"}


def recorded_roles(state: PgState) -> list[str]:
    return [i.detail["name"] for i in state.installed_of("role")]


def blockers(conn: psycopg.Connection, state: PgState) -> list[str]:
    """Everything our roles own or hold that uninstall would not put back."""
    roles = recorded_roles(state) + [i.detail["name"] for i in state.installed_of("login")]
    recorded = {i.object for i in state.installed}
    out: list[str] = []
    for p in sorted(state.privileges, key=lambda p: p.key):
        if p.role in roles and p.key not in recorded:
            col = f" column {p.column}" if p.column else ""
            out.append(f"role {p.role} holds {p.privilege} on {p.objtype} {p.object}{col}, "
                       "which ils-redact did not grant")
    recorded_policies = {(i.detail["table"], i.detail["name"])
                         for i in state.installed_of("policy")}
    for role, deptype, db, here, otype, schema, ident in conn.execute(_SHDEPEND, (roles,)):
        if not here:
            out.append(f"role {role} {_DEPTYPE.get(deptype, 'depends on')} objects in "
                       f"database {db}")
            continue
        if schema in (LAYER_SCHEMA, STATS_SCHEMA) or (
                otype == "schema" and ident in (LAYER_SCHEMA, STATS_SCHEMA)):
            continue  # dropped with the layer
        if deptype == "a" and otype in ("table", "table column", "view column", "schema",
                                        "function", "sequence", "database", "view"):
            continue  # compared above, privilege by privilege
        if deptype == "r" and otype == "policy":
            name, _, table = ident.partition(" on ")
            if (table, name) in recorded_policies:
                continue
        out.append(f"role {role} {_DEPTYPE.get(deptype, 'depends on')} {otype} {ident}")
    for member, group in conn.execute(
            "SELECT m.rolname, g.rolname FROM pg_auth_members a "
            "JOIN pg_roles m ON m.oid = a.member JOIN pg_roles g ON g.oid = a.roleid "
            "WHERE m.rolname = ANY (%s) AND NOT g.rolname = ANY (%s)", (roles, roles)):
        out.append(f"role {member} was made a member of {group} (not by ils-redact)")
    return out


def plan_uninstall(conn: psycopg.Connection, state: PgState) -> Plan:
    if not state.is_installed:
        raise StateError(f"ils-redact is not installed in database {state.database}")
    plan = Plan(action="uninstall", database=state.database, engine="postgresql",
                server_version=state.server_version)
    steps = plan.steps
    for rec in state.installed_of("policy"):
        table, name = rec.detail["table"], rec.detail["name"]
        if (table, name) in state.policies:
            steps.append(Step("drop-policy", table, sql.SQL("DROP POLICY {} ON {}").format(
                sql.Identifier(name), qname(table)).as_string(None)))
    for rec in state.installed_of("rls"):
        table = rec.detail["table"]
        if rec.prior is not None and not rec.prior.get("enabled"):
            steps.append(Step("disable-rls", table, sql.SQL(
                "ALTER TABLE {} DISABLE ROW LEVEL SECURITY").format(qname(table)).as_string(None),
                f"{table}: row-level security was off before install"))
    grants = {Priv.from_json(i.detail) for i in state.installed_of("grant")}
    held = grants & state.privileges
    for group in _grouped(held):
        steps.append(Step("revoke", group[0].object, grant_sql(group, revoke=True)))
    if state.layer_version is not None and state.layer_version >= 3:
        steps.append(Step("drop-layer", STATS_SCHEMA, "DROP SCHEMA ils_redact_stats CASCADE",
                          "the statistics reports"))
    for rec in state.installed_of("temp-grant"):
        role = rec.detail["role"]
        if (role, "TEMPORARY") in state.database_acl:
            steps.append(Step("revoke-temp", role, temp_sql("REVOKE", state.database, role)))
    public_rec = state.record("temp public")
    if public_rec and (public_rec.prior or {}).get("public_temp") and not state.public_temp:
        steps.append(Step("grant-temp", state.database, temp_sql("GRANT", state.database, None),
                          "TEMP back to PUBLIC, as it was before install"))
    steps.append(Step("drop-layer", LAYER_SCHEMA, "DROP SCHEMA ils_redact CASCADE",
                      "the layer's objects (bookkeeping, scope, requests, audit log)"))
    by_kind: dict[str, list[str]] = defaultdict(list)
    for rec in state.installed_of("login"):
        by_kind["login"].append(rec.detail["name"])
    for name in by_kind["login"]:
        steps.append(Step("drop-role", f"role {name}", sql.SQL("DROP ROLE {}").format(
            sql.Identifier(name)).as_string(None), "staff login created by ils-redact"))
    for name in recorded_roles(state):
        if name in state.roles:
            steps.append(Step("drop-role", f"role {name}", sql.SQL("DROP ROLE {}").format(
                sql.Identifier(name)).as_string(None)))
    return plan
