"""Rules + catalog + actual state -> the statements that make them agree, in an order
that is safe to interrupt.

MariaDB commits every DDL statement on its own (CREATE, GRANT, CREATE ROLE ...), so an
install cannot be one transaction.  The plan is ordered so that stopping after any step
leaves nothing readable that should not be, and so that the next ``install`` finishes
the job:

1. the layer database and its bookkeeping (idempotent);
2. accounts and roles, each *recorded before it is created* (a role that exists and is
   not recorded is someone else's, and is refused);
3. the versioned layer files, statement by statement (idempotent), then the objects
   written from the rules (identity views, patron lookup, export), each followed by a
   record of its fingerprint as the server stored it;
4. privileges: first what the definer account needs, then, last of all, what the
   restricted roles get.  Until that last group nobody new can read anything.

The plan is diff-based (desired vs the grant tables and information_schema): a second
run plans nothing, an edited rules file plans only the change, drift is revoked.
"""

# ruff: noqa: S608 - MariaDB SQL text is built here: identifiers only through sqltext.ident /
# qname / account, values only through sqltext.literal or driver parameters.

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from ... import __version__
from ...catalog import Catalog
from ...engine import Privileges
from ...errors import StateError
from ...plan import InstallContext, InstallPass, Plan, Step, grant_missing, revoke_drift
from ...rules import Rules
from ...sdc.model import Report, ReportSource
from ..layer_settings import settings
from .generated import Generated, generated_objects, koha_table, settings_sql
from .introspect import catalog_sha256, snapshot_sql
from .layer import Statement, bootstrap, layer_files, layer_objects, layer_version_available
from .sqltext import SQL_MODE, account, grantee_sql, ident, is_compound, literal, qname
from .state import OWNER_HOST, Grant, MariaState, fingerprint_sql
from .stats import PROC_PREFIX, stats_grants, stats_objects

ROLE_KINDS = ("admin", "disclosure", "exporter", "stats", "stats_owner")

_ROLE_WHY = {
    "admin": "staff who manage disclosure requests act through this role's procedures",
    "disclosure": "reads identity columns of patrons in an approved request's scope only "
                  "(through the layer's definer views and lookup procedures; nothing on the Koha "
                  "tables)",
    "exporter": "staff who may only call the logged export procedure",
    "stats": "reads suppressed aggregate reports only",
    "stats_owner": "definer of the statistics reports (never granted to anybody): reads "
                   "only the Koha columns they count",
}

#: what the definer account needs on the layer's tables (its routines and views run as it)
_OWNER_TABLES = {
    "scope": ("SELECT", "INSERT", "DELETE"),
    "request": ("SELECT", "INSERT", "UPDATE", "TRIGGER"),  # TRIGGER: its two triggers
    "request_patron": ("SELECT", "INSERT", "TRIGGER"),  # TRIGGER: definer of named_as
    "audit_log": ("SELECT", "INSERT", "TRIGGER"),  # TRIGGER: definer of its two triggers
    "audit_lock": ("SELECT", "UPDATE"),
    "setting": ("SELECT",),
    "trace": ("SELECT", "INSERT", "TRIGGER"),  # TRIGGER: definer of its two triggers
}
#: what caller_account() reads to find the account a session logged in as (no password
#: hash: only the user and host columns), and what grantee_check reads to tell whether a
#: request's grantee holds the exporter or disclosure role
_OWNER_GRANT_TABLE_COLUMNS = (("mysql", "global_priv", ("User", "Host")),
                              ("mysql", "roles_mapping", ("User", "Host", "Role")))
#: routines each role may call; no role may call audit_append (only the layer's
#: routines append, with fixed actions)
_ROLE_ROUTINES = {
    "admin": (("PROCEDURE", "request_create"), ("PROCEDURE", "request_approve"),
              ("PROCEDURE", "request_end"), ("PROCEDURE", "sweep_expired"),
              ("PROCEDURE", "log_refusal"), ("PROCEDURE", "patron_lookup"),
              ("FUNCTION", "clock_utc")),
    # export_check and query_log: the query gate's request check and its three entries
    "disclosure": (("PROCEDURE", "export"), ("PROCEDURE", "export_check"),
                   ("PROCEDURE", "query_log"), ("PROCEDURE", "log_refusal"),
                   ("FUNCTION", "covers_all")),
    "exporter": (("PROCEDURE", "export"), ("PROCEDURE", "log_refusal")),
    "stats": (),  # the reports: stats.stats_grants
    "stats_owner": (),
}
_ADMIN_TABLES = ("request", "request_patron", "audit_log", "setting")
#: the catalog install recorded, for the query gate of staff logins (``rewrite``,
#: ``query``), which see no Koha table in information_schema
CATALOG_TABLE = "catalog_snapshot"
_CATALOG_READERS = ("admin", "disclosure", "exporter")


