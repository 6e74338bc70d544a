"""Alias column lists, resolved by position (threat model row 19).

``FROM actor.usr AS u(c1, c2, ...)`` renames the table's columns BY POSITION: with enough
names, ``u.family_name`` is whatever column stands where the list says ``family_name``
(``dob``, say), whatever its real name.  A check that matched names would pass a column
it never looked at.  The same goes for every other source that can carry a column list:
CTEs, derived tables and VALUES (``AS s(a, b)``), and function sources (``unnest(...)
WITH ORDINALITY AS t(a, n)``, ``ROWS FROM (...)``, ``generate_series(...) AS g(x)``).

Two passes make every name explicit, so that what the gate checks and what the server
runs cannot differ:

:func:`name_sources` (before names are resolved)
    gives each function and VALUES source in FROM the table alias and the column names
    PostgreSQL gives it (a function's own name, or the alias for a single function;
    ``ordinality``; ``column1``, ``column2`` ...), with the names the user listed taking
    the first positions, and writes them into the query.  The regenerated SQL then names
    every column of such a source itself: it does not rely on the server's defaults, nor
    on sqlglot's (which differ: sqlglot calls an ordinality column ``offset``).
    Functions in FROM may always read the columns of earlier FROM items, so ``LATERAL``
    before a function is dropped (it means nothing more there).

:func:`resolve_table_aliases` (after qualification)
    maps every column reference to a base table with a column list back to the real
    column at that position (the catalog lists columns in the server's order, dropped
    columns left out, as PostgreSQL numbers them for this purpose), renames the
    reference to it, and removes the list.  Every later pass sees real column names, and
    the regenerated SQL reads exactly the columns that were checked: even if the catalog's
    order were not the server's, the server reads the column the gate checked, by name.

CTE and derived-table lists need no pass of their own: ``qualify`` renames the inner
query's output columns to the listed names (``SELECT dob AS family_name ...``) and drops
the list, so every base column is checked where it is read, under its real name, and the
outer query sees the listed names.  (A recursive CTE keeps its list, which its body
refers to; its base columns are checked inside it all the same.)

Refusals carry ``R-ALIAS-COLUMNS``: more names than the source has columns (the server
refuses that too), two columns of one source under one name, a column list on a table
alias in MariaDB (which has none), or a function source whose columns the gate cannot
name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from sqlglot import exp
from sqlglot.optimizer.scope import Scope

from ..catalog import Catalog
from .findings import Finding, finding

ORDINALITY = "ordinality"
#: the original name of a column reference the alias list renamed, for messages
RENAMED_META = "ils_redact_renamed_from"

_FUNC_NAME = re.compile(r'^\s*(?:"?[A-Za-z_][\w$]*"?\s*\.\s*)*"?([A-Za-z_][\w$]*)"?\s*\(')


def _ident(name: str) -> exp.Identifier:
    return exp.to_identifier(name, quoted=True)


def function_column_name(node: exp.Expr) -> str:
    """The name PostgreSQL gives the column of a scalar function in FROM: the function's
    name, without its schema (``pg_catalog.lower(x)`` -> ``lower``)."""
    if isinstance(node, (exp.Unnest, exp.Explode)):
        return "unnest"
    if isinstance(node, exp.Anonymous):
        return node.name.lower()
    if isinstance(node, exp.Table) and isinstance(node.this, exp.Expr):
        return function_column_name(node.this)
    m = _FUNC_NAME.match(node.sql(dialect="postgres"))
    return m.group(1).lower() if m else type(node).__name__.lower()


# -- before qualification: function and VALUES sources ----------------------------------

def name_sources(tree: exp.Expr, dialect: str) -> list[Finding]:
    """Name every column of every function and VALUES source in FROM explicitly (see the
    module docstring).  Returns refusals; changes the tree in place."""
    problems: list[Finding] = []
    for holder in list(tree.find_all(exp.From, exp.Join)):
        src = holder.this
        if isinstance(src, exp.Lateral) and isinstance(src.this, (exp.Unnest, exp.Func)):
            src = _drop_lateral(src)
        if isinstance(src, exp.Values):
            problems.extend(_name_values(src, dialect))
        elif isinstance(src, exp.Lateral) and isinstance(src.this, exp.Subquery) and \
                isinstance(src.this.this, exp.Values):
            problems.extend(_name_values(src, dialect, src.this.this))
        elif isinstance(src, exp.Subquery) and isinstance(src.this, exp.Values):
            problems.extend(_name_values(src, dialect, src.this))
        elif isinstance(src, exp.Subquery) and isinstance(src.this, exp.Table) and \
                src.args.get("alias"):
            # ``(a JOIN b) AS j(x, y)``: the join's columns, renamed by position, under a
            # name that hides a and b; sqlglot reads it as SELECT * over the join
            problems.append(finding(
                "R-ALIAS-COLUMNS", f"an alias on a parenthesised join ({src.alias}) renames "
                f"the join's columns by position and hides its tables: alias the tables "
                f"instead", src.alias, src))
        elif isinstance(src, exp.Unnest) or (
                isinstance(src, exp.Table) and (src.args.get("rows_from")
                                                or isinstance(src.this, exp.Func))):
            problems.extend(_name_function_source(src, dialect))
    return problems


def _drop_lateral(lateral: exp.Lateral) -> exp.Expr:
    """``LATERAL f(...) [WITH ORDINALITY] AS t(...)`` -> ``f(...) ... AS t(...)``."""
    inner = lateral.this
    alias = lateral.args.get("alias")
    ordinality = bool(lateral.args.get("ordinality"))
    if isinstance(inner, exp.Unnest):
        if alias is not None:
            inner.set("alias", alias)
        if ordinality and not inner.args.get("offset"):
            inner.set("offset", True)
        new: exp.Expr = inner
    else:
        new = exp.Table(this=inner, alias=alias, ordinality=ordinality or None)
    lateral.replace(new)
    return new


def _explicit_names(src: exp.Expr) -> list[exp.Identifier]:
    alias = src.args.get("alias")
    names = list(alias.columns) if isinstance(alias, exp.TableAlias) else []
    offset = src.args.get("offset") if isinstance(src, exp.Unnest) else None
    if isinstance(offset, exp.Identifier):  # sqlglot keeps ``AS t(x, n)``'s n here
        names.append(offset)
    return names


def _name_function_source(src: exp.Unnest | exp.Table, dialect: str) -> Iterator[Finding]:
    alias = src.args.get("alias")
    alias_name = alias.this if isinstance(alias, exp.TableAlias) else None
    shown = alias_name.name if alias_name is not None else ""
    if isinstance(src, exp.Unnest):
        funcs = [("unnest", e) for e in src.expressions]
        ordinality = bool(src.args.get("offset"))
    else:
        rows = src.args.get("rows_from")
        funcs = []
        for item in rows or [src.this]:
            if isinstance(item, exp.Unnest):
                funcs.extend(("unnest", e) for e in item.expressions)
            elif isinstance(item, exp.Table) and isinstance(item.this, exp.Func) and \
                    not item.args.get("alias"):
                funcs.append((function_column_name(item.this), item))
            elif isinstance(item, exp.Func):
                funcs.append((function_column_name(item), item))
            else:
                yield finding("R-ALIAS-COLUMNS", f"cannot name the columns of "
                              f"{item.sql(dialect=dialect)} in ROWS FROM: use plain function "
                              f"calls", "ROWS FROM", src)
                return
        ordinality = bool(src.args.get("ordinality"))
    if not funcs:
        yield finding("R-ALIAS-COLUMNS", "a function source without arguments", "", src)
        return
    table = alias_name.name if alias_name is not None else funcs[0][0]
    shown = shown or table
    if len(funcs) == 1 and alias_name is not None:
        defaults = [alias_name.name]  # PostgreSQL names a lone scalar column after the alias
    else:
        defaults = [name for name, _ in funcs]
    if ordinality:
        defaults.append(ORDINALITY)
    given = _explicit_names(src)
    if len(given) > len(defaults):
        yield finding("R-ALIAS-COLUMNS", f"{shown} has {len(defaults)} column"
                      f"{'s' if len(defaults) != 1 else ''} but the alias names "
                      f"{len(given)}", shown, src)
        return
    idents = given + [_ident(n) for n in defaults[len(given):]]
    dup = _duplicate(idents)
    if dup is not None:
        yield finding("R-ALIAS-COLUMNS", f"two columns of {shown} are named {dup}: name each "
                      f"column in the alias (AS {shown}(a, b, ...))", shown, src)
        return
    table_ident = alias_name if alias_name is not None else _ident(table)
    if isinstance(src, exp.Unnest):
        values = idents[:len(funcs)]
        src.set("alias", exp.TableAlias(this=table_ident, columns=values))
        src.set("offset", idents[len(funcs)] if ordinality else None)
    else:
        src.set("alias", exp.TableAlias(this=table_ident, columns=idents))


def _name_values(src: exp.Expr, dialect: str, values: exp.Values | None = None
                 ) -> Iterator[Finding]:
    """``(VALUES (1, 2)) AS v(a)`` has the columns ``a, column2`` in PostgreSQL."""
    values = values if values is not None else src  # type: ignore[assignment]
    assert isinstance(values, exp.Values)
    rows = values.expressions
    width = len(rows[0].expressions) if rows and isinstance(rows[0], exp.Tuple) else 1
    alias = src.args.get("alias")
    if not isinstance(alias, exp.TableAlias):
        return  # PostgreSQL refuses VALUES in FROM without an alias; so does the server parse
    given = list(alias.columns)
    shown = alias.name
    if len(given) > width:
        yield finding("R-ALIAS-COLUMNS", f"{shown} has {width} column"
                      f"{'s' if width != 1 else ''} but the alias names {len(given)}",
                      shown, src)
        return
    if dialect != "postgres":
        if given and len(given) < width:
            yield finding("R-ALIAS-COLUMNS", f"name all {width} columns of {shown} in its "
                          f"alias, or none", shown, src)
        return
    idents = given + [_ident(f"column{i + 1}") for i in range(len(given), width)]
    dup = _duplicate(idents)
    if dup is not None:
        yield finding("R-ALIAS-COLUMNS", f"two columns of {shown} are named {dup}",
                      shown, src)
        return
    alias.set("columns", idents)


def _duplicate(idents: list[exp.Identifier]) -> str | None:
    seen: set[str] = set()
    for i in idents:
        if i.name in seen:
            return i.name
        seen.add(i.name)
    return None


# -- after qualification: base tables -------------------------------------------------

def has_table_alias_columns(tables: list[exp.Table]) -> bool:
    """Whether any base-table reference carries a column list (the pass is skipped
    otherwise: almost no query has one)."""
    for t in tables:
        alias = t.args.get("alias")
        if isinstance(alias, exp.TableAlias) and alias.columns:
            return True
    return False


def resolve_table_aliases(scopes: list[Scope], catalog: Catalog, dialect: str
                          ) -> list[Finding]:
    """Rename every reference to a column of an aliased base table to the real column at
    that position, and drop the lists (see the module docstring)."""
    problems: list[Finding] = []
    maps: dict[int, tuple[exp.Table, str, list[str], list[str]]] = {}
    for scope in scopes:
        problems.extend(_stars_over_lists(scope))
    if problems:
        return problems
    for scope in scopes:
        for source in scope.sources.values():
            if not isinstance(source, exp.Table) or not isinstance(source.this, exp.Identifier):
                continue
            alias = source.args.get("alias")
            if not isinstance(alias, exp.TableAlias) or not alias.columns or \
                    id(source) in maps:
                continue
            rel = f"{source.text('db')}.{source.name}"
            shown = f"{alias.name}({', '.join(c.name for c in alias.columns)})"
            if dialect != "postgres":
                problems.append(finding(
                    "R-ALIAS-COLUMNS", f"{rel} AS {shown}: MariaDB has no column lists on "
                    f"table aliases; name the columns in the select list", rel, source))
                continue
            real = list(catalog.relations[rel].column_names)
            given = [c.name for c in alias.columns]
            if len(given) > len(real):
                problems.append(finding(
                    "R-ALIAS-COLUMNS", f"{rel} has {len(real)} columns but the alias "
                    f"{shown} names {len(given)}", rel, source))
                continue
            effective = given + real[len(given):]
            maps[id(source)] = (source, rel, real, effective)
    if problems or not maps:
        return problems
    done: set[int] = set()
    for scope in scopes:
        for col in scope.columns:
            if id(col) in done or not col.table:
                continue
            hit = maps.get(id(scope.sources.get(col.table)))
            if hit is None:
                continue
            done.add(id(col))
            _, rel, real, effective = hit
            positions = [i for i, n in enumerate(effective) if n == col.name]
            if len(positions) != 1:
                what = "is ambiguous: the alias list and the table both name" if positions \
                    else "does not name"
                problems.append(finding(
                    "R-UNKNOWN-COLUMN", f"{col.sql()} {what} a column of {rel} "
                    f"(the alias column list renames the table's columns by position)",
                    col.sql(), col))
                continue
            target = real[positions[0]]
            if target != col.name:
                ident = col.this
                renamed = exp.to_identifier(target, quoted=True)
                if isinstance(ident, exp.Identifier) and ident._meta:  # noqa: SLF001
                    renamed.meta.update(ident.meta)
                renamed.meta[RENAMED_META] = f"{col.table}.{col.name}"
                col.set("this", renamed)
    for table, *_ in maps.values():
        table.args["alias"].set("columns", None)
    return problems


def _stars_over_lists(scope: Scope) -> list[Finding]:
    """``SELECT *`` (or ``u.*``) over a table alias with a column list: the gate could not
    expand it to the permitted columns (a list that repeats a real name, as ``u(a, b, c,
    d, e, family_name)``, left ``*`` in the regenerated SQL; the fourth review), so it is
    refused: name the columns."""
    listed = {name for name, src in scope.sources.items()
              if isinstance(src, exp.Table) and isinstance(src.args.get("alias"), exp.TableAlias)
              and src.args["alias"].columns}
    select = scope.expression
    if not listed or not isinstance(select, exp.Select):
        return []
    out = []
    for proj in select.expressions:
        star = isinstance(proj, exp.Star) or (
            isinstance(proj, exp.Column) and isinstance(proj.this, exp.Star)
            and (not proj.table or proj.table in listed))
        if star:
            out.append(finding(
                "R-ALIAS-COLUMNS", f"{proj.sql()} over a table alias with a column list "
                f"({', '.join(sorted(listed))}): name the columns in the select list",
                proj.sql(), proj))
    return out


def renamed_from(col: exp.Expr) -> str | None:
    """``u.family_name`` when the alias column list renamed this reference, else None."""
    ident = col.this if isinstance(col, exp.Column) else None
    if isinstance(ident, exp.Identifier) and ident._meta:  # noqa: SLF001
        value = ident._meta.get(RENAMED_META)  # noqa: SLF001
        return str(value) if value else None
    return None
