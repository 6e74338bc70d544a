"""Rules + catalog + actual state -> the list of statements that makes them agree.

Desired state is computed from the rules alone (allow-list: the disclosure role gets the
identity columns and nothing else); the plan is the difference to what the catalog holds,
so a second install plans nothing and an edited rules file plans only the change.  Every
identifier passes through ``psycopg.sql.Identifier``; the rendered strings are what runs.

Catalog text is attacker-controlled (threat model row 16): an object the catalog shows is
named in SQL only through parts read by OID and quoted one by one (``Priv.ident``,
``introspect``), never by pasting a signature or a name the catalog printed; objects in
sessions' temporary schemas are not diffed at all (reported in the plan's notes); catalog
text that reaches a comment line goes through ``printable``.  Each step is exactly one
statement (the layer files are split at plan time), and the executor runs each with the
extended protocol, which refuses a string that holds two.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pglast
from psycopg import sql

from ... import __version__
from ...catalog import Catalog
from ...engine import Privileges
from ...errors import StateError
from ...plan import InstallContext, InstallPass, Plan, Step, grant_missing, revoke_drift
from ...resources import sql_dir
from ...rules import Rules
from ...sdc.model import ReportSource
from ...text import printable
from ..layer_settings import settings
from .generated import MARK, Generated, generated_functions, settings_sql
from .hardening import counter_steps, temp_steps
from .state import STATS_SCHEMA, Installed, LayerObject, PgState, Priv, make_marker

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
        idents: dict[str, sql.Composable] = {k: sql.Identifier(v) for k, v in roles.items()}
        idents["ils_owner"] = sql.Identifier(ils_owner)
        # the same names as string literals, for function bodies that ask about a role
        # (pg_has_role): ``{exporter_name}``
        idents |= {f"{k}_name": sql.Literal(v) for k, v in roles.items()}
        idents["ils_owner_name"] = sql.Literal(ils_owner)
        return _s(sql.SQL(text).format(**idents))

    def statements(self, roles: dict[str, str], ils_owner: str
                   ) -> list[tuple[str | None, str]]:
        """(the comment lines above it, the statement) for each statement of the file,
        split by PostgreSQL's own parser (pglast): one statement per step, so the
        executor can run each alone (threat model row 16)."""
        return split_statements(self.render(roles, ils_owner), self.path.name)


def split_statements(text: str, name: str) -> list[tuple[str | None, str]]:
    """A script -> (comment, statement) pairs; the comment is the text between the
    previous statement's line and this statement (comments, blank lines), None when
    there is none."""
    try:
        slices = pglast.split(text, with_parser=True, only_slices=True)
    except pglast.parser.ParseError as exc:
        raise StateError(f"sql/postgresql/{name}: {exc}") from None
    out: list[tuple[str | None, str]] = []
    pos = 0
    for sl in slices:
        lead = text[pos:sl.start]
        if out:  # after the previous statement: its semicolon and the end of its line
            lead = lead.lstrip(" \t").removeprefix(";").lstrip(" \t").removeprefix("\n")
        # what stands between: None when nothing does (the next line), else the lines
        out.append((lead.removesuffix("\n") if lead else None, text[sl.start:sl.stop]))
        pos = sl.stop
    rest = text[pos:].strip().lstrip(";").strip()
    if any(line.strip() and not line.strip().startswith("--") for line in rest.splitlines()):
        raise StateError(f"sql/postgresql/{name}: text after the last statement")
    return out


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
    """The object of a privilege as SQL: read from the catalog by OID (``Priv.ident``),
    or, for a privilege the rules give, the rules' own (validated) names."""
    if p.ident is not None:
        return p.ident
    if p.objtype in ("database", "schema"):
        return sql.Identifier(p.object)
    if p.objtype == "function":
        raise StateError(f"no safe name for function {printable(p.object)}")
    return qname(p.object)