class MariaPlan(Plan):
    """A plan rendered as a script for the ``mariadb`` client (DELIMITER around routine
    bodies), with the note that its statements commit one by one."""

    engine_label = "MariaDB"
    applied = (". MariaDB commits DDL statement by statement: the steps are ordered so "
               "that an interrupted run leaves nothing readable, and `ils-redact install` "
               "finishes it.")

    def statement_lines(self, step: Step) -> list[str]:
        text = step.sql.rstrip().rstrip(";")
        if is_compound(text):
            return ["DELIMITER $$", text + "$$", "DELIMITER ;"]
        return [text + ";"]


@dataclass
class Names:
    """Every name the layer uses, quoted once."""

    koha: str
    layer: str
    roles: dict[str, str]  # kind -> role name
    owner_user: str
    sql: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sql = {"koha": ident(self.koha), "layer": ident(self.layer),
                    "owner": account(self.owner_user, OWNER_HOST)}
        self.sql.update({k: ident(v) for k, v in self.roles.items()})

    @property
    def owner(self) -> str:
        return f"{self.owner_user}@{OWNER_HOST}"

    def render(self, text: str) -> str:
        from .sqltext import render

        return render(text, self.sql)


def names_for(rules: Rules, koha: str, layer: str) -> Names:
    roles = rules.roles(koha)
    return Names(koha=koha, layer=layer, roles={k: roles[k] for k in ROLE_KINDS},
                 owner_user=roles["owner"])


# -- bookkeeping statements ------------------------------------------------------------

def records_sql(layer: str, rows: list[tuple[str, str, dict | str, dict | None]]) -> str:
    """One INSERT of bookkeeping rows (kind, object, detail, prior); ``detail`` may be an
    SQL expression (str) computed when the step runs.  A row already there is kept."""
    def detail(d: dict | str) -> str:
        return d if isinstance(d, str) else literal(json.dumps(d, sort_keys=True))

    values = ",\n       ".join(
        f"({literal(kind)}, {literal(obj)}, {detail(d)}, "
        f"{literal(json.dumps(p, sort_keys=True)) if p is not None else 'NULL'}, "
        "CURRENT_USER(), UTC_TIMESTAMP(6))"
        for kind, obj, d, p in rows)
    return (f"INSERT INTO {qname(layer, 'installed_object')} "
            f"(kind, object, detail, prior, installed_by, installed_at) VALUES {values}\n"
            "ON DUPLICATE KEY UPDATE id = id")


def unrecord_sql(layer: str, *objs: str) -> str:
    return (f"DELETE FROM {qname(layer, 'installed_object')} WHERE object IN "
            f"({', '.join(literal(o) for o in objs)})")


def fingerprint_record_sql(layer: str, objtype: str, name: str, intended: str) -> str:
    """Record an object's fingerprint as the server stored it, replacing an older one."""
    key = f"{objtype.lower()} {name}"
    detail = (f"JSON_OBJECT('type', {literal(objtype)}, 'name', {literal(name)}, "
              f"'intended', {literal(intended)}, 'fingerprint', "
              f"{fingerprint_sql(objtype, layer, name)})")
    return (f"INSERT INTO {qname(layer, 'installed_object')} "
            "(kind, object, detail, prior, installed_by, installed_at) "
            f"VALUES ('object', {literal(key)}, {detail}, NULL, CURRENT_USER(), "
            "UTC_TIMESTAMP(6))\nON DUPLICATE KEY UPDATE detail = VALUES(detail)")


# -- privileges ------------------------------------------------------------------------

