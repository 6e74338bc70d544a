"""An Evergreen database for demos and tests: the real schema and deterministic data.

``build_schema`` creates, in an empty PostgreSQL database, every schema, table and view of
the Evergreen 3.17 schema facts shipped with the adapter (``reference_catalog()``): real
columns in their real order, NOT NULL, primary keys, unique constraints, the 840 foreign
keys and real table inheritance (``action.circulation`` INHERITS ``money.billable_xact``
...).  The facts carry no function, trigger or view bodies, so:

* no function, trigger, extension, role or grant is created;
* Evergreen-defined types (anything with a dot) and extension types (``hstore``) become
  ``text``;
* each view is synthesised from its ``depends_on``: it has exactly its catalog columns and
  types and reads every relation it depends on, so PostgreSQL records the same
  dependencies and the view, run with its owner's rights, returns rows of what it reads
  (``action.all_circulation`` returns circulations and aged circulations).  See
  ``view_query``.

``fill`` then loads deterministic synthetic data (a consortium, patrons, cards, addresses,
bibs, items, circulations, holds and a few rows in other confidential tables), generated
server-side with ``INSERT ... SELECT ... FROM generate_series`` and hash functions of the
row number, so the same seed and sizes give byte-identical tables and a million patrons
take seconds.

Neither function commits: the caller owns the transaction.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from functools import lru_cache
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from ...catalog import Catalog, Column, Relation

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]  # (stage label, done, total)

# -- the synthetic consortium -----------------------------------------------------------
#: org unit ids: the consortium, its two library systems and their five branches
CONSORTIUM = 1
SYSTEMS = (2, 3)
BRANCHES = (4, 5, 6, 7, 8)
#: a branch with at most five patrons and few circulations (suppressed statistics cells)
TINY_BRANCH = 8
#: the busy branches (where almost all patrons, items and circulations are)
MAIN_BRANCHES = (4, 5, 6, 7)

#: permission.grp_tree ids used as patron profiles
PROFILES = {
    "Users": 1, "Patrons": 2, "Staff": 3, "Circulators": 4, "Catalogers": 5,
    "Adult": 6, "Juvenile": 7, "Senior": 8,
}

#: every ``STAFF_EVERY``-th user (1, 48, 95, ...) is a staff account; user 1 is one
STAFF_EVERY = 47

TIMEZONE = "America/Chicago"
#: patrons register over six years; circulations and holds cover the last two
CREATE_START = "2019-01-01"
CREATE_SPAN_DAYS = 2192  # 2019-01-01 .. 2024-12-31
CIRC_START = "2023-01-01"
CIRC_OFFSET_DAYS = 1461  # CREATE_START .. CIRC_START
CIRC_SPAN_DAYS = 731  # 2023-01-01 .. 2024-12-31
#: the fixture's "today": nothing happens after it
FIXTURE_NOW = "2025-01-01"


# == schema =============================================================================

#: PostgreSQL built-in type names (typmods and array brackets stripped) kept as they are
_BUILTIN_TYPES = frozenset({
    "smallint", "integer", "bigint", "numeric", "decimal", "real", "double precision",
    "text", "character", "character varying", "varchar", "char", "bpchar", "name",
    '"char"', "boolean", "bytea", "date", "time", "time without time zone",
    "time with time zone", "timestamp", "timestamp without time zone",
    "timestamp with time zone", "interval", "inet", "cidr", "macaddr", "macaddr8",
    "json", "jsonb", "xml", "uuid", "tsvector", "tsquery", "oid", "regclass", "regproc",
    "regprocedure", "regtype", "regconfig", "money", "bit", "bit varying", "point",
    "line", "lseg", "box", "path", "polygon", "circle", "int4range", "int8range",
    "numrange", "daterange", "tsrange", "tstzrange", "int2vector", "oidvector",
})
_TYPMOD = re.compile(r"\(\s*\d+\s*(?:,\s*\d+\s*)?\)")
_SAFE_TYPE = re.compile(r'^[a-z0-9 (),"]+$')
_NUMERIC_FAMILY = frozenset({"smallint", "integer", "bigint", "numeric", "real",
                             "double precision"})
_TEXT_FAMILY = frozenset({"text", "name", "character", "character varying", "varchar"})
_TIME_FAMILY = frozenset({"date", "timestamp without time zone",
                          "timestamp with time zone"})


def pg_type(catalog_type: str) -> str:
    """The type a fixture column gets: the catalog type when PostgreSQL has it built in,
    else ``text`` (Evergreen-defined types such as ``config.marc_record_type`` and
    extension types such as ``hstore``), keeping array dimensions."""
    t = " ".join(catalog_type.strip().split())
    dims = 0
    while t.endswith("[]"):
        t = t[:-2].rstrip()
        dims += 1
    base = _TYPMOD.sub("", t).strip().lower()
    base = " ".join(base.split())
    if "." in t or base not in _BUILTIN_TYPES or not _SAFE_TYPE.match(t.lower()):
        t = "text"
    return t + "[]" * dims


def _base(pgtype: str) -> str:
    return " ".join(_TYPMOD.sub("", pgtype).split()).lower()


def _ident(qualified: str) -> sql.Identifier:
    schema, _, name = qualified.partition(".")
    return sql.Identifier(schema, name)


def _col_def(col: Column) -> sql.Composable:
    parts: list[sql.Composable] = [sql.Identifier(col.name), sql.SQL(pg_type(col.type))]
    if not col.nullable:
        parts.append(sql.SQL("NOT NULL"))
    return sql.SQL(" ").join(parts)


_OPTION = re.compile(r"^[a-z_]+=[A-Za-z0-9_.]+$")


def _table_order(catalog: Catalog) -> list[Relation]:
    """Tables, parents before children, otherwise by name."""
    tables = {r.qualified: r for r in catalog.tables()}
    done: list[Relation] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen or name not in tables:
            return
        seen.add(name)
        for parent in tables[name].inherits:
            visit(parent)
        done.append(tables[name])

    for name in sorted(tables):
        visit(name)
    return done


def create_table_statement(rel: Relation, catalog: Catalog) -> sql.Composed:
    """``CREATE TABLE`` with the relation's own columns (inherited ones come from the
    parents), NOT NULL, primary key and unique constraints."""
    inherited: set[str] = set()
    for parent in rel.inherits:
        prel = catalog.get(parent)
        if prel is not None:
            inherited.update(prel.column_names)
            # a grandparent's columns are the parent's columns too
            for anc in catalog.ancestors(parent):
                arel = catalog.get(anc)
                if arel is not None:
                    inherited.update(arel.column_names)
    elements: list[sql.Composable] = [_col_def(c) for c in rel.columns
                                      if c.name not in inherited]
    if rel.primary_key:
        elements.append(sql.SQL("PRIMARY KEY ({})").format(
            sql.SQL(", ").join(map(sql.Identifier, rel.primary_key))))
    for uq in rel.unique_constraints:
        elements.append(sql.SQL("UNIQUE ({})").format(
            sql.SQL(", ").join(map(sql.Identifier, uq))))
    stmt = sql.SQL("CREATE TABLE {} ({})").format(_ident(rel.qualified),
                                                  sql.SQL(", ").join(elements))
    if rel.inherits:
        stmt += sql.SQL(" INHERITS ({})").format(
            sql.SQL(", ").join(_ident(p) for p in rel.inherits))
    options = [o for o in rel.options if _OPTION.match(o)]
    if options:
        stmt += sql.SQL(" WITH ({})").format(sql.SQL(", ".join(options)))
    return stmt


@lru_cache(maxsize=1)
def _reference_fk_facts() -> dict[tuple[str, str], tuple[bool, str]]:
    """(relation, constraint name) -> (deferrable, on_delete), from the raw facts file the
    adapter ships (the Catalog model keeps neither)."""
    path = Path(__file__).resolve().parent / "catalog.json.gz"
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    out: dict[tuple[str, str], tuple[bool, str]] = {}
    for r in data.get("relations", ()):
        for fk in r.get("foreign_keys", ()):
            out[(f"{r['schema']}.{r['name']}", fk.get("name", ""))] = (
                bool(fk.get("deferrable", True)), str(fk.get("on_delete", "NO ACTION")))
    return out


_ON_DELETE = {"NO ACTION", "CASCADE", "SET NULL", "SET DEFAULT", "RESTRICT"}


def foreign_key_statements(catalog: Catalog) -> list[sql.Composed]:
    """One ``ALTER TABLE ... ADD CONSTRAINT ... FOREIGN KEY`` per table with foreign keys.

    Deferrability and ON DELETE come from the shipped facts where the constraint is known
    there; otherwise ``DEFERRABLE INITIALLY DEFERRED`` (Evergreen's usual spelling)."""
    facts = _reference_fk_facts()
    out: list[sql.Composed] = []
    for rel in sorted(catalog.tables(), key=lambda r: r.qualified):
        clauses: list[sql.Composable] = []
        for fk in sorted(rel.foreign_keys, key=lambda f: (f.name, f.columns)):
            deferrable, on_delete = facts.get((rel.qualified, fk.name), (True, "NO ACTION"))
            clause = sql.SQL("FOREIGN KEY ({}) REFERENCES {} ({})").format(
                sql.SQL(", ").join(map(sql.Identifier, fk.columns)),
                _ident(fk.ref_relation),
                sql.SQL(", ").join(map(sql.Identifier, fk.ref_columns)))
            if fk.name:
                clause = sql.SQL("CONSTRAINT {} ").format(sql.Identifier(fk.name)) + clause
            if on_delete.upper() in _ON_DELETE and on_delete.upper() != "NO ACTION":
                clause += sql.SQL(" ON DELETE " + on_delete.upper())
            if deferrable:
                clause += sql.SQL(" DEFERRABLE INITIALLY DEFERRED")
            clauses.append(sql.SQL("ADD ") + clause)
        if clauses:
            out.append(sql.SQL("ALTER TABLE {} {}").format(
                _ident(rel.qualified), sql.SQL(", ").join(clauses)))
    return out


#: indexes Evergreen has besides its patron links (skipped where the catalog differs)
EXTRA_INDEXES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("action.circulation", ("xact_start",)),
    ("action.circulation", ("target_copy",)),
    ("action.circulation", ("circ_lib",)),
    ("action.circulation", ("checkin_time",)),
    ("action.aged_circulation", ("xact_start",)),
    ("action.aged_circulation", ("target_copy",)),
    ("action.hold_request", ("target",)),
    ("action.hold_request", ("pickup_lib",)),
    ("action.hold_request", ("request_time",)),
    ("action.usr_circ_history", ("source_circ",)),
    ("actor.usr", ("home_ou",)),
    ("actor.usr", ("profile",)),
    ("actor.usr", ("family_name",)),
    ("asset.call_number", ("record",)),
    ("asset.copy", ("call_number",)),
    ("asset.copy", ("circ_lib",)),
    ("asset.copy", ("barcode",)),
    ("auditor.actor_usr_history", ("id",)),
    ("auditor.actor_usr_address_history", ("id",)),
    ("money.billing", ("xact",)),
    ("money.billable_xact", ("xact_start",)),
    ("money.grocery", ("xact_start",)),
    ("container.biblio_record_entry_bucket_item", ("bucket",)),
)


