"""What a profile may read, derived from the rules and the catalog.

Three check modes share one pipeline and differ only in the data built here:

``disclosure``
    The identity tables of the rules and exactly their ``columns`` (the same allow-list
    the database grants the disclosure role).  Every reference to an identity table gets
    the scope predicate, so only patrons of an approved request come back.
``stats``
    The suppressed aggregate views ils-redact installs in schema ``ils_redact_stats``,
    all their columns.  Suppression happened when the view was built; nothing else is
    readable.
``report``
    "Statistics report over base tables", used by ``lint`` and by custom-report
    validation: any classified relation except credentials and personal data, every
    column except credentials, but aggregate-only, and patron identifiers may only be
    counted or joined on (see :mod:`.report`).

The classification is the rules' classification made transitive: an inheritance parent
returns the rows of its children and a view runs with its owner's rights, so either is at
least as confidential as anything it reads (docs/threat-model.md, facts 2 and 10), whatever the
rules file says about it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypedDict

from ..catalog import Catalog
from ..errors import IlsRedactError
from ..rules import ALL_COLUMNS, IdentityTable, Rules
from .findings import DEFAULT_LAW

STATS_SCHEMA = "ils_redact_stats"
PROFILES = ("disclosure", "stats", "report")

#: How restrictive each class is; an escalation never lowers a class.
_RANK = {"other": 0, "stats": 0, "identity": 1, "unclassified": 2, "personal": 3,
         "confidential": 4, "secret": 5}

#: Column names that point at a patron when a confidential table has no foreign key
#: declaring it (Evergreen's views and aged tables; Koha's ``borrowernumber``).
PATRON_LINK_NAMES = frozenset({
    "usr", "patron", "owner", "target_usr", "target_user", "context_user", "requestor",
    "usr_id", "patron_id", "borrowernumber", "borrower", "cred_user", "accessor",
})


@dataclass(frozen=True)
class Classification:
    """The effective class of one relation and the reason a person can act on."""

    cls: str  # identity | secret | confidential | personal | other | stats | unclassified
    reason: str


def rules_name(catalog: Catalog, rel: str) -> str:
    """The name the rules use for a catalog relation.

    The rules write names as the ILS does (``actor.usr`` for Evergreen, ``borrowers``
    for Koha); on MariaDB the catalog qualifies them with the connected database.
    """
    prefix = f"{catalog.default_schema}." if catalog.default_schema else None
    if prefix and rel.startswith(prefix):
        return rel[len(prefix):]
    return rel


class Classifier:
    """Effective classes: the rules' class, escalated through inheritance and views.

    Takes and returns catalog-qualified names; looks them up in the rules under the
    rules' own spelling (:func:`rules_name`).
    """

    def __init__(self, rules: Rules, catalog: Catalog) -> None:
        self.rules = rules
        self.catalog = catalog
        self._cache: dict[str, Classification] = {}
        self._identity = {catalog.qualify(t.relation): t for t in rules.identity}

    def identity(self, rel: str) -> IdentityTable | None:
        """The identity-table rules of a catalog relation, if it is one."""
        return self._identity.get(rel)

    def secret_columns(self, rel: str) -> tuple[str, ...] | str:
        """Credential columns of a catalog relation (or ``all``)."""
        return self.rules.secret_columns(rules_name(self.catalog, rel))

    def base(self, rel: str) -> Classification:
        r = self.rules
        schema = rel.split(".", 1)[0]
        if schema == STATS_SCHEMA:
            return Classification("stats", "suppressed aggregate view installed by ils-redact")
        rel = rules_name(self.catalog, rel)
        cls = r.classify(rel)
        if cls == "identity":
            return Classification("identity", "identity table (disclosure allow-list)")
        if cls == "secret":
            return Classification("secret", "credentials")
        if cls == "confidential":
            return Classification("confidential", r.confidential[rel])
        if cls == "personal":
            return Classification("personal", r.personal[rel])
        if cls == "other":
            return Classification("other", "no patron data")
        return Classification("unclassified", "not classified in the rules")

    def classify(self, rel: str, _visiting: frozenset[str] = frozenset()) -> Classification:
        hit = self._cache.get(rel)
        if hit is not None:
            return hit
        best = self.base(rel)
        if rel in _visiting:  # a cycle of views: the rules' own class
            return best
        _visiting = _visiting | {rel}
        for kid in sorted(self.catalog.descendants(rel)):
            k = self.classify(kid, _visiting)
            if k.cls in ("secret", "confidential", "personal", "identity") and \
                    _RANK[_escalate(k.cls)] > _RANK[best.cls]:
                best = Classification(
                    _escalate(k.cls),
                    f"querying an inheritance parent returns the rows of its children, "
                    f"and {kid} is {k.cls}")
        relation = self.catalog.get(rel)
        if relation is not None and relation.is_view:
            for dep in sorted(self.catalog.view_reads(rel)):
                d = self.classify(dep, _visiting)
                if d.cls in ("secret", "confidential", "personal", "identity") and \
                        _RANK[_escalate(d.cls)] > _RANK[best.cls]:
                    best = Classification(
                        _escalate(d.cls),
                        f"a view runs with its owner's rights and this one reads {dep} "
                        f"({d.cls})")
        self._cache[rel] = best
        return best


def _escalate(cls: str) -> str:
    """Class a parent or view inherits from what it reads.  Reading an identity table
    through a view bypasses row-level security, so it is personal data, not identity."""
    return {"secret": "confidential", "identity": "personal"}.get(cls, cls)


@dataclass(frozen=True)
class Profile:
    """Everything the passes need to know about one check mode."""

    name: str
    #: relation -> the columns this profile may reference (anywhere in the query)
    permitted: Mapping[str, frozenset[str]]
    #: identity relation -> patron key, for the scope predicate (disclosure only)
    scope: Mapping[str, str] = field(default_factory=dict)
    request_id: int | None = None
    #: report mode: aggregate-only, patron identifiers constrained
    aggregate_only: bool = False
    #: report mode: relation -> columns that identify a patron or one confidential record
    patron_identifiers: Mapping[str, frozenset[str]] = field(default_factory=dict)
    row_cap: int = 1000
    #: function names allowed beyond the built-in list (rules.gate.functions), lowercase
    extra_functions: frozenset[str] = frozenset()
    law: str = DEFAULT_LAW
    #: disclosure: the ``relation.column`` names one request covers (None: the rules'
    #: whole identity allow-list)
    request_columns: frozenset[str] | None = None
    #: MariaDB: the layer database whose definer views of the same names are what the
    #: disclosure role reads instead of the identity tables, and which holds the
    #: ``scope_patrons`` view (None: PostgreSQL, the tables themselves under RLS)
    scope_schema: str | None = None


class _Common(TypedDict):
    """The :class:`Profile` fields every profile takes from the rules."""

    row_cap: int
    extra_functions: frozenset[str]
    law: str


def build_profile(rules: Rules, catalog: Catalog, name: str,
                  request_id: int | None = None, *, law: str = DEFAULT_LAW,
                  columns: Iterable[str] | None = None) -> Profile:
    """The :class:`Profile` for ``disclosure``, ``stats`` or ``report``.

    ``columns`` (disclosure only) narrows the identity allow-list to what one request
    covers (``actor.usr.family_name``, as the request records them): a court order names
    the fields it reaches, and a query serving it must not read more.  Each identity
    table's patron key stays readable, so tables can still be joined on the patron.
    """
    if name not in PROFILES:
        raise IlsRedactError(f"unknown gate profile {name!r}",
                             hint=f"choose one of {', '.join(PROFILES)}")
    if request_id is not None and (isinstance(request_id, bool) or
                                   not isinstance(request_id, int) or request_id <= 0):
        raise IlsRedactError(f"request id must be a positive integer, not {request_id!r}")
    if request_id is not None and name != "disclosure":
        raise IlsRedactError("--request applies to the disclosure profile only")
    common: _Common = {
        "row_cap": rules.gate.row_cap,
        "extra_functions": frozenset(f.lower() for f in rules.gate.functions),
        "law": law,
    }
    if columns is not None and name != "disclosure":
        raise IlsRedactError("request columns apply to the disclosure profile only")
    if name == "disclosure":
        covered = None if columns is None else frozenset(columns)
        permitted = {}
        scope = {}
        for t in rules.identity:
            qualified = catalog.qualify(t.relation)
            cols = frozenset(t.columns)
            if covered is not None:
                cols = frozenset(c for c in cols if f"{t.relation}.{c}" in covered
                                 or c == t.patron_key)
            permitted[qualified] = cols
            scope[qualified] = t.patron_key
        scope_schema = None
        if catalog.engine == "mariadb" and catalog.database:
            from ..engine import get_backend

            scope_schema = get_backend(catalog.engine).layer_schema(catalog.database)
        return Profile(name, permitted, scope=scope, request_id=request_id,
                       request_columns=covered, scope_schema=scope_schema, **common)
    if name == "stats":
        permitted = {rel.qualified: frozenset(rel.column_names)
                     for rel in catalog.relations.values() if rel.schema == STATS_SCHEMA}
        return Profile(name, permitted, **common)
    classifier = Classifier(rules, catalog)
    permitted = {}
    for rel in catalog.relations.values():
        cls = classifier.classify(rel.qualified).cls
        if cls in ("secret", "personal", "unclassified"):
            continue
        secret = classifier.secret_columns(rel.qualified)
        if secret == ALL_COLUMNS:
            continue
        permitted[rel.qualified] = frozenset(rel.column_names) - frozenset(secret)
    return Profile(name, permitted, aggregate_only=True,
                   patron_identifiers=patron_identifiers(rules, catalog, classifier),
                   **common)


def patron_identifiers(rules: Rules, catalog: Catalog,
                       classifier: Classifier | None = None) -> dict[str, frozenset[str]]:
    """relation -> columns that single out a patron, or one confidential record.

    - the identity columns of identity tables (names, barcodes, addresses, dates of birth);
    - on identity, personal and confidential relations: columns with a foreign key to an
      identity table (``action.circulation.usr``), columns named like a patron link where
      no foreign key is declared (views, aged tables), and the primary key and foreign
      keys to other confidential relations (a group per circulation id is one loan).

    Links from "other" relations (``asset.copy.creator``) point at staff accounts and are
    not patron identifiers (the rules reviewed them).
    """
    classifier = classifier or Classifier(rules, catalog)
    identity = {catalog.qualify(t.relation): t for t in rules.identity}
    out: dict[str, frozenset[str]] = {}
    for rel in catalog.relations.values():
        q = rel.qualified
        cls = classifier.classify(q).cls
        cols: set[str] = set()
        if q in identity:
            cols |= set(identity[q].columns)
        if cls in ("identity", "personal", "confidential"):
            for fk in rel.foreign_keys:
                target = classifier.classify(fk.ref_relation).cls
                if fk.ref_relation in identity or target == "confidential":
                    cols |= set(fk.columns)
            cols |= {c for c in rel.column_names if c in PATRON_LINK_NAMES}
        if cls == "confidential":
            cols |= set(rel.primary_key)
        if cols:
            out[q] = frozenset(cols)
    return out
