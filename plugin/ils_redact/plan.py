"""A plan is data: the statements ``install`` would run, in order, each with its reason.

``plan`` prints it; ``install`` executes the very same strings (alembic's offline/online
twin), so what a reviewer approved is what runs.  A step may carry a
bookkeeping record: what was created or changed and the prior state, written into the
layer's own schema so ``uninstall`` can undo exactly that and nothing else.

:func:`plan_install` is written once for every engine: the rules are checked and fitted
to the catalog's release, then the engine's ordered tuple of passes
(``Engine.install_passes``, the shape of sqlglot's optimizer ``RULES``) each add their
steps.  The privilege diff (desired minus actual, and actual minus desired) is two
passes here, :func:`revoke_drift` and :func:`grant_missing`, over the engine's
:class:`~ils_redact.engine.Privileges`; whether a grant's record comes before it or after
follows ``Engine.transactional_ddl``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from .catalog import Catalog
from .errors import IlsRedactError, StateError
from .rules import Rules, check_against_catalog, for_catalog, release_notes

if TYPE_CHECKING:
    from .engine import Engine
    from .sdc.model import Report as SdcReport
    from .sdc.model import ReportSource


@dataclass(frozen=True)
class Step:
    kind: str  # create-role, layer, grant, revoke, enable-rls, create-policy, record, ...
    target: str  # the object, for people: "actor.usr", "role ils_redact_disclosure"
    sql: str  # exactly what runs: one statement
    why: str = ""  # one line, printed as a comment above the statement
    #: lines printed above the statement as they stand (a layer file's own comments and
    #: blank lines); not run, not part of the plan's digest
    comment: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "target": self.target, "why": self.why, "sql": self.sql}


@dataclass
class Plan:
    action: str  # install | uninstall
    database: str
    engine: str
    server_version: str = ""
    rules_file: str = ""
    rules_sha256: str = ""
    steps: list[Step] = field(default_factory=list)
    #: non-fatal observations (unclassified relations, hazards noticed while planning)
    notes: list[str] = field(default_factory=list)
    #: statements wrapped around the steps by the executor (BEGIN, lock, COMMIT)
    preamble: list[str] = field(default_factory=list)
    postamble: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def empty(self) -> bool:
        return not self.steps

    def changes(self) -> list[Step]:
        """Steps that change the ILS or the roles (bookkeeping excluded)."""
        return [s for s in self.steps if s.kind != "record"]

    #: how the server is named in the script's first line (the engine by default)
    engine_label: ClassVar[str] = ""
    #: how the steps are applied, said after the count of statements
    applied: ClassVar[str] = ", applied in one transaction."

    def statement_lines(self, step: Step) -> list[str]:
        """One step as the lines of the script (a client may need delimiters)."""
        return [step.sql.rstrip().rstrip(";") + ";"]

    def render(self) -> str:
        """A reviewable SQL script, runnable as it stands with the server's own client."""
        head = [
            f"-- ils-redact {self.action} plan for database {self.database}"
            + (f" ({self.engine_label or self.engine} {self.server_version})"
               if self.server_version else ""),
        ]
        if self.rules_file:
            head.append(f"-- rules: {self.rules_file} (sha256 {self.rules_sha256[:16]})")
        for note in self.notes:
            head.append(f"-- note: {note}")
        if self.empty:
            head.append("-- nothing to do: the database already matches the rules.")
            return "\n".join(head) + "\n"
        head.append(f"-- {len(self.changes())} changes, {len(self.steps)} statements"
                    f"{self.applied}")
        out = head + [""] + list(self.preamble)
        for step in self.steps:
            if step.why:
                out.append(f"-- {step.why}")
            if step.comment is not None:
                out.extend(step.comment.split("\n"))
            out += self.statement_lines(step)
        out += list(self.postamble)
        return "\n".join(out) + "\n"

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "database": self.database,
            "engine": self.engine,
            "server_version": self.server_version,
            "rules_file": self.rules_file,
            "rules_sha256": self.rules_sha256,
            "notes": self.notes,
            "changes": len(self.changes()),
            "steps": [s.to_json() for s in self.steps],
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2)

    def require_reviewed(self, expect: str | None) -> None:
        """``install --expect``: refuse (nothing applied) unless this plan's digest starts
        with the prefix the reviewer noted."""
        if expect and not self.digest().startswith(expect):
            raise StateError(f"the plan is no longer the one reviewed (sha256 "
                             f"{self.digest()[:16]}, expected {expect[:16]}); nothing "
                             "was changed", hint="run `ils-redact plan` again and review it")

    def digest(self) -> str:
        """sha256 of the statements, each followed by a NUL: ``install --expect`` refuses
        a plan other than the one reviewed.  Comments, notes and the executor's preamble
        are not part of it (they do not change what runs)."""
        h = hashlib.sha256()
        for step in self.steps:
            h.update(step.sql.encode())
            h.update(b"\0")
        return h.hexdigest()


@dataclass
class InstallContext:
    """What the passes of :func:`plan_install` share: the inputs, the plan being built,
    and ``facts`` an earlier pass computed for a later one (role names, the generated
    objects, the statistics reports)."""

    engine: Engine
    rules: Rules  # fitted to the catalog's release
    catalog: Catalog
    state: Any
    plan: Plan
    #: the statistics reports to install (the report source's answer for rules+catalog)
    reports: list[SdcReport] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)


