"""``ils-redact verify`` on PostgreSQL (Evergreen): the engine's checks.

Four parts, each a list of checks: catalog proof (``catalog_proof``: effective
privileges of each restricted role through PUBLIC and the whole membership graph,
against the allow-list, ``expect``); empirical proof (``empirical``: as each role, read
every relation and call the functions that run with someone else's rights); hazards
(``hazards``); drift (``drift``).  Everything runs in one REPEATABLE READ transaction that
is rolled back, whatever happens; it needs a superuser (it creates, in that transaction,
the temporary SECURITY DEFINER functions the empirical probes run in, owned by each
restricted role).  Not READ ONLY: PostgreSQL refuses CREATE FUNCTION there, even in
``pg_temp``; nothing else verify sends writes.
"""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
from psycopg.pq import TransactionStatus

from ....checks.findings import run_parts
from ....checks.report import Report
from ....errors import StateError
from ....rules import Rules, check_against_catalog, for_catalog
from ....sdc.model import ReportSource
from ..connection import require_superuser
from ..introspect import read_catalog
from ..state import read_state
from . import catalog_proof, drift, empirical, hazards
from .context import VerifyContext
from .expect import RESTRICTED_KINDS, expectations
from .graph import read_graph
from .stats_layer import layer_roles, read_stats_layer

PARTS = (("catalog", catalog_proof), ("empirical", empirical), ("hazard", hazards),
         ("drift", drift))


def verify(conn: psycopg.Connection, rules: Rules, *, reports: ReportSource,
           ils_config: Path | str | None = None, backup_roles: tuple[str, ...] = (),
           exhaustive: bool = False, strict: bool = False) -> Report:
    """Every check, on the database ``conn`` is connected to (as a superuser, idle)."""
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise StateError("verify needs a connection with no transaction open")
    started = time.perf_counter()
    timings: dict[str, float] = {}
    try:
        with conn.transaction(force_rollback=True):
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            conn.execute("SET LOCAL lock_timeout = '10s'")
            require_superuser(conn, "verify")
            t = time.perf_counter()
            ctx = _context(conn, rules, reports=reports, ils_config=ils_config,
                           backup_roles=tuple(backup_roles), exhaustive=exhaustive)
            timings["read"] = time.perf_counter() - t
            checks = run_parts(PARTS, ctx, timings)
    except psycopg.Error as exc:
        raise StateError(f"verify failed: {exc.diag.message_primary or exc}",
                         hint="nothing was changed") from None
    return Report(
        database=ctx.state.database, server_version=ctx.state.server_version,
        rules=str(rules.path or "<rules>"), rules_sha256=rules.sha256,
        roles={k: ctx.roles[k] for k in RESTRICTED_KINDS}, checks=checks,
        seconds=time.perf_counter() - started, timings=timings, strict=strict)


def _context(conn: psycopg.Connection, rules: Rules, *, reports: ReportSource,
             ils_config: Path | str | None, backup_roles: tuple[str, ...],
             exhaustive: bool) -> VerifyContext:
    catalog = read_catalog(conn)
    state = read_state(conn, rules)
    if not state.is_installed:
        raise StateError(f"ils-redact is not installed in database {state.database}",
                         hint="run `ils-redact install` first; verify proves an install")
    check_against_catalog(rules, catalog)  # rules that name what is not there: exit 2
    rules = for_catalog(rules, catalog)  # names this ILS release lacks, as the rules mark
    roles = rules.roles(state.database)
    graph = read_graph(conn)
    missing = [roles[k] for k in RESTRICTED_KINDS if roles[k] not in graph.roles]
    if missing:
        raise StateError(f"restricted role {', '.join(missing)} does not exist",
                         hint="run `ils-redact install` (an older layer, or dropped by hand)")
    ours = layer_roles(conn, set(roles.values()), state.database)
    stats = read_stats_layer(conn, ours)
    return VerifyContext(
        conn=conn, rules=rules, catalog=catalog, state=state, graph=graph, stats=stats,
        expect=expectations(rules, catalog, state, stats), roles=roles, layer_roles=ours,
        exhaustive=exhaustive, ils_config=Path(ils_config) if ils_config else None,
        backup_roles=backup_roles, reports=reports(rules, catalog))


__all__ = ["PARTS", "verify"]
