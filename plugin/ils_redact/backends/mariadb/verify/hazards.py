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
  cannot tell whether one is configured, so every such grant is reported;
* ``replication``: replication filters (this server a replica: ``replicate_*``; a
  primary: ``binlog_do_db`` / ``binlog_ignore_db``) that let the Koha tables through but
  not the layer database or the grant changes, so a revoke, a close or a REVOKE made on
  the primary never reaches the replica (a violation), and a delayed replica
  (``MASTER_DELAY``: a revoke reaches it that late, a warning).  A replica applies
  everything else, roles and grants included: unlike a PostgreSQL logical subscriber it
  carries the layer.
* ``clock``: the server runs with ``--sysdate-is-now``, so the clock that decides expiry,
  scope, audit times and statistics periods follows ``SET timestamp``;
* ``trace``: the trace of lookups and exports (``layer_facts``): not transactional, every
  export's audit entry in the log, lookups that no request followed (warnings);
* ``namesake``: a login that acts in a layer role shares its user name with another
  account (scope and the audit log are keyed on the account);
* ``planted``: an ``SQL SECURITY INVOKER`` view in the Koha database with the name of a
  Koha table, and the ``SQL SECURITY INVOKER`` routines such a view calls: whoever reads
  it (root, to learn the release or lint saved reports; Koha itself) runs its author's
  code with their own privileges (the Koha account holds ALL on the Koha database, so
  it can rename a table and put such a view in its place); and live scope rows that no
  approved, unexpired request accounts for (only approval writes scope).
