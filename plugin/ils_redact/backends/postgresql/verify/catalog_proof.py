"""Catalog proof: each restricted role's effective privileges against the allow-list.

For each restricted role: what it holds itself (directly, through PUBLIC, through
inherited memberships and predefined roles), every role it can act as through the
membership graph, the attributes and ownerships of all of those, row-level security on
every table it reads, the layer functions it calls, and every login that can act as it.
One check per role: ``catalog/<kind>``.
"""

from __future__ import annotations

from collections import defaultdict

from psycopg import sql

from ....checks.findings import Check, Finding
from ..introspect import arg_types, function_ident
from .context import VerifyContext
from .expect import PINNED_SEARCH_PATH, Expectation, layer_owner_kinds
from .graph import chain
from .privileges import Held
from .sqltext import ident, stmt
from .sqltext import role as r_

WRITE_PRIVS = {"INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER", "MAINTAIN"}


def _from(h: Held) -> str:
    return {"owner": "as its owner", "direct": "granted directly", "PUBLIC": "through PUBLIC",
            "membership": "through a role membership"}[h.source]


def _owner_fix(table: str, owner: str | None) -> str:
    return stmt("ALTER TABLE {t} OWNER TO {o};", t=ident(table), o=r_(owner or "evergreen"))


def _fn(h: Held) -> sql.Composable:
    """A function verify read, as SQL: its parts by OID, never its printed signature."""
    if h.ident is None:
        raise ValueError(f"no safe name for {h.object!r}")
    return h.ident


def _grantee(h: Held, role: str) -> str:
    """Whom to revoke from: PUBLIC when that is where the privilege comes from."""
    return "PUBLIC" if h.source == "PUBLIC" else role


def _examples(items: list[str], n: int = 4) -> str:
    items = sorted(items)
    more = f" and {len(items) - n} more" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def run(ctx: VerifyContext) -> list[Check]:
    return [role_check(ctx, kind, name) for kind, name in ctx.restricted]


def role_check(ctx: VerifyContext, kind: str, role: str) -> Check:
    exp = ctx.expect[kind]
    check = Check(f"catalog/{kind}", f"{role} holds exactly what the rules give the {kind} "
                  "role, through every membership")
    f = check.findings
    f += _membership(ctx, kind, role, exp)
    for other, path in sorted(ctx.reach[role].items()):
        f += _attributes(ctx, kind, other, path)
        f += _ownership(ctx, kind, other, path, exp)
    f += _privileges(ctx, kind, role, exp)
    f += _rls(ctx, kind, role, exp)
    f += _missing(ctx, kind, role, exp)
    f += _layer_functions(ctx, kind, exp)
    for login in ctx.logins[role]:
        f += _login(ctx, kind, role, login)
    if kind == "disclosure":
        f += _access_mode(ctx, role)
    held = ctx.held.get(role, [])
    check.detail = (f"{len({h.object for h in held if h.objtype in ('table', 'column')})} "
                    f"relations, {sum(1 for h in held if h.objtype == 'column')} column "
                    f"privileges, {sum(1 for h in held if h.objtype == 'function')} layer or "
                    f"SECURITY DEFINER functions; {len(ctx.reach[role]) - 1} other roles "
                    f"reachable, {len(ctx.logins[role])} logins")
    return check


def _beyond(ctx: VerifyContext, role: str, exp: Expectation) -> list[str]:
    """What ``role`` holds on relations that the expectation does not allow."""
    out = set()
    for h in ctx.held.get(role, []):
        if h.objtype == "table" and not (h.privilege == "SELECT" and h.object in exp.relations):
            out.add(h.object)
        elif h.objtype == "column" and not (h.privilege == "SELECT"
                                            and exp.may_read(h.object, h.column or "")):
            out.add(h.object)
    return sorted(out)


def _membership(ctx: VerifyContext, kind: str, role: str, exp: Expectation) -> list[Finding]:
    out = []
    for other, path in sorted(ctx.reach[role].items()):
        if other == role:
            continue
        extra = _beyond(ctx, other, exp)
        holds = (f"; {other} holds privileges on {len(extra)} relations ({_examples(extra)})"
                 if extra else "")
        out.append(Finding(
            "C-MEMBERSHIP", f"{chain(path)}",
            f"{role} can act as {other} (SET ROLE or inherited rights): everything {other} "
            f"may do, a member of {role} may do{holds}",
            stmt("REVOKE {g} FROM {r};", g=r_(path[1]), r=r_(role)), role=kind))
    return out


