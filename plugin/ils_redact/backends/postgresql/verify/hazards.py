"""Hazards: configurations that void the rules even when every grant looks right.

One check per class (``hazard/<class>``), each finding naming the object, why in one line,
and the fix:

* ``owner-rights-view``: a view (or materialized view) over protected data, running with
  its owner's rights, that PUBLIC or a restricted role may read (fact 2);
* ``security-definer``: a SECURITY DEFINER function a restricted role may execute, other
  than the layer's vetted ones (fact 8), saying which protected relations its text names;
* ``inheritance-parent``: a readable parent of a protected table returns its rows (fact 10);
* ``temp``: TEMP on the database for a restricted role (fact 3); a warning when it comes
  only from PostgreSQL's default grant to PUBLIC, a violation when granted on purpose;
* ``public-grant``: grants to PUBLIC on protected relations or columns, and default
  privileges that would open tables an upgrade adds (fact 14);
* ``unclassified``: relations, and columns of identity tables, the rules do not classify;
* ``backup-role``: a login that reads tables now under row-level security without owning
  them or BYPASSRLS: its ``pg_dump`` now fails (fact 15).  REPLICATION roles are not
  backup roles: physical streaming reads no table, and logical replication's initial copy
  passes the passthrough policy (its change stream is not filtered by row policies at
  all), so BYPASSRLS is never the advice for them;
* ``replication``: publications that carry protected tables (``FOR TABLE``, ``FOR TABLES
  IN SCHEMA``, ``FOR ALL TABLES``) to subscribers outside the layer, logical slots whose
  plugin decodes every table, and logins of restricted roles that hold REPLICATION
  (``pg_basebackup`` copies every file of the cluster);
* ``reporter``: Evergreen's reporter configured to connect as a superuser (``--ils-config``);
* ``explain``: ``disclosure.access: role`` lets the disclosure role's logins run EXPLAIN
  ANALYZE over identity tables, which counts and links rows the row policy hides (a
  warning: the mode's documented limit, see ``ROLE_MODE_EXPLAIN``).

"Protected" is every relation the rules classify identity, secret, confidential or
personal, an ``other`` relation with a secret column, and anything not classified at all.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable

from psycopg import sql

from ....catalog import Catalog
from ....checks.findings import VIOLATION, WARNING, Check, Finding
from ....checks.ilsconfig import reporter_logins
from ....errors import IlsRedactError
from ....rules import Rules
from ....rules.semantic import unclassified
from ..counters import counters_for
from ..generated import generated_functions
from ..hardening import _by_kind, counter_sql
from ..introspect import arg_types, function_ident
from ..planner import (
    OWNER_KINDS,
    ROLE_MODE_EXPLAIN,
    _stats_generated,
    expected_owner,
    owner_sql,
)
from .context import VerifyContext
from .graph import chain
from .sqltext import ident, roles, stmt
from .sqltext import role as role_sql

CLASSES = ("owner-rights-view", "security-definer", "inheritance-parent", "temp",
           "row-counters", "layer-owner", "public-grant", "unclassified", "backup-role",
           "replication", "reporter", "explain")

_TRUE = {"true", "on", "1", "yes", "t"}


def _examples(items: list[str], n: int = 4) -> str:
    items = sorted(items)
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def run(ctx: VerifyContext) -> list[Check]:
    return [owner_rights_views(ctx), security_definer(ctx), inheritance_parents(ctx),
            temp(ctx), row_counters(ctx), layer_owner(ctx), public_grants(ctx),
            unclassified_check(ctx), backup_roles(ctx), replication(ctx), reporter(ctx),
            explain(ctx)]


def _readers(ctx: VerifyContext) -> dict[str, dict[str, str]]:
    """relation -> {who, as said ("role (through a -> b)") -> the role to revoke from} for
    every relation any restricted role (or role it reaches) may read a column of."""
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for _, role in ctx.restricted:
        for other, path in ctx.reach[role].items():
            for h in ctx.held.get(other, []):
                if h.objtype in ("table", "column") and h.privilege == "SELECT":
                    who = "PUBLIC" if h.source == "PUBLIC" else (
                        role if other == role else f"{role} (through {chain(path)})")
                    out[h.object].setdefault(who, "PUBLIC" if who == "PUBLIC" else role)
    return out


def owner_rights_views(ctx: VerifyContext) -> Check:
    check = Check("hazard/owner-rights-view", "no view running with its owner's rights over "
                  "protected data is readable by PUBLIC or a restricted role")
    readers = _readers(ctx)
    n = 0
    for rel in sorted(ctx.catalog.views(), key=lambda r: r.qualified):
        if rel.qualified in ctx.stats.relations:
            continue
        n += 1
        invoker = any(o.split("=", 1)[0] == "security_invoker"
                      and o.split("=", 1)[-1].lower() in _TRUE for o in rel.options)
        if rel.kind == "view" and invoker:
            continue
        reads = sorted(r for r in ctx.catalog.view_reads(rel.qualified) if ctx.protected(r))
        who = readers.get(rel.qualified)
        if not reads or not who:
            continue
        what = "materialized view" if rel.kind == "matview" else "view"
        fix = stmt("REVOKE SELECT ON {v} FROM {r};", v=ident(rel.qualified),
                   r=roles(who.values()))
        if rel.kind == "view":
            set_invoker = stmt("ALTER VIEW {v} SET (security_invoker = true);",
                               v=ident(rel.qualified), note=" (PostgreSQL 15+)")
            fix = f"{fix} or {set_invoker}"
        check.findings.append(Finding(
            "H-OWNER-RIGHTS-VIEW", rel.qualified,
            f"{what} {rel.qualified} runs with the rights of its owner {rel.owner} and reads "
            f"{_examples(reads)}: {', '.join(sorted(who))} may select from it, so row "
            "policies and column grants on those tables do not apply",
            fix))
    check.detail = f"{n} views"
    return check


def _mentions(ctx: VerifyContext) -> re.Pattern[str]:
    names = sorted((r for r in ctx.catalog.relations if ctx.protected(r)
                    and r.split(".", 1)[0] not in ctx.layer_schemas), key=len, reverse=True)
    alts = []
    for name in names:
        schema, rel = name.split(".", 1)
        alts.append(rf'"?{re.escape(schema)}"?\s*\.\s*"?{re.escape(rel)}"?')
    body = "|".join(alts) or "(?!)"
    return re.compile(rf"(?<![\w$])(?:{body})(?![\w$])", re.IGNORECASE)


def security_definer(ctx: VerifyContext) -> Check:
    check = Check("hazard/security-definer", "no restricted role may execute a SECURITY "
                  "DEFINER function beyond the layer's vetted ones")
    rows = ctx.conn.execute(sql.SQL(
        "SELECT n.nspname || '.' || p.proname || '(' || oidvectortypes(p.proargtypes) || ')', "
        "pg_get_userbyid(p.proowner), "
        "CASE WHEN l.lanname IN ('sql', 'plpgsql') THEN pg_get_functiondef(p.oid) "
        "ELSE p.prosrc END, n.nspname::text, p.proname::text, {} "
        "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "JOIN pg_language l ON l.oid = p.prolang "
        "WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND p.prokind <> 'a'").format(arg_types("p"))).fetchall()
    pattern = _mentions(ctx) if rows else None
    for sig, owner, text, schema, name, args in sorted(rows, key=lambda r: r[:3]):
        if sig in ctx.stats.functions:
            continue
        who: list[tuple[str, str]] = []  # (as said, the role to revoke from)
        for kind, role in ctx.restricted:
            exp = ctx.expect[kind]
            for other, path in ctx.reach[role].items():
                for h in ctx.held.get(other, []):
                    if h.objtype == "function" and h.object == sig and not (
                            other == role and exp.may_execute(sig)):
                        who.append(("PUBLIC", "PUBLIC") if h.source == "PUBLIC" else
                                   (role, role) if other == role else
                                   (f"{role} (through {chain(path)})", role))
        if not who:
            continue
        reads = sorted({m.group(0).replace('"', "").replace(" ", "").lower()
                        for m in pattern.finditer(text or "")}) if pattern else []
        reads_txt = (f"its text reads {_examples(reads)}" if reads else
                     "its text names no protected relation (dynamic SQL is not followed)")
        check.findings.append(Finding(
            "H-SECURITY-DEFINER", sig,
            f"SECURITY DEFINER {sig} runs as {owner} and "
            f"{', '.join(sorted({w for w, _ in who}))} may execute it; {reads_txt}",
            stmt("REVOKE EXECUTE ON ROUTINE {f} FROM {r};",
                 f=function_ident(schema, name, args),
                 r=roles(["PUBLIC"] + [r for _, r in who]))))
    check.detail = f"{len(rows)} SECURITY DEFINER functions"
    return check


def inheritance_parents(ctx: VerifyContext) -> Check:
    check = Check("hazard/inheritance-parent", "no restricted role reads an inheritance "
                  "parent of a protected table")
    readers = _readers(ctx)
    parents = 0
    for rel in sorted(ctx.catalog.relations.values(), key=lambda r: r.qualified):
        kids = ctx.catalog.descendants(rel.qualified)
        if not kids:
            continue
        parents += 1
        hidden = sorted(k for k in kids if ctx.protected(k))
        who = readers.get(rel.qualified)
        if hidden and who:
            check.findings.append(Finding(
                "H-INHERITANCE-PARENT", rel.qualified,
                f"reading {rel.qualified} returns the rows of {_examples(hidden)}, and "
                f"{', '.join(sorted(who))} may read it",
                stmt("REVOKE SELECT ON {t} FROM {r};", t=ident(rel.qualified),
                     r=roles(who.values()),
                     note=" and classify it confidential")))
    check.detail = f"{parents} inheritance parents"
    return check


def temp(ctx: VerifyContext) -> Check:
    check = Check("hazard/temp", "no restricted role may create temporary tables or "
                  "functions in this database")
    db = ctx.state.database
    for kind, role in ctx.restricted:
        for other, path in sorted(ctx.reach[role].items()):
            for h in ctx.held.get(other, []):
                if h.objtype != "database" or h.privilege != "TEMPORARY":
                    continue
                via = "" if other == role else f" through {chain(path)}"
                if h.source == "PUBLIC":
                    check.findings.append(Finding(
                        "H-TEMP", f"database {db}",
                        f"{role}{via} may create temporary objects through PostgreSQL's "
                        "default grant of TEMP to PUBLIC: pg_temp functions can shadow "
                        "others' and leak what unsafe views filter (row policies still hold)",
                        stmt("REVOKE TEMPORARY ON DATABASE {d} FROM PUBLIC;",
                             d=sql.Identifier(db),
                             note=" then GRANT TEMPORARY to the ILS roles that use it"),
                        severity=WARNING, role=kind))
                else:
                    check.findings.append(Finding(
                        "H-TEMP", f"database {db}",
                        f"{role}{via} holds TEMP on database {db} "
                        f"({'as its owner' if h.source == 'owner' else 'granted to it'}): "
                        "pg_temp functions and tables for a restricted role",
                        stmt("REVOKE TEMPORARY ON DATABASE {d} FROM {r};",
                             d=sql.Identifier(db), r=sql.Identifier(other)),
                        role=kind))
    for login in sorted(set(ctx.all_logins) - ctx.plain_logins):
        roles_of = [r for _, r in ctx.restricted if login in ctx.logins[r]]
        for h in ctx.held.get(login, []):
            if h.objtype == "database" and h.privilege == "TEMPORARY" and h.source != "PUBLIC":
                check.findings.append(Finding(
                    "H-TEMP", f"login {login}",
                    f"{login}, which acts as {', '.join(roles_of)}, holds TEMP on database "
                    f"{db} ({'as its owner' if h.source == 'owner' else 'granted'}): it "
                    "creates pg_temp functions and tables while it reads as a restricted role",
                    stmt("REVOKE TEMPORARY ON DATABASE {d} FROM {r};",
                         d=sql.Identifier(db), r=role_sql(login),
                         note=" (or revoke it from the role it inherits it from)"),
                    role=None))
    check.detail = f"database {db}"
    return check


def row_counters(ctx: VerifyContext) -> Check:
    """The row and block counters count rows fetched before a row policy drops them
    (threat model row 20): no restricted role, and no login in one, may read them."""
    check = Check("hazard/row-counters", "no restricted role (nor a login acting as one) "
                  "may read the row counters, which count rows a row policy hides")
    counters = {c.key: c for c in counters_for(ctx.conn.info.server_version)
                if c.key in ctx.state.counters}
    who = sorted({r for _, name in ctx.restricted for r in ctx.reach[name]}
                 | (set(ctx.all_logins) - ctx.plain_logins))
    rows = ctx.conn.execute(
        "SELECT r.rolname::text, k.key FROM pg_roles r, unnest(%s::text[], %s::text[]) "
        "k(key, kind) WHERE r.rolname = ANY (%s) AND CASE k.kind "
        "WHEN 'view' THEN has_table_privilege(r.oid, to_regclass(k.key), 'SELECT') "
        "ELSE has_function_privilege(r.oid, to_regprocedure(k.key), 'EXECUTE') END",
        ([c.key for c in counters.values()], [c.kind for c in counters.values()],
         who)).fetchall()
    readable: dict[str, list[str]] = defaultdict(list)
    for role, key in rows:
        readable[role].append(key)
    kind_of = {name: kind for kind, name in ctx.restricted}
    for role, keys in sorted(readable.items()):
        public = [k for k in keys if ctx.state.counters[k].public]
        shown = [k.removeprefix("pg_catalog.") for k in keys]
        if public:
            fix = ("set hardening.revoke_public_counters: true and run `ils-redact install` "
                   "(it grants them back to the ILS owner and pg_read_all_stats), or: "
                   + " ".join(counter_sql("REVOKE", g, [None]) + ";"
                              for g in _by_kind([counters[k] for k in public])))
        else:
            fix = " ".join(counter_sql("REVOKE", g, [role]) + ";"
                           for g in _by_kind([counters[k] for k in keys]))
        check.findings.append(Finding(
            "H-ROW-COUNTERS", f"role {role}",
            f"{role} may read {len(keys)} row counters ({_examples(shown)})"
            + (" through PUBLIC" if public else "") + ": they count the rows a query "
            "fetched before the row policy dropped them (idx_tup_fetch, seq_tup_read, "
            "n_tup_ins), a row-count oracle over hidden rows and a view of live activity",
            fix, role=kind_of.get(role)))
    check.detail = f"{len(counters)} counters, {len(who)} roles and logins"
    return check


def layer_owner(ctx: VerifyContext) -> Check:
    """Owning an object gives ALTER, DROP, GRANT and COMMENT on it (threat model row 21):
    every object of the layer belongs to one of its owner roles, and no login can act as
    one."""
    check = Check("hazard/layer-owner", "every layer object is owned by a layer owner role "
                  "that no login can act as")
    state = ctx.state
    owners = {ctx.roles[k] for k in OWNER_KINDS}
    generated = generated_functions(ctx.rules, ctx.catalog) + _stats_generated(
        ctx.rules, ctx.reports)
    gen = {g.signature.replace(" ", ""): g.owner_kind for g in generated}
    reached: dict[str, list[str]] = defaultdict(list)
    for obj in state.layer_objects:
        if obj.owner not in owners:
            want = expected_owner(obj, ctx.roles, gen)
            check.findings.append(Finding(
                "H-LAYER-OWNER", obj.name,
                f"{obj.kind} {obj.name} is owned by {obj.owner}, not by a layer owner role: "
                f"{obj.owner} and every login that acts as it may alter, drop or grant it",
                owner_sql(obj, want) + "; (or run `ils-redact install`)"))
        else:
            reached[obj.owner].append(obj.name)
    for owner, objs in sorted(reached.items()):
        logins = sorted(r for r in state.reached_by(owner) | {owner} if r in state.logins)
        if not logins:
            continue
        members = sorted(state.members_of(owner))
        check.findings.append(Finding(
            "H-LAYER-OWNER", f"role {owner}",
            f"{owner} owns {len(objs)} layer objects ({_examples(objs)}) and "
            f"{', '.join(logins)} can act as it: they may alter, drop or grant them",
            stmt("REVOKE {o} FROM {m};", o=role_sql(owner),
                 m=sql.SQL(", ").join(role_sql(m) for m in members) if members
                 else role_sql(owner),
                 note=" (`ils-redact install` revokes every membership in an owner role)")
            if members else stmt("ALTER ROLE {o} NOLOGIN;", o=role_sql(owner))))
    check.detail = f"{len(state.layer_objects)} layer objects"
    return check


_PUBLIC_ACL = """
SELECT n.nspname || '.' || c.relname, NULL::text, x.privilege_type
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) x
WHERE x.grantee = 0 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
UNION ALL
SELECT n.nspname || '.' || c.relname, a.attname::text, x.privilege_type
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(a.attacl) x
WHERE x.grantee = 0 AND a.attnum > 0 AND NOT a.attisdropped
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
"""

_DEFAULT_ACL = """
SELECT pg_get_userbyid(d.defaclrole), coalesce(n.nspname, '(all schemas)'), d.defaclobjtype,
       CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(x.grantee) END,
       x.privilege_type
FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace,
     aclexplode(d.defaclacl) x
WHERE d.defaclobjtype IN ('r', 'S', 'f')
"""


def public_grants(ctx: VerifyContext) -> Check:
    check = Check("hazard/public-grant", "PUBLIC holds nothing on protected relations, and "
                  "no default privilege opens future tables")
    grants: dict[str, list[str]] = defaultdict(list)
    for rel, col, priv in ctx.conn.execute(_PUBLIC_ACL):
        if rel.split(".", 1)[0] in ctx.layer_schemas or not ctx.protected(rel):
            continue
        grants[rel].append(f"{priv} ({col})" if col else priv)
    for rel, privs in sorted(grants.items()):
        cls = ctx.classify(rel)
        check.findings.append(Finding(
            "H-PUBLIC-GRANT", rel,
            f"PUBLIC holds {', '.join(sorted(set(privs)))} on {rel} ({cls}): every role, the "
            "restricted ones included, has it",
            stmt("REVOKE ALL ON {t} FROM PUBLIC;", t=ident(rel))))
    judged = set(ctx.judged_roles) | {"PUBLIC"}
    kinds = {"r": "TABLES", "S": "SEQUENCES", "f": "FUNCTIONS"}
    for creator, schema, objtype, grantee, priv in ctx.conn.execute(_DEFAULT_ACL):
        if grantee not in judged or (objtype == "f" and grantee == "PUBLIC"
                                     and priv == "EXECUTE"):
            continue  # EXECUTE to PUBLIC is PostgreSQL's own default for functions
        if grantee != "PUBLIC" and grantee not in {r for _, r in ctx.restricted}:
            if not any(grantee in ctx.reach[r] for _, r in ctx.restricted):
                continue
        in_schema = sql.SQL("") if schema == "(all schemas)" else sql.SQL(
            " IN SCHEMA {}").format(sql.Identifier(schema))
        check.findings.append(Finding(
            "H-DEFAULT-PRIVILEGES", f"default privileges of {creator} in {schema}",
            f"every new {kinds[objtype].lower()[:-1]} {creator} creates in {schema} gives "
            f"{priv} to {grantee}: tables an ILS upgrade adds open by themselves",
            stmt("ALTER DEFAULT PRIVILEGES FOR ROLE {c}{s} REVOKE {p} ON {k} FROM {r};",
                 c=sql.Identifier(creator), s=in_schema, p=sql.SQL(priv),
                 k=sql.SQL(kinds[objtype]), r=role_sql(grantee))))
    return check


def unclassified_findings(rules: Rules, catalog: Catalog, *, skip_schemas: frozenset[str],
                          what: str, new_since: str, column_effect: str,
                          rules_name: Callable[[str], str] = lambda r: r) -> list[Finding]:
    """A warning for every relation the rules do not classify and every unclassified
    column of an identity table; both servers' verify report them with this wording
    (``what``: the kind a relation is called when the catalog has none for it;
    ``new_since``: how it may have come; ``column_effect``: what happens to the column
    until someone decides; ``rules_name``: the catalog's name as the rules spell it)."""
    out: list[Finding] = []
    where = rules.path or "the rules"
    for n in unclassified(rules, catalog, skip_schemas=skip_schemas):
        if n.code == "UNCLASSIFIED-RELATION":
            rel = catalog.get(n.object)
            out.append(Finding(
                "H-UNCLASSIFIED-RELATION", n.object,
                f"{rel.kind if rel else what} {n.object} is not in the rules ({new_since}): "
                "closed to restricted roles, but nobody has decided whether it holds patron "
                "data",
                f"classify it in {where} (identity, secret, confidential, personal or other)"))
        else:
            rel_name, _, col = n.object.rpartition(".")
            out.append(Finding(
                "H-UNCLASSIFIED-COLUMN", n.object,
                f"column {n.object} of identity table {rel_name} is not in the rules: "
                f"{column_effect}",
                f"list {col} under identity.{rules_name(rel_name)}.columns or .withheld in "
                f"{where}"))
    return out


def unclassified_check(ctx: VerifyContext) -> Check:
    check = Check("hazard/unclassified", "the rules classify every relation, and every "
                  "column of the identity tables")
    check.findings += unclassified_findings(
        ctx.rules, ctx.catalog, skip_schemas=frozenset(ctx.layer_schemas), what="relation",
        new_since="new since they were written?",
        column_effect="closed to the disclosure role until someone decides")
    check.detail = f"{len(ctx.catalog.relations)} relations"
    return check


_BACKUP_READS = """
SELECT n.nspname || '.' || c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relrowsecurity AND c.relkind IN ('r', 'p')
  AND has_table_privilege(%(role)s, c.oid, 'SELECT')
  AND NOT pg_has_role(%(role)s, c.relowner, 'USAGE')
ORDER BY 1
"""


def backup_roles(ctx: VerifyContext) -> Check:
    check = Check("hazard/backup-role", "every backup login (pg_dump) can still read the "
                  "tables under row-level security")
    g = ctx.graph
    candidates: dict[str, str] = {}
    for name in sorted(g.reached_by("pg_read_all_data")):
        if not name.startswith("pg_"):
            candidates[name] = "a member of pg_read_all_data"
    # REPLICATION alone does not make a backup role: a physical standby streams WAL and
    # reads no table; a logical subscription's initial copy reads through the passthrough
    # policy and its change stream ignores row policies (hazard/replication judges that)
    for name in ctx.backup_roles:
        if name not in g.roles:
            raise IlsRedactError(f"--backup-role {name}: no such role on this server")
        candidates.setdefault(name, "named with --backup-role")
    checked = 0
    for name, why in sorted(candidates.items()):
        a = g.roles.get(name)
        if a is None or a.superuser or a.bypassrls or (not a.login
                                                        and name not in ctx.backup_roles):
            continue
        checked += 1
        tables = [r[0] for r in ctx.conn.execute(_BACKUP_READS, {"role": name})]
        if not tables:
            continue
        check.findings.append(Finding(
            "H-BACKUP-ROLE", f"role {name}",
            f"{name} ({why}) reads {_examples(tables)} without owning them or BYPASSRLS: "
            "now that row-level security is on there, its pg_dump stops with \"query would "
            "be affected by row-level security policy\"",
            stmt("ALTER ROLE {r} BYPASSRLS;", r=sql.Identifier(name),
                 note=" (a backup role reads everything anyway), or run its pg_dump with "
                      "--enable-row-security (ils-redact's passthrough policy shows it "
                      "every row)")))
    check.detail = f"{checked} candidate logins"
    return check


# every table a publication of this database carries, and how it carries it
_PUBLISHED = """
SELECT p.pubname, pt.schemaname || '.' || pt.tablename,
       CASE WHEN p.puballtables THEN 'FOR ALL TABLES'
            WHEN EXISTS (SELECT 1 FROM pg_publication_rel r JOIN pg_class c ON c.oid = r.prrelid
                         JOIN pg_namespace n ON n.oid = c.relnamespace
                         WHERE r.prpubid = p.oid AND n.nspname = pt.schemaname
                           AND c.relname = pt.tablename) THEN 'FOR TABLE'
            ELSE 'FOR TABLES IN SCHEMA ' || pt.schemaname END
FROM pg_publication p JOIN pg_publication_tables pt ON pt.pubname = p.pubname
ORDER BY 1, 2
"""

_LOGICAL_SLOTS = """
SELECT s.slot_name, s.plugin, s.active,
       CASE WHEN r.pid IS NULL THEN NULL
            ELSE r.usename || ' from ' || coalesce(host(r.client_addr), 'local socket') END
FROM pg_replication_slots s LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
WHERE s.slot_type = 'logical' AND s.database = current_database()
ORDER BY 1
"""

#: carried to a subscriber, these are a violation; personal and unclassified a warning
_NEVER_PUBLISHED = ("identity", "secret", "confidential", "layer")
_LABEL = {"layer": "ils-redact's requests, scope and audit log"}


def _published_class(ctx: VerifyContext, rel: str) -> str:
    cls = ctx.classify(rel)
    if cls == "other" and ctx.protected(rel):
        return "secret"  # an other relation with secret columns
    return cls


def replication(ctx: VerifyContext) -> Check:
    check = Check("hazard/replication", "no publication or logical slot copies patron data "
                  "out of the layer's protection, and no restricted login holds REPLICATION")
    slots = ctx.conn.execute(_LOGICAL_SLOTS).fetchall()
    consumers = [f"slot {name} ({plugin}, " + (f"active: {who})" if who else
                                                "active)" if active else "inactive)")
                 for name, plugin, active, who in slots if plugin == "pgoutput"]
    by_pub: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    how: dict[str, set[str]] = defaultdict(set)
    rows = ctx.conn.execute(_PUBLISHED).fetchall()
    for pub, rel, via in rows:
        by_pub[pub][_published_class(ctx, rel)].append(rel)
        how[pub].add(via)
    for pub, classes in sorted(by_pub.items()):
        bad = {c: rels for c, rels in classes.items() if c in _NEVER_PUBLISHED}
        doubtful = {c: rels for c, rels in classes.items() if c in ("personal", "unclassified")}
        if not bad and not doubtful:
            continue
        carried = "; ".join(f"{_examples(rels)} ({_LABEL.get(c, c)})" for c, rels in sorted(
            (bad or doubtful).items()))
        via = ", ".join(sorted(how[pub]))
        fix = _publication_fix(pub, how[pub], sorted(r for rels in (bad or doubtful).values()
                                                     for r in rels))
        sub = (f"; logical slots here: {', '.join(consumers)}" if consumers else "")
        check.findings.append(Finding(
            "H-PUBLICATION", f"publication {pub}",
            f"publication {pub} ({via}) carries {carried}: every row of these tables, every "
            "patron's and not only those of approved requests, and every later change is "
            "copied to its subscribers, databases outside the layer's protection (none of its "
            "roles, row policies, audit log or two-person rule; the change stream is not "
            f"filtered by row-level security at all){sub}",
            fix, severity=VIOLATION if bad else WARNING))
    for name, plugin, active, who in slots:
        if plugin == "pgoutput":
            continue
        check.findings.append(Finding(
            "H-LOGICAL-SLOT", f"slot {name}",
            f"logical replication slot {name} uses the output plugin {plugin}, which decodes "
            "every change of every table of this database (identity and circulation "
            "included), publications or not, for whoever consumes it"
            + (f" (now: {who})" if who else " (active)" if active else " (inactive: WAL is "
                                                                          "kept for it)"),
            stmt("SELECT pg_drop_replication_slot({s});", s=sql.Literal(name),
                 note=" (or make sure its consumer is inside the library's protection)")))
    for login in ctx.all_logins:
        holders = [r for r in ctx.graph.reach(login)
                   if ctx.graph.roles.get(r) and ctx.graph.roles[r].replication]
        if not holders:
            continue
        reaches = sorted(role for _, role in ctx.restricted if login in ctx.logins[role])
        via = "it has" if holders == [login] else f"it can act as {', '.join(sorted(holders))}, " \
                                                  "which has"
        check.findings.append(Finding(
            "H-REPLICATION-LOGIN", f"role {login}",
            f"{login} can act as {', '.join(reaches)} and {via} REPLICATION: pg_basebackup "
            "copies every file of the cluster and a logical slot (test_decoding) decodes "
            "every change of every table, past every grant and row policy",
            stmt("ALTER ROLE {r} NOREPLICATION;", r=sql.Identifier(holders[0]),
                 note=" (a replication login is for a standby or a subscriber, never for a "
                      "person)")))
    check.detail = (f"{len(by_pub)} publications with tables, {len(slots)} logical slots, "
                    f"{len(ctx.all_logins)} restricted logins")
    return check


def _publication_fix(pub: str, how: set[str], rels: list[str]) -> str:
    p = sql.Identifier(pub)
    if "FOR ALL TABLES" in how:
        return stmt("DROP PUBLICATION {p};", p=p,
                    note=" then CREATE PUBLICATION ... FOR TABLE with only tables the rules "
                         "classify other (FOR ALL TABLES cannot leave a table out)")
    fixes = []
    schemas = sorted(v.removeprefix("FOR TABLES IN SCHEMA ") for v in how
                     if v.startswith("FOR TABLES IN SCHEMA "))
    for schema in schemas:
        fixes.append(stmt("ALTER PUBLICATION {p} DROP TABLES IN SCHEMA {s};", p=p,
                          s=sql.Identifier(schema)))
    listed = [r for r in rels if r.split(".", 1)[0] not in schemas]
    if listed:
        fixes.append(stmt("ALTER PUBLICATION {p} DROP TABLE {t};", p=p,
                          t=sql.SQL(", ").join(ident(r) for r in listed)))
    note = (" then add back by name the tables of those schemas the rules classify other"
            if schemas else "")
    return " ".join(fixes) + note


def reporter(ctx: VerifyContext) -> Check:
    check = Check("hazard/reporter", "the ILS reporter does not connect as a role that "
                  "bypasses row-level security")
    if ctx.ils_config is None:
        check.skipped = "no --ils-config given (Evergreen's opensrf.xml)"
        return check
    logins = reporter_logins(ctx.ils_config)
    for login in logins:
        a = ctx.graph.roles.get(login.user)
        obj = f"{ctx.ils_config}: {login.element}"
        if a is None:
            check.findings.append(Finding(
                "H-REPORTER-UNKNOWN-ROLE", obj,
                f"the {login.purpose} connects as {login.where}, a role this server does not "
                "have: not checked",
                "run verify against the reporter's own database server", severity=WARNING))
        elif a.superuser or a.bypassrls:
            check.findings.append(Finding(
                "H-REPORTER-SUPERUSER", obj,
                f"the {login.purpose} connects as {login.where}, "
                f"{'a superuser' if a.superuser else 'a BYPASSRLS role'}: every report "
                "bypasses row-level security and every column grant",
                f"create a reporting login without SUPERUSER or BYPASSRLS, grant it what "
                f"reports read, and set <user> in {login.element}"))
    check.detail = f"{len(logins)} reporter connections in {ctx.ils_config}"
    return check


def explain(ctx: VerifyContext) -> Check:
    """``disclosure.access: role``: the disclosure role's logins type SQL against the
    identity tables, and EXPLAIN ANALYZE (which needs only SELECT, and whose plan nodes
    run before the row policy's filter) reports how many hidden rows each index condition
    matched and, through a BitmapOr, which columns belong to one hidden row.  No grant
    closes it; only function mode (no direct SQL on identity tables) does.  A warning,
    not a violation: it is what the mode is, chosen in the rules, and a violation on every
    role-mode install would teach operators to ignore verify's exit code; ``--strict``
    fails on it (docs/ci.md, docs/threat-model.md)."""
    check = Check("hazard/explain", "under disclosure.access: role, the disclosure role's "
                  "logins can count and link hidden rows through EXPLAIN ANALYZE")
    if ctx.rules.disclosure.access != "role":
        check.detail = "disclosure.access: function: no login reads identity tables directly"
        return check
    dis = ctx.roles["disclosure"]
    logins = sorted(r for r in ctx.state.reached_by(dis) if r in ctx.state.logins)
    check.findings.append(Finding(
        "H-EXPLAIN-ANALYZE", f"role {dis}",
        f"{ROLE_MODE_EXPLAIN} Logins concerned: "
        + (_examples(logins) if logins else "none yet") + ".",
        "set disclosure.access: function in the rules and run `ils-redact install` "
        "(staff export through the logged export function and type no SQL against "
        "identity tables)", severity=WARNING, role="disclosure"))
    check.detail = f"disclosure.access: role, {len(logins)} logins"
    return check
