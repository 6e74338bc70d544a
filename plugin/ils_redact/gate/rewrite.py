"""Make an allowed query explicit: scope every identity table, cap the rows, regenerate.

The scope predicate goes on EACH reference to an identity table (also in subqueries,
CTEs, LATERAL and UNION branches), where it keeps the meaning row-level security gives
the query: in WHERE for a table on the preserved side, in the ON clause of the outer join
that makes it nullable, or, where neither is exact (RIGHT/FULL joins), by replacing the
table with a derived table that filters it first.  The database enforces the same scope
through RLS; the explicit predicate makes the plan index-driven and the intent readable.

On PostgreSQL the patrons come from a function returning ``bigint[]``, wrapped in a
scalar subquery so the server evaluates it once per query (an InitPlan), not once per
row, and the comparison stays an index condition (``id = ANY ($0)``)::

    "u"."id" = ANY(CAST((SELECT "ils_redact"."request_patron_ids"(42)) AS BIGINT[]))

The CAST is not decoration.  ``x = ANY ((SELECT f()))`` reads naturally as "any element
of the array the subquery returns", but PostgreSQL's grammar takes a parenthesised
SELECT after ANY as a *subquery* (ANY_SUBLINK), comparing ``x`` with each row, i.e.
``integer = bigint[]``: an error.  (sqlglot also drops the extra parentheses, which
means the same thing.)  The cast makes the argument an expression, so ANY gets the
array.

Nodes are built with sqlglot builders and ``exp.to_identifier``: never by formatting
strings (sqlglot's ``select("...")`` and ``condition("...")`` would parse them).

The SQL that is executed is regenerated from the checked tree, every table
schema-qualified, comments stripped (sqlglot attaches comments to nodes and re-emits
them, so a comment could otherwise carry text past the gate).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.dialects.mysql import MySQL
from sqlglot.generator import Generator

from .findings import Finding, finding
from .profiles import Profile

SCOPE_SCHEMA = "ils_redact"
REQUEST_FUNCTION = "request_patron_ids"
SCOPE_FUNCTION = "scope_patron_ids"
#: MariaDB has no arrays: the Koha backend exposes the caller's scope as a view
#: (patron_id, request_id, expires_at) in its layer database, ``ils_redact_<koha db>``,
#: beside the definer views that replace the identity tables for the disclosure role.
MYSQL_SCOPE_VIEW = "scope_patrons"


#: built once: DataType.build parses its argument
_BIGINT_ARRAY = exp.DataType.build("BIGINT[]", dialect="postgres")


def _ident(name: str) -> exp.Identifier:
    return exp.to_identifier(name, quoted=True)


def scope_predicate(alias: str, key: str, request_id: int | None, dialect: str,
                    schema: str = SCOPE_SCHEMA) -> exp.Expr:
    """``alias.key`` limited to the patrons of the request (or of the caller's scope)."""
    column = exp.Column(this=_ident(key), table=_ident(alias))
    if dialect in ("mysql", "mariadb"):
        inner = exp.select(exp.Column(this=_ident("patron_id"))).from_(
            exp.Table(this=_ident(MYSQL_SCOPE_VIEW), db=_ident(schema)))
        if request_id is not None:
            inner = inner.where(exp.EQ(this=exp.Column(this=_ident("request_id")),
                                       expression=exp.Literal.number(request_id)))
        return exp.In(this=column, query=exp.Subquery(this=inner))
    fn_name, args = ((REQUEST_FUNCTION, [exp.Literal.number(request_id)])
                     if request_id is not None else (SCOPE_FUNCTION, []))
    call = exp.Dot(this=_ident(SCOPE_SCHEMA),
                   expression=exp.Anonymous(this=_ident(fn_name), expressions=args))
    scalar = exp.Subquery(this=exp.Select(expressions=[call]))
    array = exp.Cast(this=scalar, to=_BIGINT_ARRAY.copy())
    return exp.EQ(this=column, expression=exp.Any(this=exp.Paren(this=array)))


def inject_scope(tree: exp.Expr, profile: Profile, tables: list[tuple[exp.Table, str]],
                 dialect: str, permitted_columns: dict[str, list[str]]) -> list[Finding]:
    """Add the scope predicate for every identity-table reference in ``tables``."""
    problems: list[Finding] = []
    for table, rel in tables:
        key = profile.scope.get(rel)
        if key is None:
            continue
        alias = table.alias_or_name
        pred = scope_predicate(alias, key, profile.request_id, dialect,
                               profile.scope_schema or SCOPE_SCHEMA)
        if profile.scope_schema and dialect in ("mysql", "mariadb"):
            # MariaDB: the disclosure role reads the layer's definer view of this name
            if not table.args.get("alias"):
                table.set("alias", exp.TableAlias(this=_ident(table.name)))
            table.set("db", _ident(profile.scope_schema))
        holder = table.parent
        select = holder.parent if isinstance(holder, (exp.Join, exp.From)) else None
        if not isinstance(holder, (exp.Join, exp.From)) or not isinstance(select, exp.Select) or (
                isinstance(holder, exp.Join) and holder not in (select.args.get("joins") or [])):
            # e.g. inside a parenthesised join construct: filtering the table first is
            # what row-level security does, so it is right wherever the table stands
            if not isinstance(holder, (exp.Join, exp.From, exp.Subquery, exp.Table)):
                problems.append(finding("R-SCOPE", f"cannot limit {rel} to the patrons of "
                                        f"the request where it appears; reference it in "
                                        f"FROM or JOIN", rel, table))
                continue
            _wrap(table, rel, pred, permitted_columns[rel])
            continue
        place = _placement(select, holder)
        if place == "where":
            where = select.args.get("where")
            select.set("where", exp.Where(this=_and(where.this if where else None, pred)))
        elif place == "on":
            holder.set("on", _and(holder.args.get("on"), pred))
        else:
            _wrap(table, rel, pred, permitted_columns[rel])
    return problems


def _and(existing: exp.Expr | None, pred: exp.Expr) -> exp.Expr:
    """``existing AND pred``, parenthesising only what binds more loosely than AND."""
    if existing is None:
        return pred
    if isinstance(existing, exp.Connector) and not isinstance(existing, exp.And):
        existing = exp.Paren(this=existing)
    return exp.And(this=existing, expression=pred)


def _placement(select: exp.Select, holder: exp.Join | exp.From) -> str:
    """``where``, ``on`` or ``wrap``: where the predicate keeps RLS semantics."""
    joins = list(select.args.get("joins") or [])
    nullable_later = False
    if isinstance(holder, exp.From):
        index = -1
    else:
        index = joins.index(holder)
        side = (holder.side or "").upper()
        if holder.args.get("using") or (holder.method or "").upper() == "NATURAL":
            return "wrap"  # qualify turns USING into ON; never expected here
        if side == "LEFT":
            return "on"
        if side == "FULL":
            return "wrap"
    for j in joins[index + 1:]:
        if (j.side or "").upper() in ("RIGHT", "FULL"):
            nullable_later = True
    return "wrap" if nullable_later else "where"


def _wrap(table: exp.Table, rel: str, pred: exp.Expr, columns: list[str]) -> None:
    """Replace ``t AS a`` by ``(SELECT cols FROM t AS a WHERE pred) AS a``."""
    alias = table.alias_or_name
    joins = table.args.get("joins")  # ``(t JOIN u ON ...)``: sqlglot hangs joins on t
    inner_table = table.copy()
    inner_table.set("joins", None)
    select = exp.Select(expressions=[exp.Column(this=_ident(c), table=_ident(alias))
                                     for c in columns])
    select = select.from_(inner_table, copy=False)
    select.set("where", exp.Where(this=pred))
    sub = exp.Subquery(this=select, alias=exp.TableAlias(this=_ident(alias)))
    if joins:
        sub.set("joins", joins)
    table.replace(sub)


def cap_limit(tree: exp.Expr, cap: int, dialect: str) -> exp.Expr:
    """LIMIT the result to ``cap`` rows, keeping a smaller limit the user wrote."""
    root = tree
    if isinstance(root, exp.Values):
        return tree  # literal rows only
    if not isinstance(root, (exp.Select, exp.SetOperation, exp.Subquery)):
        return tree
    limit = root.args.get("limit")
    cap_lit = exp.Literal.number(cap)
    if limit is None:
        root.set("limit", exp.Limit(expression=cap_lit))
        return tree
    if isinstance(limit, exp.Fetch):
        count = limit.args.get("count")
        value = _int(count)
        new = cap_lit if value is None or value > cap else exp.Literal.number(value)
        root.set("limit", exp.Limit(expression=new))
        return tree
    value = _int(limit.expression)
    if value is not None:
        if value > cap:
            limit.set("expression", cap_lit)
        return tree
    if limit.expression is None or isinstance(limit.expression, exp.Null) or (
            isinstance(limit.expression, exp.Var) and limit.expression.name.upper() == "ALL"):
        limit.set("expression", cap_lit)
    else:
        limit.set("expression", exp.Least(this=limit.expression, expressions=[cap_lit]))
    return tree


def _int(node: exp.Expr | None) -> int | None:
    if isinstance(node, exp.Literal) and not node.is_string:
        try:
            return int(node.this)
        except ValueError:
            return None
    return None


def strip_comments(tree: exp.Expr) -> set[str]:
    """Drop every comment; returns the names of the column references met on the way
    (the walk is needed anyway; the output check compares them with the server's
    parse)."""
    names: set[str] = set()
    for node in tree.walk():
        if node.comments:
            node.comments = None
        if isinstance(node, exp.Column):
            names.add(node.name)
    return names


def render(tree: exp.Expr, dialect: Dialect) -> str:
    """The SQL to execute, every identifier quoted (a name is then exactly the name that
    was checked, whatever its case or spelling).  ``copy=False``: the tree is the gate's
    own and is not used again, and copying it is most of the generator's cost.

    For MariaDB the MySQL generator is corrected where MariaDB differs from MySQL 8:
    ``x REGEXP y`` stays an operator (MariaDB has no ``REGEXP_LIKE``)."""
    generator = dialect.generator(comments=False, identify=True)
    if isinstance(dialect, MySQL):
        # sqlglot's generators are compiled classes that Python cannot subclass; the
        # dispatch table is per instance, so this instance gets the corrected one
        generator._dispatch = _mariadb_dispatch(generator._dispatch)  # noqa: SLF001
    return generator.generate(tree, copy=False)


_MARIADB_DISPATCH: dict[int, dict[type[exp.Expr], Callable[..., str]]] = {}


def _mariadb_dispatch(base: dict[type[exp.Expr], Callable[..., str]]
                      ) -> dict[type[exp.Expr], Callable[..., str]]:
    hit = _MARIADB_DISPATCH.get(id(base))
    if hit is None:
        hit = {**base, exp.RegexpLike: _regexp_operator}
        _MARIADB_DISPATCH[id(base)] = hit
    return hit


def _regexp_operator(gen: Generator, node: exp.RegexpLike) -> str:
    """``(x REGEXP y)``, each side parenthesised unless it is a single term, so the
    operator binds exactly what the function form bound (``regexp_like(a OR b, 'x')``)."""
    def side(arg: exp.Expr | None) -> str:
        if arg is None:
            return "NULL"
        if not isinstance(arg, (exp.Column, exp.Literal, exp.Func, exp.Paren, exp.Null,
                                exp.Subquery)) or isinstance(arg, exp.Connector):
            arg = exp.Paren(this=arg)
        return gen.sql(arg)
    return f"({side(node.this)} REGEXP {side(node.expression)})"
