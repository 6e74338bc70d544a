"""Catalog proof on MariaDB: each restricted role's effective privileges against the
allow-list, and the definer account's.

For each restricted role (``catalog/<kind>``): what a session with the role active may do
(its own grants, those of every role granted to it, PUBLIC's and those of the roles
granted to PUBLIC) at every level (global, database, table, column, routine); the roles
it can act as; the layer objects it uses still defined by the layer's own definer; and
every login that can act as it.  Nothing on the Koha database is allowed at all (the
identity columns are read through the layer's definer views).

For the definer account (``catalog/definer``): only the column grants install gives it
(identity columns of the identity tables) and the layer tables its routines write, no
global privilege and no role.
"""

from __future__ import annotations

import re
from collections import defaultdict

from ....checks.findings import Check, Finding
from ....rules.model import ALL_COLUMNS
from ..generated import generated_objects
from ..layer import layer_objects
from ..planner import desired_grants
from ..sqltext import account
from ..state import Grant
from .context import MariaContext
from .expect import Expectation, sig
from .grants import Held, by_object, db_covers, describe, grantee_sql, revoke_role_sql, revoke_sql

#: why a global privilege on a restricted role (or a login that reaches one) voids it
GLOBAL_WHY = {
    "SELECT": "it reads every column of every table of every database, Koha's and the "
              "layer's scope and audit log included",
    "FILE": "it reads and writes files on the server (LOAD_FILE, SELECT ... INTO OUTFILE), "
            "the table files included",
    "PROCESS": "it sees every session's statements (SHOW PROCESSLIST), with other staff's "
               "queries and the patron data in their literals",
    "SUPER": "it bypasses read_only and account limits and can act as any definer",
    "SHOW DATABASES": "it lists every database on the server",
    "CREATE USER": "it can create logins and grant itself any role",
    "GRANT OPTION": "it can give its privileges to others",
    "SET USER": "it can create views and routines that run as any account",
    "EXECUTE": "it runs every stored routine on the server, definer routines included",
    "SHOW VIEW": "it reads every view's definition",
}


def _from(h: Held) -> str:
    if h.source == "PUBLIC":
        return "through PUBLIC" if len(h.path) == 1 else \
            f"through PUBLIC ({' -> '.join(h.path)})"
    if h.source == "membership":
        return f"through {' -> '.join(h.path)}"
    return "granted directly"


def _examples(items: list[str], n: int = 4) -> str:
    items = sorted(items)
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def where(ctx: MariaContext, g: Grant) -> str:
    """koha | layer | mysql | other: the database a grant is on (a pattern: the most
    sensitive one it covers)."""
    dbs = [g.db] if g.level != "database" else [
        d for d in (ctx.koha, *ctx.layers, "mysql") if db_covers(g.db, d)] or ["other"]
    if ctx.koha in dbs:
        return "koha"
    if any(d in ctx.layers for d in dbs):
        return "layer"
    if "mysql" in dbs:
        return "mysql"
    return "other"


def _db_why(ctx: MariaContext, g: Grant) -> str:
    covered = [d for d in (ctx.koha, *ctx.layers, "mysql") if db_covers(g.db, d)]
    if ctx.koha in covered:
        what = (f"covers every table of the Koha database {ctx.koha}, the confidential "
                "ones and those a Koha upgrade adds")
    elif any(d in ctx.layers for d in covered):
        what = "covers the layer database: the scope, the requests and the audit log"
    elif "mysql" in covered:
        what = "covers the grant tables (password hashes, who holds which role)"
    else:
        what = "on a database outside Koha and the layer"
    pattern = "" if g.db in covered else f" (the pattern {g.db} covers {', '.join(covered)})"
    return what + pattern


def run(ctx: MariaContext) -> list[Check]:
    return [role_check(ctx, kind, role) for kind, role in ctx.restricted] + [definer_check(ctx)]


