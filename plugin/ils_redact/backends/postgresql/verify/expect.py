"""What each restricted role may hold, derived from the sources install uses.

Three sources, and nothing else:

1. ``planner.desired_privileges`` over the rules: the disclosure role's column grants on
   the identity tables, USAGE on their schemas, CONNECT where PUBLIC may not connect;
2. the layer's own grants on objects in schema ``ils_redact`` (``sql/postgresql/*.sql``
   and the functions written from the rules), vetted and listed below by hand, so a
   grant a later layer file adds to a restricted role fails verify until it is reviewed
   here;
3. the statistics layer, read from the database (``stats_layer``).

Restricted roles: ``disclosure`` (identity columns, patrons in scope only), ``stats``
(aggregates only), ``exporter`` (calls the logged export, nothing more) and ``admin``
(manages requests through the layer's functions and reads the request record; it reads
no identity column itself: the patron lookup is a function of the layer's).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ....catalog import Catalog
from ....rules import Rules
from ..generated import generated_functions
from ..planner import desired_privileges
from ..state import LAYER_SCHEMA, PgState
from .stats_layer import StatsLayer

RESTRICTED_KINDS = ("disclosure", "stats", "exporter", "admin")

#: The layer's grants to restricted roles, reviewed: EXECUTE on these functions in schema
#: ils_redact (signatures as ``oidvectortypes`` prints them).  The disclosure role needs
#: what its own export function calls; the exporter may also record a refusal.
LAYER_EXECUTE: dict[str, tuple[str, ...]] = {
    "disclosure": (
        "ils_redact.scope_patron_ids()",  # the row policies call it as the reader
        "ils_redact.export_check(bigint)",
        # the gate's query entries (fixed actions); no restricted role may call
        # audit_append, nor export_record (the export function's owner records exports)
        "ils_redact.log_query(text, bigint, jsonb)",
        "ils_redact.request_patron_ids(bigint)",
        "ils_redact.csv_cell(text)",
        "ils_redact.log_refusal(text, bigint, text)",
    ),
    "exporter": ("ils_redact.log_refusal(text, bigint, text)",),
    "stats": (),
    "admin": (
        "ils_redact.request_create(text, text, text, text, text, text, text, text, date, "
        "bigint[], text[], text[], timestamp with time zone, name)",
        "ils_redact.request_approve(bigint)",
        "ils_redact.request_end(bigint, text, text)",
        "ils_redact.sweep_expired()",
        "ils_redact.log_refusal(text, bigint, text)",
    ),
}
#: USAGE on schema ils_redact (names only; every object in it has its own ACL)
LAYER_USAGE: dict[str, bool] = {"disclosure": True, "exporter": True, "stats": False,
                                "admin": True}
#: The layer's relations a restricted role reads whole (table-level SELECT), reviewed:
#: the admin role reads the request record (requests, their patrons, the audit log, the
#: settings); none of them holds a column of an ILS table.
LAYER_SELECT: dict[str, tuple[str, ...]] = {
    "admin": ("ils_redact.request", "ils_redact.request_patron", "ils_redact.audit_log",
              "ils_redact.setting"),
}

#: PostgreSQL's spelling of the search_path every SECURITY DEFINER layer function pins
PINNED_SEARCH_PATH = "search_path=pg_catalog, pg_temp"


@dataclass(frozen=True)
class Expectation:
    """Everything one restricted role may hold.  Anything else is a finding."""

    kind: str
    role: str
    #: (relation, column) readable through column-level SELECT
    columns: frozenset[tuple[str, str]] = frozenset()
    #: relations readable as a whole (table-level SELECT): statistics layer relations only
    relations: frozenset[str] = frozenset()
    #: schemas where USAGE is needed
    schemas: frozenset[str] = frozenset()
    #: function signatures the role must be able to EXECUTE
    functions: frozenset[str] = frozenset()
    #: function signatures it may EXECUTE without needing to (statistics layer functions:
    #: the reports are granted to it, their helpers are not)
    may_call: frozenset[str] = frozenset()
    #: function signatures it owns (none: layer objects belong to owner roles that are
    #: granted to nobody, threat model row 21)
    owns: frozenset[str] = frozenset()
    #: database privileges (CONNECT where PUBLIC may not connect)
    database: frozenset[str] = frozenset()
    #: relation -> patron key: rows limited to the patrons in an approved request's scope
    scoped: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    def may_read(self, relation: str, column: str) -> bool:
        return relation in self.relations or (relation, column) in self.columns

    def readable(self, relation: str, all_columns: tuple[str, ...]) -> set[str]:
        if relation in self.relations:
            return set(all_columns)
        return {c for c in all_columns if (relation, c) in self.columns}

    def may_execute(self, signature: str) -> bool:
        return signature in self.functions or signature in self.owns \
            or signature in self.may_call


def _sig(signature: str) -> str:
    """``ils_redact.export(bigint, text)`` as ``oidvectortypes`` prints it."""
    name, _, args = signature.partition("(")
    parts = [a.strip() for a in args.rstrip(")").split(",") if a.strip()]
    return f"{name}({', '.join(parts)})"


def expectations(rules: Rules, catalog: Catalog, state: PgState,
                 stats: StatsLayer) -> dict[str, Expectation]:
    """kind -> Expectation for each restricted role."""
    roles = rules.roles(state.database)
    desired = desired_privileges(rules, roles, state)
    generated = generated_functions(rules, catalog)
    out: dict[str, Expectation] = {}
    for kind in RESTRICTED_KINDS:
        role = roles[kind]
        mine = [p for p in desired if p.role == role]
        columns = {(p.object, p.column) for p in mine
                   if p.objtype == "column" and p.privilege == "SELECT" and p.column}
        schemas = {p.object for p in mine if p.objtype == "schema" and p.privilege == "USAGE"}
        database = {p.privilege for p in mine if p.objtype == "database"}
        functions = set(LAYER_EXECUTE[kind])
        owns = set()
        for g in generated:
            if kind in g.execute_kinds:
                functions.add(_sig(g.signature))
            if g.owner_kind == kind:
                owns.add(_sig(g.signature))
        if LAYER_USAGE[kind]:
            schemas.add(LAYER_SCHEMA)
        relations: set[str] = set()
        may_call: set[str] = set()
        relations |= set(LAYER_SELECT.get(kind, ()))
        if kind == "stats" and stats.schema:
            relations |= stats.relations
            may_call |= stats.functions
            schemas.add(stats.schema)
        scoped = ({t.relation: t.patron_key for t in rules.identity}
                  if kind == "disclosure" else {})
        out[kind] = Expectation(
            kind=kind, role=role, columns=frozenset(columns), relations=frozenset(relations),
            schemas=frozenset(schemas), functions=frozenset(functions),
            may_call=frozenset(may_call), owns=frozenset(owns),
            database=frozenset(database), scoped=scoped)
    return out


def layer_owner_kinds(rules: Rules, catalog: Catalog) -> dict[str, str]:
    """signature -> the role kind that must own each function a restricted role calls."""
    out = {sig: "owner" for sigs in LAYER_EXECUTE.values() for sig in sigs}
    for g in generated_functions(rules, catalog):
        out[_sig(g.signature)] = g.owner_kind
    return out