def index_specs(catalog: Catalog) -> list[tuple[str, tuple[str, ...]]]:
    """(table, columns) to index: every column that is a foreign key to ``actor.usr(id)``
    (so row-level-security lookups are index-driven), plus ``EXTRA_INDEXES``; never
    one a primary key or unique constraint already leads with."""
    specs: list[tuple[str, tuple[str, ...]]] = []
    seen: set[tuple[str, tuple[str, ...]]] = set()

    def add(rel: Relation, cols: tuple[str, ...]) -> None:
        key = (rel.qualified, cols)
        if key in seen or not all(rel.column(c) for c in cols):
            return
        covered = [rel.primary_key, *rel.unique_constraints]
        if any(tuple(k[: len(cols)]) == cols for k in covered if k):
            return
        seen.add(key)
        specs.append(key)

    for rel in sorted(catalog.tables(), key=lambda r: r.qualified):
        for fk in rel.foreign_keys:
            if fk.ref_relation == "actor.usr" and fk.ref_columns == ("id",):
                add(rel, fk.columns)
    for table, cols in EXTRA_INDEXES:
        extra = catalog.get(table)
        if extra is not None and not extra.is_view:
            add(extra, cols)
    return specs


def _coerce(expr: sql.Composable, src: str, dst: str) -> sql.Composable | None:
    """``expr`` (of fixture type ``src``) as type ``dst`` without any run-time error, or
    None when there is no sensible conversion."""
    if src == dst:
        return expr
    sb, db = _base(src), _base(dst)
    cast = sql.SQL("({})::" + dst).format(expr)
    if src.endswith("[]") or dst.endswith("[]"):
        if dst.endswith("[]") and not src.endswith("[]") and dst[:-2] == src:
            return sql.SQL("ARRAY[{}]::" + dst).format(expr)
        return cast if db in _TEXT_FAMILY else None
    if (sb in _NUMERIC_FAMILY and db in _NUMERIC_FAMILY) or db in _TEXT_FAMILY:
        return cast
    if sb in _TIME_FAMILY and db in _TIME_FAMILY:
        return cast
    if db == "boolean":
        return sql.SQL("(({}) IS NOT NULL)").format(expr)
    if db in ("json", "jsonb"):
        return sql.SQL("to_" + db + "({})").format(expr)
    if sb == "boolean" and db in _NUMERIC_FAMILY:
        return sql.SQL("({})::integer::" + dst).format(expr)
    return None


def view_query(view: Relation, catalog: Catalog) -> sql.Composed:
    """A query with exactly the view's catalog columns (names, order, types) that reads
    every relation the view depends on.

    The dependencies that carry at least half as many of the view's columns as the best
    one are the view's *driving* relations: the query is a ``UNION ALL`` with one branch
    per driving relation, so a view over circulations returns circulation rows, and
    ``action.all_circulation`` returns both circulations and aged circulations, as in
    Evergreen.  Every other dependency is joined ``ON false`` in each branch: PostgreSQL
    records the dependency and checks the privilege, the join adds no rows.  A column
    comes from the branch's driving relation when it has one of that name, else from
    the first joined relation that has it, else it is a typed NULL.
    """
    deps: list[Relation] = []
    for name in view.depends_on:
        rel = catalog.get(name)
        if rel is not None and rel.qualified != view.qualified and rel not in deps:
            deps.append(rel)
    targets = [(c.name, pg_type(c.type)) for c in view.columns]
    if not deps:
        return sql.SQL("SELECT {} WHERE false").format(sql.SQL(", ").join(
            sql.SQL("NULL::" + t + " AS {}").format(sql.Identifier(n)) for n, t in targets))
    scores = [sum(1 for n, _ in targets if d.column(n) is not None) for d in deps]
    best = max(scores)
    driving = [d for d, s in zip(deps, scores, strict=True) if best and 2 * s >= best] or deps[:1]
    alias = {d.qualified: sql.Identifier(f"d{i + 1}") for i, d in enumerate(deps)}
    others = [d for d in deps if d not in driving]
    branches: list[sql.Composable] = []
    for drv in driving:
        exprs: list[sql.Composable] = []
        for name, typ in targets:
            expr: sql.Composable | None = None
            for src in [drv, *others]:
                col = src.column(name)
                if col is None:
                    continue
                expr = _coerce(sql.SQL("{}.{}").format(alias[src.qualified],
                                                       sql.Identifier(name)),
                               pg_type(col.type), typ)
                if expr is not None:
                    break
            if expr is None:
                expr = sql.SQL("NULL::" + typ)
            exprs.append(sql.SQL("{} AS {}").format(expr, sql.Identifier(name)))
        from_: sql.Composable = sql.SQL("{} {}").format(_ident(drv.qualified),
                                                        alias[drv.qualified])
        for other in others:
            from_ = sql.SQL("{} LEFT JOIN {} {} ON false").format(
                from_, _ident(other.qualified), alias[other.qualified])
        branches.append(sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(exprs), from_))
    return sql.SQL(" UNION ALL ").join(branches)


def _view_order(catalog: Catalog) -> list[Relation]:
    """Views, each after the views it reads, otherwise by name."""
    views = {r.qualified: r for r in catalog.views()}
    done: list[Relation] = []
    state: dict[str, int] = {}

    def visit(name: str) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise ValueError(f"views depend on each other in a cycle through {name}")
        state[name] = 1
        for dep in sorted(views[name].depends_on):
            if dep in views:
                visit(dep)
        state[name] = 2
        done.append(views[name])

    for name in sorted(views):
        visit(name)
    return done


def ddl_statements(catalog: Catalog) -> list[sql.Composed]:
    """Every statement ``build_schema`` runs, in order: schemas, tables (parents first),
    foreign keys, indexes, views (dependencies first)."""
    stmts: list[sql.Composed] = []
    schemas = sorted({*catalog.schemas, *(r.schema for r in catalog.relations.values())})
    for schema in schemas:
        if schema != "public":
            stmts.append(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                sql.Identifier(schema)))
    stmts.extend(create_table_statement(rel, catalog) for rel in _table_order(catalog))
    stmts.extend(foreign_key_statements(catalog))
    for table, cols in index_specs(catalog):
        stmts.append(sql.SQL("CREATE INDEX ON {} ({})").format(
            _ident(table), sql.SQL(", ").join(map(sql.Identifier, cols))))
    for view in _view_order(catalog):
        stmts.append(sql.SQL("CREATE VIEW {} AS {}").format(
            _ident(view.qualified), view_query(view, catalog)))
    return stmts


def evergreen_catalog() -> Catalog:
    from .. import get_adapter

    return get_adapter("evergreen").reference_catalog()


def build_schema(conn: psycopg.Connection, catalog: Catalog | None = None, *,
                 progress: ProgressFn | None = None) -> None:
    """Create every schema, table, and view of the catalog, as the connection's current role
    (callers SET ROLE to the ILS owner first, so the ILS owner owns everything).

    Runs in the caller's transaction (one round trip; nothing is committed here)."""
    catalog = catalog or evergreen_catalog()
    stmts = ddl_statements(catalog)
    total = len(stmts)
    if progress:
        progress("schema", 0, total)
    t0 = time.perf_counter()
    text = ";\n".join(s.as_string(conn) for s in stmts)
    # one simple-protocol round trip: PostgreSQL runs it as one implicit transaction even
    # on an autocommit connection
    conn.execute(text)
    log.debug("built %d statements in %.2fs", total, time.perf_counter() - t0)
    if progress:
        progress("schema", total, total)


# == data ===============================================================================