def desired_grants(rules: Rules, catalog: Catalog, n: Names,
                   generated: list[Generated], reports: list[Report]) -> set[Grant]:
    """Exactly what each account and role ils-redact creates holds.  Anything else that
    they hold is revoked."""
    out: set[Grant] = set()
    owner = n.owner
    cols: dict[tuple[str, str], set[str]] = defaultdict(set)
    for t in rules.identity:
        cols[koha_table(rules, catalog, t.relation)] |= set(t.columns)
    p, b = rules.patron, rules.patron.barcode
    cols[koha_table(rules, catalog, p.relation)] |= {p.key, *p.display}
    active: set[str] = {b.active_column} if b.active_column is not None else set()
    cols[koha_table(rules, catalog, b.relation)] |= {b.column, b.patron_key} | active
    for (db, table), names in cols.items():
        for c in names:
            out.add(Grant(owner, "column", db, table, "SELECT", c))
    for table, privs in _OWNER_TABLES.items():
        for priv in privs:
            out.add(Grant(owner, "table", n.layer, table, priv))
    for mdb, mtable, mcols in _OWNER_GRANT_TABLE_COLUMNS:
        for c in mcols:
            out.add(Grant(owner, "column", mdb, mtable, "SELECT", c))
    out.add(Grant(owner, "database", n.layer, "", "EXECUTE"))
    for g in generated:
        if g.granted_to:
            level, priv = g.grant
            out.add(Grant(n.roles[g.granted_to], level, n.layer, g.name, priv))
    out.add(Grant(n.roles["disclosure"], "table", n.layer, "scope_patrons", "SELECT"))
    for kind, routines in _ROLE_ROUTINES.items():
        for rtype, name in routines:
            out.add(Grant(n.roles[kind], rtype.lower(), n.layer, name, "EXECUTE"))
    for table in _ADMIN_TABLES:
        out.add(Grant(n.roles["admin"], "table", n.layer, table, "SELECT"))
    for kind in _CATALOG_READERS:
        out.add(Grant(n.roles[kind], "table", n.layer, CATALOG_TABLE, "SELECT"))
    out |= stats_grants(rules, catalog, n.layer, n.roles, reports)
    return out


_LEVEL_ORDER = {"global": 0, "database": 1, "table": 2, "column": 3, "procedure": 4,
                "function": 5}


def grouped(grants: set[Grant]) -> list[list[Grant]]:
    """Grants on the same object to the same grantee, one statement each: the definer
    account first, roles after it."""
    groups: dict[tuple, list[Grant]] = defaultdict(list)
    for g in grants:
        groups[(g.grantee, g.level, g.db, g.name)].append(g)

    def order(key: tuple) -> tuple:
        grantee, level, db, name = key
        return ("@" not in grantee, _LEVEL_ORDER[level], grantee, db, name)

    return [sorted(groups[k], key=lambda g: (g.privilege, g.column)) for k in
            sorted(groups, key=order)]


def grant_sql(grants: list[Grant], revoke: bool = False) -> str:
    g = grants[0]
    verb, prep = ("REVOKE", "FROM") if revoke else ("GRANT", "TO")
    who = grantee_sql(g.grantee)
    if g.level == "column":
        by_priv: dict[str, list[str]] = defaultdict(list)
        for x in grants:
            by_priv[x.privilege].append(ident(x.column))
        privs = ", ".join(f"{p} ({', '.join(c)})" for p, c in sorted(by_priv.items()))
        return f"{verb} {privs} ON {qname(g.db, g.name)} {prep} {who}"
    privs = ", ".join(sorted({x.privilege for x in grants}))
    if g.level == "global":
        target = "*.*"
    elif g.level == "database":
        target = f"{ident(g.db)}.*"
    elif g.level == "table":
        target = qname(g.db, g.name)
    else:
        target = f"{g.level.upper()} {qname(g.db, g.name)}"
    return f"{verb} {privs} ON {target} {prep} {who}"


# -- install ---------------------------------------------------------------------------

def orphaned_refusal(name: str, state: MariaState) -> StateError:
    """A role or account recorded by the layer database of a Koha database that is gone."""
    koha = state.orphaned_from[name]
    held = sorted({m for m, r, _ in state.mappings if r == name})
    who = (f"; logins still holding it: {', '.join(held)}" if held else "")
    return StateError(
        f"{name} belongs to the ils-redact install for Koha database {koha}, which no longer "
        f"exists (dropped without `ils-redact uninstall`; its layer database "
        f"ils_redact_{koha} remains){who}; it is never taken over, because its members "
        "would get this database's rights",
        hint=f"remove it with `ils-redact uninstall --orphaned {koha}`, or choose another "
             "role_prefix")