def role_check(ctx: MariaContext, kind: str, role: str) -> Check:
    exp = ctx.expect[kind]
    check = Check(f"catalog/{kind}", f"{role} holds exactly what the rules give the {kind} "
                  "role, through every role grant and PUBLIC")
    held = ctx.grants.effective(role)
    f = check.findings
    f += _membership(ctx, kind, role)
    f += _privileges(ctx, kind, role, exp, held)
    f += _missing(ctx, kind, role, exp, held)
    f += _layer_objects(ctx, kind, exp)
    logins = ctx.grants.holders(role, skip=ctx.installer_edges)
    for login, path in sorted(logins.items()):
        f += _login(ctx, kind, role, login, path)
    koha = sum(1 for h in held if where(ctx, h.grant) == "koha")
    check.detail = (f"{len(held)} privileges ({koha} on the Koha database), "
                    f"{len(ctx.grants.closure(role)) - 1} other roles reachable, "
                    f"{len(logins)} logins")
    return check


def _membership(ctx: MariaContext, kind: str, role: str) -> list[Finding]:
    out = []
    for other, path in sorted(ctx.grants.closure(role).items()):
        if other == role:
            continue
        own = sorted({describe(g) for g in ctx.grants.own(other)})
        holds = f"; {other} holds {len(own)} privileges ({_examples(own)})" if own else ""
        out.append(Finding(
            "C-MEMBERSHIP", " -> ".join(path),
            f"{role} acts with the privileges of role {other}: whatever {other} may do, a "
            f"session with {role} active may do{holds}",
            revoke_role_sql(path[1], role), role=kind))
    return out


def _privileges(ctx: MariaContext, kind: str, role: str, exp: Expectation,
                held: list[Held]) -> list[Finding]:
    out: list[Finding] = []
    groups: dict[tuple[str, str, str, str, str], list[Held]] = defaultdict(list)
    for h in held:
        if exp.permits(h.grant):
            continue
        g = h.grant
        groups[(h.source, g.grantee, g.level, g.db, g.name)].append(h)
    for (_source, _grantee, level, db, name), hs in sorted(groups.items()):
        grants = [h.grant for h in hs]
        privs = sorted({g.privilege for g in grants})
        came = _from(hs[0])
        fix = revoke_sql(grants)
        if level == "global":
            why = "; ".join(f"{p}: {GLOBAL_WHY[p]}" for p in privs if p in GLOBAL_WHY) or \
                "a server-wide privilege no restricted role needs"
            out.append(Finding(
                "C-GLOBAL", f"*.* ({', '.join(privs)})",
                f"{role} holds global {', '.join(privs)} ({came}): {why}", fix, role=kind))
        elif level == "database":
            out.append(Finding(
                "C-DATABASE", f"{db}.*",
                f"{role} holds {', '.join(privs)} on {db}.* ({came}): it "
                f"{_db_why(ctx, grants[0])}", fix, role=kind))
        elif level == "table" and db == ctx.koha and "SELECT" in privs:
            cls = ctx.classify(db, name)
            out.append(Finding(
                "C-TABLE-SELECT", f"{db}.{name}",
                f"{role} holds table-level {', '.join(privs)} on {db}.{name} ({came}): "
                f"every column of this {cls} table, and any column added later; the role "
                "reads Koha data only through the layer's views", fix, role=kind))
        else:
            loc = where(ctx, grants[0])
            what = ", ".join(describe(g) for g in grants[:6]) + (
                f" and {len(grants) - 6} more" if len(grants) > 6 else "")
            why = {
                "koha": "the role holds nothing on the Koha database (the identity columns "
                        "are read through the layer's views)",
                "layer": "not a grant the layer gives it (the scope, requests and audit log "
                         "are the layer's own)",
                "mysql": "the grant tables: password hashes and who holds which role",
                "other": "outside Koha and the layer: a restricted role holds nothing there",
            }[loc]
            if level in ("procedure", "function"):
                why = "a routine the rules do not give it" + (
                    "" if loc != "layer" else ": it runs as the layer's definer")
            obj = f"{level} {db}.{name}" if level in ("procedure", "function") else \
                f"{db}.{name}"
            if not _exists(ctx, level, db, name):
                why += (f" (no {level if level != 'column' else 'table'} {db}.{name} exists "
                        "now: the grant applies to one created under that name)")
            out.append(Finding("C-PRIVILEGE", obj, f"{role} holds {what} ({came}): {why}",
                               fix, role=kind))
    return out