#: one section of the install plan: the steps it adds, in order (it may add notes too)
InstallPass = Callable[[InstallContext], list[Step]]


def plan_install(engine: Engine, rules: Rules, catalog: Catalog, state: Any, *,
                 reports: ReportSource) -> Plan:
    """The install plan: rules + catalog against the state the engine read (pure).
    ``reports`` gives the statistics reports (the statistics service's ``all_reports``,
    handed down so that no engine imports the service)."""
    notices = check_against_catalog(rules, catalog)
    release = release_notes(rules, catalog)  # the ILS release; names it lacks are left out
    rules = for_catalog(rules, catalog)
    plan = engine.plan_class(action="install", database=state.database, engine=engine.name,
                             server_version=state.server_version or catalog.server_version,
                             rules_file=str(rules.path or ""), rules_sha256=rules.sha256)
    plan.notes.extend(release)
    if notices:
        plan.notes.append(f"{len(notices)} relations or columns are not classified by the "
                          "rules (closed to restricted roles); `ils-redact verify` lists them")
    ctx = InstallContext(engine, rules, catalog, state, plan, reports(rules, catalog))
    for install_pass in engine.install_passes:
        plan.steps.extend(install_pass(ctx))
    return plan


def revoke_drift(ctx: InstallContext) -> list[Step]:
    """Privileges the layer's roles hold and the rules do not give: revoked, and their
    records removed.  Computes the desired and actual sets for :func:`grant_missing`."""
    privs = ctx.engine.privileges
    desired = ctx.facts["desired"] = privs.desired(ctx)
    actual = ctx.facts["actual"] = privs.actual(ctx)
    steps: list[Step] = []
    for group in privs.groups(actual - desired):
        first = group[0]
        steps.append(Step("revoke", privs.target(first), privs.grant_sql(group, revoke=True),
                          f"{privs.holder(first)} must not hold this (not in the rules)"))
        gone = [p.key for p in group if ctx.state.record(p.key)]
        if gone:
            steps.append(Step("record", privs.target(first), privs.unrecord_sql(ctx, gone)))
    return steps


def grant_missing(ctx: InstallContext) -> list[Step]:
    """Privileges the rules give and the roles lack: granted, each group with its record.
    Where DDL is transactional the record follows the grant (both commit together);
    where each statement commits on its own the record comes first, so an interrupted
    install never leaves a grant that uninstall would not know to revoke.  A grant still
    recorded (one an install made and someone revoked by hand) is granted again and keeps
    its record."""
    privs = ctx.engine.privileges
    steps: list[Step] = []
    for group in privs.groups(ctx.facts["desired"] - ctx.facts["actual"]):
        first = group[0]
        grant = Step("grant", privs.target(first), privs.grant_sql(group),
                     privs.why(ctx, first))
        new = [p for p in group if not ctx.state.record(p.key)]
        if not new:
            steps.append(grant)
            continue
        record = Step("record", privs.target(first), privs.records_sql(
            ctx, [("grant", p.key, p.to_json(), None) for p in new]))
        steps.extend([grant, record] if ctx.engine.transactional_ddl else [record, grant])
    return steps


def status_fields(rules: Rules, catalog: Catalog, state: Any,
                  plan_install: Callable[[Rules, Catalog, Any], Plan],
                  last_install: tuple[Any, Any, str, Any] | None, *,
                  recorded: bool) -> dict[str, Any]:
    """What ``status`` reports on every server about the rules against the database.

    ``last_install`` is the newest ``install`` row of the layer's install log (rules
    sha256, tool version, when as text, who); ``recorded`` says whether there is such a
    log to read.  Drift is the plan the rules would produce today (None, with the error,
    when the rules no longer fit the catalog); ``in_sync`` is left to the caller, which
    knows what else keeps a database from being in sync.
    """
    out: dict[str, Any] = {}
    if recorded:
        if last_install:
            out.update(installed_rules_sha256=last_install[0],
                       installed_by_tool=last_install[1], installed_at=last_install[2],
                       installed_by=last_install[3])
        out["rules_sha256"] = rules.sha256
        out["rules_changed"] = bool(last_install and last_install[0] != rules.sha256)
    try:
        notices = check_against_catalog(rules, catalog)
        plan = plan_install(rules, catalog, state)
        out["drift"] = [f"{s.kind} {s.target}" for s in plan.changes()]
        out["unclassified"] = [n.object for n in notices]
    except IlsRedactError as exc:
        out["drift"] = None
        out["error"] = str(exc)
    return out


@dataclass(frozen=True)
class Installed:
    """One bookkeeping row (``installed_object``): what install created or changed, and
    what was there before, so uninstall can undo exactly that."""

    kind: str
    object: str
    detail: dict[str, Any]
    prior: dict[str, Any] | None


class InstalledRecords:
    """What a backend's state answers from the bookkeeping it read (both servers keep the
    same rows)."""

    installed: list[Installed]
    layer_version: int | None

    @property
    def is_installed(self) -> bool:
        return self.layer_version is not None

    def installed_of(self, kind: str) -> list[Installed]:
        return [i for i in self.installed if i.kind == kind]

    def record(self, obj: str) -> Installed | None:
        for i in self.installed:
            if i.object == obj:
                return i
        return None
