"""Undo exactly what install recorded, and refuse when that would not be exact.

After uninstall, ``pg_dump --schema-only`` of the database is what it was before install
and the roles are gone.  A role cannot be dropped while it owns or holds something.
Owning is refused (dropping someone's object would change the database behind the
sysadmin's back) with a list of what is in the way.  Holding is not: any login may GRANT
on its own objects, in ``pg_temp`` or any schema it may CREATE in, to the layer's roles,
and a planted grant must not keep the roles alive.  What the roles hold goes with them:
the grants install recorded are revoked one by one, as before, and then ``DROP OWNED BY``
the roles (this database only: PostgreSQL scopes it to the current database and shared
objects) revokes whatever else they hold, whatever its object class (functions, types,
large objects, policies naming them), without naming any of it in SQL.  By then the roles
own nothing here (the layer's schemas are gone and anything else they own refuses
uninstall), so it drops nothing.  The plan's notes list what it revokes that install
never granted.  Grants in another database cannot be revoked from this one: those refuse.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from ...errors import StateError
from ...plan import Plan, Step
from ...text import printable
from .hardening import restore_steps
from .planner import OWNER_PREDEFINED, _grouped, grant_sql, qname
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
    """What would keep the roles from being dropped, exactly: objects they own outside the
    layer's schemas, and anything they own or hold in another database."""
    roles = _roles_to_drop(state)
    out: list[str] = []
    for role, deptype, db, here, otype, schema, ident in conn.execute(_SHDEPEND, (roles,)):
        if not here:
            out.append(printable(f"role {role} {_DEPTYPE.get(deptype, 'depends on')} "
                                 f"objects in database {db}"))
            continue
        if deptype != "o":
            continue  # held, not owned: revoked by DROP OWNED BY (see the module)
        if schema in (LAYER_SCHEMA, STATS_SCHEMA) or (
                otype == "schema" and ident in (LAYER_SCHEMA, STATS_SCHEMA)):
            continue  # dropped with the layer
        out.append(printable(f"role {role} {_DEPTYPE.get(deptype, 'depends on')} "
                             f"{otype} {ident}"))
    return out


def _roles_to_drop(state: PgState) -> list[str]:
    return recorded_roles(state) + [i.detail["name"] for i in state.installed_of("login")]


def planted_notes(conn: psycopg.Connection, state: PgState) -> list[str]:
    """What the roles hold here that install did not grant (DROP OWNED BY revokes it)."""
    roles = _roles_to_drop(state)
    recorded = {i.object for i in state.installed}
    recorded_policies = {(i.detail["table"], i.detail["name"])
                         for i in state.installed_of("policy")}
    out = []
    for role, deptype, _db, here, otype, schema, ident in conn.execute(_SHDEPEND, (roles,)):
        if not here or deptype == "o" or schema in (LAYER_SCHEMA, STATS_SCHEMA):
            continue
        if deptype == "r" and otype == "policy":
            name, _, table = ident.partition(" on ")
            if (table, name) in recorded_policies:
                continue
        if deptype == "a" and any(p.role == role and p.key in recorded and (
                _identity(p) == (otype, ident)) for p in state.privileges):
            continue
        out.append(printable(f"role {role} {_DEPTYPE.get(deptype, 'depends on')} {otype} "
                             f"{ident}, which ils-redact did not grant: DROP OWNED BY "
                             "revokes it"))
    return out


def _identity(p: Priv) -> tuple[str, str]:
    """(type, identity) as pg_identify_object names the object of a recorded grant."""
    if p.objtype == "column":
        return ("table column", f"{p.object}.{p.column}")
    return (p.objtype, p.object)


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
    held = [p for p in state.privileges if p in grants]  # the catalog's, named by OID
    for group in _grouped(set(held)):
        steps.append(Step("revoke", group[0].object, grant_sql(group, revoke=True)))
    for rec in state.installed_of("membership"):
        pre, member = str(rec.detail.get("group")), str(rec.detail.get("login"))
        if pre in OWNER_PREDEFINED and (member, pre) in state.memberships:
            steps.append(Step("revoke-role", f"role {member}", sql.SQL(
                "REVOKE {} FROM {}").format(sql.Identifier(pre), sql.Identifier(member))
                .as_string(None), f"{member} was made a member of {pre} by install"))
    if state.layer_version is not None and state.layer_version >= 3:
        steps.append(Step("drop-layer", STATS_SCHEMA, "DROP SCHEMA ils_redact_stats CASCADE",
                          "the statistics reports"))
    steps.extend(restore_steps(state))
    steps.append(Step("drop-layer", LAYER_SCHEMA, "DROP SCHEMA ils_redact CASCADE",
                      "the layer's objects (bookkeeping, scope, requests, audit log)"))
    logins = [rec.detail["name"] for rec in state.installed_of("login")]
    drop = logins + [name for name in recorded_roles(state) if name in state.roles]
    existing = [name for name in drop if name in state.existing_roles or not state.live]
    if existing:
        steps.append(Step("drop-owned", "roles", sql.SQL("DROP OWNED BY {}").format(
            sql.SQL(", ").join(map(sql.Identifier, existing))).as_string(None),
            "whatever else the roles hold in this database (they own nothing here now)"))
    for name in logins:
        steps.append(Step("drop-role", f"role {name}", sql.SQL("DROP ROLE {}").format(
            sql.Identifier(name)).as_string(None), "staff login created by ils-redact"))
    for name in recorded_roles(state):
        if name in state.roles:
            steps.append(Step("drop-role", f"role {name}", sql.SQL("DROP ROLE {}").format(
                sql.Identifier(name)).as_string(None)))
    plan.notes.extend(planted_notes(conn, state))
    return plan