def _check_ownership(rules: Rules, state: MariaState, n: Names) -> None:
    """Refuse roles, accounts and a layer database that exist and are not ours."""
    if state.layer_exists and state.layer_tables and not state.has_bookkeeping:
        raise StateError(f"database {state.layer} exists and was not created by ils-redact",
                         hint="drop or rename it; ils-redact keeps its objects there")
    recorded = {i.detail.get("name") for i in state.installed if i.kind in ("role", "account")}
    for role in [*n.roles.values(), n.owner_user]:
        if role in state.orphaned_from and role not in recorded:
            raise orphaned_refusal(role, state)
    for role in n.roles.values():
        if role in state.roles and role not in recorded:
            raise StateError(
                f"role {role} already exists and was not created by ils-redact for database "
                f"{state.database}{_installed_for(state, role)}; roles are server-wide, so a "
                "second Koha database on one server needs a role prefix of its own: put "
                "{database} in role_prefix (role_prefix: ils_redact_{database}_ gives "
                f"ils_redact_{state.database}_admin, ...; the layer database is "
                f"{state.layer} either way)")
        if any(u.rpartition("@")[0] == role for u in state.users):
            raise StateError(f"an account named {role} exists; a role cannot share its name",
                             hint="choose another role_prefix in the rules")
    if n.owner in state.users and n.owner_user not in recorded:
        raise StateError(f"account {n.owner} already exists and was not created by ils-redact "
                         f"for database {state.database}{_installed_for(state, n.owner_user)}; "
                         "a second Koha database on one server needs a role prefix of its "
                         "own: put {database} in role_prefix (role_prefix: "
                         "ils_redact_{database}_)")
    if n.owner_user in state.roles:
        raise StateError(f"a role named {n.owner_user} exists; the definer account needs "
                         "that name", hint="choose another role_prefix in the rules")
    wanted = set(n.roles.values()) | {n.owner_user}
    if recorded - {None} and not recorded <= wanted:
        raise StateError(
            "this database is installed with other role names "
            f"({', '.join(sorted(x for x in recorded if x))}); the rules now name "
            f"{', '.join(sorted(wanted))}",
            hint="uninstall with the rules it was installed with, then install again")


def _installed_for(state: MariaState, name: str) -> str:
    """`` (it belongs to the install for database X)`` when another layer database on
    this server recorded the role or account ``name``."""
    owners = state.other_layers.get(name)
    return f" (it belongs to the install for database {', '.join(owners)})" if owners else ""


def plan_install(rules: Rules, catalog: Catalog, state: MariaState, *,
                 reports: ReportSource) -> MariaPlan:
    """The install plan (``plan.plan_install`` with this engine's passes)."""
    from ...plan import plan_install as install_plan
    from .engine import ENGINE

    plan = install_plan(ENGINE, rules, catalog, state, reports=reports)
    assert isinstance(plan, MariaPlan)
    return plan


def _names(ctx: InstallContext) -> list[Step]:
    """Every name the layer uses; runs an earlier install left unfinished are noted;
    roles, accounts and a layer database that exist and are not ours are refused."""
    state = ctx.state
    n = ctx.facts["names"] = names_for(ctx.rules, state.database, state.layer)
    for run in state.unfinished_runs:
        ctx.plan.notes.append(f"an earlier {run['action']} (run {run['id']}, started "
                              f"{run['started_at']}) stopped after {run['steps_done']} of "
                              f"{run['steps_total']} steps; this plan finishes it")
    _check_ownership(ctx.rules, state, n)
    return []


def _bootstrap(ctx: InstallContext) -> list[Step]:
    """1. the layer database and its bookkeeping."""
    state, n = ctx.state, ctx.facts["names"]
    layer = state.layer
    steps: list[Step] = []
    if not state.is_installed:
        if state.layer_exists and not state.layer_tables:
            ctx.plan.notes.append(f"database {layer} exists and is empty: ils-redact "
                                  "adopts it")
        for s in bootstrap().statements:
            steps.append(Step("bootstrap", f"{layer}", n.render(s.text),
                              "the layer database and its bookkeeping" if s.index == 0 else ""))
        if not state.record(f"database {layer}"):
            steps.append(Step("record", layer, records_sql(layer, [
                ("layer", f"database {layer}", {"database": layer}, None)])))
    return steps


