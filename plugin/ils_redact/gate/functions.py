"""Which functions and casts a gated query may use: an allow-list, never a block-list.

A function can run SQL given as a string (``query_to_xml``, ``dblink``), read files
(``pg_read_file``, ``lo_import``), change the session (``set_config``) or call ILS code
that reads confidential tables with its owner's rights.  Nobody can list every such
function in every extension, so only functions known to be plain computations pass.

sqlglot parses the functions it knows into typed nodes (``LOWER(x)`` is ``exp.Lower``)
whose meaning is the same in every dialect, and everything else into ``exp.Anonymous``
carrying the name as written.  The allow-list therefore has two halves: typed classes
(dialect-neutral) and names of anonymous functions per dialect.  ``rules.gate.functions``
extends the names (``evergreen.lowercase`` for a schema-qualified one).

The PostgreSQL cross-check in :mod:`.pgparse` applies a second allow-list, by the names
the server will call, to the SQL the gate regenerates.
"""

from __future__ import annotations

import re

from sqlglot import exp

#: word boundaries in a class name: ``JSONTable`` -> ``JSON_Table``, ``ArrayAgg`` ->
#: ``Array_Agg`` (sqlglot's own default splits every capital: ``J_S_O_N_TABLE``)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def class_sql_name(cls: type[exp.Func]) -> str:
    """The SQL name of a typed function class, lowercase (``json_table``)."""
    explicit = cls.__dict__.get("_sql_names") or getattr(cls, "_sql_names", None)
    if explicit:
        return str(explicit[0]).lower()
    return _CAMEL.sub("_", cls.__name__).lower()


#: Scalar computations over values already read: text, dates, numbers, arrays, JSON.
SCALAR_CLASSES: frozenset[type[exp.Func]] = frozenset({
    exp.Lower, exp.Upper, exp.Initcap, exp.Trim, exp.Coalesce, exp.Nullif, exp.Greatest,
    exp.Least, exp.Concat, exp.ConcatWs, exp.Substring, exp.Length, exp.StrPosition,
    exp.Replace, exp.SplitPart, exp.Left, exp.Right, exp.Pad, exp.Reverse, exp.Repeat,
    exp.Translate, exp.RegexpReplace, exp.RegexpLike, exp.RegexpILike, exp.MD5,
    exp.TimeToStr, exp.StrToDate, exp.StrToTime, exp.UnixToTime, exp.ToNumber, exp.ToChar,
    exp.Format,
    exp.TimestampTrunc, exp.DateTrunc, exp.Extract, exp.CurrentTimestamp, exp.CurrentDate,
    exp.CurrentTime, exp.Localtimestamp, exp.Localtime, exp.JustifyDays, exp.JustifyHours,
    exp.JustifyInterval, exp.Cast, exp.TryCast, exp.Date, exp.Round, exp.Abs, exp.Ceil,
    exp.Floor, exp.Trunc, exp.Pow, exp.Sqrt, exp.Sign, exp.Ln, exp.Log, exp.Exp, exp.Rand,
    exp.WidthBucket, exp.Case, exp.If, exp.Array, exp.ArraySize, exp.Explode,
    exp.ArrayToString, exp.StringToArray, exp.ExplodingGenerateSeries, exp.GenerateSeries,
    exp.ArrayPosition, exp.ArrayRemove, exp.ArrayAppend, exp.ArrayContains, exp.Unnest,
    exp.ArrayContainsAll, exp.ArrayOverlaps, exp.ArrayConcat, exp.MatchAgainst,
    exp.CurrentUser, exp.SessionUser, exp.Chr, exp.Ascii, exp.StartsWith,
    exp.MakeInterval, exp.Collate, exp.Exists, exp.JSONExtract, exp.JSONExtractScalar,
    exp.JSONBExtract, exp.JSONBExtractScalar, exp.DateAdd, exp.DateSub, exp.DateDiff,
    exp.TimestampAdd, exp.TimestampSub, exp.TimestampDiff, exp.DayOfWeek, exp.DayOfMonth,
    exp.DayOfYear, exp.Year, exp.Month, exp.Day, exp.Quarter, exp.Week, exp.WeekOfYear,
    exp.TsOrDsToDate,  # MySQL dialect: the implicit date conversion in YEAR(d), DATE(d)
    exp.Encode, exp.Decode,
})

#: Operators sqlglot models as function nodes (``AND``, ``@>``, ``?``).
OPERATOR_CLASSES: frozenset[type[exp.Func]] = frozenset({
    exp.And, exp.Or, exp.Xor, exp.ArrayContainedBy, exp.JSONArrayContains, exp.JSONBContains,
    exp.JSONBContainsAllTopKeys, exp.JSONBContainsAnyTopKeys, exp.JSONBContainsTopKey,
    exp.JSONBDeleteAtPath,
})

