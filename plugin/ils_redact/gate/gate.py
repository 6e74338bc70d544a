"""The query gate: check one SQL text for a profile and return what may run.

The gate is the second layer.  The database already refuses what it must (column GRANTs
and row-level security); the gate makes allowed queries work (``*`` expands to the
permitted columns, the scope predicate is explicit) and refuses the rest early with a
reason a person understands.  Switching it off opens nothing, and it is never stricter
than needed on purpose: where it refuses a query the database would allow, it says why.

The pipeline follows sqlglot's optimizer: small ordered passes, each with a stable
finding code, after qualification so later passes see fully resolved names::

    parse (exactly one statement)      R-PARSE, R-MULTI-STATEMENT
    server's parser (PostgreSQL)       R-PARSE, R-COMMAND, R-DML, R-SELECT-INTO, R-LOCKING
    statement kind, hidden statements  R-NOT-SELECT, R-COMMAND, R-DML, R-SELECT-INTO ...
    constructs, functions, casts       R-PARAMETER, R-VARIABLE, R-WHOLE-ROW, R-FUNCTION,
                                       R-CAST, R-UNSUPPORTED
    name function and VALUES columns   R-ALIAS-COLUMNS
    relations (search_path)            R-UNKNOWN-RELATION, R-CONFIDENTIAL-RELATION ...
    parser cross-check (PostgreSQL)    R-PARSER-DIFFERENTIAL
    qualify against the catalog        R-UNKNOWN-COLUMN
    table alias column lists           R-ALIAS-COLUMNS, R-UNKNOWN-COLUMN
    star filter, every column          R-SECRET-COLUMN, R-WITHHELD-COLUMN, R-WHOLE-ROW
    statistics report shape            R-NOT-AGGREGATE, R-WINDOW, R-PATRON-...
    rewrite: scope, row cap, render    R-SCOPE
    verify the output (PostgreSQL)     R-PARSER-DIFFERENTIAL, R-FUNCTION, R-CAST

The output SQL is regenerated from the checked tree and is the only thing ever executed.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from threading import Lock

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import OptimizeError, SqlglotError
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers
from sqlglot.optimizer.qualify_columns import qualify_columns
from sqlglot.optimizer.qualify_tables import qualify_tables
from sqlglot.optimizer.scope import traverse_scope

from ..catalog import Catalog
from ..errors import IlsRedactError, did_you_mean
from ..rules import Rules
from . import pgparse
from .access import (
    Access,
    AccessChecker,
    check_columns,
    filter_star_columns,
    mark_star_selects,
    unresolved_columns,
)
from .aliases import has_table_alias_columns, name_sources, resolve_table_aliases
from .findings import Finding, dedupe, finding, position
from .names import TableRef, drop_dual, full_schema, resolve_relations
from .profiles import Classifier, Profile, build_profile
from .report import ReportChecker
from .rewrite import cap_limit, inject_scope, render, strip_comments
from .statement import (
    check_constructs,
    check_functions,
    check_hidden_statements,
    check_statement_kind,
    parse_statements,
)

DIALECTS = {"postgres": "postgres", "postgresql": "postgres", "mysql": "mysql",
            "mariadb": "mysql"}


@dataclass(frozen=True)
class GateResult:
    """The outcome of one check.  ``sql`` is the SQL to execute when ``ok``."""

    ok: bool
    sql: str | None
    findings: tuple[Finding, ...]
    relations: frozenset[str] = frozenset()
    columns: frozenset[str] = frozenset()

    def to_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "sql": self.sql,
            "findings": [f.to_dict() for f in self.findings],
            "relations": sorted(self.relations),
            "columns": sorted(self.columns),
        }


@dataclass
class _State:
    """One check in progress."""

    text: str
    findings: list[Finding] = field(default_factory=list)
    pg: pgparse.PgFacts | None = None
    refs: list[TableRef] = field(default_factory=list)
    access: Access = field(default_factory=Access)

    def result(self, sql: str | None = None) -> GateResult:
        fs = dedupe(self.findings)
        return GateResult(ok=not fs and sql is not None, sql=sql if not fs else None,
                          findings=fs, relations=frozenset(self.access.relations),
                          columns=frozenset(self.access.columns))


class Gate:
    """Checks SQL texts for one profile (and request), with an LRU of results.

    ``profile`` is ``disclosure``, ``stats`` or ``report`` (see :mod:`.profiles`);
    ``search_path`` resolves unqualified names the way the role's connection would (the
    output names every schema, so it does not depend on the executing session's path);
    ``dialect`` is ``postgres`` or ``mysql``/``mariadb``; ``require_request`` refuses a
    disclosure query that names no request (R-SCOPE).  A Gate is immutable after
    construction and safe to share between threads; build a new one when the rules or
    the catalog change (results are cached by profile, request and SQL text).
    ``columns`` narrows a disclosure to the identity columns one request covers
    (``relation.column``; see :func:`.profiles.build_profile`).
    """

    def __init__(self, rules: Rules, catalog: Catalog, profile: str, *,
                 request_id: int | None = None, dialect: str = "postgres",
                 search_path: Sequence[str] = ("public",), cache_size: int = 1024,
                 require_request: bool = False,
                 columns: Iterable[str] | None = None) -> None:
        if dialect not in DIALECTS:
            raise IlsRedactError(f"unknown SQL dialect {dialect!r}",
                                 hint=f"choose one of {', '.join(sorted(DIALECTS))}")
        self.rules = rules
        self.catalog = catalog
        self.dialect = DIALECTS[dialect]
        #: one Dialect instance for every sqlglot call: a name would be looked up and a
        #: new Dialect built on each call, a measurable share of the latency budget
        self._dialect = Dialect.get_or_raise(self.dialect)
        self.search_path = tuple(search_path)
        self.profile: Profile = build_profile(rules, catalog, profile, request_id,
                                              columns=columns)
        self.require_request = require_request
        self.classifier = Classifier(rules, catalog)
        self.checker = AccessChecker(rules, self.profile, self.classifier)
        self._schema = full_schema(catalog, self.dialect)
        self._permitted_order = {
            rel: [c for c in catalog.relations[rel].column_names if c in cols]
            for rel, cols in self.profile.permitted.items() if rel in catalog.relations}
        self._cache: OrderedDict[tuple[object, ...], GateResult] = OrderedDict()
        self._cache_size = cache_size
        self._lock = Lock()

    # -- public --------------------------------------------------------------------
    def check(self, sql_text: str) -> GateResult:
        """Check one SQL text; answered from the cache when the same text comes again."""
        key = (self.profile.name, self.profile.request_id, sql_text)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        try:
            result = self._check(sql_text)
        except RecursionError:
            # thousands of nested parentheses: a parser's stack, not a query to run
            result = GateResult(False, None, (Finding(
                "R-PARSE", "the text is nested too deeply to check"),))
        if self._cache_size > 0:
            with self._lock:
                self._cache[key] = result
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return result

    # -- pipeline ------------------------------------------------------------------
    def _check(self, text: str) -> GateResult:
        """The phases in order; each records findings and says whether to go on."""
        st = _State(text)
        tree = self._statement(st)
        if tree is None:
            return st.result()
        tree = self._relations(st, tree)
        if tree is None:
            return st.result()
        tree = self._columns(st, tree)
        if tree is None or st.findings:
            return st.result()
        return self._rewrite(tree, st)

    def _statement(self, st: _State) -> exp.Expr | None:
        """Exactly one SELECT, as both parsers see it; nothing hidden inside; only
        allow-listed functions and casts.  Returns the tree, or None to stop."""
        trees, err = parse_statements(st.text, self._dialect)
        pg_head: list[Finding] = []
        pg_inner: list[Finding] = []
        if self.dialect == "postgres":
            st.pg, pg_err = pgparse.pg_facts(st.text)
            if pg_err is not None:  # whatever sqlglot thinks, the server would not run it
                st.findings.append(err or pg_err)
                return None
            if st.pg is None:  # pg_facts returns the facts whenever it returns no finding
                raise IlsRedactError("the server's parser returned neither facts nor an "
                                     "error; please report this query")
            pg_head, pg_inner = pgparse.check_original(st.pg)
        if err is not None:
            if pg_head:  # a statement sqlglot cannot read (NOTIFY ...): the server names it
                st.findings.append(pg_head[0])
            elif st.pg is not None:  # the server reads a query the gate cannot check
                st.findings.append(Finding(
                    "R-PARSER-DIFFERENTIAL", f"the server's parser reads a query here that "
                    f"the gate's parser cannot ({err.message.removeprefix('cannot parse: ')}); "
                    f"rewrite it without unusual quoting or escapes", "", err.line, err.col))
            else:
                st.findings.append(err)
            return None
        if not trees:
            st.findings.append(Finding("R-PARSE", "no SQL statement in the text"))
            return None
        if len(trees) > 1 or any(f.code == "R-MULTI-STATEMENT" for f in pg_head):
            count = max(len(trees), len(st.pg.statements) if st.pg else 0)
            st.findings.append(finding(
                "R-MULTI-STATEMENT", f"{count} statements; the gate checks exactly one",
                node=trees[1] if len(trees) > 1 else None))
            return None
        tree = trees[0]
        kind = list(check_statement_kind(tree))
        if pg_head and (not kind or kind[0].code == "R-NOT-SELECT"):
            kind = pg_head[:1]  # the server knows its own statements best (LISTEN x)
        if kind:
            st.findings.extend(kind)
            return None
        st.findings.extend(check_hidden_statements(tree))
        have = {f.code for f in st.findings}
        st.findings.extend(f for f in pg_inner if f.code not in have)
        hidden = bool(st.findings)
        st.findings.extend(check_constructs(tree, self.dialect))
        st.findings.extend(check_functions(tree, self.dialect, self.profile.extra_functions))
        # names inside INTO or a DML clause are not worth resolving
        return None if hidden else tree

    def _relations(self, st: _State, tree: exp.Expr) -> exp.Expr | None:
        """Resolve every relation through the search path, check it against the profile
        and cross-check relations and column names with the server's parser."""
        tree = normalize_identifiers(tree, dialect=self._dialect)
        sg_columns = {c.name for c in tree.find_all(exp.Column)
                      if not isinstance(c.this, exp.Star)}
        if self.dialect == "mysql":
            drop_dual(tree)
        named = name_sources(tree, self.dialect)
        if named:
            st.findings.extend(named)
            return None
        try:
            refs, unknown = resolve_relations(tree, self.catalog, self.search_path)
        except SqlglotError as exc:  # the scope analysis cannot place a source: fail closed
            st.findings.append(Finding("R-UNSUPPORTED", f"the gate cannot tell which "
                                       f"relations this query reads: "
                                       f"{str(exc).splitlines()[0]}"))
            return None
        st.refs = refs
        st.findings.extend(unknown)
        st.access.relations = {r.relation for r in refs}
        for ref in refs:
            f = self.checker.relation_finding(ref.relation, ref.node)
            if f:
                st.findings.append(f)
        if unknown:
            return None
        if st.pg is not None:
            st.findings.extend(pgparse.compare(st.pg, st.access.relations, sg_columns,
                                               self.catalog, self.search_path))
        return tree

    def _columns(self, st: _State, tree: exp.Expr) -> exp.Expr | None:
        """Qualify against the catalog, then check every column reference (and, for
        statistics reports, the shape of the query)."""
        qualified = self._qualify(tree, st)
        if qualified is None:
            return None
        scopes = traverse_scope(qualified)
        unresolved = [self._unresolved(c, st.access.relations)
                      for c in unresolved_columns(scopes)]
        if unresolved:
            st.findings.extend(unresolved)
            return None
        if has_table_alias_columns([r.node for r in st.refs]):
            renamed = resolve_table_aliases(scopes, self.catalog, self.dialect)
            if renamed:
                st.findings.extend(renamed)
                return None
        withheld: dict[int, dict[str, tuple[str, str]]] = {}
        st.findings.extend(filter_star_columns(scopes, self.checker, withheld))
        if withheld:
            for scope in scopes:
                scope.clear_cache()
        st.findings.extend(check_columns(scopes, qualified, self.checker, withheld,
                                         st.access))
        if self.profile.aggregate_only:
            st.findings.extend(ReportChecker(self.profile).check(scopes, qualified))
        return qualified

    def _qualify(self, tree: exp.Expr, st: _State) -> exp.Expr | None:
        """sqlglot's ``qualify`` minus the steps done elsewhere: identifiers are already
        normalised, quoting happens when the SQL is generated, and validation runs on the
        scopes the later passes need anyway (each step is a walk of the tree)."""
        mark_star_selects(tree)
        try:
            tree = qualify_tables(tree, dialect=self._dialect)
            return qualify_columns(tree, self._schema, expand_alias_refs=True,
                                   expand_stars=True)
        except OptimizeError as exc:
            st.findings.append(self._column_error(str(exc), st.access.relations))
            return None
        except SqlglotError as exc:  # e.g. SchemaError: fail closed with the reason
            st.findings.append(Finding("R-UNSUPPORTED", f"the gate cannot resolve this "
                                       f"query's names: {str(exc).splitlines()[0]}"))
            return None

    def _unresolved(self, col: exp.Column, relations: set[str]) -> Finding:
        line, pos = position(col)
        return self._describe_unresolved(col.name, relations, line, pos)

    def _column_error(self, message: str, relations: set[str]) -> Finding:
        """An unresolvable (unknown or ambiguous) column, with a hint where possible."""
        m = re.search(r"Column '([^']*)' could not be resolved(?:\. Line: (\d+), Col: (\d+))?",
                      message)
        if not m:
            return Finding("R-UNKNOWN-COLUMN", f"cannot resolve the columns: {message}")
        name = m.group(1)
        line = int(m.group(2)) if m.group(2) else None
        col = int(m.group(3)) - len(name) + 1 if m.group(3) else None
        return self._describe_unresolved(name, relations, line, col)

    def _describe_unresolved(self, name: str, relations: set[str], line: int | None,
                             col: int | None) -> Finding:
        owners = sorted(r for r in relations if name in self.catalog.relations[r].column_names)
        if len(owners) > 1:
            msg = (f"column {name} is ambiguous: it exists in {', '.join(owners)}; "
                   f"qualify it with the table alias")
        else:
            names = [c for r in relations for c in self.catalog.relations[r].column_names]
            hint = did_you_mean(name, names)
            msg = (f"column {name} does not exist in "
                   f"{', '.join(sorted(relations)) or 'the relations named'}"
                   f"{f' ({hint})' if hint else ''}")
        return Finding("R-UNKNOWN-COLUMN", msg, name, line, col)

    def _rewrite(self, tree: exp.Expr, st: _State) -> GateResult:
        if self.profile.scope:
            tables = [(r.node, r.relation) for r in st.refs if r.relation in self.profile.scope]
            if tables and self.profile.request_id is None and self.require_request:
                st.findings.append(finding(
                    "R-SCOPE", "a disclosure query names the request it serves: pass the "
                    "request id", tables[0][1], tables[0][0]))
                return st.result()
            st.findings.extend(inject_scope(tree, self.profile, tables, self.dialect,
                                            self._permitted_order))
            if st.findings:
                return st.result()
        tree = cap_limit(tree, self.profile.row_cap, self.dialect)
        names = strip_comments(tree)
        sql = render(tree, self._dialect)
        if self.dialect == "postgres":
            st.findings.extend(pgparse.verify_output(sql, st.access.relations,
                                                     self.profile.extra_functions, names))
        return st.result(sql)
