"""Run a plan: one transaction, under the advisory lock, or not at all.

The plan is computed inside the transaction, after the lock, so two sysadmins cannot
interleave; the statements executed are the plan's own strings.  Any error rolls the
whole transaction back (PostgreSQL DDL, CREATE ROLE included, is transactional), and so
does a killed client: the database is as it was.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from ... import __version__
from ...catalog import Catalog
from ...errors import StateError
from ...plan import Plan, status_fields
from ...rules import Rules
from .connection import current_database, lock_statement, require_superuser
from .introspect import read_catalog
from .planner import layer_version_available, plan_install
from .state import PgState, read_state
from .uninstall import blockers, plan_uninstall

log = logging.getLogger("ils_redact.sql")


def plan_digest(plan: Plan) -> str:
    """sha256 of the statements: `install --expect` refuses a plan other than the one
    reviewed."""
    h = hashlib.sha256()
    for step in plan.steps:
        h.update(step.sql.encode())
        h.update(b"\0")
    return h.hexdigest()


def _preamble(plan: Plan, lock_timeout: str) -> None:
    plan.preamble = [
        "BEGIN;",
        f"SET LOCAL lock_timeout = {sql.Literal(lock_timeout).as_string(None)};",
        lock_statement() + ";  -- one install or uninstall at a time",
    ]
    plan.postamble = ["COMMIT;"]


def _execute(conn: psycopg.Connection, plan: Plan) -> None:
    for step in plan.steps:
        log.debug("%s", step.sql)
        try:
            conn.execute(step.sql)  # type: ignore[arg-type]  # a reviewed string, no params
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
                         lock_timeout: str = "10s") -> Plan:
    catalog = read_catalog(conn)
    state = read_state(conn, rules)
    plan = plan_install(rules, catalog, state)
    _preamble(plan, lock_timeout)
    return plan


def offline_install_plan(rules: Rules, catalog: Catalog) -> Plan:
    """The plan for a database ils-redact never touched, from a JSON catalog."""
    state = PgState.empty(catalog.database or "<database>", catalog.server_version)
    plan = plan_install(rules, catalog, state)
    _preamble(plan, "10s")
    return plan


def install(conn: psycopg.Connection, rules: Rules, *, lock_timeout: str = "10s",
            expect: str | None = None) -> Plan:
    require_superuser(conn, "install")
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(lock_timeout)))
        conn.execute(lock_statement())  # type: ignore[arg-type]
        plan = compute_install_plan(conn, rules, lock_timeout)
        if expect and not plan_digest(plan).startswith(expect):
            raise StateError(f"the plan is no longer the one reviewed (sha256 "
                             f"{plan_digest(plan)[:16]}, expected {expect[:16]}); nothing "
                             "was changed", hint="run `ils-redact plan` again and review it")
        _execute(conn, plan)
    return plan


def compute_uninstall_plan(conn: psycopg.Connection, rules: Rules | None = None,
                           *, check: bool = True) -> tuple[Plan, list[str]]:
    state = read_state(conn, rules) if rules else _state_from_bookkeeping(conn)
    plan = plan_uninstall(conn, state)
    _preamble(plan, "10s")
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
        conn.execute(lock_statement())  # type: ignore[arg-type]
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


def status(conn: psycopg.Connection, rules: Rules) -> dict[str, Any]:
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
    out.update(status_fields(rules, catalog, state, plan_install, last,
                             recorded=state.is_installed))
    out["in_sync"] = state.is_installed and out.get("drift") == []
    return out
