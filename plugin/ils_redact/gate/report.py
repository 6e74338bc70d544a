"""Statistics reports over base tables: aggregates only, patrons never singled out.

Used by ``lint`` and by custom-report validation (profile ``report``).  Three rules:

1. The output is aggregate-only: every output column of the query (each branch of a
   top-level UNION, and scalar subqueries in the output) is an aggregate or a grouping
   expression.  Window functions are refused: they return one row per input row.
   List aggregates (``string_agg``, ``array_agg``) return the individual values.
2. Patron identifiers (the identity columns of identity tables; patron links, primary
   keys and confidential foreign keys of confidential tables, see
   :func:`.profiles.patron_identifiers`) may only be counted (``count(DISTINCT usr)``),
   joined on (``c.usr = u.id``, both sides identifiers), tested for NULL, or used in an
   ``IN (subquery)`` semi-join between identifiers.  Anywhere else (output, GROUP BY of
   the final query, WHERE ``usr = 42``, ``family_name = 'Smith'``, ORDER BY, inside other
   expressions or aggregates like ``max(usr)``) they single a person out.
3. Identifiers flow through CTEs and derived tables: a derived column that is a bare
   identifier is an identifier of the outer query ("taint"), so counting loans per
   patron in a derived table and then the distribution of those counts is fine, while
   selecting the derived patron id at the end is not.

Suppression below k distinct patrons happens when the report runs; this pass only keeps
the query's shape statistical.
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp
from sqlglot.optimizer.scope import Scope

from .findings import Finding, finding
from .functions import is_aggregate, is_list_aggregate
from .profiles import Profile
from .statement import unwrap_root

Taint = dict[int, set[str]]


def _lookup(scope: Scope | None, alias: str) -> exp.Table | Scope | None:
    while scope is not None:
        src = scope.sources.get(alias)
        if src is not None:
            return src
        scope = scope.parent
    return None


def _output_names(query: exp.Expr) -> list[str]:
    if isinstance(query, exp.SetOperation):
        return _output_names(query.left)
    if isinstance(query, exp.Select):
        return list(query.named_selects)
    return []


class ReportChecker:
    """The three rules above, over the qualified tree and its scopes."""

    def __init__(self, profile: Profile) -> None:
        self.ids = profile.patron_identifiers
        self.taint: Taint = {}

    def is_identifier(self, scope: Scope, col: exp.Column) -> bool:
        if not col.table:
            return False
        src = _lookup(scope, col.table)
        if isinstance(src, exp.Table):
            if not isinstance(src.this, exp.Identifier):
                return False
            rel = f"{src.text('db')}.{src.name}"
            return col.name in self.ids.get(rel, ())
        if isinstance(src, Scope):
            return col.name in self.taint.get(id(src.expression), set())
        return False

    def describe(self, scope: Scope, col: exp.Column) -> str:
        """``schema.table.column`` for a base column, ``alias.column`` otherwise."""
        src = _lookup(scope, col.table) if col.table else None
        if isinstance(src, exp.Table) and isinstance(src.this, exp.Identifier):
            return f"{src.text('db')}.{src.name}.{col.name}"
        return f"{col.table}.{col.name}" if col.table else col.name

    # -- pass ------------------------------------------------------------------------
    def check(self, scopes: list[Scope], tree: exp.Expr) -> Iterator[Finding]:
        for node in tree.find_all(exp.Window):
            yield finding("R-WINDOW", "window functions return one row per input row; a "
                          "statistics report returns aggregates only",
                          node.this.sql() if node.this else "OVER", node)
        for fn in tree.find_all(exp.Func):
            if is_list_aggregate(fn):
                yield finding("R-NOT-AGGREGATE", f"{fn.sql_name().lower()} lists the "
                              f"individual values of a group; use count, sum, avg, min or max",
                              fn.sql_name().lower(), fn)
        for scope in scopes:  # inner scopes first
            yield from self._scope(scope)
        yield from self._aggregate_only(unwrap_root(tree), scopes)

    def _scope(self, scope: Scope) -> Iterator[Finding]:
        expr = scope.expression
        if isinstance(expr, exp.SetOperation):
            names = _output_names(expr)
            tainted: set[str] = set()
            for branch in (expr.left, expr.right):
                b_names = _output_names(branch)
                b_taint = self.taint.get(id(branch), set())
                tainted |= {names[i] for i, n in enumerate(b_names)
                            if n in b_taint and i < len(names)}
            self.taint[id(expr)] = tainted
            return
        if not isinstance(expr, exp.Select):
            return
        out_taint: set[str] = set()
        feeds_outer = scope.is_derived_table or scope.is_cte or self._is_semijoin(expr)
        for node in scope.walk():
            if not isinstance(node, exp.Column) or not self.is_identifier(scope, node):
                continue
            clause = _clause(node, expr)
            if self._allowed_use(scope, node):
                continue
            if clause == "expressions" and feeds_outer and _is_bare_projection(node, expr):
                out_taint.add(_projection_of(node, expr).alias_or_name)
                continue
            if clause == "group" and (scope.is_derived_table or scope.is_cte):
                continue  # per-patron groups inside; the outer query must aggregate them
            obj = self.describe(scope, node)
            where = {"where": "WHERE", "having": "HAVING", "order": "ORDER BY",
                     "joins": "a join condition", "group": "GROUP BY",
                     "expressions": "the output"}.get(clause, clause or "an expression")
            if clause == "group":
                yield finding("R-PATRON-KEY-IN-GROUPING", f"grouping by {obj} makes one group "
                              f"per person (or per confidential record)", obj, node)
            elif clause == "expressions" and _is_bare_projection(node, expr):
                yield finding("R-PATRON-IDENTIFIER", f"{obj} identifies a patron (or one "
                              f"confidential record) and may not be part of a statistics "
                              f"report's output; count it instead (count(DISTINCT ...))",
                              obj, node)
            else:
                yield finding("R-PATRON-IDENTIFIER", f"{obj} identifies a patron (or one "
                              f"confidential record): it may be counted, tested for NULL or "
                              f"joined to another identifier, not filtered on, sorted or "
                              f"computed with (here: {where})", obj, node)
        self.taint[id(expr)] = out_taint

    @staticmethod
    def _is_semijoin(select: exp.Select) -> bool:
        parent = select.parent
        while isinstance(parent, (exp.Subquery, exp.Paren)):
            parent = parent.parent
        return isinstance(parent, (exp.In, exp.Exists))

    def _allowed_use(self, scope: Scope, col: exp.Column) -> bool:
        parent = col.parent
        if isinstance(parent, exp.Distinct):
            parent = parent.parent
        if isinstance(parent, exp.Count) and not col.find_ancestor(exp.Window):
            return True
        if isinstance(parent, exp.Is) and isinstance(parent.expression, exp.Null):
            return True
        if isinstance(parent, exp.EQ):
            a, b = parent.this, parent.expression
            if isinstance(a, exp.Column) and isinstance(b, exp.Column) and \
                    self.is_identifier(scope, a) and self.is_identifier(scope, b):
                return _in_conjunction(parent)
        if isinstance(parent, exp.In) and parent.this is col:
            query = parent.args.get("query")
            if query is not None:
                inner = query.unnest() if isinstance(query, exp.Subquery) else query
                names = _output_names(inner)
                tainted = self.taint.get(id(inner), set())
                return len(names) == 1 and names[0] in tainted
        return False

    # -- aggregate-only output -------------------------------------------------------
    def _aggregate_only(self, root: exp.Expr, scopes: list[Scope]) -> Iterator[Finding]:
        if isinstance(root, exp.SetOperation):
            yield from self._aggregate_only(unwrap_root(root.left), scopes)
            yield from self._aggregate_only(unwrap_root(root.right), scopes)
            return
        if not isinstance(root, exp.Select):
            return
        scope = next((s for s in scopes if s.expression is root), None)
        groups = _grouping_expressions(root)
        bare: list[exp.Column] = []
        for proj in root.expressions:
            for col in _columns_outside_aggregates(proj):
                if not any(_covered(col, proj, g) for g in groups):
                    bare.append(col)
        if bare:
            names = [self.describe(scope, c) if scope else c.name for c in bare]
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5
                                             else "")
            yield finding("R-NOT-AGGREGATE", f"a statistics report returns aggregates only; "
                          f"neither aggregated nor in GROUP BY: {shown}", names[0], bare[0])
        for proj in root.expressions:
            for sub in proj.find_all(exp.Subquery):
                inner = sub.unnest()
                if isinstance(inner, (exp.Select, exp.SetOperation)) and scope is not None:
                    yield from self._aggregate_only(inner, scopes)


def _grouping_expressions(select: exp.Select) -> list[exp.Expr]:
    """Everything a SELECT groups by, with ROLLUP / CUBE / GROUPING SETS flattened and
    positions (``GROUP BY 1``) replaced by the output expression they name."""
    group = select.args.get("group")
    if group is None:
        return []
    outputs = [p.this if isinstance(p, exp.Alias) else p for p in select.expressions]
    out: list[exp.Expr] = []
    stack = [e for key in ("expressions", "rollup", "cube", "grouping_sets")
             for e in (group.args.get(key) or [])
             if isinstance(e, exp.Expr)]
    while stack:
        node = stack.pop()
        if isinstance(node, (exp.Rollup, exp.Cube, exp.GroupingSets, exp.Tuple)):
            stack.extend(node.expressions)
        elif isinstance(node, exp.Paren):
            stack.append(node.this)
        elif isinstance(node, exp.Literal) and not node.is_string and node.is_int:
            i = int(node.this)
            if 1 <= i <= len(outputs):
                out.append(outputs[i - 1])
        else:
            out.append(node)
    return out


def _clause(node: exp.Expr, select: exp.Select) -> str:
    """The argument of ``select`` that contains ``node`` (expressions, where, group ...)."""
    child = node
    while child.parent is not None and child.parent is not select:
        child = child.parent
    key = child.arg_key or ""
    return key.rstrip("_")


def _in_conjunction(node: exp.Expr) -> bool:
    """``node`` is a conjunct of a WHERE or JOIN ... ON condition."""
    parent = node.parent
    while isinstance(parent, (exp.And, exp.Paren)):
        node, parent = parent, parent.parent
    return isinstance(parent, exp.Where) or (isinstance(parent, exp.Join)
                                              and node.arg_key == "on")


def _projection_of(node: exp.Expr, select: exp.Select) -> exp.Expr:
    while node.parent is not select:
        node = node.parent  # type: ignore[assignment]
    return node


def _is_bare_projection(col: exp.Column, select: exp.Select) -> bool:
    proj = _projection_of(col, select)
    return proj is col or (isinstance(proj, exp.Alias) and proj.this is col)


def _columns_outside_aggregates(proj: exp.Expr) -> Iterator[exp.Column]:
    stack = [proj]
    while stack:
        node = stack.pop()
        if isinstance(node, exp.Column):
            yield node
            continue
        if isinstance(node, (exp.Subquery, exp.Query)) and node is not proj:
            continue
        if isinstance(node, exp.Func) and is_aggregate(node):
            continue
        stack.extend(node.iter_expressions())


def _covered(col: exp.Column, proj: exp.Expr, group: exp.Expr) -> bool:
    node: exp.Expr | None = col
    while node is not None:
        if node == group:
            return True
        if node is proj:
            break
        node = node.parent
    inner = proj.this if isinstance(proj, exp.Alias) else proj
    return inner == group
