"""Cross-check with the server's own parser (libpg_query, through pglast).

sqlglot is a different parser from PostgreSQL's.  Where the two read a text differently
(``U&"\\0069d"`` is the column ``id`` to the server and ``U & "\\0069d"`` to sqlglot; a
Kelvin sign ``K`` folds to ``k`` in Python but not in the server), what sqlglot checked
is not what the server would run.  Two defences, both here because they are PostgreSQL
only:

1. The ORIGINAL text is parsed by both.  The server's parser must see exactly one
   SELECT (no INTO, no locking clause, no data-modifying statement anywhere), and the
   set of relations (schema-qualified through the same search path) and of column names
   it references must equal what sqlglot saw; otherwise ``R-PARSER-DIFFERENTIAL``.
2. The REGENERATED text, the only one ever executed, is parsed again by the server's
   parser: one SELECT, every relation schema-qualified and among the checked ones, every
   function the server will call on a PostgreSQL-level allow-list, no casts to
   catalog-lookup types.  A failure here means the gate itself generated something it did
   not check, and the query is refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pglast.parser import ParseError as PgParseError
from pglast.parser import parse_sql_json

from ..catalog import Catalog
from .findings import Finding, offset_to_line_col
from .names import resolve_name

#: Functions the server calls for the SQL sqlglot generates from the allowed node classes
#: (see tests/gate/test_pgparse.py, which keeps the two lists in step).  Special syntax
#: (TRIM, SUBSTRING ... FROM, EXTRACT, POSITION, AT TIME ZONE) becomes pg_catalog calls.
PG_FUNCTIONS = frozenset({
    "abs", "age", "array_agg", "array_append", "array_cat", "array_length", "array_lower",
    "array_position", "array_remove", "array_to_string", "array_upper", "ascii", "avg",
    "bit_length", "bool_and", "bool_or", "btrim", "cardinality", "ceil", "ceiling", "chr",
    "clock_timestamp", "concat", "concat_ws", "corr", "count", "covar_pop", "covar_samp",
    "cume_dist", "date", "date_part", "date_trunc", "decode", "dense_rank", "div", "encode",
    "every", "exp", "extract", "first_value", "floor", "format", "generate_series",
    "initcap", "isfinite", "json_agg", "json_build_array", "json_build_object", "jsonb_agg",
    "jsonb_build_array", "jsonb_build_object", "justify_days", "justify_hours",
    "justify_interval", "lag", "last_value", "lead", "left", "length", "ln", "log", "lower",
    "lpad", "ltrim", "make_date", "make_interval", "make_time", "make_timestamp", "max",
    "md5", "min", "mode", "nth_value", "ntile", "octet_length", "overlay", "percent_rank",
    "percentile_cont", "percentile_disc", "phraseto_tsquery", "plainto_tsquery", "position",
    "power", "quote_literal", "random", "rank", "regexp_match", "regexp_replace",
    "regexp_split_to_array", "repeat", "replace", "reverse", "right", "round", "row_number",
    "rpad", "rtrim", "sign", "similar_to_escape", "split_part", "sqrt", "starts_with",
    "statement_timestamp", "stddev", "stddev_pop", "stddev_samp", "string_agg",
    "string_to_array", "strpos", "substr", "substring", "sum", "timezone", "to_char",
    "to_date", "to_json", "to_jsonb", "to_number", "to_timestamp", "to_tsquery",
    "to_tsvector", "transaction_timestamp", "translate", "trunc", "unnest", "upper",
    "var_pop", "var_samp", "variance", "websearch_to_tsquery", "width_bucket",
})

#: Functions the gate itself injects (the scope of a disclosure).
SCOPE_FUNCTIONS = frozenset({("ils_redact", "request_patron_ids"),
                             ("ils_redact", "scope_patron_ids")})

_DDL_PREFIXES = ("Create", "Drop", "Alter", "Grant", "Revoke", "Rename", "Comment",
                 "SecLabel", "Reindex", "Cluster", "Refresh", "Import", "Define", "Rule",
                 "Composite", "Index", "View")
_DML = frozenset({"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"})


@dataclass
class PgFacts:
    """What the server's parser sees in a text."""

    statements: list[str] = field(default_factory=list)
    #: (catalog, schema, name) of every relation reference that is not a visible CTE
    relations: set[tuple[str | None, str | None, str]] = field(default_factory=set)
    cte_names: set[str] = field(default_factory=set)
    cte_refs: set[str] = field(default_factory=set)
    columns: set[str] = field(default_factory=set)
    functions: set[tuple[str, ...]] = field(default_factory=set)
    #: schema-qualified operators (``OPERATOR(s.op)``): name parts
    operators: set[tuple[str, ...]] = field(default_factory=set)
    types: set[tuple[str, ...]] = field(default_factory=set)
    into: bool = False
    locking: bool = False
    dml: list[str] = field(default_factory=list)
    #: functions a subquery used as ``x = ANY (SELECT f())`` selects (compares with each
    #: ROW, not with the elements of the array f returns)
    any_sublink_functions: set[tuple[str, ...]] = field(default_factory=set)


