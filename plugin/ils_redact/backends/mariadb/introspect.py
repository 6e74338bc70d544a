"""Read a live MariaDB catalog (information_schema) into the backend-neutral Catalog.

Only the Koha database the DSN names is read: a MariaDB server often hosts other
applications' databases, and the layer's own database (``ils_redact_<koha db>``) is not
part of the ILS.  Relations are qualified with the database name (``koha.borrowers``)
and ``default_schema`` is the Koha database, so the rules' unqualified names resolve.
MariaDB has no table owners and no inheritance; a view's ``depends_on`` is read from its
definition (MariaDB has no VIEW_TABLE_USAGE), parsed with sqlglot.

Staff logins see none of the Koha tables in information_schema, so install records the
catalog in the layer database (``catalog_snapshot``: the rows of the same six queries,
as one JSON document) and the query gate of a staff login reads that
(:func:`recorded_catalog`).
"""

# ruff: noqa: S608 - MariaDB SQL text is built here: identifiers only through sqltext.ident /
# qname, values only through sqltext.literal or driver parameters.

from __future__ import annotations

import hashlib
import json

import pymysql
import sqlglot
from sqlglot import exp

from ...catalog import Catalog, Column, ForeignKey, Function, Relation
from ...errors import StateError
from .connection import Connection, current_database, server_version
from .sqltext import literal, qname

_TABLES = """
SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES
WHERE TABLE_SCHEMA = %s AND TABLE_TYPE IN ('BASE TABLE', 'VIEW', 'SYSTEM VERSIONED')
"""

_COLUMNS = """
SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE = 'YES'
FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s
ORDER BY TABLE_NAME, ORDINAL_POSITION
"""