_FIRST = (
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William "
    "Barbara Richard Susan Joseph Jessica Thomas Sarah Charles Karen Christopher Lisa "
    "Daniel Nancy Matthew Betty Anthony Margaret Mark Sandra Donald Ashley Steven "
    "Kimberly Paul Emily Andrew Donna Joshua Michelle Kenneth Carol Kevin Amanda Brian "
    "Dorothy George Melissa Timothy Deborah Ronald Stephanie Edward Rebecca Jason Sharon "
    "Jeffrey Laura Ryan Cynthia Jacob Kathleen Gary Amy Nicholas Angela Eric Shirley "
    "Jonathan Anna Stephen Brenda Larry Pamela Justin Emma Scott Nicole Brandon Helen "
    "Benjamin Samantha Samuel Katherine Gregory Christine Alexander Debra Frank Rachel "
    "Patrick Carolyn Raymond Janet Jack Catherine Dennis Maria Jerry Heather Tyler Diane "
    "Aaron Ruth Jose Julie Adam Olivia Nathan Joyce Henry Virginia Zachary Victoria "
    "Douglas Kelly Peter Lauren Kyle Christina Noah Joan Ethan Evelyn Jeremy Judith "
    "Walter Megan Christian Andrea Keith Cheryl Roger Hannah Terry Jacqueline Austin "
    "Martha Sean Gloria Gerald Teresa Carl Ann Harold Sara Dylan Madison Arthur Frances "
    "Lawrence Kathryn Jordan Janice Jesse Jean Bryan Abigail Billy Alice Bruce Judy "
    "Gabriel Sophia Joe Grace Logan Denise Alan Amber Juan Doris Albert Marilyn Willie "
    "Danielle Elijah Beverly Wayne Isabella Randy Theresa Vincent Diana Mason Natalie "
    "Roy Brittany Ralph Charlotte Bobby Marie Russell Kayla Bradley Alexis Philip Lori "
    "Eugene Aaliyah Wei Mei Hiroshi Yuki Priya Arjun Fatima Omar Ngozi Chidi Lucia Mateo "
    "Sofia Santiago Ximena Dmitri Olga Anh Minh Kwame Ama Aisha Ibrahim"
).split()
_FAMILY = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez "
    "Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson "
    "White Harris Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright "
    "Scott Torres Nguyen Hill Flores Green Adams Nelson Baker Hall Rivera Campbell "
    "Mitchell Carter Roberts Gomez Phillips Evans Turner Diaz Parker Cruz Edwards Collins "
    "Reyes Stewart Morris Morales Murphy Cook Rogers Gutierrez Ortiz Morgan Cooper "
    "Peterson Bailey Reed Kelly Howard Ramos Kim Cox Ward Richardson Watson Brooks Chavez "
    "Wood James Bennett Gray Mendoza Ruiz Hughes Price Alvarez Castillo Sanders Patel "
    "Myers Long Ross Foster Jimenez Powell Jenkins Perry Russell Sullivan Bell Coleman "
    "Butler Henderson Barnes Gonzales Fisher Vasquez Simmons Romero Jordan Patterson "
    "Alexander Hamilton Graham Reynolds Griffin Wallace Moreno West Cole Hayes Bryant "
    "Herrera Gibson Ellis Tran Medina Aguilar Stevens Murray Ford Castro Marshall Owens "
    "Harrison Fernandez McDonald Woods Washington Kennedy Wells Vargas Henry Chen Freeman "
    "Webb Tucker Guzman Burns Crawford Olson Simpson Porter Hunter Gordon Mendez Silva "
    "Shaw Snyder Mason Dixon Munoz Hunt Hicks Holmes Palmer Wagner Black Robertson Boyd "
    "Rose Stone Salazar Fox Warren Mills Meyer Rice Schmidt Garza Daniels Ferguson Nichols "
    "Stephens Soto Weaver Ryan Gardner Payne Grant Dunn Kowalski Nowak Okafor Mensah "
    "Tanaka Suzuki Wang Zhang Liu Singh Kumar Haddad Nasser Ivanova Novak O'Brien "
    "O'Connor Schultz Johansson Larsen Lindqvist Dubois"
).split()
_NICK = "Alex Sam Jo Chris Kit Max Pat Robin Terry Jamie Charlie Frankie Bea Liz Ben".split()
_AREA = "217 309 618 630 708 773 779 815 847 872".split()
_STREET = (
    "Main Oak Maple Cedar Elm Washington Lake Hill Park Pine Walnut Lincoln Jefferson "
    "Prairie Church Mill River Spring Sunset Meadow Willow Cherry Adams Jackson Franklin"
).split()
_STREET_KIND = "St Ave Rd Dr Ln Ct Blvd Way Pl".split()
#: per branch (index 0..4 = org unit 4..8): city, county, ZIP prefix
_CITIES = (("Maplewood", "Sangamon", "627"), ("Riverton", "Sangamon", "625"),
           ("Oak Grove", "Menard", "626"), ("Cedar Falls", "Champaign", "618"),
           ("Pine Hollow", "Piatt", "619"))
_ADJ = (
    "Silent Hidden Last Golden Broken Secret Distant Burning Forgotten Little Endless "
    "Crimson Quiet Wild Bright Dark Lost Frozen Hollow Iron Paper Glass Winter Summer "
    "Midnight Northern Southern Sleeping Wandering Invisible"
).split()
_NOUN = (
    "River Garden House Road Kingdom Letter Island Mountain Orchard Bridge Forest "
    "Harbor Station Library Promise Window Shadow Light Storm Map Voyage Song Clock "
    "Lantern Field Prairie Machine Company Inheritance Archive"
).split()
_SUBJECTS = (
    "Fiction", "History", "Cooking", "Gardening", "Travel", "Biography", "Mystery fiction",
    "Science fiction", "Health", "Parenting", "Law", "Religion", "Poetry", "Computers",
    "Mental health", "Immigration", "Personal finance", "Job hunting",
)
_SEARCHES = (
    "divorce law", "bankruptcy", "depression treatment", "immigration forms",
    "job hunting", "pregnancy", "HIV", "dinosaurs", "gardening", "addiction recovery",
)
_GROCERY_NOTES = ("Lost card replacement", "Printing", "Photocopies", "Earbuds",
                  "Damaged item fee")


def _lit(v: Any) -> str:
    """An SQL literal for the fixed reference values, quoted by psycopg.sql.Literal."""
    return sql.Literal(v).as_string(None)


def _arr(items: Sequence[Any]) -> str:
    return "ARRAY[" + ",".join(_lit(x) for x in items) + "]"


def _qi(name: str) -> str:
    """An identifier, quoted by psycopg.sql.Identifier (fragments of the data generator are
    plain text; every name and value in them goes through psycopg's own quoting)."""
    return sql.Identifier(name).as_string(None)


def _derived(alias: str, columns: dict[str, str], source: str, *, keep: str = "") -> str:
    """``(SELECT keep, expr AS name, ... FROM source OFFSET 0) AS alias``: one level of
    computed columns.  OFFSET 0 keeps PostgreSQL from inlining the level into the next,
    so each expression is computed once per row.  Like every fragment of ``fill``, the
    text comes from this module's constants and int() sizes only."""
    cols = [keep] if keep else []
    cols += [f"{expr} AS {_qi(name)}" for name, expr in columns.items()]
    return f"(SELECT {', '.join(cols)} FROM {source} OFFSET 0) AS {_qi(alias)}"  # noqa: S608


def _qt(qualified: str) -> str:
    schema, _, name = qualified.partition(".")
    return sql.Identifier(schema, name).as_string(None)


