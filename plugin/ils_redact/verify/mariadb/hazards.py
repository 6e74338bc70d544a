"""Hazards on MariaDB: configurations that void the rules even when every grant of the
restricted roles looks right.  One check per class (``hazard/<class>``):

* ``owner-rights-view``: an SQL SECURITY DEFINER view, anywhere on the server, that reads
  protected data (a Koha table the rules protect, or a layer table) and that PUBLIC or a
  restricted role may read: it runs with its definer's rights;
* ``security-definer``: an SQL SECURITY DEFINER routine a restricted role or PUBLIC may
  execute, other than the layer's vetted ones, with the protected tables its text names;
* ``public-grant``: privileges of PUBLIC (MariaDB 10.11+) on protected Koha tables, the
  Koha database, the layer or the server, and roles granted to PUBLIC;
* ``anonymous``: an anonymous account (``''@host``, anyone who connects from that host
  without an account of their own) that holds or can take a restricted role;
* ``unclassified``: Koha tables, and columns of identity tables, the rules do not classify
  (new since the rules were written, e.g. after a Koha upgrade);
* ``definer-account``: the layer's definer account (and any other account ils-redact
  created) not locked: whoever logs in as it reads every identity column;
* ``reporter``: the account in Koha's ``koha-conf.xml`` (``--ils-config``) holding more than
  the Koha database (saved SQL reports run with all of it);
* ``probe-account``: a probe login left by a verify that was killed;
* ``proxy``: a ``PROXY`` grant (``mysql.proxies_priv``) that lets an account log in as the
  layer's definer (a violation: it reads every patron's identity columns) or as a login
  holding a restricted or admin role (a warning: it acts with that role without being
  among the role's grantees; ``USER()``, which the scope and the audit log use, stays its
  own name).  Proxying needs an authentication plugin that maps users (PAM); verify
  cannot tell whether one is configured, so every such grant is reported.
"""

from __future__ import annotations

from collections import defaultdict

from ...backends.mariadb.sqltext import account, ident
from ..findings import WARNING, Check, Finding
from ..hazards import unclassified_findings
from .catalog_proof import GLOBAL_WHY, where
from .context import MariaContext, Routine, View
from .grants import PUBLIC, db_covers, describe, grantee_sql, revoke_role_sql, revoke_sql
from .kohaconf import koha_login
from .probe import PROBE_PREFIX, stale_probes

CLASSES = ("owner-rights-view", "security-definer", "public-grant", "anonymous",
           "unclassified", "definer-account", "reporter", "probe-account", "proxy")


def _examples(items: list[str], n: int = 4) -> str:
    items = sorted(items)
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def run(ctx: MariaContext) -> list[Check]:
    return [owner_rights_views(ctx), security_definer(ctx), public_grants(ctx),
            anonymous(ctx), unclassified_check(ctx), definer_accounts(ctx), reporter(ctx),
            probe_accounts(ctx), proxies(ctx)]


def _judged(ctx: MariaContext) -> list[tuple[str, str]]:
    """(who, role name) whose privileges count: PUBLIC, then each restricted role."""
    return [(PUBLIC, PUBLIC)] + [(kind, role) for kind, role in ctx.restricted]


def _privileges_of(ctx: MariaContext, who: str, role: str):
    if who == PUBLIC:
        return [(g, path) for other, path in ctx.grants.public.items()
                for g in ctx.grants.own(other)]
    return [(h.grant, h.path) for h in ctx.grants.effective(role) if h.source != "PUBLIC"]


def _may_read(ctx: MariaContext, v: View) -> dict[str, list]:
    """who (PUBLIC or a restricted role kind) -> the grants that let it read view ``v``."""
    out: dict[str, list] = defaultdict(list)
    for who, role in _judged(ctx):
        for g, _path in _privileges_of(ctx, who, role):
            if g.privilege != "SELECT":
                continue
            if g.level == "global" or (g.level == "database" and db_covers(g.db, v.db)) or (
                    g.level in ("table", "column") and g.db == v.db and g.name == v.name):
                out[who].append(g)
    return out


