"""Run a plan: one transaction, under the layer's lock, or not at all.

The plan is computed inside the transaction, after the lock, so two sysadmins cannot
interleave; the statements executed are the plan's own strings, one per step, each sent
alone with the extended protocol (``run_statement``).  Any error rolls the whole
transaction back (PostgreSQL DDL, CREATE ROLE included, is transactional), and so does a
killed client: the database is as it was.

The lock is one no stranger can take (threat model row 22: an advisory lock key is
shared by every session, and any login could hold install's): on an installed database,
the row of the layer's own ``ils_redact.meta`` table that holds its version, ``FOR
UPDATE``, which needs UPDATE on that table (the layer's owner role, granted to nobody,
and superusers); on a fresh database, the patron table the install is about to put under
row-level security, in SHARE ROW EXCLUSIVE mode, which only roles that may write it (the
ILS) or own it can conflict with, and they could hold up the install's ALTER TABLE in any
case.  ``--lock-timeout`` bounds the wait, and the error says who to look for.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Any

import psycopg
from psycopg import sql

from ... import __version__
from ...catalog import Catalog
from ...errors import StateError
from ...plan import Plan, status_fields
from ...rules import Rules
from ...sdc.model import ReportSource
from .connection import current_database, require_superuser, run_statement
from .introspect import read_catalog
from .planner import layer_version_available, plan_install, qname
from .state import PgState, read_state
from .uninstall import blockers, plan_uninstall

log = logging.getLogger("ils_redact.sql")


#: the installed layer's lock: its version row, which only its owner role may update
LAYER_LOCK = "SELECT FROM ils_redact.meta WHERE key = 'layer_version' FOR UPDATE"


def fresh_lock(rules: Rules) -> str:
    """The fresh install's lock: the patron table, in a mode that waits for the ILS's
    writers (as the install's ALTER TABLE would) and for another install, not readers."""
    return sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(
        qname(rules.patron.relation)).as_string(None)


def _preamble(plan: Plan, lock_timeout: str, lock: str) -> None:
    plan.preamble = [
        "BEGIN;",
        f"SET LOCAL lock_timeout = {sql.Literal(lock_timeout).as_string(None)};",
        lock + ";  -- one install or uninstall at a time",
    ]
    plan.postamble = ["COMMIT;"]


def _installed(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT to_regclass('ils_redact.meta') IS NOT NULL").fetchone()
    return bool(row and row[0])


def serialise(conn: psycopg.Connection, rules: Rules | None, action: str) -> None:
    """Take the lock that keeps two installs (or an install and an uninstall) of this
    database apart; see the module.  In the caller's transaction, with its lock_timeout.
    ``rules`` None: uninstall (the layer must be installed)."""
    waiting_for = "ils_redact.meta"
    try:
        if _installed(conn):
            row = conn.execute(LAYER_LOCK).fetchone()
            if row is not None or rules is None:
                return
            # an uninstall that finished while we waited took the row: fresh again
        if rules is None:
            return
        patron = conn.execute("SELECT to_regclass(%s)", (
            qname(rules.patron.relation).as_string(None),)).fetchone()
        if not patron or patron[0] is None:
            return  # the plan reports the rules' missing table
        waiting_for = rules.patron.relation
        conn.execute(fresh_lock(rules))
    except psycopg.errors.LockNotAvailable:
        raise StateError(
            f"{action} timed out waiting for the layer's lock (a lock on {waiting_for}): "
            "another install or uninstall is running, or a session holds that lock; "
            "nothing was changed",
            hint="find it in pg_locks and pg_stat_activity, or raise --lock-timeout"
        ) from None
    if _installed(conn):
        raise StateError(f"another install of database {current_database(conn)} finished "
                         "while this one waited; nothing was changed",
                         hint=f"run {action} again")


def _execute(conn: psycopg.Connection, plan: Plan) -> None:
    for step in plan.steps:
        log.debug("%s", step.sql)
        try:
            run_statement(conn, step.sql)
        except psycopg.errors.LockNotAvailable:
            raise StateError(f"timed out waiting for a lock on {step.target} (the ILS is "
                             "busy with it)", hint="retry, or raise --lock-timeout") from None
        except psycopg.Error as exc:
            diag = exc.diag.message_primary or str(exc)
            if exc.diag.message_detail:
                diag += f" ({exc.diag.message_detail.splitlines()[0]})"
            raise StateError(f"{plan.action} failed at {step.kind} {step.target}: {diag}; "
                             "nothing was changed") from None


def compute_install_plan(conn: psycopg.Connection, rules: Rules,
                         lock_timeout: str = "10s", *, reports: ReportSource) -> Plan:
    catalog = read_catalog(conn)
    state = read_state(conn, rules)
    plan = plan_install(rules, catalog, state, reports=reports)
    _preamble(plan, lock_timeout, LAYER_LOCK if state.is_installed else fresh_lock(rules))
    return plan


def offline_install_plan(rules: Rules, catalog: Catalog, *, reports: ReportSource) -> Plan:
    """The plan for a database ils-redact never touched, from a JSON catalog."""
    state = PgState.empty(catalog.database or "<database>", catalog.server_version)
    plan = plan_install(rules, catalog, state, reports=reports)
    _preamble(plan, "10s", fresh_lock(rules))
    return plan


def install(conn: psycopg.Connection, rules: Rules, *, reports: ReportSource,
            lock_timeout: str = "10s", expect: str | None = None) -> Plan:
    require_superuser(conn, "install")
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(lock_timeout)))
        serialise(conn, rules, "install")
        plan = compute_install_plan(conn, rules, lock_timeout, reports=reports)
        plan.require_reviewed(expect)
        _execute(conn, plan)
        if plan.empty:
            record_noop_install(conn, rules)
    return plan


