"""Everything the checks share, read once inside verify's read-only transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import psycopg

from ..backends.postgresql.state import LAYER_SCHEMA, PgState
from ..catalog import Catalog
from ..rules import Rules
from ..rules.model import ALL_COLUMNS
from .expect import RESTRICTED_KINDS, Expectation
from .graph import RoleGraph
from .privileges import Held, Owned, effective, owned
from .stats_layer import StatsLayer

PROTECTED = ("identity", "secret", "confidential", "personal", "unclassified")


@dataclass
class VerifyContext:
    conn: psycopg.Connection
    rules: Rules
    catalog: Catalog
    state: PgState
    graph: RoleGraph
    stats: StatsLayer
    expect: dict[str, Expectation]
    #: role names of this install: kind -> name (all five kinds)
    roles: dict[str, str]
    #: every role ils-redact owns here (the rules' five and any marked as ours)
    layer_roles: set[str]
    exhaustive: bool = False
    ils_config: Path | None = None
    backup_roles: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)

    # -- roles ---------------------------------------------------------------------------
    @property
    def restricted(self) -> list[tuple[str, str]]:
        """(kind, role name) of the restricted roles."""
        return [(k, self.roles[k]) for k in RESTRICTED_KINDS]

    @cached_property
    def reach(self) -> dict[str, dict[str, tuple[str, ...]]]:
        """restricted role name -> roles it can act as -> the membership chain."""
        return {name: self.graph.reach(name) for _, name in self.restricted}

    @cached_property
    def logins(self) -> dict[str, list[str]]:
        """restricted role name -> logins that can act as it."""
        return {name: self.graph.logins_reaching(name) for _, name in self.restricted}

    @cached_property
    def judged_roles(self) -> list[str]:
        """Restricted roles, the roles they reach, the logins that reach them."""
        out: set[str] = set()
        for _, name in self.restricted:
            out |= set(self.reach[name])
            for login in self.logins[name]:
                out |= set(self.graph.reach(login))
        return sorted(out)

    @cached_property
    def held(self) -> dict[str, list[Held]]:
        return effective(self.conn, self.judged_roles, self.layer_schemas)

    @cached_property
    def owned(self) -> dict[str, list[Owned]]:
        return owned(self.conn, self.judged_roles)

    @property
    def layer_schemas(self) -> list[str]:
        return [LAYER_SCHEMA] + ([self.stats.schema] if self.stats.schema else [])

    # -- classification ------------------------------------------------------------------
    def classify(self, relation: str) -> str:
        """identity | secret | confidential | personal | other | unclassified | layer"""
        schema = relation.split(".", 1)[0]
        if schema in self.layer_schemas:
            return "layer"
        return self.rules.classify(relation) or "unclassified"

    def protected(self, relation: str) -> bool:
        """Patron data or credentials, or not classified at all (closed until it is)."""
        cls = self.classify(relation)
        if cls in PROTECTED:
            return True
        secret = self.rules.secret.get(relation, ())
        return cls == "other" and bool(secret) and secret != ALL_COLUMNS

    @cached_property
    def ils_owner(self) -> str | None:
        rel = self.catalog.get(self.rules.patron.relation)
        return rel.owner if rel else None