def _exempt_view(ctx: MariaContext, who: str, v: View) -> bool:
    if who == "disclosure" and (v.qualified in ctx.identity_views
                                or v.qualified == f"{ctx.layer}.scope_patrons"):
        return True
    return who == "stats" and (v.db, v.name) in ctx.stats.relations


def owner_rights_views(ctx: MariaContext) -> Check:
    check = Check("hazard/owner-rights-view", "no SQL SECURITY DEFINER view over protected "
                  "data is readable by PUBLIC or a restricted role")
    n = 0
    for v in sorted(ctx.views, key=lambda v: v.qualified):
        if v.security.upper() != "DEFINER":
            continue
        n += 1
        reads = sorted(r for r in v.reads if ctx.protected(r))
        if not reads:
            continue
        who = {w: gs for w, gs in _may_read(ctx, v).items() if not _exempt_view(ctx, w, v)}
        if not who:
            continue
        roles = sorted(PUBLIC if w == PUBLIC else ctx.roles[w] for w in who)
        fixes = []
        for gs in who.values():
            fixes += [revoke_sql([g]) for g in gs]
        check.findings.append(Finding(
            "H-OWNER-RIGHTS-VIEW", v.qualified,
            f"view {v.qualified} runs as its definer {v.definer} (SQL SECURITY DEFINER) and "
            f"reads {_examples(reads)}: {', '.join(roles)} may select from it, so the rules "
            "do not apply to what it returns",
            " ".join(sorted(set(fixes))) + " (or re-create the view with SQL SECURITY "
            "INVOKER)"))
    check.detail = f"{n} SQL SECURITY DEFINER views on the server"
    return check


def _may_call(ctx: MariaContext, r: Routine) -> dict[str, list]:
    out: dict[str, list] = defaultdict(list)
    for who, role in _judged(ctx):
        for g, _path in _privileges_of(ctx, who, role):
            if g.privilege != "EXECUTE":
                continue
            if g.level == "global" or (g.level == "database" and db_covers(g.db, r.db)) or (
                    g.level == r.type and g.db == r.db and g.name == r.name):
                out[who].append(g)
    return out


def security_definer(ctx: MariaContext) -> Check:
    check = Check("hazard/security-definer", "no restricted role or PUBLIC may execute an "
                  "SQL SECURITY DEFINER routine beyond the layer's vetted ones")
    n = 0
    for r in sorted(ctx.routines, key=lambda r: r.key):
        if r.security.upper() != "DEFINER":
            continue
        n += 1
        who = {}
        for w, gs in _may_call(ctx, r).items():
            if w != PUBLIC and ctx.expect[w].may_call(r.type, r.db, r.name):
                continue
            if w == "stats" and r.key in ctx.stats.routines:
                continue
            who[w] = gs
        if not who:
            continue
        reads = ctx.reads_in(r)
        reads_txt = (f"its text reads {_examples(reads)}" if reads else
                     "its text names no protected table (dynamic SQL is not followed)")
        roles = sorted(PUBLIC if w == PUBLIC else ctx.roles[w] for w in who)
        fixes = sorted({revoke_sql([g]) for gs in who.values() for g in gs})
        check.findings.append(Finding(
            "H-SECURITY-DEFINER", f"{r.type} {r.qualified}",
            f"SQL SECURITY DEFINER {r.type} {r.qualified} runs as {r.definer} and "
            f"{', '.join(roles)} may execute it; {reads_txt}", " ".join(fixes)))
    check.detail = f"{n} SQL SECURITY DEFINER routines on the server"
    return check


