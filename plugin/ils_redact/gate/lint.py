"""Classify saved report SQL: which profile can run it, and what it exposes as written.

Libraries have years of saved report SQL, often run by a reporter connected as the ILS
owner or a superuser.  ``lint`` sorts each query (one per ``.sql`` file) into:

``disclosure``      passes the disclosure gate: identity columns only (under a request)
``statistics``      passes the "statistics report over base tables" check
``no-patron-data``  reads only catalogue, item and configuration data
``exposes``         none of the above: names the confidential, personal or credential
                    relations and columns it reads, as the query is written (``*``
                    counts as every column, since that is what it returns today)
``invalid``         cannot be checked: it does not parse, is not one SELECT, or names
                    tables or columns the catalog does not know (fail closed)

Works offline against a catalog file; nothing is executed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import traverse_scope

from ..catalog import Catalog
from ..errors import IlsRedactError
from ..rules import ALL_COLUMNS, Rules
from .aliases import has_table_alias_columns, name_sources, resolve_table_aliases
from .findings import Finding
from .gate import Gate, GateResult
from .names import drop_dual, full_schema, resolve_relations
from .profiles import Classifier
from .statement import parse_statements

VERDICTS = ("disclosure", "statistics", "no-patron-data", "exposes", "invalid")
#: Findings that mean the text cannot be checked at all.
INVALID_CODES = frozenset({
    "R-PARSE", "R-MULTI-STATEMENT", "R-NOT-SELECT", "R-COMMAND", "R-DML", "R-SELECT-INTO",
    "R-LOCKING", "R-UNKNOWN-RELATION", "R-UNKNOWN-COLUMN", "R-PARSER-DIFFERENTIAL",
    "R-PARAMETER", "R-ALIAS-COLUMNS",
})


@dataclass(frozen=True)
class Exposure:
    """One relation a query reads that is not free to read, and the columns it touches."""

    relation: str
    cls: str  # confidential | personal | secret | identity | withheld | unclassified
    reason: str
    columns: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {"relation": self.relation, "class": self.cls, "reason": self.reason,
                "columns": list(self.columns)}


@dataclass(frozen=True)
class LintRecord:
    """The classification of one saved query."""

    path: str
    verdict: str
    usable_by: tuple[str, ...] = ()
    exposes: tuple[Exposure, ...] = ()
    #: why it is not usable by each profile (profile -> findings)
    findings: dict[str, tuple[Finding, ...]] = field(default_factory=dict, compare=False)

    @property
    def failed(self) -> bool:
        return self.verdict in ("exposes", "invalid")

    def to_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "verdict": self.verdict,
            "usable_by": list(self.usable_by),
            "exposes": [e.to_dict() for e in self.exposes],
            "findings": {k: [f.to_dict() for f in v] for k, v in self.findings.items()},
        }


class Linter:
    """Classifies SQL texts against one rules file and catalog."""

    def __init__(self, rules: Rules, catalog: Catalog, *, dialect: str = "postgres",
                 search_path: Sequence[str] = ("public",)) -> None:
        self.rules = rules
        self.catalog = catalog
        self.search_path = tuple(search_path)
        self.disclosure = Gate(rules, catalog, "disclosure", dialect=dialect,
                               search_path=search_path, cache_size=0)
        self.statistics = Gate(rules, catalog, "report", dialect=dialect,
                               search_path=search_path, cache_size=0)
        self.classifier = Classifier(rules, catalog)
        self.dialect = self.disclosure.dialect

    def lint_text(self, sql: str, path: str = "<text>") -> LintRecord:
        d = self.disclosure.check(sql)
        s = self.statistics.check(sql)
        findings = {"disclosure": d.findings, "statistics": s.findings}
        usable = tuple(p for p, r in (("disclosure", d), ("statistics", s)) if r.ok)
        invalid = [f for f in s.findings if f.code in INVALID_CODES]
        if invalid:
            return LintRecord(path, "invalid", (), (), {"statistics": tuple(invalid)})
        exposures = self.exposures(sql, s)
        if d.ok:
            return LintRecord(path, "disclosure", usable, (), findings)
        if s.ok:
            return LintRecord(path, "statistics", usable, (), findings)
        if not exposures:
            return LintRecord(path, "no-patron-data", usable, (), findings)
        return LintRecord(path, "exposes", usable, exposures, findings)

    def lint_paths(self, paths: Iterable[str | Path]) -> list[LintRecord]:
        return [self.lint_text(read_sql(p), str(p)) for p in sql_files(paths)]

    # -- what the query reads, as written --------------------------------------------
    def inventory(self, sql: str) -> dict[str, set[str]]:
        """relation -> columns read, with ``*`` expanded to every column."""
        trees, err = parse_statements(sql, self.dialect)
        if err is not None or len(trees) != 1:
            return {}
        tree = normalize_identifiers(trees[0], dialect=self.dialect)
        if self.dialect == "mysql":
            drop_dual(tree)
        try:
            if name_sources(tree, self.dialect):
                return {}
            refs, unknown = resolve_relations(tree, self.catalog, self.search_path)
        except SqlglotError:
            return {}
        out: dict[str, set[str]] = {r.relation: set() for r in refs}
        if unknown:
            return out
        try:
            tree = qualify(tree, schema=full_schema(self.catalog, self.dialect),
                           dialect=self.dialect, validate_qualify_columns=True)
        except SqlglotError:
            return out
        scopes = traverse_scope(tree)
        if has_table_alias_columns([r.node for r in refs]):
            # columns are read by position, whatever the alias list calls them
            resolve_table_aliases(scopes, self.catalog, "postgres")
        for scope in scopes:
            for col in scope.columns:
                src = scope.sources.get(col.table)
                if isinstance(src, exp.Table) and isinstance(src.this, exp.Identifier):
                    out.setdefault(f"{src.text('db')}.{src.name}", set()).add(col.name)
        return out

    def exposures(self, sql: str, result: GateResult) -> tuple[Exposure, ...]:
        found = []
        for rel, cols in sorted(self.inventory(sql).items()):
            c = self.classifier.classify(rel)
            secret = self.classifier.secret_columns(rel)
            if c.cls in ("confidential", "personal", "secret", "unclassified"):
                found.append(Exposure(rel, c.cls, c.reason, tuple(sorted(cols))))
                continue
            if secret != ALL_COLUMNS and cols & set(secret):
                found.append(Exposure(rel, "secret", "credentials",
                                      tuple(sorted(cols & set(secret)))))
                cols = cols - set(secret)
            ident = self.classifier.identity(rel)
            if ident is not None and cols:
                withheld = cols - set(ident.columns)
                if withheld:
                    found.append(Exposure(rel, "withheld", "not in the identity allow-list",
                                          tuple(sorted(withheld))))
                shown = cols & set(ident.columns)
                if shown:
                    found.append(Exposure(rel, "identity", "patron identity outside a "
                                          "disclosure request", tuple(sorted(shown))))
        return tuple(found)


def sql_files(paths: Iterable[str | Path]) -> list[Path]:
    """``.sql`` files named, or found below the folders named (sorted)."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*.sql") if q.is_file()))
        elif p.is_file():
            out.append(p)
        else:
            raise IlsRedactError(f"{p}: no such file or folder")
    return out


def read_sql(path: str | Path) -> str:
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise IlsRedactError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") \
            from None
    except OSError as exc:
        raise IlsRedactError(f"{p}: cannot read ({exc.strerror})") from None