_LEAVES = frozenset({"String", "Integer", "Float", "Boolean", "BitString", "A_Star",
                     "A_Const", "ParamRef", "SQLValueFunction"})


def _names(items: list[Any] | None) -> tuple[str, ...]:
    return tuple(i["String"]["sval"] for i in items or () if "String" in i)


class _Collector:
    """One pass over libpg_query's JSON parse tree (several times faster to build than
    pglast's Python AST, which matters on the gate's latency budget).

    CTE names are tracked with PostgreSQL's visibility rules: a non-recursive WITH
    item sees only the items before it, ``WITH RECURSIVE`` items see all of them, the
    main query sees all, nested subqueries inherit.  So an unqualified name that is not
    a visible CTE is a relation on the search path, exactly as the server decides.
    """

    def __init__(self, facts: PgFacts) -> None:
        self.facts = facts

    def visit(self, x: Any, visible: frozenset[str]) -> None:
        if type(x) is list:
            for item in x:
                self.visit(item, visible)
            return
        if type(x) is not dict:
            return
        for k, v in x.items():
            tv = type(v)
            if tv is dict:
                if k[:1].isupper():
                    if k not in _LEAVES:
                        self.node(k, v, visible)
                else:
                    self.visit(v, visible)
            elif tv is list:
                for item in v:
                    self.visit(item, visible)

    def node(self, kind: str, node: dict[str, Any], visible: frozenset[str]) -> None:
        f = self.facts
        wc = node.get("withClause")
        if wc:
            ctes = [c.get("CommonTableExpr", {}) for c in wc.get("ctes") or ()]
            names = [c.get("ctename", "") for c in ctes]
            f.cte_names.update(names)
            recursive = bool(wc.get("recursive"))
            for i, cte in enumerate(ctes):
                seen = names if recursive else names[:i]
                self.visit(cte.get("ctequery"), visible | frozenset(seen))
            visible = visible | frozenset(names)
            node = {k: v for k, v in node.items() if k != "withClause"}
        if kind == "RangeVar":
            schema = node.get("schemaname")
            name = node.get("relname", "")
            if schema is None and node.get("catalogname") is None and name in visible:
                f.cte_refs.add(name)
            else:
                f.relations.add((node.get("catalogname"), schema, name))
            return
        if kind == "ColumnRef":
            fields = node.get("fields") or []
            if fields and "String" in fields[-1]:
                f.columns.add(fields[-1]["String"]["sval"])
            return
        if kind == "FuncCall":
            f.functions.add(_names(node.get("funcname")))
        elif kind == "A_Expr" and len(node.get("name") or ()) > 1:
            f.operators.add(_names(node.get("name")))
        elif kind == "TypeCast":  # its typeName is an unwrapped TypeName
            f.types.add(_names((node.get("typeName") or {}).get("names")))
        elif kind == "SelectStmt":
            f.into = f.into or "intoClause" in node
            f.locking = f.locking or bool(node.get("lockingClause"))
        elif kind in _DML:
            f.dml.append(kind)
        elif kind == "SubLink" and node.get("subLinkType") == "ANY_SUBLINK":
            select = (node.get("subselect") or {}).get("SelectStmt") or {}
            for target in select.get("targetList") or ():
                fn = target.get("ResTarget", {}).get("val", {}).get("FuncCall")
                if fn:
                    f.any_sublink_functions.add(_names(fn.get("funcname")))
        self.visit(node, visible)


def pg_facts(sql: str) -> tuple[PgFacts | None, Finding | None]:
    """Parse with libpg_query; a syntax error is the server's ``R-PARSE``."""
    try:
        data = json.loads(parse_sql_json(sql))
    except PgParseError as exc:
        msg, offset = (tuple(exc.args) + (None, None))[:2]
        line = col = None
        if isinstance(offset, int):
            chars = len(sql.encode("utf-8")[:offset].decode("utf-8", errors="ignore"))
            line, col = offset_to_line_col(sql, chars)
        return None, Finding("R-PARSE", f"the server's parser refuses the text: {msg}",
                             "", line, col)
    facts = PgFacts()
    stmts = data.get("stmts") or []
    for raw in stmts:
        facts.statements.extend(raw.get("stmt", {}).keys())
    _Collector(facts).visit(stmts, frozenset())
    return facts, None


def check_original(facts: PgFacts) -> tuple[list[Finding], list[Finding]]:
    """Statement-level facts as the server sees them: (about the statement itself,
    about what hides inside it)."""
    if len(facts.statements) != 1:
        return [Finding("R-MULTI-STATEMENT", f"the server's parser sees "
                        f"{len(facts.statements)} statements; the gate checks exactly one")], []
    kind = facts.statements[0]
    word = kind.removesuffix("Stmt").upper()
    head: list[Finding] = []
    inner: list[Finding] = []
    if kind in ("InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt", "TruncateStmt"):
        head.append(Finding("R-DML", f"the server reads this as {word}: restricted roles "
                            f"only read", word))
    elif kind.startswith(_DDL_PREFIXES):
        head.append(Finding("R-NOT-SELECT", f"the server reads this as {word}, which is not "
                            f"a query: the gate runs SELECT statements only", word))
    elif kind != "SelectStmt":
        head.append(Finding("R-COMMAND", f"the server reads this as {word}, a utility "
                            f"command, not a query: the gate runs SELECT statements only", word))
    if facts.into:
        inner.append(Finding("R-SELECT-INTO", "SELECT ... INTO creates a table", "INTO"))
    if facts.locking:
        inner.append(Finding("R-LOCKING", "FOR UPDATE / FOR SHARE locks rows", "FOR UPDATE"))
    for d in facts.dml:
        if d != kind:
            w = d.removesuffix("Stmt").upper()
            inner.append(Finding("R-DML", f"{w} inside the query changes data", w))
    return head, inner


