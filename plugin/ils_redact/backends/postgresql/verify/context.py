"""Everything the checks share, read once inside verify's read-only transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import psycopg

from ....catalog import Catalog
from ....rules import Rules
from ....rules.model import ALL_COLUMNS
from ....sdc.model import Report as SdcReport
from ..state import LAYER_SCHEMA, PgState
from .expect import RESTRICTED_KINDS, Expectation
from .graph import RoleGraph
from .privileges import Held, Owned, effective, owned
from .stats_layer import StatsLayer

PROTECTED = ("identity", "secret", "confidential", "personal", "unclassified")

# roles named in an ACL of this database (relations, columns, functions, schemas, itself)
_DIRECT_GRANTEES = """
SELECT DISTINCT r.rolname FROM pg_roles r JOIN (
    SELECT (aclexplode(relacl)).grantee AS g FROM pg_class WHERE relacl IS NOT NULL
    UNION ALL SELECT (aclexplode(attacl)).grantee FROM pg_attribute WHERE attacl IS NOT NULL
    UNION ALL SELECT (aclexplode(proacl)).grantee FROM pg_proc WHERE proacl IS NOT NULL
    UNION ALL SELECT (aclexplode(nspacl)).grantee FROM pg_namespace WHERE nspacl IS NOT NULL
    UNION ALL SELECT (aclexplode(datacl)).grantee FROM pg_database
              WHERE datname = current_database() AND datacl IS NOT NULL
) x ON x.g = r.oid
WHERE r.rolname = ANY (%s)
"""


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
    #: the statistics reports the rules define here (the verify service's report source)
    reports: list[SdcReport] = field(default_factory=list)

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
    def all_logins(self) -> list[str]:
        return sorted({login for _, name in self.restricted for login in self.logins[name]})

    @cached_property
    def plain_logins(self) -> set[str]:
        """Logins that reach nothing but layer roles, hold no grant of their own here and
        bypass nothing: their privileges are their layer roles' and PUBLIC's, already
        judged, so their effective privileges are not computed again (a library may have
        hundreds of staff logins in the exporter role)."""
        direct = {r[0] for r in self.conn.execute(_DIRECT_GRANTEES, (self.all_logins,))}
        out = set()
        for login in self.all_logins:
            a = self.graph.roles[login]
            if (a.superuser or a.bypassrls or a.createrole or login in direct
                    or set(self.graph.reach(login)) - {login} - self.layer_roles):
                continue
            out.add(login)
        return out

    @cached_property
    def judged_roles(self) -> list[str]:
        """Restricted roles, the roles they reach, and the logins that reach them (with
        what those reach) unless they are plain."""
        out: set[str] = set()
        for _, name in self.restricted:
            out |= set(self.reach[name])
        for login in self.all_logins:
            if login not in self.plain_logins:
                out |= set(self.graph.reach(login))
        return sorted(out)

    @cached_property
    def held(self) -> dict[str, list[Held]]:
        return effective(self.conn, self.judged_roles, self.layer_schemas)

    @cached_property
    def owned(self) -> dict[str, list[Owned]]:
        return owned(self.conn, self.judged_roles + self.all_logins)

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
