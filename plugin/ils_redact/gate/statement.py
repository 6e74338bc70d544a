"""Passes over the parsed statement, before any name is resolved.

Each pass walks the WHOLE tree, not only the root: ``SELECT ... INTO``, ``FOR UPDATE``
and ``WITH d AS (DELETE ... RETURNING *)`` all hide inside something that is a SELECT at
the top (docs/threat-model.md, the query-gate facts).  A pass returns findings; it never raises.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect, DialectType
from sqlglot.dialects.mysql import MySQL
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

    hidden = _executable_comment(sql, dialect)
    if hidden is not None:
        return [], hidden
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


def _executable_comment(sql: str, dialect: DialectType) -> Finding | None:
    """MariaDB runs the text of ``/*! ... */`` and ``/*M! ... */`` comments as SQL; sqlglot
    reads them as comments.  The gate executes only what it regenerated (comments
    dropped), but ``lint`` judges saved reports that Koha runs as written, where such a
    comment can hold a join to the loans table.  Refused as a parser differential."""
    if "/*" not in sql or not ("/*!" in sql or "/*M!" in sql or "/*m!" in sql):
        return None
    d = Dialect.get_or_raise(dialect)
    if not isinstance(d, MySQL):
        return None
    try:
        tokens = d.tokenize(sql)
    except TokenError:
        return None  # parsing reports it
    for tok in tokens:
        for comment in tok.comments:
            if comment.startswith(("!", "M!", "m!")):
                return Finding("R-PARSER-DIFFERENTIAL", "MariaDB runs the text of an "
                               "executable comment (/*! ... */, /*M! ... */) as SQL, which the "
                               "gate reads as a comment: write it as plain SQL",
                               "/*!", tok.line, tok.col)
    return None


_QUERY_ROOTS = (exp.Select, exp.SetOperation, exp.Values)

#: PostgreSQL keeps NAMEDATALEN - 1 bytes of an identifier and drops the rest (a NOTICE)
PG_MAX_IDENTIFIER = 63


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
    """R-PARAMETER, R-VARIABLE, R-WHOLE-ROW, R-UNSUPPORTED: constructs that cannot be
    checked column by column, or that read or write state outside the query."""
    mysql = dialect != "postgres"
    for node in tree.walk():
        if isinstance(node, exp.SessionParameter) or (mysql and isinstance(
                node, (exp.Parameter, exp.PropertyEQ))):
            if not (isinstance(node.parent, exp.PropertyEQ) and node.arg_key == "this"):
                yield _variable(node, dialect)
        elif isinstance(node, (exp.Placeholder, exp.Parameter)):
            yield finding("R-PARAMETER", "bind parameters are not supported: write the "
                          "value into the query", node.sql(dialect=dialect), node)
        elif not mysql and isinstance(node, exp.Identifier) and \
                len(node.name.encode("utf-8")) > PG_MAX_IDENTIFIER:
            yield finding("R-PARSER-DIFFERENTIAL", f"{node.name[:20]}... is longer than "
                          f"{PG_MAX_IDENTIFIER} bytes: PostgreSQL cuts names to that length, "
                          f"so two names the gate tells apart can be one name to the server; "
                          f"use a shorter name", node.name[:PG_MAX_IDENTIFIER], node)
        elif isinstance(node, exp.Version):
            yield finding("R-UNSUPPORTED", "FOR SYSTEM_TIME (a system-versioned table's "
                          "history) reads earlier versions of rows: the gate reads the "
                          "current rows only", "FOR SYSTEM_TIME", node)
        elif isinstance(node, exp.GroupConcat) and node.args.get("separator") is not None \
                and not (isinstance(node.args["separator"], exp.Literal)
                         and node.args["separator"].is_string):
            # MariaDB takes a string literal only; sqlglot keeps a bare word as a name it
            # writes out unchecked
            yield finding("R-UNSUPPORTED", "GROUP_CONCAT's SEPARATOR must be a string "
                          "literal", "SEPARATOR", node)
        elif mysql and isinstance(node, exp.RegexpLike) and node.args.get("flag"):
            yield finding("R-UNSUPPORTED", "MariaDB has no regexp_like(); write "
                          "x REGEXP 'pattern' (case follows the column's collation)",
                          "regexp_like", node)
        elif isinstance(node, exp.Star) and _is_whole_row_star(node):
            col = node.parent if isinstance(node.parent, exp.Column) else node
            yield finding("R-WHOLE-ROW", "t.* inside an expression reads every column of "
                          "the row; name the columns", col.sql(dialect=dialect), col)
        elif isinstance(node, exp.Dot) and not isinstance(node.expression, exp.Func):
            yield finding("R-UNSUPPORTED", "field selection from a composite value "
                          "((row).field) is not supported; select the column directly",
                          node.sql(dialect=dialect), node)


def _variable(node: exp.Expr, dialect: str) -> Finding:
    """``@@hostname``, ``@@session.x``, ``@x``, ``@x := v``: MariaDB's system variables
    tell any session the server's host name, data directory, version and settings, and a
    user variable carries a value from one statement to the next, past the check of the
    statement that reads it.  Neither is a column the rules can classify: refused, as a
    function outside the allow-list would be (docs/threat-model.md, MariaDB facts)."""
    target = node.this if isinstance(node, exp.PropertyEQ) else node
    shown = target.sql(dialect=dialect)
    if isinstance(node, exp.SessionParameter):
        why = "a system variable: it reads the server's settings and state"
    elif isinstance(node, exp.PropertyEQ):
        why = "an assignment to a user variable: it carries a value into later statements"
    else:
        why = "a user variable: it holds a value from an earlier statement"
    return finding("R-VARIABLE", f"{shown} is {why}, not a column the rules classify; "
                   f"write the value into the query", shown, node)


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
    """R-FUNCTION, R-CAST: only allow-listed functions; no casts that look objects up;
    no operator of another schema than pg_catalog (``a OPERATOR(s.===) b`` calls
    whatever function the operator's creator chose, past the function allow-list)."""
    for node in tree.walk():
        if isinstance(node, exp.Operator):
            name = str(node.args.get("operator") or "")
            schema = name.rsplit(".", 1)[0].strip().strip('"') if "." in name else None
            if schema is not None and schema != "pg_catalog":
                yield finding("R-FUNCTION", f"operator {name} is refused: an operator "
                              f"outside pg_catalog runs whatever function its creator chose; "
                              f"write the operator without a schema", name, node)
        elif isinstance(node, exp.Func):
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


