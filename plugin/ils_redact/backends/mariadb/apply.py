"""Run a plan on MariaDB: statement by statement, under GET_LOCK, with progress recorded.

MariaDB commits every DDL statement on its own, so a plan cannot be rolled back as a
whole (PostgreSQL's install is one transaction).  Instead: the planner orders the steps
so that any prefix of them is safe (nothing readable by anybody new until the last group
of grants); each step runs in autocommit mode, so bookkeeping written before a CREATE is
durable before the CREATE happens; ``install_run`` in the layer database records how far
a run got; and the next ``install`` plans again from what exists and finishes the job.
"""

# ruff: noqa: S608 - MariaDB SQL text is built here: identifiers only through sqltext.ident /
# qname / account, values only through sqltext.literal or driver parameters.

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import pymysql

from ... import __version__
from ...catalog import Catalog
from ...errors import StateError
from ...plan import Plan, status_fields
from ...rules import Rules
from ...sdc.model import ReportSource
from .connection import (
    Connection,
    current_database,
    get_lock,
    parse_timeout,
    release_lock,
    require_admin,
    require_mariadb,
    require_real_clock,
    use_database_sql,
)
from .introspect import read_catalog
from .layer import layer_version_available
from .planner import (
    ROLE_KINDS,
    MariaPlan,
    names_for,
    plan_install,
    preamble,
    unrecord_sql,
)
from .sqltext import SQL_MODE, literal, qname
from .state import MariaState, layer_database, read_state
from .uninstall import blockers, plan_uninstall, recorded_names

log = logging.getLogger("ils_redact.sql")


def _role_names(rules: Rules, database: str) -> tuple[list[str], str]:
    roles = rules.roles(database)
    return [roles[k] for k in ROLE_KINDS], roles["owner"]


def state_for(conn: Connection, rules: Rules) -> MariaState:
    database = current_database(conn)
    names, owner = _role_names(rules, database)
    return read_state(conn, names, owner, database)


def compute_install_plan(conn: Connection, rules: Rules, lock_timeout: str = "10s", *,
                         reports: ReportSource) -> MariaPlan:
    catalog = read_catalog(conn)
    plan = plan_install(rules, catalog, state_for(conn, rules), reports=reports)
    plan.preamble = preamble(catalog.database, parse_timeout(lock_timeout))
    return plan


def offline_install_plan(rules: Rules, catalog: Catalog, *, reports: ReportSource) -> MariaPlan:
    """The plan for a server ils-redact never touched, from a JSON catalog."""
    state = MariaState.empty(catalog.database or "koha", catalog.server_version)
    plan = plan_install(rules, catalog, state, reports=reports)
    plan.preamble = preamble(state.database, 10)
    return plan


def _session(conn: Connection, lock_timeout: float) -> None:
    """Autocommit (each step durable on its own), the pinned sql_mode, lock timeouts."""
    conn.rollback()
    conn.autocommit(True)
    conn.execute(f"SET SESSION sql_mode = {literal(SQL_MODE)}")
    conn.execute("SET SESSION lock_wait_timeout = %s", (max(1, int(lock_timeout)),))
    conn.execute("SET SESSION innodb_lock_wait_timeout = %s", (max(1, int(lock_timeout)),))


class _Progress:
    """``install_run``: one row per run, updated after every step once the table exists."""

    def __init__(self, conn: Connection, layer: str, plan: Plan) -> None:
        self.conn, self.layer, self.plan = conn, layer, plan
        self.run_id: int | None = None

    def _ready(self) -> bool:
        if self.run_id is not None:
            return True
        row = self.conn.execute(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
            "AND TABLE_NAME = 'install_run'", (self.layer,)).fetchone()
        if not row or not row[0]:
            return False
        self.conn.execute(
            f"INSERT INTO {qname(self.layer, 'install_run')} (action, plan_sha256, "
            "steps_total, by_user, started_at) VALUES (%s, %s, %s, CURRENT_USER(), "
            "UTC_TIMESTAMP(6))", (self.plan.action, self.plan.digest(), len(self.plan.steps)))
        self.run_id = self.conn.insert_id()
        return True

    def step(self, done: int, label: str) -> None:
        if self._ready():
            self.conn.execute(
                f"UPDATE {qname(self.layer, 'install_run')} SET steps_done = %s, "
                "last_step = %s WHERE id = %s", (done, label[:700], self.run_id))

    def finish(self) -> None:
        if self._ready():
            table = qname(self.layer, "install_run")
            self.conn.execute(f"UPDATE {table} SET finished_at = UTC_TIMESTAMP(6) "
                              "WHERE finished_at IS NULL AND action = %s", (self.plan.action,))


