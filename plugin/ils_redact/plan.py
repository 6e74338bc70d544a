"""A plan is data: the statements ``install`` would run, in order, each with its reason.

``plan`` prints it; ``install`` executes the very same strings (alembic's offline/online
twin, STYLE.md 1-2), so what a reviewer approved is what runs.  A step may carry a
bookkeeping record: what was created or changed and the prior state, written into the
layer's own schema so ``uninstall`` can undo exactly that and nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


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

    def render(self) -> str:
        """A reviewable SQL script, runnable as it stands with psql."""
        head = [
            f"-- ils-redact {self.action} plan for database {self.database}"
            + (f" ({self.engine} {self.server_version})" if self.server_version else ""),
        ]
        if self.rules_file:
            head.append(f"-- rules: {self.rules_file} (sha256 {self.rules_sha256[:16]})")
        for note in self.notes:
            head.append(f"-- note: {note}")
        if self.empty:
            head.append("-- nothing to do: the database already matches the rules.")
            return "\n".join(head) + "\n"
        head.append(f"-- {len(self.changes())} changes, {len(self.steps)} statements, "
                    "applied in one transaction.")
        out = head + [""] + list(self.preamble)
        for step in self.steps:
            if step.why:
                out.append(f"-- {step.why}")
            out.append(step.sql.rstrip().rstrip(";") + ";")
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
