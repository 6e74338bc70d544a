"""Drift on MariaDB: what ``ils-redact plan`` would change today.

The planner is diff-based (desired state from the rules against the grant tables,
information_schema and the fingerprints of the layer's objects), so an installed database
in sync plans nothing; every step it would run is a place where the server no longer
says what the rules say (a grant added or revoked by hand, a view or routine replaced, an
unlocked definer, an older layer version).  One check: ``drift``.
"""

from __future__ import annotations

from ....checks.findings import Check, Finding
from ....errors import IlsRedactError
from ..planner import plan_install
from .context import MariaContext


def run(ctx: MariaContext) -> list[Check]:
    check = Check("drift", "the server holds what the rules plan: `ils-redact plan` would "
                  "change nothing")
    try:
        plan = plan_install(ctx.rules, ctx.catalog, ctx.state,
                            reports=lambda _rules, _catalog: ctx.reports)
    except IlsRedactError as exc:
        check.findings.append(Finding(
            "D-DRIFT", f"database {ctx.koha}", f"the plan cannot be computed: {exc}",
            "fix what the message names, then `ils-redact plan`"))
        return [check]
    changes = plan.changes()
    for step in changes:
        first = step.sql.strip().splitlines()[0][:160]
        check.findings.append(Finding(
            "D-DRIFT", f"{step.kind} {step.target}", step.why or f"the plan would run: {first}",
            f"review `ils-redact plan`, then `ils-redact install` runs: {first}"))
    for run_ in ctx.state.unfinished_runs:
        check.findings.append(Finding(
            "D-DRIFT", f"{run_['action']} run {run_['id']}",
            f"an {run_['action']} started {run_['started_at']} stopped after "
            f"{run_['steps_done']} of {run_['steps_total']} steps",
            "ils-redact install (it finishes the job)"))
    check.detail = f"{len(changes)} changes pending"
    return [check]