def _attributes(ctx: VerifyContext, kind: str, other: str, path: tuple[str, ...]
                ) -> list[Finding]:
    a = ctx.graph.roles.get(other)
    if a is None:
        return []
    bad = [n for n, on in (("SUPERUSER", a.superuser), ("BYPASSRLS", a.bypassrls),
                           ("CREATEROLE", a.createrole)) if on]
    if not bad:
        return []
    via = "" if len(path) == 1 else f" (reached by {chain(path)})"
    return [Finding(
        "C-ATTRIBUTE", f"role {other}",
        f"{other}{via} has {', '.join(bad)}: row-level security and grants do not bind it"
        + (" (CREATEROLE can grant itself other roles)" if "CREATEROLE" in bad else ""),
        stmt("ALTER ROLE {r} {attrs};", r=r_(other),
             attrs=sql.SQL(" ".join(f"NO{b}" for b in bad))), role=kind)]


def _ownership(ctx: VerifyContext, kind: str, other: str, path: tuple[str, ...],
               exp: Expectation) -> list[Finding]:
    objs = [o for o in ctx.owned.get(other, [])
            if not (len(path) == 1 and o.objtype == "function" and o.object in exp.owns)]
    if not objs:
        return []
    by_type: dict[str, list[str]] = defaultdict(list)
    for o in objs:
        by_type[o.objtype].append(o.object)
    what = "; ".join(f"{len(v)} {t}{'s' if len(v) > 1 else ''} ({_examples(v, 3)})"
                     for t, v in sorted(by_type.items()))
    via = "" if len(path) == 1 else f", which {path[0]} reaches through {chain(path)}"
    first = by_type.get("relation") or next(iter(by_type.values()))
    return [Finding(
        "C-OWNER", f"role {other}",
        f"{other}{via} owns {what}: an owner is not bound by row-level security and may "
        "grant itself anything on what it owns",
        f"give each to the ILS owner, e.g. {_owner_fix(first[0], ctx.ils_owner)}"
        if by_type.get("relation") else
        "give these objects to another owner (ALTER ... OWNER TO)", role=kind)]


def _privileges(ctx: VerifyContext, kind: str, role: str, exp: Expectation) -> list[Finding]:
    out: list[Finding] = []
    cols: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    usage = {h.object for h in ctx.held.get(role, [])
             if h.objtype == "schema" and h.privilege == "USAGE"}
    for h in ctx.held.get(role, []):
        if h.objtype == "table":
            if h.privilege == "SELECT" and h.object not in exp.relations:
                cls = ctx.classify(h.object)
                cover = ("every column, the withheld and secret ones too" if cls == "identity"
                         else f"every column of this {cls} relation")
                schema = h.object.split(".", 1)[0]
                today = ("" if schema in usage else f"; only the missing USAGE on schema "
                         f"{schema} stops a query today")
                out.append(Finding(
                    "C-TABLE-SELECT", h.object,
                    f"{role} holds table-level SELECT on {h.object} ({_from(h)}): it covers "
                    f"{cover}, and any column added later{today}",
                    stmt("REVOKE SELECT ON {t} FROM {r};", t=ident(h.object),
                         r=r_(_grantee(h, role)),
                         note=(" then `ils-redact install` restores the column grants"
                               if any(r == h.object for r, _ in exp.columns) else "")),
                    role=kind))
            elif h.privilege in WRITE_PRIVS:
                out.append(Finding(
                    "C-PRIVILEGE", h.object,
                    f"{role} holds {h.privilege} on {h.object} ({_from(h)}): a restricted "
                    "role writes nothing (writes and integrity checks bypass row policies)",
                    stmt("REVOKE {p} ON {t} FROM {r};", p=sql.SQL(h.privilege),
                         t=ident(h.object), r=r_(_grantee(h, role))), role=kind))
        elif h.objtype == "column":
            if not (h.privilege == "SELECT" and exp.may_read(h.object, h.column or "")):
                cols[(h.object, h.privilege, h.source)].append(h.column or "")
        elif h.objtype == "sequence":
            out.append(Finding(
                "C-PRIVILEGE", h.object,
                f"{role} holds {h.privilege} on sequence {h.object} ({_from(h)}): sequence "
                "values count rows and advance for everyone",
                stmt("REVOKE {p} ON SEQUENCE {t} FROM {r};", p=sql.SQL(h.privilege),
                     t=ident(h.object), r=r_(_grantee(h, role))), role=kind))
        elif h.objtype in ("schema", "database") and h.privilege == "CREATE":
            out.append(Finding(
                "C-PRIVILEGE", f"{h.objtype} {h.object}",
                f"{role} may CREATE in {h.objtype} {h.object} ({_from(h)}): it could own "
                "objects, and objects it creates can shadow others' on a search_path",
                stmt("REVOKE CREATE ON {k} {o} FROM {r};", k=sql.SQL(h.objtype.upper()),
                     o=sql.Identifier(h.object), r=r_(_grantee(h, role))), role=kind))
        elif (h.objtype == "function" and h.object.split(".", 1)[0] in ctx.layer_schemas
              and not exp.may_execute(h.object)):
            out.append(Finding(
                "C-PRIVILEGE", h.object,
                f"{role} may execute layer function {h.object} ({_from(h)}), which the "
                f"{kind} role is not given",
                stmt("REVOKE EXECUTE ON ROUTINE {f} FROM {r};", f=_fn(h),
                     r=r_(_grantee(h, role))), role=kind))
    for (rel, priv, source), names in sorted(cols.items()):
        closed = [c for c in names if not exp.may_read(rel, c)]
        out.append(Finding(
            "C-PRIVILEGE", rel,
            f"{role} holds column {priv} on {rel} ({_examples(closed or names, 6)}) "
            f"({_from(Held(role, 'column', rel, priv, None, source))}): "
            + ("the rules close these columns to it" if priv == "SELECT" else
               "a restricted role writes nothing"),
            stmt("REVOKE {p} ({c}) ON {t} FROM {r};", p=sql.SQL(priv),
                 c=sql.SQL(", ").join(map(sql.Identifier, names)), t=ident(rel),
                 r=r_("PUBLIC" if source == "PUBLIC" else role)), role=kind))
    return out