def _accounts(ctx: InstallContext) -> list[Step]:
    """2. the definer account and the roles, recorded before they are created."""
    state, n = ctx.state, ctx.facts["names"]
    layer = state.layer
    steps: list[Step] = []
    if n.owner not in state.users:
        if not state.record(f"account {n.owner}"):
            steps.append(Step("record", n.owner, records_sql(layer, [
                ("account", f"account {n.owner}",
                 {"kind": "owner", "name": n.owner_user, "host": OWNER_HOST}, None)])))
        steps.append(Step("create-account", n.owner,
                          f"CREATE USER {account(n.owner_user, OWNER_HOST)} ACCOUNT LOCK",
                          f"{n.owner}: definer of the layer's views and procedures; locked, "
                          "nobody logs in as it"))
    elif not state.users[n.owner]["locked"]:
        steps.append(Step("alter-account", n.owner,
                          f"ALTER USER {account(n.owner_user, OWNER_HOST)} ACCOUNT LOCK",
                          f"{n.owner} was unlocked by hand: nobody logs in as the definer"))
    for kind in ROLE_KINDS:
        role = n.roles[kind]
        if role in state.roles:
            continue
        if not state.record(f"role {role}"):
            detail = (f"JSON_SET({literal(json.dumps({'kind': kind, 'name': role}))}, "
                      "'$.admin', CURRENT_USER())")
            steps.append(Step("record", f"role {role}", records_sql(layer, [
                ("role", f"role {role}", detail, None)])))
        steps.append(Step("create-role", f"role {role}", f"CREATE ROLE {ident(role)}",
                          f"role {role}: {_ROLE_WHY[kind]}"))
    return steps


def _layer(ctx: InstallContext) -> list[Step]:
    """3. the layer's versioned objects, then the rules-derived ones."""
    rules, catalog, state, n = ctx.rules, ctx.catalog, ctx.state, ctx.facts["names"]
    layer = state.layer
    steps: list[Step] = []
    have = state.layer_version or 0
    touched = False
    for f in layer_files():
        if f.version > have:
            for s in f.statements:
                steps.append(Step("layer", f"layer v{f.version}" + (f" {s.key}" if s.key else ""),
                                  n.render(s.text),
                                  f"layer objects, sql/mariadb/{f.path.name}"
                                  if s.index == 0 else ""))
            touched = True
    if state.is_installed:
        for key, s in sorted(layer_objects().items()):
            if s.version > have:
                continue
            if _drifted(state, key):
                steps.append(Step("repair", key, n.render(s.text),
                                  f"{key} is missing or was changed by hand: created again"))
                touched = True
    if touched:
        steps.extend(_fingerprint_steps(layer, layer_objects()))

    want = settings(rules)
    generated = generated_objects(rules, catalog, layer) + stats_objects(rules, catalog, layer,
                                                                     ctx.reports)
    ctx.facts["generated"] = generated
    if (state.settings or {}) != want:
        steps.append(Step("settings", f"{layer}.setting", settings_sql(layer, want),
                          "limits from the rules that the database itself enforces"))
        if state.is_installed:
            steps.append(Step("settings", f"{layer}.scope", rescope_sql(layer),
                              "which approved requests cover every identity field, by the "
                              "rules' allow-list"))
    sha = catalog_sha256(catalog)
    if state.catalog_sha256 != sha:
        steps.append(Step("catalog", f"{layer}.{CATALOG_TABLE}",
                          snapshot_sql(layer, state.database, sha),
                          "the Koha catalog as it is now, for the query gate of staff logins "
                          "(they cannot read it in information_schema)"))
    for g in generated:
        rec = state.record(g.key)
        current = state.objects.get(g.key)
        if (rec is not None and current is not None
                and rec.detail.get("intended") == g.digest
                and rec.detail.get("fingerprint") == current.fingerprint):
            continue
        steps.append(Step("generated", g.key, n.render(g.create), g.why))
        steps.append(Step("record", g.key, fingerprint_record_sql(layer, g.objtype, g.name,
                                                                  g.digest)))
    return steps


def _roles_and_reports(ctx: InstallContext) -> list[Step]:
    """4. (between the revokes and the grants) role grants the layer's roles must not
    inherit, and statistics reports no longer in the rules (their grants were revoked)."""
    state, n = ctx.state, ctx.facts["names"]
    layer = state.layer
    steps: list[Step] = []
    for member, role, _admin in sorted(state.mappings):
        if member in n.roles.values() and role not in n.roles.values():
            steps.append(Step("revoke-role", f"role {member}",
                              f"REVOKE {ident(role)} FROM {ident(member)}",
                              f"{member} must not inherit role {role}"))
    wanted = {g.key for g in ctx.facts["generated"]}
    for key, obj in sorted(state.objects.items()):
        if obj.objtype == "PROCEDURE" and obj.name.startswith(PROC_PREFIX) and key not in wanted:
            steps.append(Step("drop", key, f"DROP PROCEDURE IF EXISTS {qname(layer, obj.name)}",
                              f"{key}: no longer a statistics report in the rules"))
            if state.record(key):
                steps.append(Step("record", key, unrecord_sql(layer, key)))
    return steps