def _layer_exists(conn: Connection, layer: str) -> bool:
    return conn.execute("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
                        (layer,)).fetchone() is not None


def _execute(conn: Connection, plan: Plan, layer: str, *, progress: bool = True) -> None:
    """Apply the steps in order, each durable on its own.

    The layer's routines are created with the layer database as the default database:
    MariaDB gives a routine's undeclared string parameters, variables and return values
    the collation of the default database at CREATE time, so created from a Koha
    database (utf8mb4_unicode_ci, as Koha's installer makes it) a function's result and
    the routine's literals (the connection's collation) would be two coercible strings
    of different collations, and every comparison of them fails ("Illegal mix of
    collations").  In the layer database (utf8mb4_bin) binary wins each comparison."""
    home = conn.execute("SELECT DATABASE()").fetchone()[0]  # none for uninstall --orphaned
    try:
        _execute_steps(conn, plan, layer, progress=progress)
    finally:
        if home and conn.execute("SELECT DATABASE()").fetchone()[0] != home:
            conn.execute(use_database_sql(home))


def _execute_steps(conn: Connection, plan: Plan, layer: str, *, progress: bool) -> None:
    track = _Progress(conn, layer, plan) if progress else None
    total = len(plan.steps)
    in_layer = False
    for i, step in enumerate(plan.steps, start=1):
        log.debug("%s", step.sql)
        if not in_layer and step.kind != "bootstrap" and _layer_exists(conn, layer):
            conn.execute(use_database_sql(layer))
            in_layer = True
        try:
            conn.execute(step.sql).fetchall()
        except pymysql.err.MySQLError as exc:
            code = exc.args[0] if exc.args else 0
            msg = exc.args[1] if len(exc.args) > 1 else str(exc)
            if step.kind in ("create-role", "create-account") and i > 1:
                # the write-ahead record claims an object that was not created
                obj = step.target if step.kind == "create-role" else f"account {step.target}"
                try:
                    conn.execute(unrecord_sql(layer, obj))
                except pymysql.err.MySQLError:
                    pass
            if code in (1205, 1213):  # lock wait timeout, deadlock
                raise StateError(f"timed out waiting for a lock at {step.kind} {step.target} "
                                 f"(the ILS is busy with it); {i - 1} of {total} steps were "
                                 "applied", hint="run it again: it finishes what is missing"
                                 ) from None
            raise StateError(f"{plan.action} failed at step {i} of {total} ({step.kind} "
                             f"{step.target}): {msg}; {i - 1} steps were applied and stay "
                             "applied (MariaDB commits DDL statement by statement)",
                             hint=f"fix the cause and run {plan.action} again: it "
                                  "finishes what is missing") from None
        if track is not None:
            track.step(i, f"{step.kind} {step.target}")
    if track is not None:
        track.finish()


def install(conn: Connection, rules: Rules, *, reports: ReportSource,
            lock_timeout: str = "10s", expect: str | None = None) -> MariaPlan:
    require_mariadb(conn)
    require_admin(conn, "install")
    require_real_clock(conn, "install")
    database = current_database(conn)
    timeout = parse_timeout(lock_timeout)
    _session(conn, timeout)
    get_lock(conn, database, timeout)
    try:
        plan = compute_install_plan(conn, rules, lock_timeout, reports=reports)
        plan.require_reviewed(expect)
        _execute(conn, plan, layer_database(database))
        if plan.empty:
            record_noop_install(conn, rules, layer_database(database))
    finally:
        release_lock(conn, database)
    return plan