def _exists(ctx: MariaContext, level: str, db: str, name: str) -> bool:
    """Whether the object a grant names exists (known for routines anywhere, and for the
    relations of the Koha and layer databases; elsewhere assumed)."""
    if level in ("procedure", "function"):
        return any(r.key == (level, db, name) for r in ctx.routines)
    if db == ctx.koha:
        return f"{db}.{name}" in ctx.catalog.relations
    if db in ctx.layers:
        return f"{db}.{name}" in ctx.layer_relations
    return True


def _missing(ctx: MariaContext, kind: str, role: str, exp: Expectation,
             held: list[Held]) -> list[Finding]:
    have = {sig(h.grant) for h in held}
    out = []
    for level, db, name, priv, _col in sorted(exp.required - have):
        obj = f"{level} {db}.{name}" if level in ("procedure", "function") else f"{db}.{name}"
        out.append(Finding(
            "C-MISSING", obj, f"{role} cannot {'execute' if priv == 'EXECUTE' else 'read'} "
            f"{obj}, which the layer gives it", "ils-redact install (review with "
            "ils-redact plan)", role=kind))
    return out


_DEFINER_RE = re.compile(r"DEFINER\s*=\s*\{(\w+)\}", re.IGNORECASE)
_SECURITY_RE = re.compile(r"SQL\s+SECURITY\s+(DEFINER|INVOKER)", re.IGNORECASE)


def declared(ctx: MariaContext) -> dict[tuple[str, str], tuple[str, str]]:
    """(type, name) of every layer view and routine -> (definer key, security) as the
    layer's SQL declares them."""
    out: dict[tuple[str, str], tuple[str, str]] = {}
    for s in layer_objects().values():
        m = _DEFINER_RE.search(s.text)
        sec = _SECURITY_RE.search(s.text)
        who = m.group(1) if m else "owner"
        out[((s.objtype or "").lower(), s.name or "")] = (
            ctx.owner if who == "owner" else ctx.roles.get(who, who),
            sec.group(1).upper() if sec else "DEFINER")
    for g in generated_objects(ctx.rules, ctx.catalog, ctx.layer):
        sec = _SECURITY_RE.search(g.create)
        out[(g.objtype.lower(), g.name)] = (
            ctx.owner if g.definer_kind == "owner" else ctx.roles[g.definer_kind],
            sec.group(1).upper() if sec else "DEFINER")
    return out


def _layer_objects(ctx: MariaContext, kind: str, exp: Expectation) -> list[Finding]:
    """The layer views and routines this role uses must still be defined by the account
    (or role) the layer declares, with the security it declares."""
    want = declared(ctx)
    actual: dict[tuple[str, str], tuple[str, str]] = {
        ("view", v.name): (v.definer, v.security.upper()) for v in ctx.views
        if v.db == ctx.layer}
    actual.update({(r.type, r.name): (r.definer, r.security.upper()) for r in ctx.routines
                   if r.db == ctx.layer})
    out = []
    for level, db, name, _priv, _col in sorted(exp.required):
        if db != ctx.layer:
            continue
        key = ("view" if level == "table" else level, name)
        if key not in want or key not in actual:
            continue
        (wdef, wsec), (adef, asec) = want[key], actual[key]
        if adef != wdef or asec != wsec:
            out.append(Finding(
                "C-LAYER-FUNCTION", f"{key[0]} {db}.{name}",
                f"{key[0]} {db}.{name}, which {ctx.roles[kind]} uses, runs as {adef} with "
                f"SQL SECURITY {asec}; the layer defines it as {wdef} with SQL SECURITY "
                f"{wsec}: its definer decides what it reads",
                "ils-redact install (it re-creates the object as the layer defines it)",
                role=kind))
    return out


