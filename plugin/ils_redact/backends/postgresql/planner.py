"""Rules + catalog + actual state -> the list of statements that makes them agree.

Desired state is computed from the rules alone (allow-list: the disclosure role gets the
identity columns and nothing else); the plan is the difference to what the catalog holds,
so a second install plans nothing and an edited rules file plans only the change.  Every
identifier passes through ``psycopg.sql.Identifier``; the rendered strings are what runs.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from psycopg import sql

from ... import __version__
from ...catalog import Catalog
from ...errors import StateError
from ...plan import Plan, Step
from ...resources import sql_dir
from ...rules import Rules, check_against_catalog
from ..layer_settings import settings
from .generated import MARK, Generated, generated_functions, settings_sql
from .state import STATS_SCHEMA, Installed, PgState, Priv, make_marker

PASSTHROUGH = "ils_redact_passthrough"
SCOPE_POLICY = "ils_redact_scope"
POLICY_MARK = "ils-redact:"


def _s(q: sql.Composable) -> str:
    return q.as_string(None)


def qname(name: str) -> sql.Identifier:
    """``schema.table`` -> a quoted two-part identifier."""
    return sql.Identifier(*name.split(".", 1))


# -- the layer's versioned SQL ------------------------------------------------------------

@dataclass(frozen=True)
class LayerFile:
    version: int
    path: Path

    def render(self, roles: dict[str, str], ils_owner: str) -> str:
        text = self.path.read_text(encoding="utf-8")
        idents = {k: sql.Identifier(v) for k, v in roles.items()}
        idents["ils_owner"] = sql.Identifier(ils_owner)
        return _s(sql.SQL(text).format(**idents))  # type: ignore[arg-type]


def layer_files() -> list[LayerFile]:
    files = []
    for p in sorted(sql_dir("postgresql").glob("[0-9][0-9][0-9][0-9]_*.sql")):
        files.append(LayerFile(int(p.name[:4]), p))
    return files


def layer_version_available() -> int:
    return max(f.version for f in layer_files())


# -- desired state -------------------------------------------------------------------------

@dataclass(frozen=True)
class PolicySpec:
    table: str
    name: str
    create: str  # CREATE POLICY ...
    digest: str

    def comment(self, why: str) -> str:
        return _s(sql.SQL("COMMENT ON POLICY {} ON {} IS {}").format(
            sql.Identifier(self.name), qname(self.table),
            sql.Literal(f"{POLICY_MARK}{self.digest}: {why}")))


def _policy(table: str, name: str, body: sql.Composable) -> PolicySpec:
    create = _s(sql.SQL("CREATE POLICY {} ON {} ").format(sql.Identifier(name), qname(table))
                + body)
    return PolicySpec(table, name, create, hashlib.sha256(create.encode()).hexdigest()[:16])


def scope_policy(table: str, patron_key: str, disclosure: str) -> PolicySpec:
    return _policy(table, SCOPE_POLICY, sql.SQL(
        "AS RESTRICTIVE FOR SELECT TO {} "
        "USING ({} = ANY ((SELECT ils_redact.scope_patron_ids())::bigint[]))"
    ).format(sql.Identifier(disclosure), sql.Identifier(patron_key)))


def passthrough_policy(table: str) -> PolicySpec:
    return _policy(table, PASSTHROUGH, sql.SQL(
        "AS PERMISSIVE FOR ALL TO PUBLIC USING (true) WITH CHECK (true)"))


def desired_privileges(rules: Rules, roles: dict[str, str], state: PgState,
                       stats_columns: dict[str, set[str]] | None = None) -> set[Priv]:
    """Exactly what each role holds on ILS objects.  Anything else is revoked.

    ``stats_columns``: relation -> columns the statistics reports read; the stats_owner
    role (which owns the reports, never a person) holds SELECT on exactly those.
    """
    dis = roles["disclosure"]
    out: set[Priv] = set()
    stats_owner = roles.get("stats_owner")
    for rel, cols in (stats_columns or {}).items():
        if stats_owner is None:
            break
        out.add(Priv(stats_owner, "schema", rel.split(".", 1)[0], "USAGE"))
        for col in cols:
            out.add(Priv(stats_owner, "column", rel, "SELECT", col))
    for t in rules.identity:
        schema = t.relation.split(".", 1)[0]
        out.add(Priv(dis, "schema", schema, "USAGE"))
        for col in t.columns:
            out.add(Priv(dis, "column", t.relation, "SELECT", col))
    # the owner runs the patron lookup (ids and barcodes -> who they are) for admins
    owner = roles["owner"]
    p, b = rules.patron, rules.patron.barcode
    active: set[str] = {b.active_column} if b.active_column is not None else set()
    for rel, cols in ((p.relation, {p.key, *p.display}),
                      (b.relation, {b.column, b.patron_key} | active)):
        out.add(Priv(owner, "schema", rel.split(".", 1)[0], "USAGE"))
        for col in cols:
            out.add(Priv(owner, "column", rel, "SELECT", col))
    if not state.public_connect:
        for kind in ("admin", "disclosure", "exporter", "stats"):
            out.add(Priv(roles[kind], "database", state.database, "CONNECT"))
    return out


# -- statements ----------------------------------------------------------------------------

def record_sql(kind: str, obj: str, detail: dict | None = None, prior: dict | None = None) -> str:
    return records_sql([(kind, obj, detail, prior)])


def records_sql(rows: list[tuple[str, str, dict | None, dict | None]]) -> str:
    """One INSERT of bookkeeping rows (kind, object, detail, prior)."""
    values = sql.SQL(",\n       ").join(
        sql.SQL("({}, {}, {}::jsonb, {}::jsonb)").format(
            sql.Literal(kind), sql.Literal(obj),
            sql.Literal(json.dumps(detail or {}, sort_keys=True)),
            sql.Literal(json.dumps(prior, sort_keys=True) if prior is not None else None))
        for kind, obj, detail, prior in rows)
    return _s(sql.SQL("INSERT INTO ils_redact.installed_object (kind, object, detail, prior) "
                      "VALUES ") + values)


def unrecord_sql(*objs: str) -> str:
    return _s(sql.SQL("DELETE FROM ils_redact.installed_object WHERE object IN ({})").format(
        sql.SQL(", ").join(map(sql.Literal, objs))))


_PRIV_TARGET = {
    "database": "DATABASE", "schema": "SCHEMA", "table": "TABLE", "sequence": "SEQUENCE",
    "function": "FUNCTION",
}


def _object_ident(p: Priv) -> sql.Composable:
    if p.objtype in ("database", "schema"):
        return sql.Identifier(p.object)
    if p.objtype == "function":
        # signature as pg_get_function_identity_arguments printed it: name(args)
        m = re.match(r"^([^.]+)\.([^(]+)\((.*)\)$", p.object)
        if not m:
            raise StateError(f"cannot parse function signature {p.object}")
        return sql.SQL("{}.{}({})").format(sql.Identifier(m[1]), sql.Identifier(m[2]),
                                           sql.SQL(m[3]))
    return qname(p.object)


def grant_sql(privs: list[Priv], revoke: bool = False) -> str:
    """One GRANT/REVOKE for privileges on the same object, privilege and role."""
    p = privs[0]
    verb = "REVOKE" if revoke else "GRANT"
    prep = "FROM" if revoke else "TO"
    if p.objtype == "column":
        cols = sql.SQL(", ").join(sql.Identifier(x.column or "") for x in privs)
        return _s(sql.SQL("{} {} ({}) ON {} {} {}").format(
            sql.SQL(verb), sql.SQL(p.privilege), cols, qname(p.object), sql.SQL(prep),
            sql.Identifier(p.role)))
    return _s(sql.SQL("{} {} ON {} {} {} {}").format(
        sql.SQL(verb), sql.SQL(p.privilege), sql.SQL(_PRIV_TARGET[p.objtype]),
        _object_ident(p), sql.SQL(prep), sql.Identifier(p.role)))


def _grouped(privs: set[Priv]) -> list[list[Priv]]:
    groups: dict[tuple, list[Priv]] = defaultdict(list)
    for p in privs:
        groups[(p.role, p.objtype, p.object, p.privilege)].append(p)
    order = {"database": 0, "schema": 1, "table": 2, "column": 3, "sequence": 4, "function": 5}
    return [sorted(g, key=lambda x: x.column or "")
            for _, g in sorted(groups.items(), key=lambda kv: (order[kv[0][1]], kv[0]))]


# -- install -------------------------------------------------------------------------------

def ils_owner_of(rules: Rules, catalog: Catalog) -> str:
    rel = catalog.relation(rules.patron.relation)
    if not rel.owner:
        raise StateError(f"cannot tell who owns {rel.qualified}")
    return rel.owner


_ROLE_WHY = {
    "owner": "owns the ils_redact objects; never granted to a person",
    "admin": "staff who manage disclosure requests act through this role's functions",
    "disclosure": "reads identity columns of patrons in an approved request's scope only",
    "exporter": "staff who may only call the logged export function",
    "stats": "reads suppressed aggregate reports only",
    "stats_owner": "owns the statistics reports and reads only the columns they count; "
                   "never granted to a person",
}


def plan_install(rules: Rules, catalog: Catalog, state: PgState) -> Plan:
    notices = check_against_catalog(rules, catalog)
    roles = rules.roles(state.database)
    plan = Plan(action="install", database=state.database, engine="postgresql",
                server_version=state.server_version or catalog.server_version,
                rules_file=str(rules.path or ""), rules_sha256=rules.sha256)
    if notices:
        plan.notes.append(f"{len(notices)} relations or columns are not classified by the "
                          "rules (closed to restricted roles); `ils-redact verify` lists them")
    steps = plan.steps
    fresh = not state.is_installed
    ils_owner = ils_owner_of(rules, catalog)

    recorded_roles = {i.object for i in state.installed_of("role")}
    wanted_roles = {f"role {name}" for name in roles.values()}
    # an upgrade may add role kinds (stats_owner came with layer v3); it never renames
    if state.is_installed and recorded_roles and not recorded_roles <= wanted_roles:
        raise StateError(
            "this database is installed with other role names "
            f"({', '.join(sorted(r[5:] for r in recorded_roles))}); the rules now name "
            f"{', '.join(sorted(roles.values()))}",
            hint="uninstall with the rules it was installed with, then install again")

    # 1. roles: created here, or ours already (marker names this database)
    role_records: list[tuple[str, str, dict | None, dict | None]] = []
    for kind, name in roles.items():
        info = state.roles.get(name)
        if info is None:
            steps.append(Step("create-role", f"role {name}", _s(sql.SQL(
                "CREATE ROLE {} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                "NOBYPASSRLS NOINHERIT").format(sql.Identifier(name))),
                f"role {name}: {_ROLE_WHY[kind]}"))
            steps.append(Step("comment-role", f"role {name}", _s(sql.SQL(
                "COMMENT ON ROLE {} IS {}").format(sql.Identifier(name), sql.Literal(
                    make_marker(state.database, kind))))))
            role_records.append(("role", f"role {name}", {"kind": kind, "name": name}, None))
            continue
        marker = info.marker
        if marker is None:
            raise StateError(f"role {name} already exists and was not created by ils-redact",
                             hint="choose another role_prefix in the rules")
        if marker.get("database") != state.database:
            raise StateError(
                f"role {name} belongs to the ils-redact install in database "
                f"{marker.get('database')}; roles are cluster-wide",
                hint="give this database its own role_prefix (e.g. ils_redact_{database}_)")
        if fresh:
            raise StateError(f"role {name} exists but the ils_redact schema does not",
                             hint="a previous uninstall was interrupted; drop the role or "
                                  "choose another role_prefix")
        if (info.superuser or info.bypassrls or info.login or info.createrole
                or info.createdb or info.replication):
            steps.append(Step("alter-role", f"role {name}", _s(sql.SQL(
                "ALTER ROLE {} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                "NOBYPASSRLS").format(sql.Identifier(name))),
                f"role {name} was given attributes by hand: a restricted role has none"))

    # 2. the layer's own objects, versioned
    have = state.layer_version or 0
    for f in layer_files():
        if f.version > have:
            steps.append(Step("layer", f"ils_redact layer v{f.version}",
                              f.render(roles, ils_owner),
                              f"layer objects, sql/postgresql/{f.path.name}"))
    if fresh:
        steps.append(Step("record", "ils_redact", record_sql(
            "layer", "schema ils_redact", {"schema": "ils_redact"})))
    if role_records:
        steps.append(Step("record", "roles", records_sql(role_records)))

    # 3. privileges on ILS objects: desired minus actual, and actual minus desired
    from ...stats import all_reports  # the stats package imports this backend

    reports = all_reports(rules, catalog)
    stats_columns: dict[str, set[str]] = {}
    for r in reports:
        for rel, cols in r.columns_read().items():
            stats_columns.setdefault(catalog.qualify(rel), set()).update(cols)
    desired = desired_privileges(rules, roles, state, stats_columns)
    ours = set(roles.values())
    actual = {p for p in state.privileges if p.role in ours}
    for group in _grouped(actual - desired):
        steps.append(Step("revoke", group[0].object, grant_sql(group, revoke=True),
                          f"{group[0].role} must not hold this (not in the rules)"))
        gone = [p.key for p in group if state.record(p.key)]
        if gone:
            steps.append(Step("record", group[0].object, unrecord_sql(*gone)))
    for group in _grouped(desired - actual):
        steps.append(Step("grant", group[0].object, grant_sql(group),
                          _grant_why(group[0], rules)))
        steps.append(Step("record", group[0].object, records_sql(
            [("grant", p.key, p.to_json(), None) for p in group])))

    # 4. settings the database enforces, and the functions written from the rules
    want = settings(rules)
    if (state.settings or {}) != want:
        steps.append(Step("settings", "ils_redact.setting", settings_sql(want),
                          "limits from the rules that the database itself enforces"))
    for g in generated_functions(rules, catalog):
        steps.extend(_generated_steps(g, state, roles))
    steps.extend(_stats_steps(rules, reports, state, roles))

    # 5. row-level security on every table where the disclosure role holds a grant
    steps.extend(_rls_steps(rules, catalog, state, roles))

    # 6. optional hardening: TEMP taken from PUBLIC, given to the roles that need it
    steps.extend(_temp_steps(rules, state))

    if steps:
        steps.append(Step("record", "install_log", _s(sql.SQL(
            "INSERT INTO ils_redact.install_log (action, tool_version, layer_version, "
            "rules_sha256, changes) VALUES ('install', {}, {}, {}, {})").format(
            sql.Literal(__version__), sql.Literal(layer_version_available()),
            sql.Literal(rules.sha256),
            sql.Literal(sum(1 for s in steps if s.kind != "record"))))))
    return plan


def temp_sql(verb: str, database: str, role: str | None) -> str:
    """GRANT/REVOKE TEMPORARY ON DATABASE ... TO/FROM a role, or PUBLIC when role is None."""
    who = sql.SQL("PUBLIC") if role is None else sql.Identifier(role)
    return _s(sql.SQL("{} TEMPORARY ON DATABASE {} {} {}").format(
        sql.SQL(verb), sql.Identifier(database), sql.SQL("TO" if verb == "GRANT" else "FROM"),
        who))


def _temp_steps(rules: Rules, state: PgState) -> list[Step]:
    """``hardening.revoke_public_temp``: PUBLIC loses TEMP, ``temp_roles`` get it.  The
    prior state is recorded, and turning the setting off (or uninstall) restores it."""
    h = rules.hardening
    db = state.database
    steps: list[Step] = []
    public_rec = state.record("temp public")
    granted = {i.detail["role"]: i for i in state.installed_of("temp-grant")}
    wanted = set(h.temp_roles) if h.revoke_public_temp else set()
    missing = sorted(wanted - state.existing_roles)
    if missing:
        raise StateError(f"hardening.temp_roles names {', '.join(missing)}, which does not "
                         "exist", hint=rules.where("hardening", "temp_roles"))
    if h.revoke_public_temp:
        if state.public_temp:
            steps.append(Step("revoke-temp", db, temp_sql("REVOKE", db, None),
                              "restricted roles may not create temporary tables or functions"))
            if public_rec is None:
                steps.append(Step("record", db, record_sql("temp", "temp public", {},
                                                           {"public_temp": True})))
    elif public_rec is not None:
        if (public_rec.prior or {}).get("public_temp") and not state.public_temp:
            steps.append(Step("grant-temp", db, temp_sql("GRANT", db, None),
                              "TEMP back to PUBLIC, as it was before ils-redact"))
        steps.append(Step("record", db, unrecord_sql("temp public")))
    for role in sorted(wanted):
        if (role, "TEMPORARY") in state.database_acl:
            continue
        steps.append(Step("grant-temp", role, temp_sql("GRANT", db, role),
                          f"{role} keeps TEMP (hardening.temp_roles)"))
        if role not in granted:
            steps.append(Step("record", role, record_sql("temp-grant", f"temp grant {role}",
                                                         {"role": role})))
    for role in sorted(set(granted) - wanted):
        if (role, "TEMPORARY") in state.database_acl:
            steps.append(Step("revoke-temp", role, temp_sql("REVOKE", db, role),
                              f"{role} no longer in hardening.temp_roles"))
        steps.append(Step("record", role, unrecord_sql(f"temp grant {role}")))
    return steps


def _generated_steps(g: Generated, state: PgState, roles: dict[str, str]) -> list[Step]:
    key = g.signature.replace(" ", "")
    have = state.layer_functions.get(key)
    if have is not None and have[1] and g.digest in have[1]:
        return []
    steps = [Step("function", g.signature, g.create, g.why)]
    if have is None:  # new: set owner and EXECUTE once; CREATE OR REPLACE keeps both
        owner = sql.Identifier(roles[g.owner_kind])
        steps.append(Step("function-owner", g.signature, f"ALTER FUNCTION {g.signature} OWNER TO "
                          + _s(owner)))
        steps.append(Step("function-acl", g.signature,
                          f"REVOKE ALL ON FUNCTION {g.signature} FROM PUBLIC"))
        for kind in g.execute_kinds:
            steps.append(Step("function-acl", g.signature,
                              f"GRANT EXECUTE ON FUNCTION {g.signature} TO "
                              + _s(sql.Identifier(roles[kind]))))
    steps.append(Step("function-comment", g.signature, g.comment_sql()))
    return steps


def _stats_steps(rules: Rules, reports: list, state: PgState,
                 roles: dict[str, str]) -> list[Step]:
    """The report functions (rules-derived, diffed by digest like the other generated
    functions), and DROP for reports that are no longer in the rules."""
    from ...stats.pgsql import catalog_function, report_function

    st = rules.statistics
    wanted = [report_function(r, st.k, st.time_zone) for r in reports]
    wanted.append(catalog_function(reports, st.k, st.time_zone))
    steps: list[Step] = []
    keep = {g.signature.replace(" ", "") for g in wanted}
    for sig, (_owner, comment) in sorted(state.layer_functions.items()):
        if (sig.startswith(f"{STATS_SCHEMA}.") and comment and comment.startswith(MARK)
                and sig.replace(" ", "") not in keep):
            steps.append(Step("drop-function", sig, f"DROP FUNCTION {sig}",
                              f"{sig}: no longer a report in the rules"))
    for g in wanted:
        steps.extend(_generated_steps(g, state, roles))
    return steps


def _grant_why(p: Priv, rules: Rules) -> str:
    if p.objtype == "column":
        return f"{p.role} reads the identity columns of {p.object} (column grant, never table)"
    if p.objtype == "schema":
        return f"{p.role} may look up names in schema {p.object}"
    if p.objtype == "database":
        return f"{p.role} may connect (PUBLIC may not on this database)"
    return f"{p.role}: {p.privilege} on {p.object}"


def _rls_steps(rules: Rules, catalog: Catalog, state: PgState,
               roles: dict[str, str]) -> list[Step]:
    steps: list[Step] = []
    identity = {t.relation: t for t in rules.identity}
    recorded = {i.object[4:]: i for i in state.installed_of("rls")}

    for table in sorted(identity):
        t = identity[table]
        rel = catalog.relation(table)
        rec = recorded.get(table)
        prior = rec.prior if rec and rec.prior is not None else {
            "enabled": rel.rls_enabled, "forced": rel.rls_forced}
        wanted = {SCOPE_POLICY: scope_policy(table, t.patron_key, roles["disclosure"])}
        if not prior["enabled"]:
            # RLS was off: every other role must keep seeing every row.  Where RLS was
            # already on, the table's own policies decide; adding a permissive `true`
            # policy there would open rows they close.
            wanted[PASSTHROUGH] = passthrough_policy(table)
        if rec is None:
            steps.append(Step("record", f"rls {table}", record_sql(
                "rls", f"rls {table}", {"table": table}, prior)))
        if not rel.rls_enabled:
            steps.append(Step("enable-rls", table, _s(sql.SQL(
                "ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(qname(table))),
                f"{table}: row-level security (ENABLE, not FORCE: the owner's pg_dump must "
                "keep working)"))
        for name, spec in wanted.items():
            have = state.policies.get((table, name))
            if have is not None and have.comment and spec.digest in have.comment:
                continue
            if have is not None:
                steps.append(Step("drop-policy", table, _s(sql.SQL(
                    "DROP POLICY {} ON {}").format(sql.Identifier(name), qname(table))),
                    f"policy {name} on {table} differs from the rules"))
            why = ("every other role reads and writes as before" if name == PASSTHROUGH
                   else f"{roles['disclosure']} sees only patrons in an active scope")
            steps.append(Step("create-policy", table, spec.create, f"{table}: {why}"))
            steps.append(Step("comment-policy", table, spec.comment(why)))
            if not state.record(f"policy {table} {name}"):
                steps.append(Step("record", f"policy {table} {name}", record_sql(
                    "policy", f"policy {table} {name}", {"table": table, "name": name})))

    # tables that are no longer identity tables: restore them as they were
    for table, rec in sorted(recorded.items()):
        if table in identity:
            continue
        steps.extend(_restore_table(table, rec, state))
    return steps


def _restore_table(table: str, rec: Installed, state: PgState) -> list[Step]:
    steps: list[Step] = []
    for name in (SCOPE_POLICY, PASSTHROUGH):
        if (table, name) in state.policies:
            steps.append(Step("drop-policy", table, _s(sql.SQL("DROP POLICY {} ON {}").format(
                sql.Identifier(name), qname(table))), f"{table} is no longer an identity table"))
        if state.record(f"policy {table} {name}"):
            steps.append(Step("record", table, unrecord_sql(f"policy {table} {name}")))
    if rec.prior is not None and not rec.prior.get("enabled"):
        steps.append(Step("disable-rls", table, _s(sql.SQL(
            "ALTER TABLE {} DISABLE ROW LEVEL SECURITY").format(qname(table))),
            f"{table}: row-level security was off before ils-redact"))
    steps.append(Step("record", table, unrecord_sql(rec.object)))
    return steps