def public_grants(ctx: MariaContext) -> Check:
    check = Check("hazard/public-grant", "PUBLIC holds nothing on protected Koha tables, the "
                  "Koha database, the layer or the server, and no role is granted to PUBLIC")
    mine: dict[tuple[str, str, str, str], list] = defaultdict(list)
    for g in ctx.grants.own(PUBLIC):
        loc = where(ctx, g)
        if g.level == "global":
            mine[("global", "", "", "")].append(g)
        elif loc == "koha" and (g.level == "database" or g.level in ("procedure", "function")
                                or ctx.protected(f"{g.db}.{g.name}")):
            mine[(g.level if g.level != "column" else "table", g.db, g.name, loc)].append(g)
        elif loc in ("layer", "mysql"):
            mine[(g.level if g.level != "column" else "table", g.db, g.name, loc)].append(g)
    for (level, db, name, loc), gs in sorted(mine.items()):
        privs = ", ".join(sorted({describe(g) for g in gs}))
        if level == "global":
            obj, why = "*.*", "; ".join(f"{p}: {GLOBAL_WHY[p]}" for p in
                                        sorted({g.privilege for g in gs}) if p in GLOBAL_WHY)
        elif level == "database":
            obj, why = f"{db}.*", "every table of the database, those added later too"
        elif level in ("procedure", "function"):
            obj, why = f"{level} {db}.{name}", "a routine it runs as its definer" if any(
                r.key == (level, db, name) and r.security.upper() == "DEFINER"
                for r in ctx.routines) else "a routine"
        elif loc == "koha":
            obj, why = f"{db}.{name}", f"a {ctx.classify(db, name)} Koha table"
        elif loc == "layer":
            obj, why = f"{db}.{name}", "the layer's own (scope, requests, audit log)"
        else:
            obj, why = f"{db}.{name}", "the grant tables"
        fixes = " ".join(revoke_sql([g]) for g in gs if g.level != "column") or ""
        cols = [g for g in gs if g.level == "column"]
        if cols:
            fixes = (fixes + " " + revoke_sql(cols)).strip()
        check.findings.append(Finding(
            "H-PUBLIC-GRANT", obj,
            f"PUBLIC holds {privs}: {why or 'a server-wide privilege'}; every account, the "
            "restricted roles' members included, has it", fixes))
    for role, _admin in sorted(ctx.grants.mappings.get(PUBLIC, ())):
        closure = ctx.grants.closure(role)
        held = [g for other in closure for g in ctx.grants.own(other)
                if g.level == "global" or where(ctx, g) in ("koha", "layer", "mysql")]
        ours = role in ctx.layer_roles | ctx.definer_roles
        if not ours and not held:
            continue
        what = (f"an ils-redact role: every account may act as {role}" if ours else
                f"{role} holds {_examples(sorted({describe(g) for g in held}))}")
        check.findings.append(Finding(
            "H-PUBLIC-GRANT", f"role {role}",
            f"role {role} is granted to PUBLIC: {what}, in every session without SET ROLE",
            revoke_role_sql(role, PUBLIC)))
    check.detail = f"{len(ctx.grants.own(PUBLIC))} privileges held by PUBLIC"
    return check


#: global privileges with which an account can give itself any role
_TAKE = {"CREATE USER", "SUPER", "GRANT OPTION", "SET USER"}


