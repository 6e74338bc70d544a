"""``ils-redact verify``: prove the rules on a live database, as each restricted role.

Run after every ILS upgrade and in a library's CI.  Four parts, each a list of checks:

1. catalog proof (``catalog_proof``): effective privileges of each restricted role through
   PUBLIC and the whole membership graph, against the allow-list (``expect``);
2. empirical proof (``empirical``): as each role, read every relation and call the
   functions that run with someone else's rights;
3. hazards (``hazards``): configurations that void the rules;
4. drift (``drift``): what ``ils-redact plan`` would change.

Everything runs in one read-only transaction that is rolled back: verify changes nothing,
and it needs a superuser (it must ``SET ROLE`` to each restricted role).  Rules for an ILS
on MariaDB (Koha) are verified by ``ils_redact.verify.mariadb``, with the same checks,
findings and report.

Public API: :func:`verify` -> :class:`Report` (``exit_code`` 0 all hold, 1 a violation;
errors raise :class:`~ils_redact.errors.IlsRedactError`, exit 2), :class:`Check`,
:class:`Finding`, :data:`CODES`, :func:`junit_error`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import psycopg
from psycopg.pq import TransactionStatus

from ..adapters import get_adapter
from ..backends.postgresql.connection import require_superuser
from ..backends.postgresql.introspect import read_catalog
from ..backends.postgresql.state import read_state
from ..errors import IlsRedactError, StateError
from ..rules import Rules, check_against_catalog
from . import catalog_proof, drift, empirical, hazards
from .context import VerifyContext
from .expect import RESTRICTED_KINDS, expectations
from .findings import CODES, VIOLATION, WARNING, Check, Finding, run_parts
from .graph import read_graph
from .report import Report, junit_error
from .stats_layer import layer_roles, read_stats_layer

PARTS = (("catalog", catalog_proof), ("empirical", empirical), ("hazard", hazards),
         ("drift", drift))


def verify(conn: psycopg.Connection, rules: Rules, *, ils_config: Path | str | None = None,
           backup_roles: Iterable[str] = (), exhaustive: bool = False,
           strict: bool = False) -> Report:
    """Every check, on the database ``conn`` is connected to (as a superuser, idle)."""
    if get_adapter(rules.adapter).engine == "mariadb":
        if tuple(backup_roles):
            raise IlsRedactError("--backup-role applies to PostgreSQL (row-level security "
                                 "breaks backup logins there); MariaDB has none")
        from .mariadb import verify as verify_mariadb

        return verify_mariadb(conn, rules, ils_config=ils_config,  # type: ignore[arg-type]
                              exhaustive=exhaustive, strict=strict)
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise StateError("verify needs a connection with no transaction open")
    started = time.perf_counter()
    timings: dict[str, float] = {}
    try:
        with conn.transaction(force_rollback=True):
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            conn.execute("SET LOCAL lock_timeout = '10s'")
            require_superuser(conn, "verify")
            t = time.perf_counter()
            ctx = _context(conn, rules, ils_config=ils_config,
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


def _context(conn: psycopg.Connection, rules: Rules, *, ils_config: Path | str | None,
             backup_roles: tuple[str, ...], exhaustive: bool) -> VerifyContext:
    catalog = read_catalog(conn)
    state = read_state(conn, rules)
    if not state.is_installed:
        raise StateError(f"ils-redact is not installed in database {state.database}",
                         hint="run `ils-redact install` first; verify proves an install")
    check_against_catalog(rules, catalog)  # rules that name what is not there: exit 2
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
        backup_roles=backup_roles)


__all__ = ["CODES", "VIOLATION", "WARNING", "Check", "Finding", "IlsRedactError", "Report",
           "junit_error", "verify"]