def grant_sql(privs: list[Priv], revoke: bool = False) -> str:
    """One GRANT/REVOKE for privileges on the same object, privilege and role."""
    p = privs[0]
    verb = "REVOKE" if revoke else "GRANT"
    prep = "FROM" if revoke else "TO"
    if p.objtype == "column":
        cols = sql.SQL(", ").join(sql.Identifier(x.column or "") for x in privs)
        return _s(sql.SQL("{} {} ({}) ON {} {} {}").format(
            sql.SQL(verb), sql.SQL(p.privilege), cols, _object_ident(p), sql.SQL(prep),
            sql.Identifier(p.role)))
    # ROUTINE: a function, a procedure or an aggregate, whichever the catalog holds
    target = "ROUTINE" if p.objtype == "function" else _PRIV_TARGET[p.objtype]
    return _s(sql.SQL("{} {} ON {} {} {} {}").format(
        sql.SQL(verb), sql.SQL(p.privilege), sql.SQL(target),
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
    "export_owner": "owns the logged export function; a member of the disclosure role (its "
                    "column grants and row policy bind the export), granted to nobody",
}

#: role kinds that own layer objects: NOLOGIN, granted to nobody (threat model row 21)
#: the export records itself through this function (layer file 0005)
EXPORT_RECORD = "ils_redact.export_record(bigint, text, text[], text, integer, integer)"
OWNER_KINDS = ("owner", "stats_owner", "export_owner")
#: role kinds that inherit what they are granted: the export's owner must have the
#: disclosure role's privileges inside the function; the layer's owner must have those of
#: the predefined roles below (the others are NOINHERIT)
INHERIT_KINDS = ("owner", "export_owner")
#: predefined roles the layer's owner (the SECURITY DEFINER functions' owner) is a member
#: of, each a recorded membership: ``pg_signal_backend`` so that a revoke ends the
#: grantee's sessions (a REPEATABLE READ snapshot outlives the scope rows it read) and the
#: audit log's writers end a transaction that has held the audit chain's lock far longer
#: than any layer call takes (its holder would otherwise freeze every approval, export and
#: revoke); ``pg_read_all_stats`` so that they see when that transaction began and who
#: holds the lock (``pg_stat_activity`` hides both from other roles; ``pg_locks`` is
#: taken from PUBLIC by ``hardening.revoke_public_counters``).  Neither signals or reads
#: a superuser's session beyond what pg_stat_activity shows.
OWNER_PREDEFINED = ("pg_signal_backend", "pg_read_all_stats")
_PREDEFINED_WHY = {
    "pg_signal_backend": "ends sessions the layer must end: a revoked request's grantee's "
                         "(an open snapshot still reads the scope), and a stale holder of "
                         "the audit log's lock",
    "pg_read_all_stats": "sees when a holder of the audit log's lock began its transaction "
                         "and who it is (pg_stat_activity, pg_locks)",
}

#: what ``plan`` and ``install`` warn about, and verify reports (H-EXPLAIN-ANALYZE), when
#: the rules say ``disclosure.access: role``: the channel no grant closes
ROLE_MODE_EXPLAIN = (
    "disclosure.access: role lets the disclosure role's logins type SQL against identity "
    "tables, and EXPLAIN ANALYZE (which needs only SELECT) runs index scans before the "
    "row policy: with enable_seqscan and enable_indexscan off, the 'actual rows' of a "
    "Bitmap Index Scan and 'Rows Removed by Filter' count hidden rows exactly per index "
    "condition, and a BitmapOr (WHERE card = 5 OR family_name = 'Okafor') tells whether "
    "two indexed values belong to one hidden row: a login with an empty scope enumerates "
    "every value of every indexed identity column (barcodes, card and patron ids, and "
    "names where a plain index exists) and links them, with no audit entry. No grant "
    "closes this; disclosure.access: function (the default) does.")


def plan_install(rules: Rules, catalog: Catalog, state: PgState, *,
                 reports: ReportSource) -> Plan:
    """The install plan (``plan.plan_install`` with this engine's passes)."""
    from ...plan import plan_install as install_plan
    from .engine import ENGINE

    return install_plan(ENGINE, rules, catalog, state, reports=reports)


def _names(ctx: InstallContext) -> list[Step]:
    """The role names the rules give, refused when PostgreSQL would cut them or when the
    database is installed under other names."""
    rules, state = ctx.rules, ctx.state
    roles = ctx.facts["roles"] = rules.roles(state.database)
    ctx.facts["fresh"] = not state.is_installed
    ctx.facts["ils_owner"] = ils_owner_of(rules, ctx.catalog)
    if rules.disclosure.access == "role":
        ctx.plan.notes.append(f"warning: {ROLE_MODE_EXPLAIN}")
    too_long = sorted(n for n in roles.values() if len(n.encode()) > 63)
    if too_long:  # PostgreSQL would cut them to 63 bytes, and two kinds could collide
        raise StateError(f"role name {too_long[0]} is longer than PostgreSQL's 63 bytes",
                         hint=f"shorten role_prefix ({rules.where('role_prefix')})")

    recorded_roles = {i.object for i in state.installed_of("role")}
    wanted_roles = {f"role {name}" for name in roles.values()}
    # an upgrade may add role kinds (stats_owner came with layer v3); it never renames
    if state.is_installed and recorded_roles and not recorded_roles <= wanted_roles:
        raise StateError(
            "this database is installed with other role names "
            f"({', '.join(sorted(r[5:] for r in recorded_roles))}); the rules now name "
            f"{', '.join(sorted(roles.values()))}",
            hint="uninstall with the rules it was installed with, then install again")
    return []


def _roles(ctx: InstallContext) -> list[Step]:
    """1. roles: created here, or ours already (marker names this database)."""
    state, roles, fresh = ctx.state, ctx.facts["roles"], ctx.facts["fresh"]
    steps: list[Step] = []
    role_records: list[tuple[str, str, dict | None, dict | None]] = []
    ctx.facts["role_records"] = role_records
    for kind, name in roles.items():
        info = state.roles.get(name)
        inherit = "INHERIT" if kind in INHERIT_KINDS else "NOINHERIT"
        if info is None:
            steps.append(Step("create-role", f"role {name}", _s(sql.SQL(
                "CREATE ROLE {} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                "NOBYPASSRLS {}").format(sql.Identifier(name), sql.SQL(inherit))),
                f"role {name}: {_ROLE_WHY[kind]}"))
            steps.append(Step("comment-role", f"role {name}", _s(sql.SQL(
                "COMMENT ON ROLE {} IS {}").format(sql.Identifier(name), sql.Literal(
                    make_marker(state.database, kind))))))
            role_records.append(("role", f"role {name}", {"kind": kind, "name": name}, None))
            if kind == "export_owner" and _sig(EXPORT_RECORD) in state.layer_functions:
                # the layer file that grants export_record to this role ran before the
                # role was lost (dropped by hand): the export records through it
                steps.append(Step("function-acl", EXPORT_RECORD, _s(sql.SQL(
                    "GRANT EXECUTE ON FUNCTION {} TO {}").format(
                        state.layer_function_idents[_sig(EXPORT_RECORD)],
                        sql.Identifier(name))),
                    f"{name} records the export it owns (export_record)"))
            continue
        marker = info.marker
        if marker is None:
            raise StateError(f"role {name} already exists and was not created by ils-redact",
                             hint="choose another role_prefix in the rules")
        if marker.get("database") != state.database and (
                marker.get("database") not in state.databases):
            raise orphaned_role(name, str(marker.get("database")), state)
        if marker.get("database") != state.database:
            raise StateError(
                f"role {name} belongs to the ils-redact install in database "
                f"{marker.get('database')}; roles are cluster-wide",
                hint="give this database its own role_prefix (e.g. ils_redact_{database}_)")
        if fresh:
            held = _holders(name, state)
            raise StateError(
                f"role {name} exists but the ils_redact schema does not: database "
                f"{state.database} was dropped and created again without `ils-redact "
                "uninstall`, or an uninstall was interrupted"
                + (f"; logins still holding its roles: {', '.join(held)}" if held else ""),
                hint=f"remove the roles with `ils-redact uninstall --orphaned "
                     f"{state.database}`, or choose another role_prefix")
        if (info.superuser or info.bypassrls or info.login or info.createrole
                or info.createdb or info.replication
                or info.inherit != (kind in INHERIT_KINDS)):
            steps.append(Step("alter-role", f"role {name}", _s(sql.SQL(
                "ALTER ROLE {} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                "NOBYPASSRLS {}").format(sql.Identifier(name), sql.SQL(inherit))),
                f"role {name} was given attributes by hand: a layer role has none"
                if (info.superuser or info.bypassrls or info.login or info.createrole
                    or info.createdb or info.replication)
                else f"role {name}: {inherit} (the layer's owner inherits the predefined "
                     "roles it is a member of)"))
    return steps


def _memberships(ctx: InstallContext) -> list[Step]:
    return (_predefined_steps(ctx.facts["roles"]["owner"], ctx.state,
                              ctx.facts["role_records"], ctx.facts["fresh"])
            + _membership_steps(ctx.rules, ctx.facts["roles"], ctx.state))


def _predefined_steps(owner: str, state: PgState, role_records: list,
                      fresh: bool) -> list[Step]:
    """The layer owner's predefined roles (``OWNER_PREDEFINED``), each a recorded
    membership (uninstall revokes it); recorded with the roles when the layer's schema
    does not exist yet."""
    steps: list[Step] = []
    for group in OWNER_PREDEFINED:
        if state.live and group not in state.existing_roles:
            continue  # a server without it (none of those supported)
        key = f"membership {group} {owner}"
        if (owner, group) not in state.memberships:
            steps.append(Step("grant-role", f"role {owner}", _s(sql.SQL(
                "GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(owner))),
                f"{owner} {_PREDEFINED_WHY[group]}"))
        if not state.record(key):
            detail = {"group": group, "login": owner}
            if fresh:
                role_records.append(("membership", key, detail, None))
            else:
                steps.append(Step("record", key, record_sql("membership", key, detail)))
    return steps


def _layer(ctx: InstallContext) -> list[Step]:
    """2. the layer's own objects, versioned: one statement per step; then the records
    of what a fresh install created (the schema, the roles)."""
    roles, ils_owner = ctx.facts["roles"], ctx.facts["ils_owner"]
    steps: list[Step] = []
    have = ctx.state.layer_version or 0
    for f in layer_files():
        if f.version > have:
            for i, (comment, stmt) in enumerate(f.statements(roles, ils_owner)):
                steps.append(Step("layer", f"ils_redact layer v{f.version}", stmt,
                                  f"layer objects, sql/postgresql/{f.path.name}" if i == 0
                                  else "", comment=comment))
    if ctx.facts["fresh"]:
        steps.append(Step("record", "ils_redact", record_sql(
            "layer", "schema ils_redact", {"schema": "ils_redact"})))
    if ctx.facts["role_records"]:
        steps.append(Step("record", "roles", records_sql(ctx.facts["role_records"])))
    return steps


def _reports(ctx: InstallContext) -> list[Step]:
    """3. privileges on ILS objects: what the statistics reports read is given to their
    owner (the diff itself is ``plan.revoke_drift`` and ``plan.grant_missing``)."""
    ctx.facts["reports"] = ctx.reports
    return []


def _temporary(ctx: InstallContext) -> list[Step]:
    ctx.plan.notes.extend(temporary_notes(ctx.state, set(ctx.facts["roles"].values())))
    return []


def _generated(ctx: InstallContext) -> list[Step]:
    """4. settings the database enforces, and the functions written from the rules."""
    rules, state, roles = ctx.rules, ctx.state, ctx.facts["roles"]
    steps: list[Step] = []
    want = settings(rules)
    if (state.settings or {}) != want:
        steps.append(Step("settings", "ils_redact.setting", settings_sql(want),
                          "limits from the rules that the database itself enforces"))
    generated = ctx.facts["generated"] = generated_functions(rules, ctx.catalog)
    for g in generated:
        steps.extend(_generated_steps(g, state, roles))
    steps.extend(_stats_steps(rules, ctx.facts["reports"], state, roles))
    return steps


def _rls(ctx: InstallContext) -> list[Step]:
    """5. row-level security on every table where the disclosure role holds a grant."""
    return _rls_steps(ctx.rules, ctx.catalog, ctx.state, ctx.facts["roles"])


def _owners(ctx: InstallContext) -> list[Step]:
    """6. every layer object owned by a layer role that no login can reach."""
    generated = ctx.facts["generated"] + _stats_generated(ctx.rules, ctx.facts["reports"])
    return _owner_steps(ctx.state, ctx.facts["roles"], generated)


def _hardening(ctx: InstallContext) -> list[Step]:
    """7. hardening: TEMP and the row counters taken from PUBLIC, given back to the ILS."""
    layer = set(ctx.facts["roles"].values())
    return (temp_steps(ctx.rules, ctx.state, layer)
            + counter_steps(ctx.rules, ctx.state, ctx.facts["ils_owner"]))


def _install_log(ctx: InstallContext) -> list[Step]:
    """The install's own row, when it changes anything."""
    steps = ctx.plan.steps
    if not steps:
        return []
    return [Step("record", "install_log", _s(sql.SQL(
        "INSERT INTO ils_redact.install_log (action, tool_version, layer_version, "
        "rules_sha256, changes) VALUES ('install', {}, {}, {}, {})").format(
        sql.Literal(__version__), sql.Literal(layer_version_available()),
        sql.Literal(ctx.rules.sha256),
        sql.Literal(sum(1 for s in steps if s.kind != "record")))))]


#: the install plan's sections, in order
INSTALL_PASSES: tuple[InstallPass, ...] = (
    _names, _roles, _memberships, _layer, _reports, revoke_drift, grant_missing,
    _temporary, _generated, _rls, _owners, _hardening, _install_log)


class PgPrivileges(Privileges):
    """Privileges on ILS objects (``Priv``): the rules' column grants, the lookup's and
    the statistics owner's reads, CONNECT where PUBLIC lacks it."""

    def desired(self, ctx: InstallContext) -> set[Any]:
        stats_columns: dict[str, set[str]] = {}
        for r in ctx.facts["reports"]:
            for rel, cols in r.columns_read().items():
                stats_columns.setdefault(ctx.catalog.qualify(rel), set()).update(cols)
        return desired_privileges(ctx.rules, ctx.facts["roles"], ctx.state, stats_columns)

    def actual(self, ctx: InstallContext) -> set[Any]:
        ours = set(ctx.facts["roles"].values())
        return {p for p in ctx.state.privileges if p.role in ours}

    def groups(self, privileges: set[Any]) -> list[list[Any]]:
        return _grouped(privileges)

    def grant_sql(self, group: list[Any], revoke: bool = False) -> str:
        return grant_sql(group, revoke=revoke)

    def target(self, privilege: Any) -> str:
        return str(privilege.object)

    def holder(self, privilege: Any) -> str:
        return str(privilege.role)

    def why(self, ctx: InstallContext, privilege: Any) -> str:
        return _grant_why(privilege, ctx.rules)

    def records_sql(self, ctx: InstallContext,
                    rows: list[tuple[str, str, Any, Any]]) -> str:
        return records_sql(rows)

    def unrecord_sql(self, ctx: InstallContext, keys: list[str]) -> str:
        return unrecord_sql(*keys)


PRIVILEGES = PgPrivileges()


def temporary_notes(state: PgState, roles: set[str]) -> list[str]:
    """What the layer's roles hold in sessions' temporary schemas: planted by another
    login, gone with its session; install does not name such objects, so it reports them."""
    out = []
    for p in sorted(state.temp_privileges, key=lambda p: p.key):
        if p.role in roles:
            col = f" column {p.column}" if p.column else ""
            out.append(printable(
                f"{p.role} holds {p.privilege} on {p.objtype} {p.object}{col}, in a session's "
                "temporary schema: not acted on (ils-redact never names objects there); it "
                "goes when that session ends, and uninstall revokes it"))
    return out


def _membership_steps(rules: Rules, roles: dict[str, str], state: PgState) -> list[Step]:
    """Memberships of the layer's roles: the export's owner is a member of the disclosure
    role and nobody is a member of an owner role (threat model row 21); under
    ``disclosure.access: function`` no login acts in the disclosure role, and the staff
    in it are moved to the exporter role."""
    steps: list[Step] = []
    layer = set(roles.values())
    dis, exporter, export_owner = roles["disclosure"], roles["exporter"], roles["export_owner"]
    if (export_owner, dis) not in state.memberships:
        steps.append(Step("grant-role", f"role {export_owner}", _s(sql.SQL(
            "GRANT {} TO {}").format(sql.Identifier(dis), sql.Identifier(export_owner))),
            f"{export_owner} reads, inside the export, as {dis}: its column grants and "
            "row policy bind the export"))
    for kind in OWNER_KINDS:
        owner = roles[kind]
        for member in sorted(state.members_of(owner)):
            steps.append(Step("revoke-role", f"role {owner}", _s(sql.SQL(
                "REVOKE {} FROM {}").format(sql.Identifier(owner), sql.Identifier(member))),
                printable(f"{owner} owns layer objects and is granted to nobody: a member "
                          f"may alter, drop or grant them ({member} was made one)")))
    if rules.disclosure.access == "function":
        exporters = state.members_of(exporter)
        for member in sorted(state.members_of(dis) - {export_owner}):
            steps.append(Step("revoke-role", f"role {dis}", _s(sql.SQL(
                "REVOKE {} FROM {}").format(sql.Identifier(dis), sql.Identifier(member))),
                printable(f"disclosure.access is function: {member} leaves {dis} (direct "
                          "SQL on identity columns)")))
            key = f"membership {dis} {member}"
            if state.record(key):
                steps.append(Step("record", key, unrecord_sql(key)))
            if member in layer:
                continue
            if member not in exporters:
                steps.append(Step("grant-role", f"role {exporter}", _s(sql.SQL(
                    "GRANT {} TO {}").format(sql.Identifier(exporter),
                                             sql.Identifier(member))),
                    printable(f"{member} discloses through the logged export instead")))
            key = f"membership {exporter} {member}"
            if not state.record(key):
                steps.append(Step("record", key, record_sql(
                    "membership", key, {"group": exporter, "login": member})))
    return steps


def _stats_generated(rules: Rules, reports: list) -> list[Generated]:
    from .stats import catalog_function, report_function

    st = rules.statistics
    return [report_function(r, st.k, st.time_zone) for r in reports] + [
        catalog_function(reports, st.k, st.time_zone)]


_ALTER = {"schema": "SCHEMA", "table": "TABLE", "view": "VIEW",
          "materialized view": "MATERIALIZED VIEW", "sequence": "SEQUENCE",
          "foreign table": "FOREIGN TABLE", "function": "ROUTINE", "procedure": "ROUTINE",
          "aggregate": "ROUTINE", "type": "TYPE", "domain": "DOMAIN"}


def owner_sql(obj: LayerObject, owner: str) -> str:
    return _s(sql.SQL("ALTER {} {} OWNER TO {}").format(
        sql.SQL(_ALTER[obj.kind]), obj.ident, sql.Identifier(owner)))


def expected_owner(obj: LayerObject, roles: dict[str, str], generated: dict[str, str]) -> str:
    """The layer role that must own ``obj``: a generated function's own owner, the
    statistics owner in its schema, the layer's owner everywhere else."""
    sig = obj.name.replace(" ", "")
    if obj.kind == "function" and sig in generated:
        return roles[generated[sig]]
    return roles["stats_owner" if obj.schema == STATS_SCHEMA else "owner"]


def _owner_steps(state: PgState, roles: dict[str, str], generated: list[Generated]
                 ) -> list[Step]:
    """Layer objects owned by a role that is not one of the owner roles (a staff role,
    whose members could ALTER, DROP or GRANT them; or any other role): given to the
    layer role that must own them.  An object an owner role owns is left as it is (each
    owner role has what it needs)."""
    if not state.is_installed:
        return []
    owners = {roles[k] for k in OWNER_KINDS}
    gen = {_sig(g.signature): g.owner_kind for g in generated}
    steps = []
    for obj in state.layer_objects:
        want = expected_owner(obj, roles, gen)
        if obj.owner in owners and not (obj.kind == "function"
                                        and obj.name.replace(" ", "") in gen):
            continue
        if obj.owner == want:
            continue
        steps.append(Step("alter-owner", obj.name, owner_sql(obj, want), printable(
            f"{obj.kind} {obj.name} is owned by {obj.owner}; layer objects belong to a "
            "role granted to nobody")))
    return steps


def _sig(signature: str) -> str:
    """``ils_redact.export(bigint, text)`` with its spaces removed (how the catalog's
    ``regprocedure`` and the generated signatures are compared)."""
    return signature.replace(" ", "")


def _generated_steps(g: Generated, state: PgState, roles: dict[str, str]) -> list[Step]:
    key = _sig(g.signature)
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
    wanted = _stats_generated(rules, reports)
    steps: list[Step] = []
    keep = {_sig(g.signature) for g in wanted}
    for sig, (_owner, comment) in sorted(state.layer_functions.items()):
        if (sig.startswith(f"{STATS_SCHEMA}.") and comment and comment.startswith(MARK)
                and _sig(sig) not in keep):
            steps.append(Step("drop-function", sig, _s(sql.SQL("DROP FUNCTION {}").format(
                state.layer_function_idents[sig])),
                printable(f"{sig}: no longer a report in the rules")))
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


def _holders(role: str, state: PgState) -> list[str]:
    """Members of the roles marked for the same database as ``role``."""
    marker = state.roles[role].marker or {}
    same = [n for n, i in state.roles.items() if (i.marker or {}).get("database")
            == marker.get("database")]
    return sorted({m for n in same for m in state.role_members.get(n, ()) if m not in same})


def orphaned_role(role: str, database: str, state: PgState) -> StateError:
    from .orphaned import refusal

    return refusal(role, database, _holders(role, state))