def _install_log(ctx: InstallContext) -> list[Step]:
    """The install's own row, when it changes anything."""
    changes = len(ctx.plan.changes())
    if not changes:
        return []
    return [Step("record", "install_log", (
        f"INSERT INTO {qname(ctx.state.layer, 'install_log')} (action, tool_version, "
        "layer_version, rules_sha256, changes, by_user, at) VALUES ('install', "
        f"{literal(__version__)}, {layer_version_available()}, {literal(ctx.rules.sha256)}, "
        f"{changes}, CURRENT_USER(), UTC_TIMESTAMP(6))"))]


#: the install plan's sections, in order: the privileges the restricted roles get are
#: the last group, so until it runs nobody new can read anything
INSTALL_PASSES: tuple[InstallPass, ...] = (
    _names, _bootstrap, _accounts, _layer, revoke_drift, _roles_and_reports, grant_missing,
    _install_log)


class MariaPrivileges(Privileges):
    """Grants (``Grant``) to the layer's roles and its definer account."""

    def desired(self, ctx: InstallContext) -> set[Any]:
        return desired_grants(ctx.rules, ctx.catalog, ctx.facts["names"],
                              ctx.facts["generated"], ctx.reports)

    def actual(self, ctx: InstallContext) -> set[Any]:
        n = ctx.facts["names"]
        ours = set(n.roles.values()) | {n.owner}
        return {g for g in ctx.state.grants if g.grantee in ours}

    def groups(self, privileges: set[Any]) -> list[list[Any]]:
        return grouped(privileges)

    def grant_sql(self, group: list[Any], revoke: bool = False) -> str:
        return grant_sql(group, revoke=revoke)

    def target(self, privilege: Any) -> str:
        return str(privilege.key)

    def holder(self, privilege: Any) -> str:
        return str(privilege.grantee)

    def why(self, ctx: InstallContext, privilege: Any) -> str:
        return _grant_why(privilege, ctx.facts["names"])

    def records_sql(self, ctx: InstallContext,
                    rows: list[tuple[str, str, Any, Any]]) -> str:
        return records_sql(ctx.state.layer, rows)

    def unrecord_sql(self, ctx: InstallContext, keys: list[str]) -> str:
        return unrecord_sql(ctx.state.layer, *keys)


PRIVILEGES = MariaPrivileges()


def rescope_sql(layer: str) -> str:
    """Scope rows whose request covers every identity field (the views serve only
    those), computed again after the allow-list changed."""
    return (f"UPDATE {qname(layer, 'scope')} s JOIN {qname(layer, 'request')} r "
            "ON r.id = s.request_id "
            f"SET s.all_fields = {qname(layer, 'covers_all')}(r.columns)")


def _drifted(state: MariaState, key: str) -> bool:
    rec = state.record(key)
    current = state.objects.get(key)
    return current is None or rec is None or rec.detail.get("fingerprint") != current.fingerprint


def _fingerprint_steps(layer: str, objects: dict[str, Statement]) -> list[Step]:
    return [Step("record", key, fingerprint_record_sql(layer, s.objtype or "", s.name or "",
                                                       s.digest))
            for key, s in sorted(objects.items())]


def _grant_why(g: Grant, n: Names) -> str:
    if g.grantee == n.roles["stats_owner"]:
        if g.level == "column":
            return f"the statistics reports count {g.db}.{g.name} (column grant, never table)"
        if g.level == "table":
            return f"the statistics reports' work table {g.db}.{g.name}"
        return f"the statistics reports run {g.db}.{g.name} as {g.grantee}"
    if g.grantee == n.owner:
        if g.level == "column":
            return (f"the definer reads {g.db}.{g.name} identity columns for the views "
                    "(column grant, never table)")
        return f"the definer's procedures use {g.db}.{g.name or '*'}"
    if g.level == "table":
        return f"{g.grantee} may read {g.db}.{g.name}"
    return f"{g.grantee} may call {g.db}.{g.name}"


def preamble(database: str, lock_timeout: float) -> list[str]:
    from .connection import lock_name

    return [f"SET SESSION sql_mode = {literal(SQL_MODE)};",
            f"SELECT GET_LOCK({literal(lock_name(database))}, {lock_timeout:g});"
            "  -- one install or uninstall at a time"]