def record_noop_install(conn: psycopg.Connection, rules: Rules) -> None:
    """A second install changes nothing, but the rules it was run with are now the
    installed rules (an edit that plans nothing, or an ILS upgrade): record them once, so
    `status` stops saying the rules changed since install."""
    row = conn.execute("SELECT rules_sha256 FROM ils_redact.install_log "
                       "WHERE action = 'install' ORDER BY id DESC LIMIT 1").fetchone()
    if row is not None and row[0] == rules.sha256:
        return
    conn.execute(
        "INSERT INTO ils_redact.install_log (action, tool_version, layer_version, "
        "rules_sha256, changes) VALUES ('install', %s, %s, %s, 0)",
        (__version__, layer_version_available(), rules.sha256))


def compute_uninstall_plan(conn: psycopg.Connection, rules: Rules | None = None,
                           *, check: bool = True) -> tuple[Plan, list[str]]:
    state = read_state(conn, rules) if rules else _state_from_bookkeeping(conn)
    plan = plan_uninstall(conn, state)
    _preamble(plan, "10s", LAYER_LOCK)
    return plan, (blockers(conn, state) if check else [])


def _state_from_bookkeeping(conn: psycopg.Connection) -> PgState:
    """Uninstall needs no rules file: the role names are in the bookkeeping."""
    row = conn.execute("SELECT to_regclass('ils_redact.installed_object')").fetchone()
    if not row or row[0] is None:
        raise StateError(f"ils-redact is not installed in database {current_database(conn)}")
    names = [r[0] for r in conn.execute(
        "SELECT detail->>'name' FROM ils_redact.installed_object "
        "WHERE kind IN ('role', 'login')")]
    return read_state(conn, _RecordedRoles(names))  # type: ignore[arg-type]


@dataclass
class _RecordedRoles:
    """Stands in for the rules where only the role names matter."""

    names: list[str]

    def roles(self, database: str | None = None) -> dict[str, str]:
        return {n: n for n in self.names}


def uninstall(conn: psycopg.Connection, *, lock_timeout: str = "10s",
              discard_audit: bool = False) -> Plan:
    require_superuser(conn, "uninstall")
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(lock_timeout)))
        serialise(conn, None, "uninstall")
        plan, blocking = compute_uninstall_plan(conn)
        if blocking:
            raise StateError("uninstall refused, nothing was changed: " + "; ".join(blocking),
                             hint="remove these by hand (or run install to repair drift), "
                                  "then uninstall")
        entries = audit_entries(conn)
        if entries and not discard_audit:
            raise StateError(
                f"the audit log holds {entries} entries that uninstall would delete",
                hint="export them first (`ils-redact audit export`), then uninstall "
                     "with --discard-audit")
        _execute(conn, plan)
    return plan


def audit_entries(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT to_regclass('ils_redact.audit_log')").fetchone()
    if not row or row[0] is None:
        return 0
    n = conn.execute("SELECT count(*) FROM ils_redact.audit_log").fetchone()
    return int(n[0]) if n else 0


def status(conn: psycopg.Connection, rules: Rules, *, reports: ReportSource) -> dict[str, Any]:
    """Installed version, rules hash, and whether the catalog has drifted from the plan."""
    catalog = read_catalog(conn)
    state = read_state(conn, rules)
    out: dict[str, Any] = {
        "database": state.database,
        "server_version": state.server_version,
        "installed": state.is_installed,
        "tool_version": __version__,
        "layer_version": state.layer_version,
        "layer_version_available": layer_version_available(),
        "roles": rules.roles(state.database),
    }
    row = None
    if state.is_installed:
        row = conn.execute(
            "SELECT rules_sha256, tool_version, at, by_user FROM ils_redact.install_log "
            "WHERE action = 'install' ORDER BY id DESC LIMIT 1").fetchone()
    last = (row[0], row[1], row[2].isoformat(), row[3]) if row else None
    out.update(status_fields(rules, catalog, state, partial(plan_install, reports=reports),
                             last, recorded=state.is_installed))
    out["in_sync"] = state.is_installed and out.get("drift") == []
    return out
