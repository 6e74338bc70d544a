"""What each restricted role may hold on MariaDB: nothing on the Koha database, and in the
layer database exactly the grants reviewed below.

Three sources, and nothing else:

1. the identity views and lookup procedures the rules produce (``generated_objects``:
   one definer view per identity table, named after it, and one ``lookup_<table>``
   procedure): SELECT and EXECUTE for the role each names (the disclosure role);
2. the layer's own grants on its versioned objects, listed here by hand (the planner
   has its own list, ``planner._ROLE_ROUTINES``; a test checks the two agree, so a grant
   a later layer version adds to a restricted role fails verify until it is reviewed
   here);
3. the statistics layer, read from what install recorded (``stats_layer``).

Restricted roles: ``disclosure`` (the identity views and lookup procedures, which
filter to the caller's own scope), ``exporter`` (the logged export procedure only),
``stats`` (aggregates only) and ``admin`` (the request procedures; its patron lookup is
bounded and traced, and it reads the requests and the audit log, never a Koha table).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ....catalog import Catalog
from ....rules import Rules
from ..generated import generated_objects
from ..state import Grant
from .stats_layer import StatsLayer

RESTRICTED_KINDS = ("disclosure", "stats", "exporter", "admin")

#: the layer's grants to restricted roles, reviewed: (level, object name in the layer
#: database, privilege).  No role may call audit_append: the layer's own routines append,
#: with fixed actions (log_refusal: three refusals; query_log: a gated query's entries).
#: catalog_snapshot is the Koha catalog install recorded, for the query gate of staff.
LAYER_GRANTS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "disclosure": (
        ("table", "scope_patrons", "SELECT"),  # the caller's own scope, for the gate
        ("table", "catalog_snapshot", "SELECT"),
        ("procedure", "export", "EXECUTE"),
        ("procedure", "export_check", "EXECUTE"),
        ("procedure", "query_log", "EXECUTE"),
        ("procedure", "log_refusal", "EXECUTE"),
        ("function", "covers_all", "EXECUTE"),
    ),
    "exporter": (
        ("table", "catalog_snapshot", "SELECT"),
        ("procedure", "export", "EXECUTE"),
        ("procedure", "log_refusal", "EXECUTE"),
    ),
    "stats": (),
    "admin": (
        ("table", "request", "SELECT"),
        ("table", "request_patron", "SELECT"),
        ("table", "audit_log", "SELECT"),
        ("table", "setting", "SELECT"),
        ("table", "catalog_snapshot", "SELECT"),
        ("procedure", "request_create", "EXECUTE"),
        ("procedure", "request_approve", "EXECUTE"),
        ("procedure", "request_end", "EXECUTE"),
        ("procedure", "sweep_expired", "EXECUTE"),
        ("procedure", "log_refusal", "EXECUTE"),
        ("procedure", "patron_lookup", "EXECUTE"),
        ("function", "clock_utc", "EXECUTE"),
    ),
}

Sig = tuple[str, str, str, str, str]  # (level, db, name, privilege, column)


def sig(g: Grant) -> Sig:
    return (g.level, g.db, g.name, g.privilege, g.column)


@dataclass(frozen=True)
class Expectation:
    """Everything one restricted role may hold.  Anything else is a finding."""

    kind: str
    role: str
    #: grants the role needs (missing ones: C-MISSING)
    required: frozenset[Sig] = frozenset()
    #: grants it may hold without needing them (statistics helpers)
    allowed: frozenset[Sig] = frozenset()
    #: (db, view) -> patron key: identity views, whose rows must be the caller's scope only
    scoped: dict[tuple[str, str], str] = field(default_factory=dict, hash=False,
                                               compare=False)
    #: (db, procedure): identity lookups, whose rows must be the caller's scope only
    lookups: frozenset[tuple[str, str]] = frozenset()

    def permits(self, g: Grant) -> bool:
        s = sig(g)
        return s in self.required or s in self.allowed

    def readable(self, db: str, name: str, columns: tuple[str, ...]) -> set[str]:
        """The columns of ``db.name`` the role may read."""
        every = self.required | self.allowed
        if ("table", db, name, "SELECT", "") in every:
            return set(columns)
        return {c for c in columns if ("column", db, name, "SELECT", c) in every}

    def may_call(self, rtype: str, db: str, name: str) -> bool:
        return (rtype, db, name, "EXECUTE", "") in self.required | self.allowed

    def must_call(self, rtype: str, db: str, name: str) -> bool:
        return (rtype, db, name, "EXECUTE", "") in self.required


def identity_views(rules: Rules, catalog: Catalog, layer: str) -> dict[str, str]:
    """view name in the layer database -> the patron key it is scoped by."""
    keys = {catalog.relation(t.relation).name: t.patron_key for t in rules.identity}
    return {g.name: keys[g.name] for g in generated_objects(rules, catalog, layer)
            if g.objtype == "VIEW"}


def expectations(rules: Rules, catalog: Catalog, layer: str, roles: dict[str, str],
                 stats: StatsLayer) -> dict[str, Expectation]:
    """kind -> Expectation for each restricted role."""
    views = identity_views(rules, catalog, layer)
    generated = [g for g in generated_objects(rules, catalog, layer) if g.granted_to]
    out: dict[str, Expectation] = {}
    for kind in RESTRICTED_KINDS:
        required = {(level, layer, name, priv, "") for level, name, priv in LAYER_GRANTS[kind]}
        required |= {(g.grant[0], layer, g.name, g.grant[1], "") for g in generated
                     if g.granted_to == kind}
        allowed: set[Sig] = set()
        scoped: dict[tuple[str, str], str] = {}
        lookups: frozenset[tuple[str, str]] = frozenset()
        if kind == "disclosure":
            scoped = {(layer, v): key for v, key in views.items()}
            lookups = frozenset((layer, g.name) for g in generated
                                if g.objtype == "PROCEDURE" and g.granted_to == kind)
        if kind == "stats":
            allowed |= {sig(g) for g in stats.grants}
        out[kind] = Expectation(kind, roles[kind], frozenset(required), frozenset(allowed),
                                scoped, lookups)
    return out
