"""Read a live MariaDB catalog (information_schema) into the backend-neutral Catalog.

Only the Koha database the DSN names is read: a MariaDB server often hosts other
applications' databases, and the layer's own database (``ils_redact_<koha db>``) is not
part of the ILS.  Relations are qualified with the database name (``koha.borrowers``)
and ``default_schema`` is the Koha database, so the rules' unqualified names resolve.
MariaDB has no table owners and no inheritance; a view's ``depends_on`` is read from its
definition (MariaDB has no VIEW_TABLE_USAGE), parsed with sqlglot.
"""

from __future__ import annotations

import sqlglot
from sqlglot import exp

from ...catalog import Catalog, Column, ForeignKey, Function, Relation
from .connection import Connection, current_database, server_version

_TABLES = """
SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES
WHERE TABLE_SCHEMA = %s AND TABLE_TYPE IN ('BASE TABLE', 'VIEW', 'SYSTEM VERSIONED')
"""

_COLUMNS = """
SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE = 'YES'
FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s
ORDER BY TABLE_NAME, ORDINAL_POSITION
"""

_KEYS = """
SELECT tc.TABLE_NAME, tc.CONSTRAINT_TYPE, tc.CONSTRAINT_NAME, k.COLUMN_NAME,
       k.REFERENCED_TABLE_SCHEMA, k.REFERENCED_TABLE_NAME, k.REFERENCED_COLUMN_NAME
FROM information_schema.TABLE_CONSTRAINTS tc
JOIN information_schema.KEY_COLUMN_USAGE k
  ON k.CONSTRAINT_SCHEMA = tc.CONSTRAINT_SCHEMA AND k.TABLE_NAME = tc.TABLE_NAME
 AND k.CONSTRAINT_NAME = tc.CONSTRAINT_NAME
WHERE tc.TABLE_SCHEMA = %s AND tc.CONSTRAINT_TYPE IN ('PRIMARY KEY', 'UNIQUE', 'FOREIGN KEY')
ORDER BY tc.TABLE_NAME, tc.CONSTRAINT_NAME, k.ORDINAL_POSITION
"""

_VIEWS = """
SELECT TABLE_NAME, VIEW_DEFINITION, DEFINER, SECURITY_TYPE FROM information_schema.VIEWS
WHERE TABLE_SCHEMA = %s
"""

_ROUTINES = """
SELECT ROUTINE_NAME, ROUTINE_TYPE, DTD_IDENTIFIER, SECURITY_TYPE, DEFINER
FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s ORDER BY 1, 2
"""

_PARAMS = """
SELECT SPECIFIC_NAME, ROUTINE_TYPE, DTD_IDENTIFIER FROM information_schema.PARAMETERS
WHERE SPECIFIC_SCHEMA = %s AND ORDINAL_POSITION > 0 ORDER BY SPECIFIC_NAME, ORDINAL_POSITION
"""


def view_reads(definition: str, database: str) -> tuple[str, ...]:
    """Relations a view definition names (qualified), or () if it cannot be parsed."""
    try:
        tree = sqlglot.parse_one(definition, read="mysql")
    except sqlglot.errors.ParseError:
        return ()
    ctes = {c.alias_or_name for c in tree.find_all(exp.CTE)}
    out = set()
    for t in tree.find_all(exp.Table):
        if not t.name or (not t.db and t.name in ctes):
            continue
        out.add(f"{t.db or database}.{t.name}")
    return tuple(sorted(out))


def read_catalog(conn: Connection, database: str | None = None) -> Catalog:
    db = database or current_database(conn)
    rels: dict[str, dict] = {}
    for name, ttype in conn.execute(_TABLES, (db,)).fetchall():
        rels[name] = dict(kind="view" if ttype == "VIEW" else "table", columns=[],
                          primary_key=(), foreign_keys={}, unique={}, depends_on=())
    for table, col, ctype, nullable in conn.execute(_COLUMNS, (db,)).fetchall():
        if table in rels:
            rels[table]["columns"].append(Column(col, ctype, bool(nullable)))
    for table, ctype, cname, col, rschema, rtable, rcol in conn.execute(_KEYS, (db,)).fetchall():
        r = rels.get(table)
        if r is None:
            continue
        if ctype == "PRIMARY KEY":
            r["primary_key"] = r["primary_key"] + (col,)
        elif ctype == "UNIQUE":
            r["unique"].setdefault(cname, []).append(col)
        else:
            fk = r["foreign_keys"].setdefault(cname, {"cols": [], "ref": f"{rschema}.{rtable}",
                                                       "refcols": []})
            fk["cols"].append(col)
            fk["refcols"].append(rcol)
    views = {}
    for name, definition, definer, security in conn.execute(_VIEWS, (db,)).fetchall():
        if name in rels:
            rels[name]["depends_on"] = view_reads(definition or "", db)
            views[name] = (definer, security)

    relations = {}
    for name, r in rels.items():
        rel = Relation(
            schema=db, name=name, kind=r["kind"],
            owner=views.get(name, (None,))[0],
            columns=tuple(r["columns"]), primary_key=r["primary_key"],
            foreign_keys=tuple(ForeignKey(n, tuple(f["cols"]), f["ref"], tuple(f["refcols"]))
                               for n, f in sorted(r["foreign_keys"].items())),
            unique_constraints=tuple(tuple(cols) for _, cols in sorted(r["unique"].items())),
            depends_on=r["depends_on"],
            options=(f"sql_security={views[name][1].lower()}",) if name in views else ())
        relations[rel.qualified] = rel

    params: dict[tuple[str, str], list[str]] = {}
    for name, rtype, dtd in conn.execute(_PARAMS, (db,)).fetchall():
        params.setdefault((name, rtype), []).append(dtd)
    functions = tuple(
        Function(schema=db, name=name, argument_types=", ".join(params.get((name, rtype), [])),
                 return_type=dtd or "", security_definer=security == "DEFINER",
                 language="sql", owner=definer, public_execute=False)
        for name, rtype, dtd, security, definer in conn.execute(_ROUTINES, (db,)).fetchall())
    return Catalog(
        engine="mariadb",
        database=db,
        relations=relations,
        functions=functions,
        schemas=(db,),
        server_version=server_version(conn),
        default_schema=db,
        source="live",
    )
