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
  them or BYPASSRLS: its ``pg_dump`` now fails (fact 15);
* ``reporter``: Evergreen's reporter configured to connect as a superuser (``--ils-config``).

"Protected" is every relation the rules classify identity, secret, confidential or
personal, an ``other`` relation with a secret column, and anything not classified at all.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable

from psycopg import sql

from ..catalog import Catalog
from ..errors import IlsRedactError
from ..rules import Rules
from ..rules.semantic import unclassified
from .context import VerifyContext
from .findings import WARNING, Check, Finding
from .graph import chain
from .ilsconfig import reporter_logins
from .sqltext import function, ident, roles, stmt
from .sqltext import role as role_sql

CLASSES = ("owner-rights-view", "security-definer", "inheritance-parent", "temp",
           "public-grant", "unclassified", "backup-role", "reporter")

_TRUE = {"true", "on", "1", "yes", "t"}


def _examples(items: list[str], n: int = 4) -> str:
    items = sorted(items)
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def run(ctx: VerifyContext) -> list[Check]:
    return [owner_rights_views(ctx), security_definer(ctx), inheritance_parents(ctx),
            temp(ctx), public_grants(ctx), unclassified_check(ctx), backup_roles(ctx),
            reporter(ctx)]


def _readers(ctx: VerifyContext) -> dict[str, dict[str, str]]:
    """relation -> {restricted role (or role it reaches) -> how} for every relation any of
    them may read at least one column of."""
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for _, role in ctx.restricted:
        for other, path in ctx.reach[role].items():
            for h in ctx.held.get(other, []):
                if h.objtype in ("table", "column") and h.privilege == "SELECT":
                    who = "PUBLIC" if h.source == "PUBLIC" else (
                        role if other == role else f"{role} (through {chain(path)})")
                    out[h.object].setdefault(who, h.source)
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
                   r=roles(w.split(" ")[0] for w in who))
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
    rows = ctx.conn.execute(
        "SELECT n.nspname || '.' || p.proname || '(' || oidvectortypes(p.proargtypes) || ')', "
        "pg_get_userbyid(p.proowner), "
        "CASE WHEN l.lanname IN ('sql', 'plpgsql') THEN pg_get_functiondef(p.oid) "
        "ELSE p.prosrc END "
        "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "JOIN pg_language l ON l.oid = p.prolang "
        "WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND p.prokind <> 'a'").fetchall()
    pattern = _mentions(ctx) if rows else None
    for sig, owner, text in sorted(rows):
        if sig in ctx.stats.functions:
            continue
        who = []
        for kind, role in ctx.restricted:
            exp = ctx.expect[kind]
            for other, path in ctx.reach[role].items():
                for h in ctx.held.get(other, []):
                    if h.objtype == "function" and h.object == sig and not (
                            other == role and exp.may_execute(sig)):
                        who.append("PUBLIC" if h.source == "PUBLIC" else
                                   role if other == role else f"{role} (through "
                                   f"{chain(path)})")
        if not who:
            continue
        reads = sorted({m.group(0).replace('"', "").replace(" ", "").lower()
                        for m in pattern.finditer(text or "")}) if pattern else []
        reads_txt = (f"its text reads {_examples(reads)}" if reads else
                     "its text names no protected relation (dynamic SQL is not followed)")
        check.findings.append(Finding(
            "H-SECURITY-DEFINER", sig,
            f"SECURITY DEFINER {sig} runs as {owner} and {', '.join(sorted(set(who)))} may "
            f"execute it; {reads_txt}",
            stmt("REVOKE EXECUTE ON FUNCTION {f} FROM {r};", f=function(sig),
                 r=roles(["PUBLIC"] + [w.split(" ")[0] for w in who]))))
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
                     r=roles(w.split(" ")[0] for w in who),
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
    check.detail = f"database {db}"
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
    check = Check("hazard/backup-role", "every backup or replication login can still read "
                  "the tables under row-level security")
    g = ctx.graph
    candidates: dict[str, str] = {}
    for name in sorted(g.reached_by("pg_read_all_data")):
        if not name.startswith("pg_"):
            candidates[name] = "a member of pg_read_all_data"
    for name, attrs in sorted(g.roles.items()):
        if attrs.replication and not name.startswith("pg_"):
            candidates.setdefault(name, "a REPLICATION role")
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