def _login(ctx: MariaContext, kind: str, role: str, login: str,
           path: tuple[str, ...]) -> list[Finding]:
    """A login that can act as the restricted role must not hold, by itself or through a
    role other than ils-redact's, anything on the Koha database, the layer or the server."""
    g_ = ctx.grants
    out = []
    fix = revoke_role_sql(path[1], login) + " and give the person a separate login"
    sources: dict[str, tuple[str, ...]] = {login: (login,)}
    for r in sorted(g_.roles_of(login) - ctx.layer_roles):
        for other, p in g_.closure(r).items():
            if other not in ctx.layer_roles:
                sources.setdefault(other, (login,) + p)
    for other, p in sorted(sources.items()):
        bad = sorted((g for g in g_.own(other) if g.level == "global"
                      or where(ctx, g) in ("koha", "layer", "mysql")),
                     key=lambda g: (g.level != "global", describe(g)))
        if not bad:
            continue
        via = "" if other == login else f" through {' -> '.join(p)}"
        glob = [g.privilege for g in bad if g.level == "global"]
        rest = [describe(g) for g in bad if g.level != "global"]
        parts = []
        if glob:
            parts.append(f"global {', '.join(glob)}" + (
                f" ({GLOBAL_WHY[glob[0]]})" if glob[0] in GLOBAL_WHY else ""))
        if rest:
            parts.append(f"{len(rest)} privileges on the Koha database, the layer or the "
                         f"grant tables ({_examples(rest)})")
        out.append(Finding(
            "C-LOGIN", f"login {login}",
            f"{login} acts as {role} ({' -> '.join(path)}) and{via} holds "
            f"{'; '.join(parts)}: the role limits nothing for it", fix, role=kind))
    if g_.admin_option(login, path[1]):
        out.append(Finding(
            "C-LOGIN", f"login {login}",
            f"{login} holds {path[1]} WITH ADMIN OPTION: it can give {role} to any login",
            f"REVOKE ADMIN OPTION FOR {grantee_sql(path[1])} FROM {grantee_sql(login)};",
            role=kind))
    return out


# -- the definers ---------------------------------------------------------------------

def definer_check(ctx: MariaContext) -> Check:
    owner = ctx.owner
    roles = sorted(ctx.definer_roles)
    check = Check("catalog/definer", f"the layer's definer {owner} holds only the identity "
                  "columns and the layer tables its routines use, no role and nothing global"
                  + (f"; the definer role{'s' if len(roles) > 1 else ''} {', '.join(roles)} "
                     "only what the layer gives, and is granted to nobody" if roles else ""))
    generated = generated_objects(ctx.rules, ctx.catalog, ctx.layer)
    desired = desired_grants(ctx.rules, ctx.catalog, ctx.names, generated, ctx.reports)
    f = check.findings
    detail = _account_definer(ctx, f, {sig(g) for g in desired if g.grantee == owner})
    for role in roles:
        detail += "; " + _role_definer(ctx, f, role,
                                       {sig(g) for g in desired if g.grantee == role})
    check.detail = detail
    return check


def _extra(ctx: MariaContext, f: list[Finding], who: str, own: list[Grant],
           allowed: set[tuple[str, str, str, str, str]], what: str) -> None:
    for (_, level, db, name), grants in by_object([g for g in own
                                                   if sig(g) not in allowed]).items():
        obj = "*.*" if level == "global" else f"{db}.*" if level == "database" else \
            f"{db}.{name}"
        f.append(Finding(
            "C-DEFINER", obj,
            f"{what} {who} holds {', '.join(describe(g) for g in grants[:6])}: every SQL "
            f"SECURITY DEFINER object it defines runs with it, so what it holds is one edited "
            "routine away from a restricted role", revoke_sql(grants)))


def _missing_grants(f: list[Finding], who: str, own: list[Grant],
                    allowed: set[tuple[str, str, str, str, str]]) -> None:
    missing = sorted(allowed - {sig(g) for g in own})
    if missing:
        first = missing[0]
        f.append(Finding(
            "C-MISSING", who,
            f"the definer {who} lacks {len(missing)} grants install gives it (e.g. "
            f"{first[3]} on {first[1]}.{first[2]}" + (f" ({first[4]})" if first[4] else "")
            + "): the views and routines that need them fail",
            "ils-redact install (review with ils-redact plan)"))