def _rls(ctx: VerifyContext, kind: str, role: str, exp: Expectation) -> list[Finding]:
    """Row-level security on every table the role is meant to read (fact 6: pg_stats shows
    the values of every column a role reads unless RLS is on for it)."""
    tables = {r for r, _ in exp.columns} | {
        h.object for h in ctx.held.get(role, [])
        if h.objtype == "column" and exp.may_read(h.object, h.column or "")}
    out = []
    for t in sorted(tables - exp.relations):
        rel = ctx.catalog.get(t)
        if rel is None or rel.is_view or rel.rls_enabled:
            continue
        out.append(Finding(
            "C-RLS-DISABLED", t,
            f"{role} reads columns of {t} but row-level security is off: it sees every "
            "patron's row, and pg_stats shows the most common values of those columns",
            stmt("ALTER TABLE {t} ENABLE ROW LEVEL SECURITY;", t=ident(t),
                 note=" (or run `ils-redact install`)"),
            role=kind))
    return out


def _missing(ctx: VerifyContext, kind: str, role: str, exp: Expectation) -> list[Finding]:
    held = ctx.held.get(role, [])
    cols = {(h.object, h.column) for h in held if h.objtype == "column"
            and h.privilege == "SELECT"}
    tables = {h.object for h in held if h.objtype == "table" and h.privilege == "SELECT"}
    out = []
    lost: dict[str, list[str]] = defaultdict(list)
    for rel, col in sorted(exp.columns):
        if (rel, col) not in cols and rel not in tables:
            lost[rel].append(col)
    for rel, names in sorted(lost.items()):
        out.append(Finding(
            "C-MISSING", rel,
            f"{role} cannot read {rel} ({_examples(names, 6)}), which the rules give it",
            "ils-redact install (review with ils-redact plan)", role=kind))
    for rel in sorted(exp.relations - tables):
        out.append(Finding("C-MISSING", rel, f"{role} cannot read layer relation {rel}",
                           "ils-redact install (review with ils-redact plan)", role=kind))
    funcs = {h.object for h in held if h.objtype == "function"}
    for sig in sorted((exp.functions | exp.owns) - funcs):
        out.append(Finding(
            "C-MISSING", sig, f"{role} cannot execute {sig}, which the layer gives it",
            "ils-redact install (review with ils-redact plan)", role=kind))
    usage = {h.object for h in held if h.objtype == "schema" and h.privilege == "USAGE"}
    for schema in sorted(exp.schemas - usage):
        out.append(Finding(
            "C-MISSING", f"schema {schema}", f"{role} has no USAGE on schema {schema}",
            "ils-redact install (review with ils-redact plan)", role=kind))
    return out


