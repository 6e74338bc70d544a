"""Drift: the plan the rules would produce today against what the catalog holds.

The planner is diff-based (desired state from the rules against actual state from the
catalog), so an installed database in sync plans nothing; every change it would make is a
place where the database no longer says what the rules say (a grant added or removed by
hand, RLS switched off, a policy edited, an older layer version).  One check: ``drift``.
"""

from __future__ import annotations

from ..backends.postgresql.planner import plan_install
from .context import VerifyContext
from .findings import Check, Finding


def run(ctx: VerifyContext) -> list[Check]:
    check = Check("drift", "the database holds what the rules plan: `ils-redact plan` would "
                  "change nothing")
    plan = plan_install(ctx.rules, ctx.catalog, ctx.state)
    for step in plan.changes():
        check.findings.append(Finding(
            "D-DRIFT", f"{step.kind} {step.target}",
            step.why or f"the plan would run: {step.sql.splitlines()[0][:120]}",
            f"review `ils-redact plan`, then `ils-redact install` runs: "
            f"{step.sql.splitlines()[0][:160]}"))
    check.detail = f"{len(plan.changes())} changes pending"
    return [check]
