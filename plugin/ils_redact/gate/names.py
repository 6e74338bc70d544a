"""Resolve relation names the way the server would, and give sqlglot the catalog.

PostgreSQL resolves an unqualified table name by walking the role's ``search_path``;
sqlglot's ``qualify`` knows a single default schema.  So relations are resolved here,
before qualification, with the same search path the gate was given, and every table in
the regenerated SQL is written schema-qualified: a temporary table or a changed
``search_path`` cannot make the server read something else than what was checked.
Unknown names refuse (fail closed) with the nearest valid name as a hint.

CTE references are told apart from tables through sqlglot's scope analysis (a CTE name
shadows a table of the same name only where the CTE is visible).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from sqlglot import exp
from sqlglot.optimizer.scope import Scope, traverse_scope
from sqlglot.schema import MappingSchema

from ..catalog import Catalog
from .findings import Finding, finding


@dataclass
class TableRef:
    """One reference to a base relation in the query."""

    node: exp.Table
    relation: str  # schema.name


def resolve_name(catalog: Catalog, schema: str | None, name: str,
                 search_path: Sequence[str]) -> str | None:
    """``schema.name`` of an existing relation, or None."""
    if schema:
        q = f"{schema}.{name}"
        return q if q in catalog.relations else None
    if catalog.default_schema:  # MariaDB: the connected database
        q = f"{catalog.default_schema}.{name}"
        if q in catalog.relations:
            return q
    for s in search_path:
        q = f"{s}.{name}"
        if q in catalog.relations:
            return q
    return None


def drop_dual(tree: exp.Expr) -> None:
    """MariaDB: ``SELECT 1 FROM DUAL`` names no table (DUAL is a keyword there; a quoted
    `` `DUAL` `` is a table name and stays one).  The FROM clause goes; MariaDB runs
    ``SELECT ... WHERE ...`` without one."""
    for from_ in list(tree.find_all(exp.From)):
        t = from_.this
        select = from_.parent
        if isinstance(t, exp.Table) and isinstance(t.this, exp.Identifier) and \
                not t.this.quoted and t.name.upper() == "DUAL" and not t.args.get("db") \
                and not t.args.get("catalog") and not t.args.get("alias") and \
                isinstance(select, exp.Select) and not select.args.get("joins"):
            select.set("from_", None)


def base_tables(tree: exp.Expr) -> tuple[list[exp.Table], list[exp.Table], list[Scope]]:
    """(base-table nodes, table-function nodes, scopes).  CTE references are neither."""
    scopes = traverse_scope(tree)
    tables: list[exp.Table] = []
    functions: list[exp.Table] = []
    seen: set[int] = set()
    for scope in scopes:
        for source in scope.sources.values():
            if isinstance(source, exp.Table) and id(source) not in seen:
                seen.add(id(source))
                if isinstance(source.this, exp.Identifier):
                    tables.append(source)
                else:
                    functions.append(source)
    return tables, functions, scopes


def resolve_relations(tree: exp.Expr, catalog: Catalog, search_path: Sequence[str]
                      ) -> tuple[list[TableRef], list[Finding]]:
    """Resolve and schema-qualify every base table; refuse unknown ones.

    Also refuses any ``exp.Table`` the scope analysis did not account for: a table that
    is neither a relation, a CTE reference nor a table function is something the gate
    does not understand.
    """
    tables, functions, scopes = base_tables(tree)
    refs: list[TableRef] = []
    findings: list[Finding] = []
    accounted = {id(t) for t in tables} | {id(t) for t in functions}
    for scope in scopes:
        for node, source in scope.selected_sources.values():
            if isinstance(source, Scope):
                accounted.add(id(node))
    for t in tables:
        cat = t.args.get("catalog")
        if cat is not None and cat.name != catalog.database:
            findings.append(finding(
                "R-UNKNOWN-RELATION", f"{t.sql()} names another database "
                f"({cat.name}); only {catalog.database or 'the connected database'} is "
                f"checked", t.sql(), t))
            continue
        schema = t.text("db") or None
        rel = resolve_name(catalog, schema, t.name, search_path)
        if rel is None:
            shown = f"{schema}.{t.name}" if schema else t.name
            hint = catalog.suggest_relation(shown if schema else
                                            f"{search_path[0]}.{t.name}" if search_path
                                            else t.name)
            where = "" if schema else f" on search_path {','.join(search_path)}"
            findings.append(finding(
                "R-UNKNOWN-RELATION", f"relation {shown} does not exist{where}"
                f"{f' ({hint})' if hint else ''}", shown, t))
            continue
        s, n = rel.split(".", 1)
        if cat is not None:
            t.set("catalog", None)
        if not schema:
            t.set("db", exp.to_identifier(s))
        refs.append(TableRef(t, rel))
    for node in tree.find_all(exp.Table):
        if id(node) not in accounted and isinstance(node.this, exp.Identifier) and \
                not node.find_ancestor(exp.Into, exp.DML, exp.Insert):
            findings.append(finding("R-UNKNOWN-RELATION", f"cannot tell what {node.sql()} "
                                    f"refers to here", node.sql(), node))
    return refs, findings


# -- the catalog as a sqlglot schema ---------------------------------------------------

_SCHEMAS: dict[int, tuple[weakref.ref[Catalog], str, MappingSchema]] = {}


def full_schema(catalog: Catalog, dialect: str) -> MappingSchema:
    """Every relation and column of the catalog, built once per catalog and dialect.

    Names are taken verbatim (``normalize=False``): the catalog holds them as the server
    stores them, and ``qualify`` normalises the query's identifiers the way the dialect
    folds unquoted names, so a quoted ``"ID"`` stays distinct from ``id``.
    """
    key = id(catalog)
    hit = _SCHEMAS.get(key)
    if hit is not None and hit[0]() is catalog and hit[1] == dialect:
        return hit[2]
    mapping: dict[str, dict[str, dict[str, str]]] = {}
    for rel in catalog.relations.values():
        mapping.setdefault(rel.schema, {})[rel.name] = {
            c.name: "UNKNOWN" for c in rel.columns}
    # MappingSchema is typed dict[str, object], which (dict being invariant) no nested dict is
    schema = MappingSchema(cast("dict[str, object]", mapping), dialect=dialect, normalize=False)

    def forget(_r: weakref.ref[Catalog]) -> None:  # the catalog is gone: so is its schema
        _SCHEMAS.pop(key, None)

    _SCHEMAS[key] = (weakref.ref(catalog, forget), dialect, schema)
    return schema