#: k.TABLE_SCHEMA is a constant too: without it MariaDB opens the key columns of every
#: database's tables (the join gives it no schema), and a table being altered in another
#: database fails the install's INSERT ... SELECT of the snapshot (strict mode turns the
#: "skipped since its definition is being modified by concurrent DDL" warning into an error)
_KEYS = """
SELECT tc.TABLE_NAME, tc.CONSTRAINT_TYPE, tc.CONSTRAINT_NAME, k.COLUMN_NAME,
       k.REFERENCED_TABLE_SCHEMA, k.REFERENCED_TABLE_NAME, k.REFERENCED_COLUMN_NAME
FROM information_schema.TABLE_CONSTRAINTS tc
JOIN information_schema.KEY_COLUMN_USAGE k
  ON k.CONSTRAINT_SCHEMA = tc.CONSTRAINT_SCHEMA AND k.TABLE_NAME = tc.TABLE_NAME
 AND k.CONSTRAINT_NAME = tc.CONSTRAINT_NAME
WHERE tc.TABLE_SCHEMA = %s AND k.TABLE_SCHEMA = %s
  AND tc.CONSTRAINT_TYPE IN ('PRIMARY KEY', 'UNIQUE', 'FOREIGN KEY')
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
    rows = {part: list(conn.execute(q, (db,) * q.count("%s")).fetchall())
            for part, q in _PARTS.items()}
    catalog = build_catalog(db, rows, server_version(conn), "live")
    from ...releases import detect_release  # the ILS release (Koha: Version)

    found = detect_release(conn, "mariadb", database=db)
    if found is not None:
        catalog.release = found.version
        catalog.extra["release"] = found.describe()
    return catalog


_PARTS = {"tables": _TABLES, "columns": _COLUMNS, "keys": _KEYS, "views": _VIEWS,
          "routines": _ROUTINES, "params": _PARAMS}


def build_catalog(db: str, rows: dict[str, list], version: str, source: str) -> Catalog:
    """The Catalog from the rows of the six queries above (read live, or recorded by
    install in the layer's ``catalog_snapshot``)."""
    rels: dict[str, dict] = {}
    for name, ttype in rows["tables"]:
        rels[name] = dict(kind="view" if ttype == "VIEW" else "table", columns=[],
                          primary_key=(), foreign_keys={}, unique={}, depends_on=())
    for table, col, ctype, nullable in rows["columns"]:
        if table in rels:
            rels[table]["columns"].append(Column(col, ctype, bool(nullable)))
    for table, ctype, cname, col, rschema, rtable, rcol in rows["keys"]:
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
    for name, definition, definer, security in rows["views"]:
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
    for name, rtype, dtd in rows["params"]:
        params.setdefault((name, rtype), []).append(dtd)
    functions = tuple(
        Function(schema=db, name=name, argument_types=", ".join(params.get((name, rtype), [])),
                 return_type=dtd or "", security_definer=security == "DEFINER",
                 language="sql", owner=definer, public_execute=False)
        for name, rtype, dtd, security, definer in rows["routines"])
    return Catalog(
        engine="mariadb",
        database=db,
        relations=relations,
        functions=functions,
        schemas=(db,),
        server_version=version,
        default_schema=db,
        source=source,
    )


# -- the catalog install records ---------------------------------------------------------

#: the table of the layer database that holds it (one row, id 1)
SNAPSHOT_TABLE = "catalog_snapshot"


def catalog_sha256(catalog: Catalog) -> str:
    """What the recorded catalog is compared by: its relations and routines."""
    data = catalog.to_json()
    doc = {"relations": data.get("relations"), "functions": data.get("functions")}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def _aggregate(query: str, columns: str, order: str) -> str:
    """``query`` (one of the six above, its %s the Koha database) as one JSON array of
    rows, in SQL."""
    rest = query.strip().partition("FROM")[2].split("ORDER BY")[0].strip()
    return (f"(SELECT JSON_ARRAYAGG(JSON_ARRAY({columns}) ORDER BY {order}) "
            f"FROM {rest})")


_SNAPSHOT_PARTS = {
    "tables": ("TABLE_NAME, TABLE_TYPE", "TABLE_NAME"),
    "columns": ("TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE = 'YES'",
                "TABLE_NAME, ORDINAL_POSITION"),
    "keys": ("tc.TABLE_NAME, tc.CONSTRAINT_TYPE, tc.CONSTRAINT_NAME, k.COLUMN_NAME, "
             "k.REFERENCED_TABLE_SCHEMA, k.REFERENCED_TABLE_NAME, k.REFERENCED_COLUMN_NAME",
             "tc.TABLE_NAME, tc.CONSTRAINT_NAME, k.ORDINAL_POSITION"),
    "views": ("TABLE_NAME, VIEW_DEFINITION, DEFINER, SECURITY_TYPE", "TABLE_NAME"),
    "routines": ("ROUTINE_NAME, ROUTINE_TYPE, DTD_IDENTIFIER, SECURITY_TYPE, DEFINER",
                 "ROUTINE_NAME, ROUTINE_TYPE"),
    "params": ("SPECIFIC_NAME, ROUTINE_TYPE, DTD_IDENTIFIER",
               "SPECIFIC_NAME, ORDINAL_POSITION"),
}


def snapshot_sql(layer: str, database: str, sha256: str) -> str:
    """The statement that records the Koha catalog in the layer database, read from
    information_schema when it runs (as the administrator who installs)."""
    parts = ",\n    ".join(
        f"{literal(part)}, {_aggregate(_PARTS[part], cols, order)}"
        for part, (cols, order) in _SNAPSHOT_PARTS.items()).replace("%s", literal(database))
    return (f"SET STATEMENT group_concat_max_len = 1073741824 FOR\n"
            f"INSERT INTO {qname(layer, SNAPSHOT_TABLE)} (id, sha256, taken_at, server_version, "
            "doc)\n"
            f"SELECT 1, {literal(sha256)}, UTC_TIMESTAMP(6), VERSION(), "
            f"JSON_OBJECT(\n    {parts})\n"
            "ON DUPLICATE KEY UPDATE sha256 = VALUES(sha256), taken_at = VALUES(taken_at), "
            "server_version = VALUES(server_version), doc = VALUES(doc)")


def recorded_sha256(conn: Connection, layer: str) -> str | None:
    row = conn.execute(f"SELECT sha256 FROM {qname(layer, SNAPSHOT_TABLE)} WHERE id = 1"
                       ).fetchone()
    return str(row[0]) if row else None


def recorded_catalog(conn: Connection) -> Catalog:
    """The Koha catalog the installed layer recorded (``catalog_snapshot``), as the query
    gate of a staff login needs it: such a login sees no Koha table in
    information_schema.  Before install (no layer database) the live catalog."""
    from .state import layer_database

    db = current_database(conn)
    layer = layer_database(db)
    try:
        row = conn.execute(f"SELECT doc, server_version FROM {qname(layer, SNAPSHOT_TABLE)} "
                           "WHERE id = 1").fetchone()
    except pymysql.err.MySQLError as exc:
        code = exc.args[0] if exc.args else 0
        if code in (1049, 1146) and _layer_absent(conn, layer):
            return read_catalog(conn, db)
        if code in (1049, 1142, 1146):
            raise StateError(f"this login cannot read the catalog ils-redact recorded in "
                             f"{layer}.{SNAPSHOT_TABLE}",
                             hint="staff get it through the admin, disclosure or exporter "
                                  "role (ils-redact staff grant); a layer older than "
                                  "version 4 has none: run ils-redact install") from None
        raise
    if row is None:
        raise StateError(f"{layer}.{SNAPSHOT_TABLE} is empty",
                         hint="run ils-redact install: it records the catalog")
    doc = json.loads(row[0])
    rows = {part: [tuple(r) for r in (doc.get(part) or [])] for part in _PARTS}
    return build_catalog(db, rows, str(row[1]), f"recorded by install in {layer}")


def _layer_absent(conn: Connection, layer: str) -> bool:
    row = conn.execute("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
                       (layer,)).fetchone()
    return not (row and row[0])
