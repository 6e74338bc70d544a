"""A plan is data: the statements ``install`` would run, in order, each with its reason.

``plan`` prints it; ``install`` executes the very same strings (alembic's offline/online
twin, STYLE.md 1-2), so what a reviewer approved is what runs.  A step may carry a
bookkeeping record: what was created or changed and the prior state, written into the
layer's own schema so ``uninstall`` can undo exactly that and nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .catalog import Catalog
from .errors import IlsRedactError
from .rules import Rules, check_against_catalog


@dataclass(frozen=True)
class Step:
    kind: str  # create-role, layer, grant, revoke, enable-rls, create-policy, record, ...
    target: str  # the object, for people: "actor.usr", "role ils_redact_disclosure"
    sql: str  # exactly what runs
    why: str = ""  # one line, printed as a comment above the statement

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