class _Gen:
    """SQL expressions of the synthetic data, all functions of row numbers and the seed."""

    def __init__(self, seed: int, patrons: int, circulations: int, holds: int) -> None:
        # int(): these are the only values from outside that reach the generated SQL
        self.seed = int(seed)
        self.N = int(patrons)
        self.C = int(circulations)
        self.H = int(holds)
        self.R = max(1000, min(20_000, circulations // 50))  # bibs
        self.CN = 2 * self.R  # call numbers: two libraries hold each title
        self.K = 2 * self.CN  # copies: two per call number
        self.G = max(5, circulations // 1000)  # groceries
        #: patrons whose id % tiny_step == 3 live at the tiny branch (at most five)
        self.tiny_step = max(patrons // 4, 5)
        self.n_staff = (patrons - 1) // STAFF_EVERY + 1
        self.salt = 0

    # hashing ------------------------------------------------------------------------
    def h(self, expr: str, salt: int) -> str:
        """A deterministic value in 0 .. 2^31-1 of ``expr`` (a bigint expression)."""
        return (f"(hashint8extended(({expr})::bigint, {self.seed * 1_000_003 + salt})"
                f" & 2147483647)")

    def hex16(self, expr: str, salt: int) -> str:
        """16 hex digits of a hash (for fake password hashes; cheaper than md5)."""
        return (f"to_hex(hashint8extended(({expr})::bigint, {self.seed * 1_000_003 + salt})"
                " | (-9223372036854775807 - 1))")

    def pick(self, expr: str, salt: int, items: Sequence[Any]) -> str:
        return f"({_arr(items)})[1 + {self.h(expr, salt)} % {len(items)}]"

    def pct(self, expr: str, salt: int) -> str:
        """0..99"""
        return f"({self.h(expr, salt)} % 100)"

    def day_time(self, base: str, day: str, var: str, salt: int, start_hour: int,
                 hours: int) -> str:
        """Local timestamp: ``base`` + ``day`` days, at a hashed time of day between
        ``start_hour`` and ``start_hour + hours``."""
        return (f"(TIMESTAMP '{base}' + ({day}) * interval '1 day' "
                f"+ interval '{start_hour} hours' "
                f"+ ({self.h(var, salt)} % {hours * 3600}) * interval '1 second')")

    @staticmethod
    def local(ts_expr: str) -> str:
        """A local wall-clock timestamp as timestamptz (independent of the session)."""
        return f"(({ts_expr}) AT TIME ZONE '{TIMEZONE}')"

    # patrons ------------------------------------------------------------------------
    def is_tiny(self, u: str) -> str:
        return f"(({u}) % {self.tiny_step} = 3)"

    def home_ou(self, u: str) -> str:
        weights = [4, 4, 4, 4, 5, 5, 5, 6, 6, 7]
        return (f"(CASE WHEN {self.is_tiny(u)} THEN {TINY_BRANCH} "
                f"ELSE {self.pick(u, 1, weights)} END)")

    def first_name(self, u: str) -> str:
        return self.pick(u, 2, _FIRST)

    def family_name(self, u: str) -> str:
        return self.pick(u, 3, _FAMILY)

    def dob(self, u: str) -> str:
        # ages 4 to 92 on FIXTURE_NOW
        return f"(DATE '2020-12-31' - ({self.h(u, 4)} % {88 * 365})::integer)"

    def phone(self, u: str, salt: int) -> str:
        return (f"({self.pick(u, salt, _AREA)} || '-555-' || "
                f"lpad(({self.h(u, salt + 1)} % 10000)::text, 4, '0'))")

    def staff(self, expr: str, salt: int) -> str:
        """A staff account id (every STAFF_EVERY-th user)."""
        return f"(1 + {STAFF_EVERY} * ({self.h(expr, salt)} % {self.n_staff}))::integer"

    def eligible(self, day: str) -> str:
        """How many patrons (ids 1..) exist on window day ``day``."""
        return (f"greatest(1, {self.N}::bigint * ({CIRC_OFFSET_DAYS} + ({day})) "
                f"/ {CREATE_SPAN_DAYS})")

    def patron_on(self, n: str, day: str, salt: int) -> str:
        """A patron who existed on ``day``; tiny-branch patrons are rarely picked (one in
        eight of their draws), so the tiny branch has few transactions."""
        u0 = f"(1 + {self.h(n, salt)} % {self.eligible(day)})"
        return (f"(CASE WHEN {self.is_tiny(u0)} AND ({n}) % 8 <> 0 THEN "
                f"CASE WHEN {u0} < {self.N} THEN {u0} + 1 ELSE {u0} - 1 END "
                f"ELSE {u0} END)")

    # items --------------------------------------------------------------------------
    def cn_owning_lib(self, c: str) -> str:
        """The two call numbers of a title (2r-1, 2r) are at two different busy branches;
        one title in 500 is also held by the tiny branch."""
        r = f"((({c}) + 1) / 2)"
        return (f"(CASE WHEN ({c}) % 2 = 0 AND {r} % 500 = 0 THEN {TINY_BRANCH} "
                f"ELSE {MAIN_BRANCHES[0]} + ({r} + (({c}) % 2) * 2) % 4 END)")

    def copy_circ_lib(self, k: str) -> str:
        return self.cn_owning_lib(f"((({k}) + 1) / 2)")

    def copy_modifier(self, k: str) -> str:
        mods = ["BOOK"] * 12 + ["DVD"] * 3 + ["AUDIOBOOK"] * 2 + ["CD"] * 2 + ["MAGAZINE"]
        return self.pick(f"(({k}) + 1) / 2", 30, mods)  # both copies of a call number

    def copy_location(self, k: str, modifier: str) -> str:
        """asset.copy_location id: four shelving locations per branch (see reference)."""
        kind = (f"(CASE WHEN {modifier} IN ('DVD', 'CD') THEN 3 "
                f"ELSE {self.h(f'(({k}) + 1) / 2', 31)} % 3 END)")
        return f"(({self.copy_circ_lib(k)} - {BRANCHES[0]}) * 4 + {kind} + 1)"


# reference rows: (table, columns, rows)
def _reference_rows() -> list[tuple[str, tuple[str, ...], list[tuple[Any, ...]]]]:
    br_names = {4: ("BR1", "Maplewood Public Library"), 5: ("BR2", "Riverton Branch Library"),
                6: ("BR3", "Oak Grove Branch Library"), 7: ("BR4", "Cedar Falls Library"),
                8: ("BR5", "Pine Hollow Reading Room")}
    orgs: list[tuple[Any, ...]] = [
        (1, None, 1, "CONS", "Prairie Library Consortium", None, None),
        (2, 1, 2, "SYS1", "Sangamon Valley Libraries", None, None),
        (3, 1, 2, "SYS2", "Illini Prairie Libraries", None, None),
    ]
    for ou, (short, name) in br_names.items():
        parent = 2 if ou in (4, 5, 6) else 3
        orgs.append((ou, parent, 3, short, name, f"{short.lower()}@library.example.org",
                     f"217-555-01{ou:02d}"))
    org_addr = []
    for ou in range(1, 9):
        city, county, zip3 = _CITIES[max(ou - 4, 0)]
        org_addr.append((ou, True, "MAILING", ou, f"{100 + ou} Library Plaza", city, county,
                         "IL", "USA", f"{zip3}{ou:02d}"))
    locations = []
    for b in BRANCHES:
        for i, name in enumerate(("Stacks", "Adult Fiction", "Children", "Media")):
            locations.append(((b - BRANCHES[0]) * 4 + i + 1, name, b, True, False, True,
                              True, False, False))
    statuses = [
        (0, "Available", True, True, True, False, True, False),
        (1, "Checked out", True, True, True, True, False, False),
        (2, "Bindery", False, True, True, False, False, False),
        (3, "Lost", False, True, False, True, False, False),
        (4, "Missing", False, True, False, False, False, True),
        (5, "In process", True, True, False, False, False, False),
        (6, "In transit", True, True, True, True, False, False),
        (7, "Reshelving", True, True, True, False, True, False),
        (8, "On holds shelf", True, True, True, True, False, False),
        (9, "On order", True, True, False, False, False, False),
        (10, "ILL", False, False, True, False, False, False),
        (11, "Cataloging", False, True, False, False, False, False),
        (12, "Reserves", False, True, True, False, False, False),
        (13, "Discard/Weed", False, False, False, False, False, False),
        (14, "Damaged", False, False, False, False, False, False),
        (15, "On reservation shelf", False, False, True, False, False, False),
        (16, "Long Overdue", False, True, False, True, False, False),
        (17, "Lost and Paid", False, True, False, False, False, False),
    ]
    return [
        ("acq.fiscal_calendar", ("id", "name"), [(1, "Default")]),
        ("actor.org_unit_type",
         ("id", "name", "opac_label", "depth", "parent", "can_have_vols", "can_have_users"),
         [(1, "Consortium", "Everywhere", 0, None, False, False),
          (2, "System", "Local Library System", 1, 1, False, False),
          (3, "Branch", "This Branch", 2, 2, True, True)]),
        ("actor.org_address",
         ("id", "valid", "address_type", "org_unit", "street1", "city", "county", "state",
          "country", "post_code"), org_addr),
        ("actor.org_unit",
         ("id", "parent_ou", "ou_type", "shortname", "name", "email", "phone",
          "ill_address", "holds_address", "mailing_address", "billing_address",
          "opac_visible", "staff_catalog_visible", "fiscal_calendar"),
         [(*o, o[0], o[0], o[0], o[0], True, True, 1) for o in orgs]),
        ("permission.grp_tree",
         ("id", "name", "parent", "usergroup", "perm_interval", "description",
          "application_perm", "hold_priority", "mfa_allowed", "mfa_required", "erenew"),
         [(gid, name, parent, True, "3 years", desc, app, 0, staff, False, not staff)
          for gid, name, parent, desc, app, staff in (
              (1, "Users", None, "Root of the group tree", None, False),
              (2, "Patrons", 1, "Library patrons", None, False),
              (3, "Staff", 1, "Library staff", "group_application.user.staff", True),
              (4, "Circulators", 3, "Circulation staff",
               "group_application.user.staff.circ", True),
              (5, "Catalogers", 3, "Cataloging staff", "group_application.user.staff.cat",
               True),
              (6, "Adult", 2, "Adult patrons", "group_application.user.patron", False),
              (7, "Juvenile", 2, "Patrons under 18", "group_application.user.patron", False),
              (8, "Senior", 2, "Patrons 65 and over", "group_application.user.patron",
               False))]),
        ("config.identification_type", ("id", "name"),
         [(1, "Drivers License"), (2, "SSN"), (3, "Other")]),
        ("config.net_access_level", ("id", "name"),
         [(1, "Filtered"), (2, "Unfiltered"), (3, "No Access")]),
        ("config.standing", ("id", "value"), [(1, "Good"), (2, "Barred")]),
        ("config.i18n_locale", ("code", "marc_code", "name", "description", "rtl",
                                "staff_client"),
         [("en-US", "eng", "English (US)", "American English", False, True)]),
        ("actor.passwd_type", ("code", "name", "login", "regex", "crypt_algo", "iter_count"),
         [("main", "OPAC/Staff Client User Password", True, None, "bf", 10)]),
        ("actor.workstation", ("id", "name", "owning_lib"),
         [(b - BRANCHES[0] + 1, f"{br_names[b][0]}-circ1", b) for b in BRANCHES]),
        ("config.copy_status",
         ("id", "name", "holdable", "opac_visible", "copy_active", "restrict_copy_delete",
          "is_available", "hopeless_prone"), statuses),
        ("asset.copy_location",
         ("id", "name", "owning_lib", "holdable", "hold_verify", "opac_visible", "circulate",
          "checkin_alert", "deleted"), locations),
        ("config.circ_modifier",
         ("code", "name", "description", "sip2_media_type", "magnetic_media"),
         [("BOOK", "Book", "Book", "001", False), ("DVD", "DVD", "Video disc", "006", False),
          ("AUDIOBOOK", "Audiobook", "Audiobook on CD", "007", False),
          ("CD", "Music CD", "Music CD", "007", False),
          ("MAGAZINE", "Magazine", "Magazine issue", "003", False)]),
        ("asset.call_number_prefix", ("id", "owning_lib", "label", "label_sortkey"),
         [(-1, 1, "", "")]),
        ("asset.call_number_suffix", ("id", "owning_lib", "label", "label_sortkey"),
         [(-1, 1, "", "")]),
        ("asset.call_number_class", ("id", "name", "normalizer", "field"),
         [(1, "Generic", "asset.label_normalizer_generic",
           "050ab,055ab,060ab,070ab,080ab,082ab,086ab,088ab,090,092,096,098,099"),
          (2, "Dewey (DDC)", "asset.label_normalizer_dewey", "080ab,082ab,092abef"),
          (3, "Library of Congress (LC)", "asset.label_normalizer_lc", "050ab,055ab,090abef")]),
        ("config.rule_circ_duration",
         ("id", "name", "extended", "normal", "shrt", "max_renewals", "max_auto_renewals"),
         [(1, "default", "21 days", "14 days", "7 days", 2, None),
          (2, "7_days_2_renew", "7 days", "7 days", "7 days", 2, None),
          (3, "14_days_2_renew", "14 days", "14 days", "14 days", 2, None),
          (4, "21_days_2_renew", "21 days", "21 days", "21 days", 2, None)]),
        ("config.rule_recurring_fine",
         ("id", "name", "high", "normal", "low", "recurrence_interval", "grace_period"),
         [(1, "default", 0.50, 0.10, 0.05, "1 day", "1 day"),
          (2, "10_cent_per_day", 0.10, 0.10, 0.10, "1 day", "1 day"),
          (3, "1_dollar_per_day", 1.00, 1.00, 1.00, "1 day", "1 day")]),
        ("config.rule_max_fine", ("id", "name", "amount", "is_percent"),
         [(1, "default", 5.00, False), (2, "overdue_min", 5.00, False),
          (3, "overdue_mid", 10.00, False), (4, "overdue_max", 100.00, False)]),
        ("config.hold_type", ("id", "hold_type", "description"),
         [(1, "M", "Metarecord"), (2, "T", "Title"), (3, "V", "Volume"), (4, "I", "Issuance"),
          (5, "C", "Copy"), (6, "F", "Force"), (7, "R", "Recall"), (8, "P", "Part")]),
        ("action.hold_request_cancel_cause", ("id", "label", "manual"),
         [(1, "Untargeted expiration", False), (2, "Hold Shelf expiration", False),
          (3, "Patron via phone", True), (4, "Patron in person", True),
          (5, "Staff forced", True), (6, "Patron via OPAC", False),
          (7, "Patron via SIP", False)]),
        ("config.billing_type", ("id", "name", "owner", "default_price"),
         [(1, "Overdue Materials", 1, None), (2, "Long Overdue Collection Fee", 1, 10.00),
          (3, "Lost Materials", 1, None), (4, "Lost Materials Processing Fee", 1, None),
          (101, "Misc", 1, None)]),
        ("container.biblio_record_entry_bucket_type", ("code", "label"),
         [("misc", "Miscellaneous"), ("staff_client", "General Staff Client container"),
          ("bookbag", "Book Bag"), ("reading_list", "Reading List")]),
    ]


class _Filler:
    def __init__(self, conn: psycopg.Connection, g: _Gen,
                 progress: ProgressFn | None) -> None:
        self.conn = conn
        self.g = g
        self.progress = progress
        self.counts: dict[str, int] = {}
        self.columns: dict[str, tuple[list[str], set[str]]] = {}
        self.types: dict[tuple[str, str], str] = {}
        self.fks: list[tuple[str, str, str]] = []
        self.indexes: list[tuple[str, str]] = []
        self.uniques: list[tuple[str, str, str]] = []
        self.timings: dict[str, float] = {}

    def load_columns(self, tables: Iterable[str]) -> None:
        rows = self.conn.execute(
            """SELECT format('%%s.%%s', n.nspname, c.relname), a.attname, a.attnotnull,
                      format_type(a.atttypid, a.atttypmod)
               FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE a.attnum > 0 AND NOT a.attisdropped
                 AND format('%%s.%%s', n.nspname, c.relname) = ANY(%s)
               ORDER BY 1, a.attnum""", (list(tables),)).fetchall()
        for table, col, notnull, typ in rows:
            cols, nn = self.columns.setdefault(table, ([], set()))
            cols.append(col)
            if notnull:
                nn.add(col)
            self.types[(table, col)] = typ

    def insert(self, table: str, values: dict[str, str], from_sql: str) -> int:
        """``INSERT INTO table (cols) SELECT exprs FROM from_sql``, after checking every
        NOT NULL column of the live table gets a value."""
        cols, notnull = self.columns[table]
        unknown = set(values) - set(cols)
        if unknown:
            raise ValueError(f"fixture bug: {table} has no column {sorted(unknown)}")
        missing = notnull - set(values)
        if missing:
            raise ValueError(f"fixture bug: {table}: NOT NULL columns without a value: "
                             f"{sorted(missing)}")
        ordered = [c for c in cols if c in values]
        # every fragment is generated in this module from constants and the int() sizes
        # and seed of fill(): no text from outside reaches the query
        query = (f"INSERT INTO {_qt(table)} ({', '.join(map(_qi, ordered))}) SELECT "  # noqa: S608
                 + ", ".join(values[c] for c in ordered) + f" FROM {from_sql}")
        cur = self.conn.execute(query)
        n = max(cur.rowcount, 0)
        self.counts[table] = self.counts.get(table, 0) + n
        return n

    def insert_rows(self, table: str, columns: Sequence[str],
                    rows: Sequence[Sequence[Any]]) -> int:
        values_sql = ", ".join("(" + ", ".join(_lit(v) for v in row) + ")" for row in rows)
        exprs = {c: f"v.{_qi(c)}::{self.types[(table, c)]}" for c in columns}
        alias = ", ".join(map(_qi, columns))
        return self.insert(table, exprs, f"(VALUES {values_sql}) AS v({alias})")


#: seconds per stage of the last ``fill`` (for benchmarks)
LAST_TIMINGS: dict[str, float] = {}

#: the tables ``fill`` writes (their foreign keys are dropped and re-added around the load)
FILLED_TABLES = (
    "acq.fiscal_calendar", "actor.org_unit_type", "actor.org_address", "actor.org_unit",
    "permission.grp_tree", "config.identification_type", "config.net_access_level",
    "config.standing", "config.i18n_locale", "actor.passwd_type", "actor.workstation",
    "config.copy_status", "asset.copy_location", "config.circ_modifier",
    "asset.call_number_prefix", "asset.call_number_suffix", "asset.call_number_class",
    "config.rule_circ_duration", "config.rule_recurring_fine", "config.rule_max_fine",
    "config.hold_type", "action.hold_request_cancel_cause", "config.billing_type",
    "container.biblio_record_entry_bucket_type",
    "actor.usr", "actor.card", "actor.usr_address", "actor.passwd",
    "biblio.record_entry", "asset.call_number", "asset.copy",
    "action.circulation", "action.hold_request", "money.grocery", "money.billing",
    "action.aged_circulation", "action.usr_circ_history", "auditor.actor_usr_history",
    "container.biblio_record_entry_bucket", "container.biblio_record_entry_bucket_item",
    "actor.usr_saved_search",
)


def fill(conn: psycopg.Connection, *, patrons: int = 10_000, circulations: int = 100_000,
         holds: int | None = None, seed: int = 1,
         progress: ProgressFn | None = None) -> dict[str, int]:
    """Deterministic synthetic data; returns row counts per table filled.

    Expects the empty tables of ``build_schema``.  Primary keys are dense from 1 (patron
    ids are 1..patrons; the staff accounts are among them: every ``STAFF_EVERY``-th
    user, starting with user 1).  Foreign keys of the filled tables are dropped during
    the load and re-added at the end, which validates every row; their plain indexes
    and the unique constraints no foreign key needs are dropped and rebuilt the same way
    (a sorted build is much faster than a million random inserts).  Nothing is
    committed here; on an autocommit connection the whole load is one transaction.

    Sizes derived from ``circulations``: ``max(1000, min(20000, circulations // 50))``
    bibliographic records, two call numbers per record, two copies per call number,
    ``max(5, circulations // 1000)`` groceries.
    """
    if patrons < 1 or circulations < 0:
        raise ValueError("fill needs at least one patron and a non-negative circulation count")
    holds = circulations // 10 if holds is None else holds
    g = _Gen(seed, patrons, circulations, holds)
    f = _Filler(conn, g, progress)
    stages: list[tuple[str, Callable[[], None]]] = [
        ("prepare", lambda: _prepare(f)),
        ("reference data", lambda: _fill_reference(f)),
        ("patrons", lambda: _fill_patrons(f)),
        ("cards", lambda: _fill_cards(f)),
        ("addresses", lambda: _fill_addresses(f)),
        ("passwords", lambda: _fill_passwords(f)),
        ("bibliographic records", lambda: _fill_bibs(f)),
        ("call numbers", lambda: _fill_call_numbers(f)),
        ("circulations", lambda: _fill_circulations(f)),
        ("holds", lambda: _fill_holds(f)),
        ("copies", lambda: _fill_copies(f)),
        ("money", lambda: _fill_money(f)),
        ("patron history", lambda: _fill_history(f)),
        ("lists and saved searches", lambda: _fill_lists(f)),
        ("indexes", lambda: _restore_indexes(f)),
        # statistics first, so the validation queries of the foreign keys use them
        ("analyze", lambda: _analyze(f)),
        ("foreign keys", lambda: _restore_foreign_keys(f)),
    ]
    with conn.transaction() if conn.autocommit else nullcontext():
        for i, (label, fn) in enumerate(stages):
            if progress:
                progress(label, i, len(stages))
            t0 = time.perf_counter()
            fn()
            f.timings[label] = time.perf_counter() - t0
            log.debug("fill: %s %.2fs", label, f.timings[label])
        if progress:
            progress("done", len(stages), len(stages))
    LAST_TIMINGS.clear()
    LAST_TIMINGS.update(f.timings)
    return dict(f.counts)


def _prepare(f: _Filler) -> None:
    conn = f.conn
    # fill always runs inside a transaction, so these end with it
    conn.execute("SELECT set_config('work_mem', '256MB', true), "
                 "set_config('maintenance_work_mem', '512MB', true)")
    f.load_columns(FILLED_TABLES)
    absent = [t for t in FILLED_TABLES if t not in f.columns]
    if absent:
        raise ValueError(f"not an Evergreen fixture schema: missing {', '.join(absent)} "
                         "(run build_schema first)")
    # foreign keys of the filled tables: drop now, re-add (and so validate) at the end
    f.fks = conn.execute(
        """SELECT format('%%I.%%I', n.nspname, c.relname), con.conname,
                  pg_get_constraintdef(con.oid)
           FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE con.contype = 'f' AND format('%%s.%%s', n.nspname, c.relname) = ANY(%s)
           ORDER BY con.oid""", (list(FILLED_TABLES),)).fetchall()
    # plain indexes (not those of primary keys and unique constraints, which other
    # tables' foreign keys need): drop now, build by sorting at the end
    f.indexes = conn.execute(
        """SELECT format('%%I.%%I', n.nspname, ic.relname), pg_get_indexdef(i.indexrelid)
           FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
           JOIN pg_class c ON c.oid = i.indrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE format('%%s.%%s', n.nspname, c.relname) = ANY(%s)
             AND NOT EXISTS (SELECT 1 FROM pg_constraint con
                             WHERE con.conindid = i.indexrelid)
           ORDER BY i.indexrelid""", (list(FILLED_TABLES),)).fetchall()
    # unique constraints no foreign key depends on (actor.usr(usrname)...): the same
    f.uniques = conn.execute(
        """SELECT format('%%I.%%I', n.nspname, c.relname), con.conname,
                  pg_get_constraintdef(con.oid)
           FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE con.contype = 'u' AND format('%%s.%%s', n.nspname, c.relname) = ANY(%s)
             AND NOT EXISTS (SELECT 1 FROM pg_constraint fk
                             WHERE fk.contype = 'f' AND fk.conindid = con.conindid)
           ORDER BY con.oid""", (list(FILLED_TABLES),)).fetchall()
    drops = [f"ALTER TABLE {t} DROP CONSTRAINT {_qi(name)}"
             for t, name, _ in [*f.fks, *f.uniques]]
    drops += [f"DROP INDEX {name}" for name, _ in f.indexes]
    if drops:
        conn.execute(";\n".join(drops))


def _restore_indexes(f: _Filler) -> None:
    for t, name, definition in f.uniques:
        f.conn.execute(
            f"ALTER TABLE {t} ADD CONSTRAINT {_qi(name)} {definition}")
    for _, definition in f.indexes:
        f.conn.execute(definition)


def _restore_foreign_keys(f: _Filler) -> None:
    by_table: dict[str, list[str]] = {}
    for t, name, definition in f.fks:
        by_table.setdefault(t, []).append(f"ADD CONSTRAINT {_qi(name)} {definition}")
    for t, clauses in by_table.items():
        f.conn.execute(f"ALTER TABLE {t} " + ", ".join(clauses))


def _analyze(f: _Filler) -> None:
    tables = [t for t in FILLED_TABLES if f.counts.get(t)] + ["money.billable_xact"]
    f.conn.execute("ANALYZE " + ", ".join(_qt(t) for t in tables))


def _fill_reference(f: _Filler) -> None:
    for table, cols, rows in _reference_rows():
        f.insert_rows(table, cols, rows)


def _fill_patrons(f: _Filler) -> None:
    g = f.g
    n = "s.n"
    # registration dates grow with the id, over six years
    created = g.day_time(CREATE_START, f"(n - 1) * {CREATE_SPAN_DAYS} / {g.N}", "n", 5, 9, 11)
    names = _derived("s0", {"fn": g.first_name("n"), "ln": g.family_name("n"),
                            "dob": g.dob("n"), "home_ou": g.home_ou("n"), "created": created},
                     f"generate_series(1::bigint, {g.N}) AS n", keep="n")
    # the family name as it goes into user names and e-mail addresses (no apostrophes)
    inner = _derived("s", {"handle": "lower(translate(s0.ln, chr(39), ''))",
                           "created_tz": g.local("s0.created")}, names, keep="s0.*")
    juvenile = "(s.dob > DATE '2006-12-31')"
    profile = (f"(CASE WHEN s.n % {STAFF_EVERY} = 1 THEN 4 + {g.h(n, 6)} % 2 "
               f"WHEN {juvenile} THEN 7 "
               f"WHEN s.dob <= DATE '1959-12-31' AND {g.h(n, 7)} % 2 = 0 THEN 8 "
               f"WHEN {g.h(n, 7)} % 20 = 1 THEN 2 ELSE 6 END)")
    email_domain = g.pick(n, 8, ["example.com", "example.net", "example.org", "mail.example.com"])
    values = {
        "id": "s.n::integer",
        "card": "s.n::integer",
        "profile": profile,
        "usrname": "lower(left(s.fn, 1)) || s.handle || s.n",
        "email": (f"CASE WHEN {g.pct(n, 9)} < 85 THEN lower(s.fn) || '.' || s.handle "
                  f"|| s.n || '@' || {email_domain} END"),
        "passwd": f"{g.hex16(n, 32)} || {g.hex16(n, 33)}",  # an old-style md5-like hash
        "standing": "1",
        "ident_type": f"(CASE WHEN {g.pct(n, 10)} < 60 THEN 1 ELSE 3 END)",
        "ident_value": (f"CASE WHEN {g.pct(n, 10)} < 60 THEN upper(left(s.ln, 1)) || "
                        f"lpad(({g.h(n, 11)} % 1000000000)::text, 11, '0') END"),
        "net_access_level": "1",
        "prefix": f"CASE WHEN {g.pct(n, 12)} < 2 THEN 'Dr.' END",
        "first_given_name": "s.fn",
        "second_given_name": f"CASE WHEN {g.pct(n, 13)} < 55 THEN {g.pick(n, 14, _FIRST)} END",
        "family_name": "s.ln",
        "suffix": f"CASE WHEN {g.pct(n, 15)} < 3 THEN {g.pick(n, 16, ['Jr.', 'Sr.', 'III'])} END",
        "guardian": (f"CASE WHEN {juvenile} THEN {g.pick(n, 17, _FIRST)} || ' ' || s.ln END"),
        "pref_first_given_name": f"CASE WHEN {g.pct(n, 18)} < 5 THEN {g.pick(n, 19, _NICK)} END",
        "day_phone": f"CASE WHEN {g.pct(n, 20)} < 80 THEN {g.phone(n, 21)} END",
        "evening_phone": f"CASE WHEN {g.pct(n, 23)} < 30 THEN {g.phone(n, 24)} END",
        "other_phone": f"CASE WHEN {g.pct(n, 26)} < 5 THEN {g.phone(n, 27)} END",
        "mailing_address": "s.n::integer",
        "billing_address": f"(CASE WHEN s.n % 5 = 0 THEN {g.N} + s.n / 5 ELSE s.n END)::integer",
        "home_ou": "s.home_ou",
        "dob": "s.dob",
        "active": f"({g.pct(n, 29)} >= 3)",
        "master_account": "false",
        "super_user": "false",
        "barred": f"({g.h(n, 30)} % 200 = 0)",
        "deleted": "false",
        "juvenile": juvenile,
        "usrgroup": "s.n::integer",
        "claims_returned_count": "0",
        "credit_forward_balance": "0.00",
        "last_xact_id": "'none'",
        "create_date": "s.created_tz",
        "expire_date": "s.created_tz + interval '3 years'",
        "claims_never_checked_out_count": "0",
        "last_update_time": g.local(
            f"least(s.created + ({g.h(n, 31)} % 400) * interval '1 day', "
            f"TIMESTAMP '{FIXTURE_NOW}' - interval '1 hour')"),
        "locale": "'en-US'",
    }
    f.insert("actor.usr", values, inner)


def _fill_cards(f: _Filler) -> None:
    g = f.g
    f.insert("actor.card", {
        "id": "n::integer", "usr": "n::integer",
        "barcode": "'2' || lpad(n::text, 13, '0')", "active": "true",
    }, f"generate_series(1::bigint, {g.N}) AS n")
    # an old, replaced card for every tenth patron
    f.insert("actor.card", {
        "id": f"({g.N} + k)::integer", "usr": "(10 * k)::integer",
        "barcode": f"'2' || lpad(({g.N} + k)::text, 13, '0')", "active": "false",
    }, f"generate_series(1::bigint, {g.N // 10}) AS k")


def _address_values(g: _Gen, u: str, a: str, kind: str) -> dict[str, str]:
    """Address ``a`` (id expression) of patron ``u``."""
    city_idx = (f"(CASE WHEN {g.pct(a, 40)} < 85 THEN {g.home_ou(u)} - {BRANCHES[0]} "
                f"ELSE {g.h(a, 41)} % 4 END)")
    cities = [c[0] for c in _CITIES]
    counties = [c[1] for c in _CITIES]
    zips = [c[2] for c in _CITIES]
    return {
        "id": f"({a})::integer",
        "valid": "true",
        "within_city_limits": f"({g.pct(a, 42)} < 75)",
        "address_type": _lit(kind),
        "usr": f"({u})::integer",
        "street1": (f"(100 + {g.h(a, 43)} % 9900)::text || ' ' || {g.pick(a, 44, _STREET)} "
                    f"|| ' ' || {g.pick(a, 45, _STREET_KIND)}"),
        "street2": f"CASE WHEN {g.pct(a, 46)} < 15 THEN 'Apt ' || (1 + {g.h(a, 47)} % 40) END",
        "city": f"({_arr(cities)})[1 + {city_idx}]",
        "county": f"({_arr(counties)})[1 + {city_idx}]",
        "state": "'IL'",
        "country": "'USA'",
        "post_code": (f"({_arr(zips)})[1 + {city_idx}] || lpad(({g.h(a, 48)} % 100)::text, 2, '0')"
                      f" || CASE WHEN {g.pct(a, 49)} < 20 THEN '-' || "
                      f"lpad(({g.h(a, 50)} % 10000)::text, 4, '0') ELSE '' END"),
        "pending": "false",
    }


def _fill_addresses(f: _Filler) -> None:
    g = f.g
    f.insert("actor.usr_address", _address_values(g, "n", "n", "MAILING"),
             f"generate_series(1::bigint, {g.N}) AS n")
    # every fifth patron has a separate billing address
    f.insert("actor.usr_address", _address_values(g, "5 * k", f"{g.N} + k", "BILLING"),
             f"generate_series(1::bigint, {g.N // 5}) AS k")


def _fill_passwords(f: _Filler) -> None:
    g = f.g
    salt = f"'$2a$10$' || left({g.hex16('u.id', 140)} || {g.hex16('u.id', 141)}, 22)"
    f.insert("actor.passwd", {
        "id": "u.id", "usr": "u.id",
        # shaped like a bcrypt hash: $2a$10$ + 22 characters of salt + 31 of hash
        "passwd": (f"{salt} || left({g.hex16('u.id', 142)} || {g.hex16('u.id', 143)}, 31)"),
        "passwd_type": "'main'", "salt": salt,
        "create_date": "u.create_date", "edit_date": "u.create_date",
    }, "actor.usr AS u")


def _fill_bibs(f: _Filler) -> None:
    g = f.g
    r = "s.r"
    year = f"(1950 + {g.h(r, 60)} % 74)"
    marc = (
        "'<record xmlns=\"http://www.loc.gov/MARC21/slim\"><leader>00000nam a2200000 a 4500"
        "</leader><controlfield tag=\"001\">' || s.r || '</controlfield>"
        "<controlfield tag=\"008\">' || '240101s' || " + year + " || "
        "'    ilu           000 1 eng d</controlfield>"
        "<datafield tag=\"020\" ind1=\" \" ind2=\" \"><subfield code=\"a\">978' || "
        f"lpad(({g.h(r, 61)} % 1000000000)::text, 10, '0') || '</subfield></datafield>"
        "<datafield tag=\"100\" ind1=\"1\" ind2=\" \"><subfield code=\"a\">' || s.author || "
        "'</subfield></datafield><datafield tag=\"245\" ind1=\"1\" ind2=\"4\">"
        "<subfield code=\"a\">' || s.title || '</subfield></datafield>"
        "<datafield tag=\"264\" ind1=\" \" ind2=\"1\"><subfield code=\"b\">Prairie Press"
        "</subfield><subfield code=\"c\">' || " + year + " || '</subfield></datafield>"
        "<datafield tag=\"650\" ind1=\" \" ind2=\"0\"><subfield code=\"a\">' || "
        + g.pick(r, 62, _SUBJECTS) + " || '</subfield></datafield></record>'"
    )
    created = g.day_time("2015-01-01", f"(s.r - 1) * 2900 / {g.R}", "s.r", 68, 9, 8)
    inner = _derived("s", {
        "title": f"'The ' || {g.pick('r', 63, _ADJ)} || ' ' || {g.pick('r', 64, _NOUN)}",
        "author": f"{g.pick('r', 65, _FAMILY)} || ', ' || {g.pick('r', 66, _FIRST)}",
    }, f"generate_series(1::bigint, {g.R}) AS r", keep="r")
    f.insert("biblio.record_entry", {
        "id": "s.r", "creator": "1", "editor": "1",
        "create_date": g.local(created),
        "edit_date": g.local(created + f" + ({g.h(r, 67)} % 300) * interval '1 day'"),
        "active": "true", "deleted": "false", "tcn_source": "'AUTOGEN'",
        "tcn_value": "'fx' || lpad(s.r::text, 8, '0')", "marc": marc,
        "last_xact_id": "'none'",
    }, inner)


def _fill_call_numbers(f: _Filler) -> None:
    g = f.g
    c = "c"
    r = "((c + 1) / 2)"
    cn_created = g.day_time("2015-06-01", f"{r} * 2900 / {g.R}", r, 112, 9, 8)
    f.insert("asset.call_number", {
        "id": "c", "creator": "1", "editor": "1", "record": r,
        "create_date": g.local(cn_created), "edit_date": g.local(cn_created),
        "owning_lib": g.cn_owning_lib(c),
        "label": (f"lpad(({g.h(r, 70)} % 1000)::text, 3, '0') || '.' || "
                  f"lpad(({g.h(r, 71)} % 100)::text, 2, '0') || ' ' || "
                  f"upper(left({g.pick(r, 65, _FAMILY)}, 3))"),
        "deleted": "false", "prefix": "-1", "suffix": "-1", "label_class": "2",
    }, f"generate_series(1::bigint, {g.CN}) AS c")


def _circ_day(g: _Gen, n: str, total: int) -> str:
    return f"((({n}) - 1) * {CIRC_SPAN_DAYS} / {max(total, 1)})"


def _loan_days(modifier: str) -> str:
    """Loan period in days by circulation modifier (config.rule_circ_duration)."""
    return (f"(CASE {modifier} WHEN 'BOOK' THEN 21 WHEN 'AUDIOBOOK' THEN 14 "
            "WHEN 'CD' THEN 14 ELSE 7 END)")


def _fill_circulations(f: _Filler) -> None:
    g = f.g
    if g.C == 0:
        return
    day = _circ_day(g, "n", g.C)
    # level 1: per row number, the day, the patron (who existed then) and the item
    lvl1 = _derived("s1", {"day": day, "usr": g.patron_on("n", day, 80),
                           "copy": f"(1 + {g.h('n', 81)} % {g.K})"},
                    f"generate_series(1::bigint, {g.C}) AS n", keep="n")
    # level 2: when, where, what kind of item, what happens to it
    lvl2 = _derived("s2", {
        "start": g.day_time(CIRC_START, "s1.day", "s1.n", 82, 9, 11),
        "lib": (f"CASE WHEN {g.pct('s1.n', 83)} < 85 THEN {g.home_ou('s1.usr')} "
                f"ELSE {g.copy_circ_lib('s1.copy')} END"),
        "modifier": g.copy_modifier("s1.copy"),
        "fate": g.pct("s1.n", 85),
    }, lvl1, keep="s1.n, s1.usr, s1.copy")
    # level 3: due date and return: one in eight comes back 1-20 days late, the others
    # within the loan period
    loan = _loan_days("s2.modifier")
    kept = (f"(CASE WHEN s2.fate BETWEEN 1 AND 12 THEN {loan} + 1 + {g.h('s2.n', 84)} % 20 "
            f"ELSE 1 + {g.h('s2.n', 84)} % {loan} END)")
    lvl3 = _derived("s3", {
        "loan": loan,
        "due": (f"date_trunc('day', s2.start) + {loan} * interval '1 day' "
                "+ interval '23 hours 59 minutes 59 seconds'"),
        "back": (f"s2.start + {kept} * interval '1 day' "
                 f"+ ({g.h('s2.n', 86)} % 28800) * interval '1 second'"),
    }, lvl2, keep="s2.*")
    # level 4: open (not back by FIXTURE_NOW, or one in a hundred never returned: long
    # overdue) and the times as timestamptz
    lvl4 = _derived("s", {
        "is_open": f"(s3.back >= TIMESTAMP '{FIXTURE_NOW}' OR s3.fate = 0)",
        "start_tz": g.local("s3.start"), "due_tz": g.local("s3.due"),
        "back_tz": g.local("s3.back"),
    }, lvl3, keep="s3.*")
    is_open = "s.is_open"
    checkin = f"CASE WHEN NOT {is_open} THEN s.back_tz END"
    book = "s.modifier IN ('BOOK', 'AUDIOBOOK', 'CD')"
    ws = f"(s.lib - {BRANCHES[0] - 1})::integer"
    f.insert("action.circulation", {
        "id": "s.n",
        "usr": "s.usr::integer",
        "xact_start": "s.start_tz",
        "xact_finish": checkin,
        "target_copy": "s.copy",
        "circ_lib": "s.lib::integer",
        "circ_staff": g.staff("s.n", 87),
        "checkin_staff": f"CASE WHEN NOT {is_open} THEN {g.staff('s.n', 88)} END",
        "checkin_lib": f"CASE WHEN NOT {is_open} THEN s.lib::integer END",
        "renewal_remaining": "2",
        "grace_period": "interval '1 day'",
        "due_date": "s.due_tz",
        "stop_fines_time": checkin,
        "checkin_time": checkin,
        "create_time": "s.start_tz",
        "duration": "s.loan * interval '1 day'",
        "fine_interval": "interval '1 day'",
        "recurring_fine": f"CASE WHEN {book} THEN 0.10 ELSE 1.00 END",
        "max_fine": f"CASE WHEN {book} THEN 5.00 ELSE 10.00 END",
        "phone_renewal": "false", "desk_renewal": "false", "opac_renewal": "false",
        "duration_rule": ("CASE s.loan WHEN 21 THEN '21_days_2_renew' "
                          "WHEN 14 THEN '14_days_2_renew' ELSE '7_days_2_renew' END"),
        "recurring_fine_rule": (f"CASE WHEN {book} THEN '10_cent_per_day' "
                                "ELSE '1_dollar_per_day' END"),
        "max_fine_rule": f"CASE WHEN {book} THEN 'overdue_min' ELSE 'overdue_mid' END",
        "stop_fines": f"CASE WHEN NOT {is_open} THEN 'CHECKIN' END",
        "workstation": ws,
        "checkin_workstation": f"CASE WHEN NOT {is_open} THEN {ws} END",
        "copy_location": g.copy_location("s.copy", "s.modifier"),
        "checkin_scan_time": checkin,
        "auto_renewal": "false",
    }, lvl4)


def _fill_holds(f: _Filler) -> None:
    g = f.g
    if g.H == 0:
        return
    day = _circ_day(g, "n", g.H)
    lvl1 = _derived("s1", {
        "usr": g.patron_on("n", day, 90),
        "req": g.day_time(CIRC_START, day, "n", 91, 8, 14),
        "kind": g.pct("n", 92), "fate": g.pct("n", 93),
    }, f"generate_series(1::bigint, {g.H}) AS n", keep="n")
    lvl2 = _derived("s2", {
        "pickup": (f"CASE WHEN {g.pct('s1.n', 94)} < 90 THEN {g.home_ou('s1.usr')} "
                   f"ELSE {MAIN_BRANCHES[0]} + {g.h('s1.n', 95)} % 4 END"),
        "captured": f"s1.req + (1 + {g.h('s1.n', 96)} % 20) * interval '1 day'",
        "canceled": f"s1.req + (1 + {g.h('s1.n', 97)} % 30) * interval '1 day'",
    }, lvl1, keep="s1.*")
    lvl3 = _derived("s", {
        "fulfilled": (f"s2.captured + ({g.h('s2.n', 98)} % 7) * interval '1 day' "
                      "+ interval '3 hours'"),
    }, lvl2, keep="s2.*")
    filled = f"(s.fate < 60 AND s.fulfilled < TIMESTAMP '{FIXTURE_NOW}')"
    canceled = f"(s.fate BETWEEN 60 AND 74 AND s.canceled < TIMESTAMP '{FIXTURE_NOW}')"
    captured = f"(s.fate < 60 AND s.captured < TIMESTAMP '{FIXTURE_NOW}')"
    hold_type = "(CASE WHEN s.kind < 80 THEN 'T' WHEN s.kind < 92 THEN 'C' ELSE 'V' END)"
    f.insert("action.hold_request", {
        "id": "s.n::integer",
        "request_time": g.local("s.req"),
        "capture_time": f"CASE WHEN {captured} THEN {g.local('s.captured')} END",
        "fulfillment_time": f"CASE WHEN {filled} THEN {g.local('s.fulfilled')} END",
        "checkin_time": f"CASE WHEN {captured} THEN {g.local('s.captured')} END",
        "shelf_time": f"CASE WHEN {captured} THEN {g.local('s.captured')} END",
        "expire_time": g.local("s.req + interval '1 year'"),
        "cancel_time": f"CASE WHEN {canceled} THEN {g.local('s.canceled')} END",
        "cancel_cause": f"CASE WHEN {canceled} THEN 1 + {g.h('s.n', 99)} % 7 END",
        "target": (f"CASE WHEN s.kind < 80 THEN 1 + {g.h('s.n', 100)} % {g.R} "
                   f"WHEN s.kind < 92 THEN 1 + {g.h('s.n', 100)} % {g.K} "
                   f"ELSE 1 + {g.h('s.n', 100)} % {g.CN} END"),
        "current_copy": f"CASE WHEN {captured} THEN 1 + {g.h('s.n', 101)} % {g.K} END",
        "fulfillment_staff": f"CASE WHEN {filled} THEN {g.staff('s.n', 102)} END",
        "fulfillment_lib": f"CASE WHEN {filled} THEN s.pickup::integer END",
        "request_lib": "s.pickup::integer",
        "requestor": f"CASE WHEN {g.pct('s.n', 103)} < 90 THEN s.usr::integer "
                     f"ELSE {g.staff('s.n', 104)} END",
        "usr": "s.usr::integer",
        "selection_ou": "s.pickup::integer",
        "selection_depth": "0",
        "pickup_lib": "s.pickup::integer",
        "hold_type": hold_type,
        "phone_notify": f"CASE WHEN {g.pct('s.n', 105)} < 40 THEN {g.phone('s.usr', 21)} END",
        "email_notify": f"({g.pct('s.n', 106)} < 70)",
        "frozen": "false",
        "mint_condition": "false",
        "current_shelf_lib": f"CASE WHEN {captured} AND NOT {filled} THEN s.pickup::integer END",
        "behind_desk": "false",
    }, lvl3)


_OPEN_COPIES = ("(SELECT DISTINCT target_copy FROM action.circulation "
                "WHERE checkin_time IS NULL)")


def _fill_copies(f: _Filler) -> None:
    g = f.g
    k = "k.k"
    created = g.day_time("2015-06-01", f"(({k}) + 3) / 4 * 2900 / {g.R}", "(k.k + 3) / 4", 112,
                         9, 8)
    f.insert("asset.copy", {
        "id": k,
        "circ_lib": g.copy_circ_lib(k),
        "creator": "1", "editor": "1",
        "call_number": f"(({k}) + 1) / 2",
        "create_date": g.local(created), "edit_date": g.local(created),
        "copy_number": f"(2 - ({k}) % 2)",
        "status": f"(CASE WHEN oc.target_copy IS NOT NULL THEN 1 "
                  f"WHEN {g.pct(k, 110)} < 2 THEN 7 ELSE 0 END)",
        "location": g.copy_location(k, g.copy_modifier(k)),
        "loan_duration": "2", "fine_level": "2",
        "circulate": "true", "deposit": "false", "ref": "false", "holdable": "true",
        "deposit_amount": "0.00",
        "price": f"(5 + {g.h(k, 111)} % 3500 / 100.0)::numeric(8,2)",
        "barcode": f"'3' || lpad(({k})::text, 13, '0')",
        "circ_modifier": g.copy_modifier(k),
        "opac_visible": "true", "deleted": "false", "mint_condition": "true",
        "status_changed_time": g.local(created),
        "active_date": g.local(created),
    }, f"generate_series(1::bigint, {g.K}) AS k LEFT JOIN {_OPEN_COPIES} AS oc "
       "ON oc.target_copy = k.k")


def _fill_money(f: _Filler) -> None:
    g = f.g
    first_grocery = g.C + 1
    start = g.day_time(CIRC_START, f"(k - 1) * {CIRC_SPAN_DAYS} / {g.G}", "k", 124, 9, 10)
    usr = g.patron_on("k", f"((k - 1) * {CIRC_SPAN_DAYS} / {g.G})", 120)
    f.insert("money.grocery", {
        "id": f"{g.C} + k", "usr": f"{usr}::integer",
        "xact_start": g.local(start),
        "xact_finish": (f"CASE WHEN {g.pct('k', 121)} < 60 THEN "
                        f"{g.local(start + ' + interval ' + _lit('5 days'))} END"),
        "billing_location": f"{g.home_ou(usr)}::integer",
        "note": g.pick("k", 122, _GROCERY_NOTES),
    }, f"generate_series(1::bigint, {g.G}) AS k")
    # overdue fines: a sample of the late returns, then one bill per grocery
    f.insert("money.billing", {
        "id": "row_number() OVER (ORDER BY c.id)",
        "xact": "c.id", "billing_ts": "c.checkin_time", "voided": "false",
        "amount": ("least(c.max_fine, c.recurring_fine * "
                   "ceil(extract(epoch FROM c.checkin_time - c.due_date) / 86400))"),
        "billing_type": "'Overdue Materials'", "btype": "1",
        "note": "'System Generated Overdue Fine'",
        "create_date": "c.checkin_time",
        "period_start": "c.due_date", "period_end": "c.checkin_time",
    }, "action.circulation AS c WHERE c.checkin_time > c.due_date AND c.id % 7 = 0")
    done = f.counts.get("money.billing", 0)
    f.insert("money.billing", {
        "id": f"{done} + x.id - {g.C}", "xact": "x.id",
        "billing_ts": "x.xact_start", "voided": "false",
        "amount": f"(1 + {g.h('x.id', 123)} % 500 / 100.0)::numeric(6,2)",
        "billing_type": "'Misc'", "btype": "101", "note": "x.note",
        "create_date": "x.xact_start",
    }, f"money.grocery AS x WHERE x.id >= {first_grocery}")


def _fill_history(f: _Filler) -> None:
    g = f.g
    # aged circulations: one in a hundred circulations, two years earlier, unlinked
    first_aged = g.C + g.G
    f.insert("action.aged_circulation", {
        "usr_post_code": "a.post_code", "usr_home_ou": "u.home_ou",
        "usr_profile": "u.profile", "usr_birth_year": "extract(year FROM u.dob)::integer",
        "copy_call_number": "cp.call_number::integer", "copy_location": "c.copy_location",
        "copy_owning_lib": "cn.owning_lib", "copy_circ_lib": "cp.circ_lib",
        "copy_bib_record": "cn.record",
        "id": f"{first_aged} + row_number() OVER (ORDER BY c.id)",
        "xact_start": "c.xact_start - interval '2 years'",
        "xact_finish": "c.xact_finish - interval '2 years'",
        "target_copy": "c.target_copy", "circ_lib": "c.circ_lib", "circ_staff": "c.circ_staff",
        "checkin_staff": "c.checkin_staff", "checkin_lib": "c.checkin_lib",
        "renewal_remaining": "c.renewal_remaining", "grace_period": "c.grace_period",
        "due_date": "c.due_date - interval '2 years'",
        "stop_fines_time": "c.stop_fines_time - interval '2 years'",
        "checkin_time": "c.checkin_time - interval '2 years'",
        "create_time": "c.create_time - interval '2 years'",
        "duration": "c.duration", "fine_interval": "c.fine_interval",
        "recurring_fine": "c.recurring_fine", "max_fine": "c.max_fine",
        "phone_renewal": "c.phone_renewal", "desk_renewal": "c.desk_renewal",
        "opac_renewal": "c.opac_renewal", "duration_rule": "c.duration_rule",
        "recurring_fine_rule": "c.recurring_fine_rule", "max_fine_rule": "c.max_fine_rule",
        "stop_fines": "c.stop_fines", "workstation": "c.workstation",
        "checkin_workstation": "c.checkin_workstation",
        "checkin_scan_time": "c.checkin_scan_time - interval '2 years'",
        "auto_renewal": "c.auto_renewal",
    }, "action.circulation AS c JOIN actor.usr AS u ON u.id = c.usr "
       "JOIN actor.usr_address AS a ON a.id = u.mailing_address "
       "JOIN asset.copy AS cp ON cp.id = c.target_copy "
       "JOIN asset.call_number AS cn ON cn.id = cp.call_number "
       "WHERE c.id % 100 = 50 AND c.checkin_time IS NOT NULL")
    # reading history of the patrons who opted in (one in twenty)
    f.insert("action.usr_circ_history", {
        "id": "row_number() OVER (ORDER BY c.id)", "usr": "c.usr",
        "xact_start": "c.xact_start", "target_copy": "c.target_copy",
        "due_date": "c.due_date", "checkin_time": "c.checkin_time", "source_circ": "c.id",
    }, "action.circulation AS c WHERE c.usr % 20 = 7")
    # audit copies of one patron row in a hundred, as it was before an e-mail change
    cols, _ = f.columns["auditor.actor_usr_history"]
    usr_cols, _ = f.columns["actor.usr"]
    values = {c: f"u.{_qi(c)}" for c in cols if c in usr_cols}
    values.update({
        "audit_id": "row_number() OVER (ORDER BY u.id)",
        "audit_time": "u.last_update_time",
        "audit_action": "'U'", "audit_user": "1", "audit_ws": "1",
        "email": "'old.' || u.email",
    })
    f.insert("auditor.actor_usr_history", values, "actor.usr AS u WHERE u.id % 100 = 0")


def _fill_lists(f: _Filler) -> None:
    g = f.g
    nb = g.N // 25

    def created(var: str, salt: int) -> str:
        return g.day_time(CIRC_START, f"{g.h(var, salt)} % {CIRC_SPAN_DAYS}", var, salt + 1,
                          8, 14)

    f.insert("container.biblio_record_entry_bucket", {
        "id": "b::integer", "owner": "(25 * b)::integer",
        "name": g.pick("b", 131, ["My List", "Read later", "Book club", "For the kids"]),
        "btype": "'bookbag'", "pub": f"({g.pct('b', 132)} < 10)",
        "create_time": g.local(created("b", 135)),
    }, f"generate_series(1::bigint, {nb}) AS b")
    f.insert("container.biblio_record_entry_bucket_item", {
        "id": "(3 * (b - 1) + j)::integer", "bucket": "b::integer",
        "target_biblio_record_entry": f"1 + {g.h('3 * b + j', 133)} % {g.R}",
        "pos": "j::integer",
        "create_time": g.local(created("b", 135) + " + j * interval '1 day'"),
    }, f"generate_series(1::bigint, {nb}) AS b CROSS JOIN generate_series(1, 3) AS j")
    f.insert("actor.usr_saved_search", {
        "id": "s::integer", "owner": "(50 * s)::integer", "name": "'Saved search'",
        "create_date": g.local(created("s", 137)),
        "query_text": g.pick("s", 134, _SEARCHES),
        "query_type": "'URL'", "target": "'record'",
    }, f"generate_series(1::bigint, {g.N // 50}) AS s")