#: Aggregates that reduce a group to a number or a single value.
VALUE_AGGREGATES: frozenset[type[exp.Func]] = frozenset({
    exp.Count, exp.CountIf, exp.Min, exp.Max, exp.Sum, exp.Avg, exp.Stddev, exp.StddevPop,
    exp.StddevSamp, exp.Variance, exp.VariancePop, exp.PercentileCont, exp.PercentileDisc,
    exp.Mode, exp.Median, exp.LogicalAnd, exp.LogicalOr, exp.Corr, exp.CovarPop,
    exp.CovarSamp,
})

#: Aggregates that return the group's values themselves: fine for the disclosure profile
#: (its rows are permitted anyway), a list of people in a statistics report.
LIST_AGGREGATES: frozenset[type[exp.Func]] = frozenset({
    exp.GroupConcat, exp.ArrayAgg, exp.JSONArrayAgg,
})

WINDOW_FUNCTIONS: frozenset[type[exp.Func]] = frozenset({
    exp.RowNumber, exp.Rank, exp.DenseRank, exp.PercentRank, exp.CumeDist, exp.Ntile,
    exp.Lag, exp.Lead, exp.FirstValue, exp.LastValue, exp.NthValue,
})

ALLOWED_CLASSES = (SCALAR_CLASSES | OPERATOR_CLASSES | VALUE_AGGREGATES | LIST_AGGREGATES
                   | WINDOW_FUNCTIONS)

#: Names of the typed functions above, for ``pg_catalog.lower(x)``, which sqlglot reads
#: as an anonymous function because of the schema.
TYPED_NAMES = frozenset({n.lower() for cls in ALLOWED_CLASSES for n in cls.sql_names()}
                        | {class_sql_name(cls) for cls in ALLOWED_CLASSES})

#: Anonymous function names (as the dialect spells them, lowercase) that are plain
#: computations.  ``all`` is how sqlglot reads ``x = ALL(array)``.
ANONYMOUS_NAMES: dict[str, frozenset[str]] = {
    "postgres": frozenset({
        "all", "octet_length", "bit_length", "regexp_match", "regexp_split_to_array",
        "age", "clock_timestamp", "statement_timestamp", "transaction_timestamp",
        "make_date", "make_time", "make_timestamp", "make_interval", "isfinite",
        "cardinality", "array_upper", "array_lower", "to_tsvector", "to_tsquery",
        "plainto_tsquery", "phraseto_tsquery", "websearch_to_tsquery", "to_json",
        "to_jsonb", "json_build_object", "jsonb_build_object", "json_build_array",
        "jsonb_build_array", "every", "quote_literal",
    }),
    "mysql": frozenset({
        "all", "char_length", "date_format", "datediff", "timestampdiff", "ifnull",
        "curdate", "curtime", "locate", "instr", "field", "elt", "lcase", "ucase",
    }),
}

#: Anonymous aggregates, by name: sqlglot does not know them as AggFunc.
ANONYMOUS_AGGREGATES = frozenset({"every", "jsonb_agg", "json_object_agg", "xmlagg",
                                  "bit_and", "bit_or", "string_agg"})
ANONYMOUS_LIST_AGGREGATES = frozenset({"jsonb_agg", "json_object_agg", "xmlagg",
                                       "string_agg"})

#: Why some well-known functions are refused: a message a person understands.
REFUSAL_REASONS: dict[str, str] = {
    "query_to_xml": "runs the SQL text it is given, out of the gate's sight",
    "query_to_xml_and_xmlschema": "runs the SQL text it is given",
    "query_to_xmlschema": "runs the SQL text it is given",
    "cursor_to_xml": "reads a cursor opened elsewhere",
    "table_to_xml": "reads a whole table named in a string",
    "table_to_xml_and_xmlschema": "reads a whole table named in a string",
    "schema_to_xml": "reads whole schemas named in a string",
    "database_to_xml": "reads the whole database",
    "xpath": "is used to pick values out of query_to_xml output",
    "xpath_table": "runs the SQL text it is given",
    "xmlparse": "is used with query_to_xml output",
    "dblink": "runs SQL on a new connection, out of the gate's sight",
    "dblink_exec": "runs SQL on a new connection",
    "set_config": "changes session settings (search_path, row_security ...)",
    "current_setting": "reads server and session settings",
    "pg_read_file": "reads server files",
    "pg_read_binary_file": "reads server files",
    "pg_ls_dir": "lists server directories",
    "pg_stat_file": "reads server file metadata",
    "lo_import": "reads server files into large objects",
    "lo_export": "writes server files",
    "lo_get": "reads large objects",
    "lo_open": "opens large objects",
    "loread": "reads large objects",
    "pg_sleep": "holds the connection",
    "nextval": "changes a sequence",
    "setval": "changes a sequence",
    "pg_notify": "sends notifications",
    "pg_terminate_backend": "is an administration function",
    "pg_cancel_backend": "is an administration function",
    "pg_reload_conf": "is an administration function",
    "pg_advisory_lock": "takes locks",
    "txid_current": "assigns a transaction id",
    "to_regclass": "looks objects up in the catalog",
    "row_to_json": "is only needed with whole-row references",
    "version": "reveals the server version",
}

