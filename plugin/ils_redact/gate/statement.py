"""Passes over the parsed statement, before any name is resolved.

Each pass walks the WHOLE tree, not only the root: ``SELECT ... INTO``, ``FOR UPDATE``
and ``WITH d AS (DELETE ... RETURNING *)`` all hide inside something that is a SELECT at
the top (THREAT_MODEL, query-gate facts).  A pass returns findings; it never raises.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from sqlglot import exp
from sqlglot.dialects.dialect import DialectType
from sqlglot.errors import ParseError, TokenError

from .findings import Finding, finding
from .functions import cast_problem, function_name, is_allowed, refusal_reason


class _DropCommandFallback(logging.Filter):
    """sqlglot logs a warning whenever it reads an unknown statement as a generic
    Command.  The gate refuses those with a finding of its own; the log line would only
    confuse someone reading the CLI's stderr."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Falling back to parsing as a 'Command'" not in record.getMessage()


_FILTER = _DropCommandFallback()
if _FILTER not in logging.getLogger("sqlglot").filters:  # pragma: no branch
    logging.getLogger("sqlglot").addFilter(_FILTER)


def parse_statements(sql: str, dialect: DialectType) -> tuple[list[exp.Expr], Finding | None]:
    """Every statement in the text (``parse_one("a; b")`` would silently return both).

    Empty statements (``;;``, a text that is only a comment) are dropped.
    """
    import sqlglot

    try:
        trees = sqlglot.parse(sql, read=dialect)
    except ParseError as exc:
        err = exc.errors[0] if exc.errors else {}
        desc = err.get("description") or str(exc).splitlines()[0]
        return [], Finding("R-PARSE", f"cannot parse: {desc}", "",
                           err.get("line"), err.get("col"))
    except TokenError as exc:
        return [], Finding("R-PARSE", f"cannot read the text: {exc}")
    return [t for t in trees if t is not None], None


_QUERY_ROOTS = (exp.Select, exp.SetOperation, exp.Values)


def unwrap_root(tree: exp.Expr) -> exp.Expr:
    while isinstance(tree, (exp.Subquery, exp.Paren)) and not tree.args.get("alias"):
        tree = tree.this
    return tree


def check_statement_kind(tree: exp.Expr) -> Iterator[Finding]:
    """R-COMMAND, R-DML, R-NOT-SELECT: the statement itself must be a query."""
    root = unwrap_root(tree)
    if isinstance(root, _QUERY_ROOTS):
        return
    kind = type(root).__name__.upper()
    if isinstance(root, (exp.Command, exp.Copy, exp.Set, exp.Show, exp.Describe,
                         exp.Transaction, exp.Commit, exp.Rollback, exp.Use, exp.Pragma,
                         exp.Execute, exp.Declare, exp.Analyze, exp.Kill)):
        word = root.name.upper() if isinstance(root, exp.Command) else kind
        yield finding("R-COMMAND", f"{word} is a utility command, not a query: the gate "
                      f"runs SELECT statements only", word, root)
    elif isinstance(root, (exp.DML, exp.Insert, exp.TruncateTable)):
        yield finding("R-DML", f"{kind} changes data: restricted roles only read", kind, root)
    else:
        yield finding("R-NOT-SELECT", f"{kind} is not a query: the gate runs SELECT "
                      f"statements only", kind, root)


def check_hidden_statements(tree: exp.Expr) -> Iterator[Finding]:
    """R-SELECT-INTO, R-LOCKING, R-DML, R-COMMAND anywhere below the root."""
    for node in tree.walk():
        if isinstance(node, exp.Into):
            yield finding("R-SELECT-INTO", "SELECT ... INTO creates a table: restricted "
                          "roles only read", "INTO", node)
        elif isinstance(node, exp.Lock):
            yield finding("R-LOCKING", "FOR UPDATE / FOR SHARE locks rows: restricted roles "
                          "only read", "FOR UPDATE", node)
        elif node is not tree and isinstance(node, (exp.DML, exp.Insert)):
            kind = type(node).__name__.upper()
            yield finding("R-DML", f"{kind} inside the query changes data (a data-modifying "
                          f"WITH clause runs even if its result is unused)", kind, node)
        elif node is not tree and isinstance(node, (exp.Command, exp.DDL, exp.Drop,
                                                    exp.Alter, exp.Set)):
            kind = type(node).__name__.upper()
            yield finding("R-COMMAND", f"{kind} inside the query is not allowed", kind, node)


def check_constructs(tree: exp.Expr, dialect: str) -> Iterator[Finding]:
    """R-PARAMETER, R-WHOLE-ROW, R-UNSUPPORTED: constructs that cannot be checked
    column by column."""
    for node in tree.walk():
        if isinstance(node, (exp.Placeholder, exp.Parameter)):
            yield finding("R-PARAMETER", "bind parameters are not supported: write the "
                          "value into the query", node.sql(dialect=dialect), node)
        elif isinstance(node, exp.Star) and _is_whole_row_star(node):
            col = node.parent if isinstance(node.parent, exp.Column) else node
            yield finding("R-WHOLE-ROW", "t.* inside an expression reads every column of "
                          "the row; name the columns", col.sql(dialect=dialect), col)
        elif isinstance(node, exp.Dot) and not isinstance(node.expression, exp.Func):
            yield finding("R-UNSUPPORTED", "field selection from a composite value "
                          "((row).field) is not supported; select the column directly",
                          node.sql(dialect=dialect), node)


def _is_whole_row_star(star: exp.Star) -> bool:
    """A star that is not a projection (``SELECT *``, ``SELECT t.*``), not ``count(*)``
    and not ``EXISTS (SELECT * ...)``."""
    node: exp.Expr = star
    if isinstance(node.parent, exp.Column):
        node = node.parent
    parent = node.parent
    if isinstance(parent, exp.Select) and node.arg_key == "expressions":
        return False
    if isinstance(parent, exp.Count) and isinstance(node, exp.Star):
        return False
    return not (isinstance(parent, exp.Window) and isinstance(node, exp.Star))


def check_functions(tree: exp.Expr, dialect: str, extra: frozenset[str]) -> Iterator[Finding]:
    """R-FUNCTION, R-CAST: only allow-listed functions; no casts that look objects up."""
    for node in tree.walk():
        if isinstance(node, exp.Func):
            if isinstance(node, (exp.Cast, exp.TryCast)):
                to = node.args.get("to")
                if isinstance(to, exp.DataType):
                    problem = cast_problem(to)
                    if problem:
                        yield finding("R-CAST", problem, to.sql(dialect=dialect).lower(), node)
                continue
            if not is_allowed(node, dialect, extra):
                yield finding("R-FUNCTION", refusal_reason(node), function_name(node), node)
        elif isinstance(node, exp.DataType) and not isinstance(node.parent,
                                                                (exp.Cast, exp.TryCast,
                                                                 exp.DataType)):
            problem = cast_problem(node)
            if problem:
                yield finding("R-CAST", problem, node.sql(dialect=dialect).lower(), node)