def anonymous(ctx: MariaContext) -> Check:
    check = Check("hazard/anonymous", "no anonymous account (''@host) holds or can take a "
                  "restricted role")
    anons = [a for a in ctx.grants.accounts.values() if a.anonymous]
    for a in sorted(anons, key=lambda a: a.host):
        reasons = []
        for _kind, role in ctx.restricted:
            path = ctx.grants.path_to(a.key, role)
            if path:
                reasons.append(f"it acts as {role} ({' -> '.join(path)})")
        for role, admin in sorted(ctx.grants.mappings.get(a.key, ())):
            if admin and any(role in ctx.grants.closure(r) or role == r
                             for _, r in ctx.restricted):
                reasons.append(f"it holds {role} WITH ADMIN OPTION")
        own = ctx.grants.own(a.key)
        take = sorted({g.privilege for g in own if g.level == "global" and g.privilege in _TAKE})
        if take:
            reasons.append(f"with global {', '.join(take)} it can grant itself any role")
        writes = sorted({describe(g) for g in own if g.level != "global" and
                         where(ctx, g) == "mysql" and g.privilege in ("INSERT", "UPDATE")})
        if writes:
            reasons.append(f"it can write the grant tables ({_examples(writes)})")
        if not reasons:
            continue
        check.findings.append(Finding(
            "H-ANONYMOUS", f"account ''@{a.host}",
            f"anonymous account ''@'{a.host}'{' (no password)' if a.no_password else ''}: "
            f"anyone who connects from {a.host!r} without an account of their own is this "
            f"account, and {'; '.join(reasons)}",
            f"DROP USER {account('', a.host)};"))
    check.detail = f"{len(anons)} anonymous accounts"
    return check


def unclassified_check(ctx: MariaContext) -> Check:
    check = Check("hazard/unclassified", "the rules classify every Koha table, and every "
                  "column of the identity tables")
    check.findings += unclassified_findings(
        ctx.rules, ctx.catalog, skip_schemas=frozenset(), what="table",
        new_since="new since they were written, e.g. a Koha upgrade?",
        column_effect="the identity view leaves it out until someone decides",
        rules_name=lambda r: r.split(".", 1)[-1])
    check.detail = f"{len(ctx.catalog.relations)} Koha tables"
    return check


def _definers(ctx: MariaContext) -> set[str]:
    """The accounts ils-redact created (the definer): every layer object runs as one."""
    return {f"{i.detail.get('name')}@{i.detail.get('host')}"
            for i in ctx.state.installed_of("account")} | {ctx.owner}


def definer_accounts(ctx: MariaContext) -> Check:
    check = Check("hazard/definer-account", "the layer's definer account (and every account "
                  "ils-redact created) is locked")
    recorded = _definers(ctx)
    for key in sorted(recorded):
        a = ctx.grants.accounts.get(key)
        if a is None or a.locked:
            continue
        user, _, host = key.rpartition("@")
        check.findings.append(Finding(
            "H-DEFINER-UNLOCKED", f"account {key}",
            f"the definer account {key} is not locked"
            + (" and has no password" if a.no_password else "")
            + ": whoever logs in as it reads the identity columns of every patron and writes "
            "the scope (every layer view and routine runs as it)",
            f"ALTER USER {account(user, host)} ACCOUNT LOCK; (or `ils-redact install`)"))
    check.detail = f"{len(recorded)} accounts"
    return check