def _account_definer(ctx: MariaContext, f: list[Finding],
                     allowed: set[tuple[str, str, str, str, str]]) -> str:
    owner = ctx.owner
    acct = ctx.grants.accounts.get(owner)
    user, _, host = owner.rpartition("@")
    if acct is None:
        f.append(Finding("C-DEFINER", f"account {owner}", f"the definer account {owner} does "
                         "not exist: every identity view and layer routine fails",
                         "ils-redact install (it creates the account)"))
        return f"{owner} missing"
    identity: dict[str, set[str]] = defaultdict(set)
    for t in ctx.rules.identity:
        rel = ctx.catalog.relation(t.relation)
        secret = ctx.rules.secret.get(t.relation, ())
        closed = set(rel.column_names) if secret == ALL_COLUMNS else set(secret)
        identity[rel.name] |= set(t.columns) - closed
    # the patron lookup shows staff the display columns and finds patrons by barcode
    p, b = ctx.rules.patron, ctx.rules.patron.barcode
    identity[ctx.catalog.relation(p.relation).name] |= {p.key, *p.display}
    active: set[str] = {b.active_column} if b.active_column is not None else set()
    identity[ctx.catalog.relation(b.relation).name] |= {b.column, b.patron_key} | active
    own = sorted(ctx.grants.own(owner), key=lambda g: (g.level, g.db, g.name, g.column))
    _extra(ctx, f, owner, own, allowed, "the definer")
    beyond = [g for g in own if g.db == ctx.koha and sig(g) in allowed and not (
        g.level == "column" and g.privilege == "SELECT" and g.column in identity[g.name])]
    for (_, _level, db, name), grants in by_object(beyond).items():
        f.append(Finding(
            "C-DEFINER", f"{db}.{name}",
            f"the definer {owner} is given {', '.join(describe(g) for g in grants[:6])}, "
            "which the rules do not list as identity (or patron display) columns",
            revoke_sql(grants)))
    for role, admin in sorted(ctx.grants.mappings.get(owner, ())):
        f.append(Finding(
            "C-DEFINER", f"account {owner}",
            f"the definer {owner} was granted role {role}"
            + (" WITH ADMIN OPTION" if admin else "")
            + ": its privileges come with it into every definer view and routine",
            revoke_role_sql(role, owner)))
    _missing_grants(f, owner, own, allowed)
    cols = [g for g in own if g.level == "column" and g.db == ctx.koha]
    return (f"{len(cols)} column grants on {len({g.name for g in cols})} Koha tables, "
            f"{len(own) - len(cols)} other grants; account "
            f"{'locked' if acct.locked else 'NOT locked'} ({account(user, host)})")


def _role_definer(ctx: MariaContext, f: list[Finding], role: str,
                  allowed: set[tuple[str, str, str, str, str]]) -> str:
    """A definer role (the statistics reports' stats_owner): only what the layer gives it,
    on the Koha database column grants only and no secret column, no role of its own, and
    granted to nobody (whoever holds it reads what the reports count, row by row)."""
    if role not in ctx.grants.accounts:
        return f"{role} missing"
    own = sorted(ctx.grants.own(role), key=lambda g: (g.level, g.db, g.name, g.column))
    _extra(ctx, f, role, own, allowed, "the definer role")
    for g in own:
        if g.db != ctx.koha or sig(g) not in allowed:
            continue
        secret = ctx.rules.secret.get(g.name, ())
        if g.level != "column" or g.privilege != "SELECT" or secret == ALL_COLUMNS \
                or g.column in secret:
            f.append(Finding(
                "C-DEFINER", f"{g.db}.{g.name}",
                f"the definer role {role} is given {describe(g)}: it reads the Koha "
                "database by column grants only, and never a secret column",
                revoke_sql([g])))
    for other, admin in sorted(ctx.grants.mappings.get(role, ())):
        f.append(Finding(
            "C-DEFINER", f"role {role}",
            f"the definer role {role} was granted role {other}"
            + (" WITH ADMIN OPTION" if admin else "") + ": its routines run with it",
            revoke_role_sql(other, role)))
    holders = sorted(k for k, rs in ctx.grants.mappings.items()
                     if any(r == role for r, _ in rs) and (k, role) not in ctx.installer_edges)
    for who in holders:
        f.append(Finding(
            "C-DEFINER", f"role {role}",
            f"the definer role {role} is granted to {who}: it is granted to nobody, since "
            "whoever holds it reads, row by row, every Koha column the reports count",
            revoke_role_sql(role, who)))
    _missing_grants(f, role, own, allowed)
    cols = [g for g in own if g.level == "column" and g.db == ctx.koha]
    return (f"{role}: {len(cols)} column grants on {len({g.name for g in cols})} Koha "
            f"tables, granted to {len(holders)}")
