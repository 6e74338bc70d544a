"""``ils-redact verify`` for Koha on MariaDB: prove the rules on a live server, as each
restricted role.

The same four parts, check ids, findings and reports as on PostgreSQL
(``ils_redact.verify``), adapted to what MariaDB has and lacks (no row-level security, no
owners; roles, PUBLIC since 10.11, definer views and routines, anonymous accounts):

1. catalog proof (``catalog_proof``): each restricted role's effective privileges at every
   level (global, database, table, column, routine), through role grants and PUBLIC,
   against the allow-list (``expect``); the definer account's grants; every login that
   can act as a restricted role;
2. empirical proof (``empirical``): as each restricted role (through a temporary probe
   login, ``probe``), every column of every table and view of the Koha and layer
   databases read, and every routine called with one argument too many;
3. hazards (``hazards``): definer views and routines, PUBLIC, anonymous accounts,
   unclassified tables, an unlocked definer, Koha's own account (``--ils-config``), the
   clock, the trace of lookups and exports against the audit log, login names shared by
   several accounts (``layer_facts``);
4. drift (``drift``): what ``ils-redact plan`` would change.

Everything is read in one read-only transaction first; the probe login is the only thing
written, and it is dropped before verify returns (see ``probe``).  Verify needs the
administrator that ran install: it reads the grant tables, creates the probe login, and
grants it the restricted roles, which MariaDB allows only to a holder WITH ADMIN OPTION
(``CREATE ROLE`` made the installing account one).

Public API: :func:`verify` -> :class:`~ils_redact.verify.report.Report`.
"""

from __future__ import annotations

import time
from pathlib import Path

import pymysql

from ....checks.findings import run_parts
from ....checks.report import Report
from ....errors import StateError
from ....rules import Rules, check_against_catalog, for_catalog
from ....sdc.model import ReportSource
from ..apply import state_for
from ..connection import (
    Connection,
    current_account,
    current_database,
    require_admin,
    require_mariadb,
)
from ..introspect import read_catalog
from ..planner import names_for
from . import catalog_proof, drift, empirical, hazards
from .context import MariaContext, read_relations, read_routines, read_views
from .expect import RESTRICTED_KINDS, expectations, identity_views
from .grants import read_server_grants
from .layer_facts import read_layer_facts
from .stats_layer import read_stats_layer

PARTS = (("catalog", catalog_proof), ("empirical", empirical), ("hazard", hazards),
         ("drift", drift))


def verify(conn: Connection, rules: Rules, *, reports: ReportSource,
           ils_config: Path | str | None = None, exhaustive: bool = False,
           strict: bool = False) -> Report:
    """Every check, on the Koha database ``conn`` names (as an administrator)."""
    started = time.perf_counter()
    timings: dict[str, float] = {}
    try:
        require_mariadb(conn)
        require_admin(conn, "verify")
        t = time.perf_counter()
        conn.rollback()
        conn.autocommit(False)
        conn.execute("START TRANSACTION READ ONLY")
        try:
            ctx = context(conn, rules, reports=reports, ils_config=ils_config,
                              exhaustive=exhaustive)
        finally:
            conn.rollback()
        timings["read"] = time.perf_counter() - t
        checks = run_parts(PARTS, ctx, timings)
    except pymysql.err.MySQLError as exc:
        msg = exc.args[1] if len(exc.args) > 1 else str(exc)
        raise StateError(f"verify failed: {msg}", hint="nothing was changed") from None
    return Report(
        database=ctx.koha, server_version=ctx.state.server_version,
        rules=str(rules.path or "<rules>"), rules_sha256=rules.sha256,
        roles={k: ctx.roles[k] for k in RESTRICTED_KINDS}, checks=checks,
        seconds=time.perf_counter() - started, timings=timings, strict=strict,
        engine="MariaDB")


def context(conn: Connection, rules: Rules, *, reports: ReportSource,
            ils_config: Path | str | None = None, exhaustive: bool = False) -> MariaContext:
    """Read everything the checks need (inside the caller's transaction)."""
    database = current_database(conn)
    catalog = read_catalog(conn)
    state = state_for(conn, rules)
    if not state.is_installed:
        raise StateError(f"ils-redact is not installed in database {database}",
                         hint="run `ils-redact install` first; verify proves an install")
    check_against_catalog(rules, catalog)  # rules that name what is not there: exit 2
    rules = for_catalog(rules, catalog)  # names this ILS release lacks, as the rules mark
    names = names_for(rules, database, state.layer)
    grants = read_server_grants(conn)
    missing = [names.roles[k] for k in RESTRICTED_KINDS
               if names.roles[k] not in grants.accounts]
    if missing:
        raise StateError(f"restricted role {', '.join(missing)} does not exist",
                         hint="run `ils-redact install` (dropped by hand?)")
    # MariaDB lets only a holder WITH ADMIN OPTION grant a role, even to an administrator:
    # the probe login needs the restricted roles, so verify runs as the installing account
    me = "@".join(current_account(conn))
    lacking = [names.roles[k] for k in RESTRICTED_KINDS
               if not grants.admin_option(me, names.roles[k])]
    if lacking:
        installer = sorted({str(i.detail["admin"]) for i in state.installed_of("role")
                            if i.detail.get("admin")})
        raise StateError(
            f"verify acts as each restricted role through a probe login it grants them to, "
            f"and MariaDB lets only a holder WITH ADMIN OPTION grant a role; {me} does not "
            f"hold {', '.join(lacking)} WITH ADMIN OPTION",
            hint=f"run verify as {' or '.join(installer)} (the account that ran install "
                 "holds the roles WITH ADMIN OPTION)" if installer else
                 "run verify as the account that ran install")
    recorded = [str(i.detail.get("database", "")) for i in state.installed_of("layer")]
    layers = (state.layer,) + tuple(sorted({d for d in recorded if d and d != state.layer}))
    views = read_views(conn)
    routines = read_routines(conn)
    layer_relations = read_relations(conn, layers)
    definers = {names.owner} | {
        f"{i.detail.get('name')}@{i.detail.get('host')}" for i in state.installed_of("account")
    } | {str(i.detail.get("name")) for i in state.installed_of("role")}
    view_definer = {v.qualified: v.definer for v in views}
    relations = {(q.split(".", 1)[0], q.split(".", 1)[1]): view_definer.get(q)
                 for q in layer_relations}
    closed = set(identity_views(rules, catalog, state.layer))
    stats = read_stats_layer(state, names.roles["stats"], layers, definers, closed, relations,
                             {r.key: r.definer for r in routines})
    facts = read_layer_facts(conn, state.layer)
    installer_edges = frozenset(
        (str(i.detail["admin"]), str(i.detail["name"])) for i in state.installed_of("role")
        if i.detail.get("admin") and grants.admin_option(str(i.detail["admin"]),
                                                         str(i.detail["name"])))
    return MariaContext(
        conn=conn, rules=rules, catalog=catalog, state=state, grants=grants, names=names,
        layers=layers, views=views, routines=routines, layer_relations=layer_relations,
        stats=stats, expect=expectations(rules, catalog, state.layer, names.roles, stats),
        definers=definers, installer_edges=installer_edges, facts=facts,
        exhaustive=exhaustive, reports=reports(rules, catalog),
        ils_config=Path(ils_config) if ils_config else None)


__all__ = ["context", "verify"]