def _layer_functions(ctx: VerifyContext, kind: str, exp: Expectation) -> list[Finding]:
    """The layer functions this role calls must still be owned by the layer role that
    defined them and, when SECURITY DEFINER, keep their pinned search_path."""
    wanted = exp.functions | exp.owns
    owner_kinds = layer_owner_kinds(ctx.rules, ctx.catalog)
    rows = ctx.conn.execute(sql.SQL(
        "SELECT n.nspname || '.' || p.proname || '(' || oidvectortypes(p.proargtypes) || ')', "
        "pg_get_userbyid(p.proowner), p.prosecdef, p.proconfig, n.nspname::text, "
        "p.proname::text, {} "
        "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = ANY (%s)").format(arg_types("p")), (ctx.layer_schemas,)).fetchall()
    out = []
    for sig, owner, secdef, config, schema, name, args in rows:
        fn = function_ident(schema, name, args)
        if sig not in wanted or sig in ctx.stats.functions:
            continue
        want_owner = ctx.roles.get(owner_kinds.get(sig, "owner"), "")
        if owner != want_owner:
            out.append(Finding(
                "C-LAYER-FUNCTION", sig,
                f"{sig} is owned by {owner}, not {want_owner}: its owner decides what it "
                "reads and who may run it",
                stmt("ALTER ROUTINE {f} OWNER TO {o};", f=fn, o=r_(want_owner)),
                role=kind))
        if secdef and PINNED_SEARCH_PATH not in (config or []):
            out.append(Finding(
                "C-LAYER-FUNCTION", sig,
                f"SECURITY DEFINER {sig} no longer pins its search_path "
                f"(proconfig {config or 'empty'}): objects in pg_temp could stand in for "
                "the ones it means",
                stmt("ALTER ROUTINE {f} SET search_path = pg_catalog, pg_temp;", f=fn),
                role=kind))
    return out


def _access_mode(ctx: VerifyContext, role: str) -> list[Finding]:
    """Under ``disclosure.access: function`` staff disclose through the logged export
    only: a login that can act as the disclosure role has direct SQL on the identity
    columns of every patron in its scope (and the gate is not in the way)."""
    if ctx.rules.disclosure.access != "function":
        return []
    exporter = ctx.roles["exporter"]
    out = []
    for login in ctx.logins[role]:
        path = ctx.graph.reach(login).get(role, (login, role))
        out.append(Finding(
            "C-ACCESS-MODE", f"login {login}",
            f"disclosure.access is function, but {login} acts as {role} ({chain(path)}): "
            "direct SQL on the identity columns, outside the logged export",
            stmt("REVOKE {d} FROM {m}; GRANT {e} TO {l};", d=r_(path[1]), m=r_(path[0]),
                 e=r_(exporter), l=r_(login),
                 note=" (`ils-redact install` moves the disclosure role's direct members)"),
            role="disclosure"))
    return out


def _login(ctx: VerifyContext, kind: str, role: str, login: str) -> list[Finding]:
    """A login that can act as the restricted role must not undo it: no superuser, no
    BYPASSRLS, no ownership (through any role it reaches), and no read access beyond what
    the restricted roles it reaches are given."""
    out = []
    reach = ctx.graph.reach(login)
    allowed: set[tuple[str, str]] = set()
    allowed_rel: set[str] = set()
    for k, name in ctx.restricted:
        if name in reach:
            allowed |= ctx.expect[k].columns
            allowed_rel |= ctx.expect[k].relations
    mine = ctx.reach[role]  # judged by the role's own findings
    for other, path in sorted(reach.items()):
        if other in mine:
            continue
        a = ctx.graph.roles.get(other)
        if a and (a.superuser or a.bypassrls):
            out.append(Finding(
                "C-LOGIN", f"login {login}",
                f"{login} acts as {role} but "
                + (f"through {chain(path)} " if other != login else "")
                + f"is {'a superuser' if a.superuser else 'BYPASSRLS'}: the restriction "
                "does not bind it",
                stmt("REVOKE {r} FROM {l};", r=r_(role), l=r_(login),
                     note=" and give the person a separate login"),
                role=kind))
        owns = [o.object for o in ctx.owned.get(other, []) if o.objtype == "relation"
                and o.object.split(".", 1)[0] not in ctx.layer_schemas]
        if owns:
            out.append(Finding(
                "C-LOGIN", f"login {login}",
                f"{login} acts as {role} and "
                + (f"through {chain(path)} " if other != login else "")
                + f"owns {len(owns)} relations ({_examples(owns, 3)}): owners are not bound "
                "by row-level security",
                stmt("REVOKE {r} FROM {l};", r=r_(role), l=r_(login),
                     note=" and give the person a separate login"),
                role=kind))
    extra: set[str] = set()
    for other in set(reach) - set(mine):
        for h in ctx.held.get(other, []):
            if h.object.split(".", 1)[0] in ctx.layer_schemas:
                continue
            if h.objtype == "table" and h.object not in allowed_rel:
                extra.add(h.object)
            elif h.objtype == "column" and (h.privilege != "SELECT" or (
                    (h.object, h.column or "") not in allowed and h.object not in allowed_rel)):
                extra.add(h.object)
    if extra:
        out.append(Finding(
            "C-LOGIN", f"login {login}",
            f"{login} acts as {role} and also holds privileges on {len(extra)} relations the "
            f"restricted role is closed to ({_examples(sorted(extra))})",
            stmt("REVOKE {r} FROM {l};", r=r_(role), l=r_(login),
                 note=" or remove its other grants"), role=kind))
    return out