def reporter(ctx: MariaContext) -> Check:
    check = Check("hazard/reporter", "Koha's database account (its saved SQL reports run as "
                  "it) holds the Koha database and nothing more")
    if ctx.ils_config is None:
        check.skipped = "no --ils-config given (Koha's koha-conf.xml)"
        return check
    login = koha_login(ctx.ils_config)
    obj = f"{ctx.ils_config}: {login.element}/user"
    accounts = [a for a in ctx.grants.accounts.values()
                if a.is_login and a.user == login.user]
    if login.database and login.database != ctx.koha:
        check.findings.append(Finding(
            "H-REPORTER-UNKNOWN-ROLE", obj,
            f"{ctx.ils_config} names database {login.database}, not {ctx.koha}: not checked",
            "pass the koha-conf.xml of this Koha database", severity=WARNING))
        return check
    if not accounts:
        check.findings.append(Finding(
            "H-REPORTER-UNKNOWN-ROLE", obj,
            f"Koha connects as {login.where}, a login this server does not have: not checked",
            "run verify against Koha's own database server", severity=WARNING))
        return check
    for a in sorted(accounts, key=lambda a: a.key):
        sources: dict[str, tuple[str, ...]] = {a.key: (a.key,)}
        for r in sorted(ctx.grants.roles_of(a.key)):
            for other, p in ctx.grants.closure(r).items():
                sources.setdefault(other, (a.key,) + p)
        for other, _path in sorted(sources.items()):
            bad = sorted((g for g in ctx.grants.own(other) if g.level == "global"
                          or where(ctx, g) in ("layer", "mysql")), key=describe)
            if not bad:
                continue
            glob = sorted({g.privilege for g in bad if g.level == "global"})
            rest = sorted({describe(g) for g in bad if g.level != "global"})
            parts = ([f"global {', '.join(glob)}"] if glob else []) + (
                [f"{_examples(rest)} on the layer or the grant tables"] if rest else [])
            via = "" if other == a.key else f" through role {other}"
            check.findings.append(Finding(
                "H-REPORTER-SUPERUSER", f"login {a.key}",
                f"Koha connects as {a.key} ({obj}), which{via} holds {'; '.join(parts)}: "
                "every saved SQL report runs with it, beyond the Koha database (the layer's "
                "scope and audit log, other databases)",
                " ".join(revoke_sql([g]) for g in bad[:4])
                + f" then GRANT ALL ON {ident(ctx.koha)}.* TO {grantee_sql(a.key)}; "
                  "(Koha needs its own database only)"))
    check.detail = (f"Koha connects as {login.user} ({len(accounts)} accounts); saved SQL "
                    "reports read every Koha table: check them with `ils-redact lint "
                    "--koha-saved-sql`")
    return check


def probe_accounts(ctx: MariaContext) -> Check:
    check = Check("hazard/probe-account", "no probe login of an interrupted verify is left "
                  "on the server")
    rows = [(a.user, a.host) for a in ctx.grants.accounts.values()
            if a.is_login and a.user.startswith(PROBE_PREFIX)]
    for key in stale_probes(rows):
        user, _, host = key.rpartition("@")
        check.findings.append(Finding(
            "H-STALE-PROBE", f"account {key}",
            f"{key} is a probe login left by a verify that did not finish (locked, random "
            "password)", f"DROP USER {account(user, host)};", severity=WARNING))
    check.detail = f"{len(rows)} probe logins"
    return check


__all__ = ["CLASSES", "run"]


def proxies(ctx: MariaContext) -> Check:
    check = Check("hazard/proxy", "no account may log in as the layer's definer, or as a "
                  "login that holds a restricted or admin role, through PROXY")
    definers = _definers(ctx)
    watched = [*ctx.restricted, ("admin", ctx.roles["admin"])]
    for px in sorted(ctx.grants.proxies, key=lambda x: (x.key, x.proxied_user, x.proxied_host)):
        for acct in sorted(ctx.grants.accounts.values(), key=lambda a: a.key):
            if acct.key == px.key or not px.covers(acct):
                continue
            via = (f"{px.key} holds PROXY ON '{px.proxied_user}'@'{px.proxied_host}'"
                   f"{' WITH GRANT OPTION' if px.with_grant else ''}, which covers {acct.key}")
            if acct.key in definers:
                check.findings.append(Finding(
                    "H-PROXY", f"account {px.key}",
                    f"{via}, the layer's definer: with an authentication plugin that maps "
                    "users, it logs in as the definer and reads the identity columns of "
                    "every patron and writes the scope", px.sql))
                continue
            roles = [f"{role} ({' -> '.join(path)})" for _kind, role in watched
                     if (path := ctx.grants.path_to(acct.key, role))]
            if roles:
                check.findings.append(Finding(
                    "H-PROXY", f"account {px.key}",
                    f"{via}: with an authentication plugin that maps users, it acts as "
                    f"{', '.join(roles)} without being among the role's grantees (the "
                    "scope and the audit log see its own name)",
                    px.sql + "; or give it the role with ils-redact staff grant",
                    severity=WARNING))
    check.detail = f"{len(ctx.grants.proxies)} PROXY grants"
    return check
