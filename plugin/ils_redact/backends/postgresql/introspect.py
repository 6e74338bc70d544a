"""Read a live PostgreSQL catalog into the backend-neutral :class:`Catalog`.

A handful of set-based queries, so a full Evergreen database (510 tables, 5,000 columns,
900 functions) is read in well under a second.  The layer's own schemas are read too;
callers skip them where they must (classification, verify).
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from ...catalog import Catalog, Column, ForeignKey, Function, Relation
from .connection import current_database, server_version

SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")

_RELATIONS = """
SELECT c.oid, n.nspname, c.relname,
       CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned' WHEN 'v' THEN 'view'
                      WHEN 'm' THEN 'matview' WHEN 'f' THEN 'foreign' END,
       pg_get_userbyid(c.relowner), c.relrowsecurity, c.relforcerowsecurity,
       coalesce(c.reloptions, '{}')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname <> ALL (%(system)s) AND n.nspname NOT LIKE 'pg\\_temp\\_%%'
  AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%%'
"""

_COLUMNS = """
SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname <> ALL (%(system)s)
ORDER BY a.attrelid, a.attnum
"""

_CONSTRAINTS = """
SELECT con.conrelid, con.contype, con.conname,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(n, i)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.i),
       fn.nspname || '.' || fc.relname,
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(n, i)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.i)
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_class fc ON fc.oid = con.confrelid
LEFT JOIN pg_namespace fn ON fn.oid = fc.relnamespace
WHERE con.contype IN ('p', 'u', 'f') AND n.nspname <> ALL (%(system)s)
ORDER BY con.conrelid, con.conname
"""

_INHERITS = """
SELECT i.inhrelid, pn.nspname || '.' || p.relname
FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
JOIN pg_namespace pn ON pn.oid = p.relnamespace
ORDER BY i.inhrelid, i.inhseqno
"""

# relations a view's rewrite rule reads (one level; Catalog.view_reads follows chains)
_VIEW_DEPS = """
SELECT DISTINCT r.ev_class, dn.nspname || '.' || dc.relname
FROM pg_rewrite r JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
JOIN pg_class dc ON dc.oid = d.refobjid AND d.refclassid = 'pg_class'::regclass
JOIN pg_namespace dn ON dn.oid = dc.relnamespace
WHERE dc.oid <> r.ev_class AND dc.relkind IN ('r', 'p', 'v', 'm', 'f')
"""

_FUNCTIONS = """
SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid),
       pg_get_function_result(p.oid), p.prosecdef, l.lanname, pg_get_userbyid(p.proowner),
       p.proacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) x
                                   WHERE x.grantee = 0 AND x.privilege_type = 'EXECUTE')
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN pg_language l ON l.oid = p.prolang
WHERE n.nspname <> ALL (%(system)s)
ORDER BY 1, 2, 3
"""


def read_catalog(conn: psycopg.Connection) -> Catalog:
    params = {"system": list(SYSTEM_SCHEMAS)}
    rels: dict[int, dict] = {}
    for oid, schema, name, kind, owner, rls, forced, options in conn.execute(_RELATIONS, params):
        rels[oid] = dict(schema=schema, name=name, kind=kind, owner=owner, rls_enabled=rls,
                         rls_forced=forced, options=tuple(options), columns=[],
                         primary_key=(), foreign_keys=[], unique_constraints=[],
                         inherits=[], depends_on=set())
    for relid, name, typ, nullable in conn.execute(_COLUMNS, params):
        if relid in rels:
            rels[relid]["columns"].append(Column(name, typ, nullable))
    for relid, contype, conname, cols, ref, refcols in conn.execute(_CONSTRAINTS, params):
        r = rels.get(relid)
        if r is None:
            continue
        if contype == "p":
            r["primary_key"] = tuple(cols)
        elif contype == "u":
            r["unique_constraints"].append(tuple(cols))
        else:
            r["foreign_keys"].append(ForeignKey(conname, tuple(cols), ref, tuple(refcols)))
    for relid, parent in conn.execute(_INHERITS):
        if relid in rels:
            rels[relid]["inherits"].append(parent)
    for relid, dep in conn.execute(_VIEW_DEPS):
        if relid in rels:
            rels[relid]["depends_on"].add(dep)

    relations = {}
    for r in rels.values():
        rel = Relation(
            schema=r["schema"], name=r["name"], kind=r["kind"], owner=r["owner"],
            columns=tuple(r["columns"]), primary_key=r["primary_key"],
            foreign_keys=tuple(r["foreign_keys"]),
            unique_constraints=tuple(r["unique_constraints"]),
            inherits=tuple(r["inherits"]), rls_enabled=r["rls_enabled"],
            rls_forced=r["rls_forced"], depends_on=tuple(sorted(r["depends_on"])),
            options=r["options"])
        relations[rel.qualified] = rel

    functions = tuple(
        Function(schema=s, name=n, argument_types=args, return_type=ret,
                 security_definer=sd, language=lang, owner=owner, public_execute=pub)
        for s, n, args, ret, sd, lang, owner, pub in conn.execute(_FUNCTIONS, params)
    )
    schemas = tuple(row[0] for row in conn.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname <> ALL (%(system)s) "
        "AND nspname NOT LIKE 'pg\\_temp\\_%%' AND nspname NOT LIKE 'pg\\_toast\\_temp\\_%%' "
        "ORDER BY 1", params))
    catalog = Catalog(
        engine="postgresql",
        database=current_database(conn),
        relations=relations,
        functions=functions,
        schemas=schemas,
        server_version=server_version(conn),
        source="live",
    )
    return with_release(conn, catalog)


def with_release(conn: psycopg.Connection, catalog: Catalog) -> Catalog:
    """The ILS release the database says it is at (adapters/releases.py)."""
    from ...releases import detect_release

    found = detect_release(conn, "postgresql")
    if found is not None:
        catalog.release = found.version
        catalog.extra["release"] = found.describe()
    return catalog


# -- naming catalog objects safely ---------------------------------------------------------
#
# Catalog text is attacker-controlled (threat model row 16): any login may create objects
# in pg_temp, and in any schema it may CREATE in, with names holding quotes, parentheses
# and semicolons, and GRANT on them to the layer's roles.  SQL that names such an object
# is therefore never pasted from a signature or a name the catalog printed
# (pg_get_function_identity_arguments, regprocedure, format_type): it is built from the
# object's OID, each part (schema, name, every argument type's schema and name) read as
# a separate value and quoted by sql.Identifier.  An argument type is named by its own
# pg_type row, so an array type is its internal name ("pg_catalog"."_int4" is int4[]).

def arg_types(proc: str) -> sql.Composable:
    """SQL that reads the argument types of the pg_proc row ``proc`` (an alias) as a
    text[][] of {type schema, type name}, in order: the input arguments, which GRANT and
    REVOKE match."""
    return sql.SQL("""ARRAY(SELECT ARRAY[tn.nspname::text, ty.typname::text]
      FROM unnest({p}.proargtypes::oid[]) WITH ORDINALITY a(t, i)
      JOIN pg_type ty ON ty.oid = a.t JOIN pg_namespace tn ON tn.oid = ty.typnamespace
      ORDER BY a.i)""").format(p=sql.Identifier(proc))


def temp_schema(ns: str) -> sql.Composable:
    """SQL true when the pg_namespace row ``ns`` (an alias) is a session's temporary
    schema (for a query run with parameters: ``%%`` is one ``%``)."""
    return sql.SQL("({n}.nspname LIKE 'pg\\_temp\\_%%' OR {n}.nspname LIKE "
                   "'pg\\_toast\\_temp\\_%%')").format(n=sql.Identifier(ns))


def function_ident(schema: str, name: str, argtypes: list[list[str]] | None) -> sql.Composable:
    """``"schema"."name"("typschema"."typname", ...)``: a routine, every part quoted."""
    args = sql.SQL(", ").join(sql.Identifier(ts, tn) for ts, tn in (argtypes or []))
    return sql.SQL("{}({})").format(sql.Identifier(schema, name), args)


_FUNCTION_PARTS = sql.SQL("""
SELECT p.oid, n.nspname::text, p.proname::text, {args}
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE p.oid = ANY (%s::oid[])
""").format(args=arg_types("p"))


def function_idents(conn: psycopg.Connection, oids: list[int]) -> dict[int, sql.Composable]:
    """OID -> the routine as SQL (see ``function_ident``), for every OID given."""
    if not oids:
        return {}
    return {int(oid): function_ident(schema, name, args) for oid, schema, name, args in
            conn.execute(_FUNCTION_PARTS, (sorted(set(oids)),))}