"""

from __future__ import annotations

import re
from collections import defaultdict

from ....checks.findings import VIOLATION, WARNING, Check, Finding
from ...postgresql.verify.hazards import unclassified_findings
from ..sqltext import account, ident, qname, string
from .catalog_proof import GLOBAL_WHY, where
from .context import MariaContext, Routine, View
from .grants import PUBLIC, db_covers, describe, grantee_sql, revoke_role_sql, revoke_sql
from .kohaconf import koha_login
from .layer_facts import NON_TRANSACTIONAL
from .probe import PROBE_PREFIX, stale_probes

CLASSES = ("owner-rights-view", "security-definer", "public-grant", "anonymous",
           "unclassified", "definer-account", "reporter", "probe-account", "proxy",
           "replication", "clock", "trace", "namesake", "planted")


def _examples(items: list[str], n: int = 4) -> str:
    items = sorted(items)
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def run(ctx: MariaContext) -> list[Check]:
    return [owner_rights_views(ctx), security_definer(ctx), public_grants(ctx),
            anonymous(ctx), unclassified_check(ctx), definer_accounts(ctx), reporter(ctx),
            probe_accounts(ctx), proxies(ctx), replication(ctx), clock(ctx), trace(ctx),
            namesakes(ctx), planted(ctx)]


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
    watched = list(dict.fromkeys([*ctx.restricted, ("admin", ctx.roles["admin"])]))
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


# -- replication ----------------------------------------------------------------------------

def _names(value: object) -> list[str]:
    return [v.strip() for v in str(value or "").split(",") if v.strip()]


def _like(pattern: str, text: str) -> bool:
    rx = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, text, re.IGNORECASE | re.DOTALL) is not None


def replica_skips(status: dict, db: str, table: str) -> str | None:
    """The replication filter of a replica (``SHOW REPLICA STATUS`` row) that keeps changes
    to ``db.table`` from being applied, or None (MariaDB's order: database rules first,
    then table rules; row events are judged by the table's own database)."""
    do_db, ignore_db = _names(status.get("Replicate_Do_DB")), _names(
        status.get("Replicate_Ignore_DB"))
    if do_db and db not in do_db:
        return f"Replicate_Do_DB = {','.join(do_db)}"
    if db in ignore_db:
        return f"Replicate_Ignore_DB = {','.join(ignore_db)}"
    full = f"{db}.{table}"
    do_t, wild_do = _names(status.get("Replicate_Do_Table")), _names(
        status.get("Replicate_Wild_Do_Table"))
    ign_t, wild_ign = _names(status.get("Replicate_Ignore_Table")), _names(
        status.get("Replicate_Wild_Ignore_Table"))
    if full in ign_t:
        return f"Replicate_Ignore_Table = {','.join(ign_t)}"
    hit = next((p for p in wild_ign if _like(p, full)), None)
    if hit:
        return f"Replicate_Wild_Ignore_Table = {','.join(wild_ign)}"
    if (do_t or wild_do) and full not in do_t and not any(_like(p, full) for p in wild_do):
        return "Replicate_Do_Table / Replicate_Wild_Do_Table = " + ",".join(do_t + wild_do)
    return None


def binlog_skips(status: dict, db: str) -> str | None:
    """The binary-log filter of a primary (``SHOW MASTER STATUS``) that keeps changes to
    ``db`` from every replica, or None."""
    do_db, ignore_db = _names(status.get("Binlog_Do_DB")), _names(status.get("Binlog_Ignore_DB"))
    if do_db and db not in do_db:
        return f"binlog_do_db = {','.join(do_db)}"
    if db in ignore_db:
        return f"binlog_ignore_db = {','.join(ignore_db)}"
    return None


def _status_rows(ctx: MariaContext, query: str) -> list[dict] | None:
    import pymysql

    try:
        cur = ctx.conn.cursor(pymysql.cursors.DictCursor)
        try:
            cur.execute(query)
            return list(cur.fetchall())
        finally:
            cur.close()
    except pymysql.err.MySQLError:
        return None


#: what must reach a replica for the rules to hold there: the layer's scope and request
#: state (revokes, closes) and the grant tables (REVOKE, staff revoke)
def _needed(ctx: MariaContext) -> list[tuple[str, str, str]]:
    return [(ctx.layer, "scope", "revokes, closes and approvals (the scope of requests)"),
            (ctx.layer, "audit_log", "the audit log"),
            ("mysql", "global_priv", "grant changes (REVOKE, staff revoke, locked accounts)"),
            ("mysql", "roles_mapping", "role grants and revokes")]


def replication(ctx: MariaContext) -> Check:
    check = Check("hazard/replication", "every change the rules rely on (the layer database, "
                  "grant changes) reaches every replica")
    koha = ctx.koha
    looked = []
    sources = _status_rows(ctx, "SHOW ALL REPLICAS STATUS")
    for st in sources or []:
        name = st.get("Connection_name") or ""
        src = f"{st.get('Master_Host')}:{st.get('Master_Port')}" + (
            f" ({name})" if name else "")
        looked.append(f"replica of {src}")
        if replica_skips(st, koha, "borrowers"):
            continue  # not a replica of this Koha database
        skipped = [(db, table, what, rule) for db, table, what in _needed(ctx)
                   if (rule := replica_skips(st, db, table))]
        if skipped:
            rules = sorted({rule for *_, rule in skipped})
            check.findings.append(Finding(
                "H-REPLICA-FILTER", f"replication from {src}",
                f"this server replicates Koha database {koha} from {src} but "
                f"{'; '.join(rules)} skips "
                + ", ".join(f"{db}.{table}" for db, table, _, _ in skipped) + ": "
                + ", ".join(what for _, _, what, _ in skipped) + " made on the primary never "
                "reach it, so a revoked or closed request's patrons stay visible here",
                "STOP REPLICA; SET GLOBAL the filter to a value that lets "
                + ", ".join(f"{db}.{table}" for db, table, _, _ in skipped)
                + " through; START REPLICA; then rebuild this replica from a fresh copy of "
                  "the primary (what it skipped is not applied later)"))
        delay = int(st.get("SQL_Delay") or 0)
        if delay:
            check.findings.append(Finding(
                "H-DELAYED-REPLICA", f"replication from {src}",
                f"this replica applies the primary's changes {delay} s late (MASTER_DELAY): a "
                "revoke or close reaches it that late, and a revoked request's patrons stay "
                "visible here until then (expiry, compared with this server's clock, is on "
                "time)",
                "CHANGE MASTER TO MASTER_DELAY = 0 (or keep the delay and accept it in "
                "the library's policy)", severity=WARNING))
    master = _status_rows(ctx, "SHOW MASTER STATUS")
    if master:
        looked.append("binary log")
        st = master[0]
        if not binlog_skips(st, koha):
            left_out = {db: rule for db, _t, _w in _needed(ctx)
                        if (rule := binlog_skips(st, db))}
            if left_out:
                check.findings.append(Finding(
                    "H-REPLICA-FILTER", "binary log",
                    f"this server writes Koha database {koha} to its binary log but "
                    + "; ".join(f"{rule} leaves out {db}" for db, rule in left_out.items())
                    + ": revokes, closes and grant changes never reach its replicas, so a "
                    "revoked or closed request's patrons stay visible there",
                    f"remove {', '.join(left_out)} from those options in the server's "
                    "configuration and restart; then rebuild the replicas from a fresh copy",
                    severity=VIOLATION))
    check.detail = ", ".join(looked) or "not a replica, no binary log (or no privilege to see)"
    return check


def clock(ctx: MariaContext) -> Check:
    check = Check("hazard/clock", "the layer's clock (SYSDATE) follows the server's clock, "
                  "not one a session sets")
    if ctx.facts.sysdate_is_now:
        check.findings.append(Finding(
            "H-CLOCK", "server option sysdate-is-now",
            "the server runs with --sysdate-is-now: SYSDATE() is NOW(), which any session "
            "moves with SET timestamp, so a login can export an expired request, expire "
            "other staff's requests, back-date audit entries and report an incomplete month",
            "remove sysdate-is-now from the server's configuration and restart it"))
    check.detail = ("SYSDATE() is NOW() (--sysdate-is-now)" if ctx.facts.sysdate_is_now
                    else "SYSDATE() follows the server clock")
    return check


def trace(ctx: MariaContext) -> Check:
    f = ctx.facts
    check = Check("hazard/trace", "every lookup and export left a durable trace, and every "
                  "traced export its audit entry")
    table = f"{ctx.layer}.trace"
    if f.trace_engine is None:
        check.findings.append(Finding(
            "H-TRACE", table, f"{table} does not exist: patron lookups and exports leave no "
            "trace that survives a ROLLBACK", "ils-redact install (layer version 4)"))
    elif f.trace_engine not in NON_TRANSACTIONAL:
        check.findings.append(Finding(
            "H-TRACE", table, f"{table} is {f.trace_engine}, a transactional engine: a "
            "lookup or export rolled back by its caller leaves no trace",
            f"ALTER TABLE {qname(ctx.layer, 'trace')} ENGINE=Aria TRANSACTIONAL=1;"))
    for e in f.unlogged_exports:
        check.findings.append(Finding(
            "H-TRACE-UNLOGGED", f"trace #{e.seq}",
            f"{e.account} exported request {e.request_id} at {e.at}, and its audit entry "
            f"(#{e.audit_seq}) is not in the log: the transaction was rolled back after the "
            "document left the database, so a disclosure is unlogged",
            "record it: the trace row names who, when and which patrons (SELECT * FROM "  # noqa: S608
            f"{qname(ctx.layer, 'trace')} WHERE seq = {int(e.seq)})"))
    for acct, patrons in f.unrequested.items():
        shown = ", ".join(map(str, patrons[:10])) + (
            f" and {len(patrons) - 10} more" if len(patrons) > 10 else "")
        check.findings.append(Finding(
            "H-TRACE-LOOKUP", f"login {acct}",
            f"{acct} looked up {len(patrons)} patrons that no request of theirs (approved by "
            "another login) named "
            f"within the hour (patron ids {shown}): identities read without a request",
            f"ask {acct} why (the trace rows name when: SELECT * FROM "  # noqa: S608
            f"{qname(ctx.layer, 'trace')} WHERE account = {string(acct)})", severity=WARNING))
    for acct, n in f.refused_lookups.items():
        check.findings.append(Finding(
            "H-TRACE-LOOKUP", f"login {acct}",
            f"{acct} was refused {n} lookups for naming more patrons than a request may",
            f"ask {acct} why", severity=WARNING))
    for sql_xid, shown in f.xa_prepared:
        check.findings.append(Finding(
            "H-XA-PREPARED", f"XA transaction {shown}",
            f"the prepared XA transaction {shown} keeps its row locks across disconnects and "
            "restarts until it is committed or rolled back; if it appended to the audit log "
            "or locked it (SELECT ... FOR UPDATE), every export, approval and request waits "
            "for it and fails",
            f"XA ROLLBACK {sql_xid};", severity=WARNING))
    for thread, user, started in f.audit_lock_holders:
        check.findings.append(Finding(
            "H-AUDIT-LOCK-HELD", f"connection {thread}",
            f"connection {thread} ({user or 'a prepared XA transaction'}), in a transaction "
            f"since {started}, holds the audit lock others wait for: every append waits for "
            "it and fails after a few seconds",
            f"KILL {int(thread)};" if thread else "XA RECOVER; then XA ROLLBACK the xid",
            severity=WARNING))
    check.detail = (f"{f.trace_engine or 'no'} trace table; {len(f.unlogged_exports)} "
                    f"unlogged exports; {len(f.unrequested)} logins with unrequested lookups")
    return check


def namesakes(ctx: MariaContext) -> Check:
    check = Check("hazard/namesake", "no login that acts in a layer role shares its user name "
                  "with another account")
    by_name: dict[str, list[str]] = defaultdict(list)
    for a in ctx.grants.accounts.values():
        if a.is_login and a.user:
            by_name[a.user].append(a.key)
    people = sorted(ctx.layer_roles)
    n = 0
    for user, keys in sorted(by_name.items()):
        if len(keys) < 2:
            continue
        acting = [k for k in sorted(keys)
                  if any(ctx.grants.path_to(k, r, ctx.installer_edges) for r in people)]
        if not acting:
            continue
        n += 1
        others = [k for k in sorted(keys) if k not in acting]
        check.findings.append(Finding(
            "H-NAMESAKE", f"login name {user}",
            f"accounts {', '.join(sorted(keys))} share the user name {user} and "
            f"{', '.join(acting)} act{'s' if len(acting) == 1 else ''} in a layer role: "
            "ils-redact keys scope and the audit log on the account, and its views tell "
            "accounts apart by the user name and the grantee's host pattern only, so one of "
            "them may be given another's scope; approval refuses such a grantee",
            " ".join(f"DROP USER {account(*k.rpartition('@')[::2])};" for k in others[:3])
            or "rename one of them (RENAME USER)"))
    check.detail = f"{n} shared login names among layer staff"
    return check


def koha_table_names(ctx: MariaContext) -> set[str]:
    """Names Koha's own tables have: those the rules classify (the packaged Koha rules
    classify every table of the supported releases), lower case as most servers compare
    table names."""
    return {n.lower() for n in ctx.rules.classified_relations()}


def _calls(definition: str, routine: Routine) -> bool:
    """Whether view text calls the routine (``db.name(`` or ``name(``, quoted or not)."""
    pattern = (rf"(?<![\w$])(?:`?{re.escape(routine.db)}`?\s*\.\s*)?`?"
               rf"{re.escape(routine.name)}`?\s*\(")
    return re.search(pattern, definition, re.IGNORECASE) is not None


def planted(ctx: MariaContext) -> Check:
    check = Check("hazard/planted", "no SQL SECURITY INVOKER view stands in for a Koha table, "
                  "and every live scope row belongs to an approved request")
    names = koha_table_names(ctx)
    views = [v for v in ctx.views if v.db == ctx.koha and v.security.upper() == "INVOKER"
             and v.name.lower() in names]
    for v in sorted(views, key=lambda v: v.name):
        check.findings.append(Finding(
            "H-PLANTED-VIEW", v.qualified,
            f"{v.qualified} is an SQL SECURITY INVOKER view (definer {v.definer}) with the "
            "name of a Koha table: whoever reads it runs the routines it calls with their "
            "own privileges (root reading it to learn the release would run its author's "
            "code as root); the Koha account can rename a table and put a view in its place",
            f"find the table it replaced (SHOW FULL TABLES IN {ident(ctx.koha)}), then "
            f"DROP VIEW {qname(v.db, v.name)}; and RENAME TABLE the original back"))
    used = sorted({(r.type, r.db, r.name): r for v in views for r in ctx.routines
                   if r.db == ctx.koha and r.security.upper() == "INVOKER"
                   and _calls(v.definition, r)}.values(), key=lambda r: r.key)
    for r in used:
        check.findings.append(Finding(
            "H-PLANTED-ROUTINE", f"{r.type} {r.qualified}",
            f"{r.type} {r.qualified} runs SQL SECURITY INVOKER (definer {r.definer}) and a "
            "view with a Koha table's name calls it: it runs with the privileges of whoever "
            "reads the view",
            f"DROP {r.type.upper()} {qname(r.db, r.name)};"))
    for u in ctx.facts.unapproved_scope:
        why = ("no request" if u.request_id is None else
               f"request {u.request_id}, which does not exist" if u.status is None else
               f"request {u.request_id}, which is {u.status}" if u.status != "approved" else
               f"request {u.request_id}, which has expired")
        rid = "IS NULL" if u.request_id is None else f"= {int(u.request_id)}"
        check.findings.append(Finding(
            "H-SCOPE-UNAPPROVED", f"scope of {u.grantee}",
            f"{u.rows} live scope rows give {u.grantee} {u.patrons} patrons under {why}: "
            "only an approval writes scope, so these were written some other way (a planted "
            "routine run by an administrator, or a hand edit) and no audit entry covers them",
            f"DELETE FROM {qname(ctx.layer, 'scope')} "  # noqa: S608 - quoted by sqltext
            f"WHERE grantee = {string(u.grantee)} AND request_id {rid};"))
    check.detail = (f"{len(views)} planted views, {len(used)} routines they call, "
                    f"{len(ctx.facts.unapproved_scope)} unapproved scope groups")
    return check