#: Cast targets whose input function runs a lookup or is not a plain value type.
SAFE_TYPES: frozenset[exp.DType] = frozenset({
    exp.DataType.Type[n] for n in (
        "BIGINT", "INT", "SMALLINT", "TINYINT", "MEDIUMINT", "UBIGINT", "UINT", "USMALLINT",
        "UTINYINT", "DECIMAL", "DOUBLE", "FLOAT", "MONEY", "BOOLEAN", "TEXT", "VARCHAR",
        "CHAR", "NCHAR", "NVARCHAR", "BPCHAR", "NAME", "DATE", "TIME", "TIMETZ", "TIMESTAMP",
        "TIMESTAMPTZ", "TIMESTAMPLTZ", "TIMESTAMPNTZ", "DATETIME", "INTERVAL", "JSON",
        "JSONB", "UUID", "ARRAY", "INET", "BIT", "YEAR", "DATERANGE", "TSRANGE",
        "TSTZRANGE", "INT4RANGE", "INT8RANGE", "NUMRANGE", "LONGTEXT", "MEDIUMTEXT",
        "TINYTEXT",
    )
})
SAFE_USER_TYPES = frozenset({"tsvector", "tsquery", "citext"})


def function_name(node: exp.Func) -> str:
    """Lowercase name of a function node as written (``schema.name`` if qualified)."""
    if isinstance(node, exp.Anonymous):
        name = node.name.lower()
        parent = node.parent
        if isinstance(parent, exp.Dot) and parent.expression is node:
            return f"{_dotted(parent.this)}.{name}"
        return name
    return class_sql_name(type(node))


def _dotted(node: exp.Expr) -> str:
    if isinstance(node, exp.Dot):
        return f"{_dotted(node.this)}.{_dotted(node.expression)}"
    return node.name.lower()


def is_allowed(node: exp.Func, dialect: str, extra: frozenset[str]) -> bool:
    """Whether a function node may appear in a gated query."""
    if type(node) in ALLOWED_CLASSES:
        return True
    name = function_name(node)
    if name in extra:
        return True
    if isinstance(node, exp.Anonymous):
        bare = name.rsplit(".", 1)[-1]
        schema = name.rsplit(".", 1)[0] if "." in name else None
        names = ANONYMOUS_NAMES.get(dialect, frozenset())
        if schema in (None, "pg_catalog") and bare in names:
            return True
        if schema == "pg_catalog" and dialect == "postgres" and bare in TYPED_NAMES:
            return True
        if schema is None and bare in ANONYMOUS_AGGREGATES:
            return True
    return False


def refusal_reason(node: exp.Func) -> str:
    name = function_name(node)
    why = REFUSAL_REASONS.get(name.rsplit(".", 1)[-1])
    if why:
        return f"function {name} is refused: it {why}"
    if "." in name:
        return (f"function {name} is not on the gate's allow-list (ILS and extension "
                f"functions run with their owner's rights; add vetted ones to "
                f"gate.functions in the rules)")
    return (f"function {name} is not on the gate's allow-list (add it to gate.functions "
            f"in the rules if it only computes on its arguments)")


def is_aggregate(node: exp.Expr) -> bool:
    """A grouping aggregate (not a window function, not used with OVER)."""
    if isinstance(node, exp.Anonymous):
        return node.name.lower() in ANONYMOUS_AGGREGATES
    return type(node) in VALUE_AGGREGATES or type(node) in LIST_AGGREGATES


def is_list_aggregate(node: exp.Expr) -> bool:
    if isinstance(node, exp.Anonymous):
        return node.name.lower() in ANONYMOUS_LIST_AGGREGATES
    return type(node) in LIST_AGGREGATES


def cast_problem(dtype: exp.DataType) -> str | None:
    """Why a cast target is refused, or None."""
    for dt in dtype.find_all(exp.DataType):
        kind = dt.this
        if isinstance(kind, exp.DataType.Type):
            if kind in SAFE_TYPES:
                continue
            if kind == exp.DataType.Type.USERDEFINED:
                name = dt.args.get("kind")
                label = name.name.lower() if isinstance(name, exp.Identifier) else \
                    (name.sql().lower() if isinstance(name, exp.Expr) else str(name))
                if label in SAFE_USER_TYPES:
                    continue
                return (f"cast to {label}: user-defined and extension types run their own "
                        f"input functions")
            return f"cast to {kind.value.lower()} is not on the gate's list of value types"
        label = str(kind).lower()
        if label.startswith("reg") or label == "oid":
            return (f"cast to {label} looks objects up in the system catalog; compare names "
                    f"as text instead")
        return f"cast to {label} is not on the gate's list of value types"
    return None
