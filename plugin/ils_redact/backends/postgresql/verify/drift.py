"""Drift: the plan the rules would produce today against what the catalog holds.

The planner is diff-based (desired state from the rules against actual state from the
catalog), so an installed database in sync plans nothing; every change it would make is a
place where the database no longer says what the rules say (a grant added or removed by
hand, RLS switched off, a policy edited, an older layer version).  One check: ``drift``.
"""

from __future__ import annotations

from ....checks.findings import WARNING, Check, Finding
from ..planner import plan_install
from .context import VerifyContext


def run(ctx: VerifyContext) -> list[Check]:
    check = Check("drift", "the database holds what the rules plan: `ils-redact plan` would "
                  "change nothing")
    plan = plan_install(ctx.rules, ctx.catalog, ctx.state,
                            reports=lambda _rules, _catalog: ctx.reports)
    for step in plan.changes():
        check.findings.append(Finding(
            "D-DRIFT", f"{step.kind} {step.target}",
            step.why or f"the plan would run: {step.sql.splitlines()[0][:120]}",
            f"review `ils-redact plan`, then `ils-redact install` runs: "
            f"{step.sql.splitlines()[0][:160]}"))
    roles = set(ctx.roles.values())
    for p in sorted(ctx.state.temp_privileges, key=lambda p: p.key):
        if p.role not in roles:
            continue
        col = f" column {p.column}" if p.column else ""
        check.findings.append(Finding(
            "D-TEMPORARY-OBJECT", f"{p.objtype} {p.object}{col}",
            f"{p.role} holds {p.privilege} on {p.objtype} {p.object}{col} in a session's "
            "temporary schema, planted by the login that owns that session: install never "
            "names such an object (it is not revoked), it goes when that session ends",
            "end that session (pg_terminate_backend), or leave it; uninstall revokes it",
            severity=WARNING, role=None))
    check.detail = f"{len(plan.changes())} changes pending"
    return [check]