def resolved_relations(facts: PgFacts, catalog: Catalog, search_path: Sequence[str]
                       ) -> set[str]:
    out = set()
    for cat, schema, name in facts.relations:
        q = resolve_name(catalog, schema, name, search_path) if cat is None else None
        out.add(q if q is not None else f"{cat + '.' if cat else ''}"
                f"{schema + '.' if schema else ''}{name}?")
    return out


def compare(facts: PgFacts, relations: set[str], columns: set[str], catalog: Catalog,
            search_path: Sequence[str]) -> Iterator[Finding]:
    """``R-PARSER-DIFFERENTIAL`` where the two parsers disagree on what is touched."""
    pg_rel = resolved_relations(facts, catalog, search_path)
    if pg_rel != relations:
        only_pg = sorted(pg_rel - relations)
        only_sg = sorted(relations - pg_rel)
        yield Finding("R-PARSER-DIFFERENTIAL", "the server's parser and the gate's parser "
                      "read different relations in this text (server only: "
                      f"{', '.join(only_pg) or '-'}; gate only: {', '.join(only_sg) or '-'})",
                      ", ".join(only_pg + only_sg))
    if facts.columns != columns:
        only_pg = sorted(facts.columns - columns)
        only_sg = sorted(columns - facts.columns)
        yield Finding("R-PARSER-DIFFERENTIAL", "the server's parser and the gate's parser "
                      "read different column names in this text (server only: "
                      f"{', '.join(only_pg) or '-'}; gate only: {', '.join(only_sg) or '-'}); "
                      "check quoting and escapes", ", ".join(only_pg + only_sg))


def verify_output(sql: str, relations: set[str], extra_functions: frozenset[str],
                  columns: set[str] | None = None) -> Iterator[Finding]:
    """The regenerated SQL must be exactly what was checked (see the module docstring).
    ``columns``: the names of every column reference in the checked tree; the server's
    parser must find no other (a word the generator wrote out that the gate did not read
    as a column, such as an unquoted name in a keyword's place)."""
    facts, err = pg_facts(sql)
    if err is not None or facts is None:
        yield Finding("R-PARSER-DIFFERENTIAL", "the gate generated SQL the server's parser "
                      f"refuses ({err.message if err else ''}); please report this query")
        return
    if facts.statements != ["SelectStmt"] or facts.into or facts.locking or facts.dml:
        yield Finding("R-PARSER-DIFFERENTIAL", "the gate generated something other than one "
                      "plain SELECT; please report this query")
    seen = set()
    for cat, schema, name in facts.relations:
        if cat is not None or schema is None:
            yield Finding("R-PARSER-DIFFERENTIAL", f"generated SQL reads {name} without a "
                          f"schema; please report this query", name)
            continue
        seen.add(f"{schema}.{name}")
    if columns is not None and facts.columns - columns:
        unread = sorted(facts.columns - columns)
        yield Finding("R-PARSER-DIFFERENTIAL", f"generated SQL reads columns the gate did "
                      f"not check ({', '.join(unread)}); please report this query",
                      ", ".join(unread))
    if seen != relations:
        yield Finding("R-PARSER-DIFFERENTIAL", "generated SQL reads other relations than the "
                      "ones checked; please report this query",
                      ", ".join(sorted(seen ^ relations)))
    for fn in facts.functions:
        bare = fn[-1]
        schema = fn[0] if len(fn) > 1 else None
        dotted = ".".join(fn)
        if fn in SCOPE_FUNCTIONS or dotted in extra_functions or bare in extra_functions \
                and schema is None:
            continue
        if schema in (None, "pg_catalog") and bare in PG_FUNCTIONS:
            continue
        yield Finding("R-FUNCTION", f"the server would call {dotted}, which is not on the "
                      f"PostgreSQL allow-list", dotted)
    for op in facts.operators:
        if op[0] != "pg_catalog":
            yield Finding("R-FUNCTION", f"the server would call operator {'.'.join(op)}, "
                          f"outside pg_catalog", ".".join(op))
    if facts.any_sublink_functions & SCOPE_FUNCTIONS:
        yield Finding("R-SCOPE", "generated scope predicate compares with the rows of a "
                      "subquery instead of the elements of the patron array; please report "
                      "this query")
    for ty in facts.types:
        bare = ty[-1] if ty else ""
        if bare.startswith("reg") or bare == "oid":
            yield Finding("R-CAST", f"generated SQL casts to {'.'.join(ty)}", ".".join(ty))