def record_noop_install(conn: Connection, rules: Rules, layer: str) -> None:
    """As on PostgreSQL: a no-op install records the rules it ran with, once."""
    table = qname(layer, "install_log")
    row = conn.execute(f"SELECT rules_sha256 FROM {table} WHERE action = 'install' "
                       "ORDER BY id DESC LIMIT 1").fetchone()
    if row is not None and row[0] == rules.sha256:
        return
    conn.execute(f"INSERT INTO {table} (action, tool_version, layer_version, rules_sha256, "
                 "changes, by_user, at) VALUES ('install', %s, %s, %s, 0, CURRENT_USER(), "
                 "UTC_TIMESTAMP(6))", (__version__, layer_version_available(), rules.sha256))


def compute_uninstall_plan(conn: Connection, rules: Rules | None = None, *,
                           check: bool = True) -> tuple[MariaPlan, list[str]]:
    database = current_database(conn)
    if rules is not None:
        names, owner = _role_names(rules, database)
        state = read_state(conn, names, owner, database)
    else:
        state = read_state(conn, [], "", database)
        if not state.has_bookkeeping:
            raise StateError(f"ils-redact is not installed in database {database}")
        roles, owner = recorded_names(state)
        state = read_state(conn, roles, owner, database)
    plan = plan_uninstall(state)
    plan.preamble = preamble(database, 10)
    return plan, (blockers(state) if check else [])


def audit_entries(conn: Connection, layer: str) -> int:
    row = conn.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                       "AND TABLE_NAME = 'audit_log'", (layer,)).fetchone()
    if not row or not row[0]:
        return 0
    n = conn.execute(f"SELECT COUNT(*) FROM {qname(layer, 'audit_log')}").fetchone()
    return int(n[0]) if n else 0


def uninstall(conn: Connection, *, lock_timeout: str = "10s",
              discard_audit: bool = False) -> MariaPlan:
    require_mariadb(conn)
    require_admin(conn, "uninstall")
    database = current_database(conn)
    timeout = parse_timeout(lock_timeout)
    _session(conn, timeout)
    get_lock(conn, database, timeout)
    try:
        plan, blocking = compute_uninstall_plan(conn)
        if blocking:
            raise StateError("uninstall refused, nothing was changed: " + "; ".join(blocking),
                             hint="remove these by hand (or run install to repair drift), "
                                  "then uninstall")
        layer = layer_database(database)
        entries = audit_entries(conn, layer)
        if entries and not discard_audit:
            raise StateError(
                f"the audit log holds {entries} entries that uninstall would delete",
                hint="export them first (`ils-redact audit export`), then uninstall "
                     "with --discard-audit")
        _execute(conn, plan, layer, progress=False)
    finally:
        release_lock(conn, database)
    return plan


def status(conn: Connection, rules: Rules, *, reports: ReportSource) -> dict[str, Any]:
    """Installed version, rules hash, unfinished runs, and drift from the plan."""
    catalog = read_catalog(conn)
    state = state_for(conn, rules)
    n = names_for(rules, state.database, state.layer)
    out: dict[str, Any] = {
        "database": state.database,
        "engine": "mariadb",
        "server_version": state.server_version,
        "layer_database": state.layer,
        "installed": state.is_installed,
        "tool_version": __version__,
        "layer_version": state.layer_version,
        "layer_version_available": layer_version_available(),
        "roles": dict(n.roles, owner=n.owner),
        "unfinished_runs": state.unfinished_runs,
    }
    recorded = state.is_installed and "install_log" in state.layer_tables
    row = None
    if recorded:
        row = conn.execute(
            "SELECT rules_sha256, tool_version, at, by_user FROM "
            f"{qname(state.layer, 'install_log')} WHERE action = 'install' "
            "ORDER BY id DESC LIMIT 1").fetchone()
    last = (row[0], row[1], row[2].isoformat() + "Z", row[3]) if row else None
    out.update(status_fields(rules, catalog, state, partial(plan_install, reports=reports),
                             last, recorded=recorded))
    out["in_sync"] = (state.is_installed and out.get("drift") == []
                      and not state.unfinished_runs)
    conn.rollback()
    return out
