"""The Evergreen fixture: the real schema from the shipped facts, deterministic data.

One database is built (as a non-superuser owner, as the callers do) and filled once for
the module; the determinism test builds two more.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from ils_redact.adapters import get_adapter
from ils_redact.adapters.evergreen import fixture as fx
from support.parallel import exclusive

PATRONS = 2_000
CIRCULATIONS = 10_000


@pytest.fixture(scope="module")
def catalog():
    return get_adapter("evergreen").reference_catalog()


@pytest.fixture(scope="module")
def eg(server, run_prefix, catalog) -> Iterator[dict]:
    """A database built and filled by an owner role; yields its DSN, owner and counts."""
    db = f"{run_prefix}fxmod"
    owner = f"{run_prefix}fxowner"
    with psycopg.connect(server.dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(owner)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
        admin.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
            sql.Identifier(db), sql.Identifier(owner)))
    dsn = server.dsn_for(db)
    try:
        # one schema build at a time across parallel workers (see support.parallel)
        with exclusive("schema-build"), psycopg.connect(dsn) as conn:
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(owner)))
            t0 = time.perf_counter()
            fx.build_schema(conn, catalog)
            built = time.perf_counter() - t0
            conn.commit()
        with psycopg.connect(dsn) as conn:
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(owner)))
            stages: list[str] = []
            t0 = time.perf_counter()
            counts = fx.fill(conn, patrons=PATRONS, circulations=CIRCULATIONS,
                             progress=lambda label, done, total: stages.append(label))
            filled = time.perf_counter() - t0
            conn.commit()
        print(f"\nfixture: build_schema {built:.2f}s, fill({PATRONS}, {CIRCULATIONS}) "
              f"{filled:.2f}s on server {server.kind}")
        yield {"dsn": dsn, "owner": owner, "counts": counts, "stages": stages,
               "build_seconds": built}
    finally:
        with psycopg.connect(server.dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                          .format(sql.Identifier(db)))
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(owner)))


@pytest.fixture
def conn(eg) -> Iterator[psycopg.Connection]:
    with psycopg.connect(eg["dsn"], autocommit=True) as c:
        yield c


def _schemas(catalog) -> list[str]:
    return sorted({r.schema for r in catalog.relations.values()})


def test_ddl_is_generated_offline(catalog):
    stmts = fx.ddl_statements(catalog)
    kinds = [" ".join(s.as_string().split()[:2]) for s in stmts]
    assert kinds.count("CREATE TABLE") == 510
    assert kinds.count("CREATE VIEW") == 137
    assert fx.pg_type("config.marc_record_type") == "text"
    assert fx.pg_type("hstore") == "text"
    assert fx.pg_type("numeric(6,2)") == "numeric(6,2)"
    assert fx.pg_type("integer[]") == "integer[]"
    assert fx.pg_type("timestamp with time zone") == "timestamp with time zone"


def test_build_time_is_reported(eg):
    print(f"\nbuild_schema took {eg['build_seconds']:.2f}s")
    assert eg["build_seconds"] > 0


def test_every_relation_has_its_catalog_columns(conn, catalog):
    rows = conn.execute(
        """SELECT n.nspname || '.' || c.relname, c.relkind, a.attname,
                  format_type(a.atttypid, a.atttypmod), a.attnotnull
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
                AND NOT a.attisdropped
           WHERE c.relkind IN ('r', 'v', 'p') AND n.nspname = ANY(%s)
           ORDER BY 1, a.attnum""", (_schemas(catalog),)).fetchall()
    live: dict[str, list[tuple[str, str, bool]]] = {}
    kinds: dict[str, str] = {}
    for rel, kind, col, typ, notnull in rows:
        live.setdefault(rel, []).append((col, typ, notnull))
        kinds[rel] = kind
    assert sum(1 for k in kinds.values() if k == "r") == 510
    assert sum(1 for k in kinds.values() if k == "v") == 137
    assert set(live) == set(catalog.relations)
    for name, rel in catalog.relations.items():
        want = [(c.name, fx.pg_type(c.type)) for c in rel.columns]
        assert [(c, t) for c, t, _ in live[name]] == want, name
        if not rel.is_view:
            assert [nn for _, _, nn in live[name]] == [not c.nullable for c in rel.columns], name
        assert kinds[name] == ("v" if rel.is_view else "r"), name


def test_keys_and_constraints_match_the_catalog(conn, catalog):
    rows = conn.execute(
        """SELECT n.nspname || '.' || c.relname, con.contype, con.conname,
                  ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(num, i)
                        JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num
                        ORDER BY k.i)::text[],
                  con.condeferrable
           FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE con.contype IN ('p', 'u', 'f') AND n.nspname = ANY(%s)""",
        (_schemas(catalog),)).fetchall()
    pks = {(r, tuple(cols)) for r, t, _, cols, _ in rows if t == "p"}
    uqs = {(r, tuple(cols)) for r, t, _, cols, _ in rows if t == "u"}
    fks = {(r, name, tuple(cols)) for r, t, name, cols, _ in rows if t == "f"}
    n_fk = sum(len(r.foreign_keys) for r in catalog.tables())
    assert n_fk == 840
    assert len(fks) == n_fk
    assert fks == {(r.qualified, fk.name, fk.columns)
                   for r in catalog.tables() for fk in r.foreign_keys}
    assert pks == {(r.qualified, r.primary_key) for r in catalog.tables() if r.primary_key}
    assert uqs == {(r.qualified, u) for r in catalog.tables() for u in r.unique_constraints}
    # deferrability follows the shipped facts: 657 of Evergreen's 840 foreign keys are
    # DEFERRABLE INITIALLY DEFERRED, the others are not deferrable
    assert sum(1 for _, t, *_, d in rows if t == "f" and d) == 657
    assert conn.execute(
        "SELECT condeferrable AND condeferred FROM pg_constraint "
        "WHERE conname = 'action_circulation_usr_fkey'").fetchone() == (True,)
    assert conn.execute(
        "SELECT condeferrable FROM pg_constraint "
        "WHERE conname = 'invoice_provider_fkey'").fetchone() == (False,)
    # and so do the ON DELETE actions (c = cascade, n = set null, r = restrict)
    actions = dict(conn.execute(
        "SELECT confdeltype::text, count(*) FROM pg_constraint WHERE contype = 'f' "
        "GROUP BY 1").fetchall())
    assert actions == {"a": 477, "c": 290, "n": 60, "r": 13}


def test_inheritance_is_real(conn, catalog, eg):
    pairs = set(conn.execute(
        """SELECT cn.nspname || '.' || c.relname, pn.nspname || '.' || p.relname
           FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           JOIN pg_namespace cn ON cn.oid = c.relnamespace
           JOIN pg_class p ON p.oid = i.inhparent
           JOIN pg_namespace pn ON pn.oid = p.relnamespace""").fetchall())
    assert pairs == {(r.qualified, p) for r in catalog.tables() for p in r.inherits}
    assert len({c for c, _ in pairs}) == 28
    counts = eg["counts"]
    (total,) = conn.execute("SELECT count(*) FROM money.billable_xact").fetchone()
    assert total == counts["action.circulation"] + counts["money.grocery"]
    assert conn.execute("SELECT count(*) FROM ONLY money.billable_xact").fetchone() == (0,)
    assert conn.execute(
        "SELECT count(*) FROM money.billable_xact b JOIN action.circulation c USING (id)"
        " WHERE b.usr = c.usr").fetchone() == (CIRCULATIONS,)


def test_views_read_all_their_dependencies(conn, catalog):
    rows = conn.execute(
        """SELECT DISTINCT vn.nspname || '.' || v.relname, dn.nspname || '.' || d.relname
           FROM pg_rewrite r JOIN pg_class v ON v.oid = r.ev_class
           JOIN pg_namespace vn ON vn.oid = v.relnamespace
           JOIN pg_depend dep ON dep.classid = 'pg_rewrite'::regclass AND dep.objid = r.oid
                AND dep.refclassid = 'pg_class'::regclass
           JOIN pg_class d ON d.oid = dep.refobjid
           JOIN pg_namespace dn ON dn.oid = d.relnamespace
           WHERE v.relkind = 'v' AND d.oid <> v.oid AND vn.nspname = ANY(%s)""",
        (_schemas(catalog),)).fetchall()
    live: dict[str, set[str]] = {}
    for view, dep in rows:
        live.setdefault(view, set()).add(dep)
    for view in catalog.views():
        want = {d for d in view.depends_on if d in catalog.relations}
        assert live.get(view.qualified, set()) == want, view.qualified


def test_views_return_the_rows_they_read(conn, eg):
    counts = eg["counts"]
    circs, aged = counts["action.circulation"], counts["action.aged_circulation"]
    assert conn.execute("SELECT count(*) FROM action.all_circulation").fetchone() == (
        circs + aged,)
    assert conn.execute(
        "SELECT count(*) FROM action.all_circulation v JOIN action.circulation c"
        " ON c.id = v.id AND c.usr = v.usr AND c.xact_start = v.xact_start").fetchone() == (
        circs,)
    assert conn.execute("SELECT count(*) FROM action.all_hold_request").fetchone() == (
        counts["action.hold_request"],)
    (open_circs,) = conn.execute(
        "SELECT count(*) FROM action.circulation WHERE checkin_time IS NULL").fetchone()
    assert conn.execute("SELECT count(*) FROM action.open_circulation").fetchone()[0] >= open_circs
    assert conn.execute("SELECT count(*) FROM reporter.demographic").fetchone() == (PATRONS,)
    # every view can be read without a run-time error
    for schema, view in conn.execute(
            "SELECT schemaname, viewname FROM pg_views "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')").fetchall():
        conn.execute(sql.SQL("SELECT * FROM {} LIMIT 5").format(
            sql.Identifier(schema, view))).fetchall()


def test_patron_links_are_indexed(conn, catalog):
    indexed = {(t, c) for t, c in conn.execute(
        """SELECT n.nspname || '.' || c.relname, a.attname
           FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]""")}
    for rel in catalog.tables():
        for fk in rel.foreign_keys:
            if fk.ref_relation == "actor.usr":
                assert (rel.qualified, fk.columns[0]) in indexed, (rel.qualified, fk.columns)
    for want in [("action.circulation", "usr"), ("action.circulation", "xact_start"),
                 ("action.circulation", "target_copy"), ("actor.card", "usr"),
                 ("actor.card", "barcode"), ("actor.usr_address", "usr"),
                 ("action.hold_request", "usr"), ("money.billable_xact", "usr")]:
        assert want in indexed, want


def test_only_relations_no_code(conn, catalog, eg):
    schemas = _schemas(catalog)
    assert conn.execute(
        "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE NOT t.tgisinternal AND n.nspname = ANY(%s)", (schemas,)).fetchone() == (0,)
    assert conn.execute(
        "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = ANY(%s)", (schemas,)).fetchone() == (0,)
    assert conn.execute("SELECT array_agg(extname) FROM pg_extension").fetchone() == (
        ["plpgsql"],)
    # the owner role owns every relation it created
    owners = conn.execute(
        "SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'v') AND n.nspname = ANY(%s)", (schemas,)).fetchall()
    assert owners == [(eg["owner"],)]


def test_fill_counts_and_shape(conn, eg):
    counts = eg["counts"]
    assert counts["actor.usr"] == PATRONS
    assert counts["action.circulation"] == CIRCULATIONS
    assert counts["action.hold_request"] == CIRCULATIONS // 10
    for table in ("money.billing", "money.grocery", "action.aged_circulation",
                  "auditor.actor_usr_history", "container.biblio_record_entry_bucket",
                  "container.biblio_record_entry_bucket_item", "actor.usr_saved_search",
                  "action.usr_circ_history", "actor.passwd", "actor.card",
                  "actor.usr_address", "asset.copy", "biblio.record_entry"):
        assert counts.get(table, 0) > 0, table
        (n,) = conn.execute(sql.SQL("SELECT count(*) FROM ONLY {}").format(
            sql.Identifier(*table.split(".")))).fetchone()
        assert n == counts[table], table
    assert eg["stages"][0] == "prepare" and eg["stages"][-1] == "done"
    # dense patron ids, one active card each, the card and addresses are the patron's
    assert conn.execute("SELECT min(id), max(id), count(*) FROM actor.usr").fetchone() == (
        1, PATRONS, PATRONS)
    assert conn.execute(
        "SELECT count(*) FROM actor.usr u JOIN actor.card c ON c.id = u.card "
        "AND c.usr = u.id AND c.active").fetchone() == (PATRONS,)
    assert conn.execute(
        "SELECT count(*) FROM actor.card WHERE active GROUP BY usr HAVING count(*) > 1"
    ).fetchall() == []
    assert conn.execute(
        "SELECT count(*) FROM actor.usr u JOIN actor.usr_address m ON m.id = u.mailing_address"
        " AND m.usr = u.id JOIN actor.usr_address b ON b.id = u.billing_address"
        " AND b.usr = u.id").fetchone() == (PATRONS,)
    # demographics spread enough for age bands, profiles and branches
    (span,) = conn.execute(
        "SELECT extract(year FROM max(dob)) - extract(year FROM min(dob)) FROM actor.usr"
    ).fetchone()
    assert span >= 80
    (profiles,) = conn.execute("SELECT count(DISTINCT profile) FROM actor.usr").fetchone()
    assert profiles >= 4
    homes = dict(conn.execute("SELECT home_ou, count(*) FROM actor.usr GROUP BY 1").fetchall())
    assert set(homes) == set(fx.BRANCHES)
    assert 1 <= homes[fx.TINY_BRANCH] <= 5
    (months,) = conn.execute(
        "SELECT count(DISTINCT date_trunc('month', xact_start AT TIME ZONE 'America/Chicago'))"
        " FROM action.circulation").fetchone()
    assert months == 24
    (tiny_circs,) = conn.execute(
        "SELECT count(*) FROM action.circulation WHERE circ_lib = %s",
        (fx.TINY_BRANCH,)).fetchone()
    assert tiny_circs < CIRCULATIONS // 100
    # foreign keys were re-added (and so validated) after the load
    assert conn.execute(
        "SELECT count(*) FROM pg_constraint WHERE contype = 'f'").fetchone() == (840,)


def _fingerprint(dsn: str) -> dict[str, str]:
    out = {}
    with psycopg.connect(dsn, autocommit=True) as c:
        for table, key in (("actor.usr", "id"), ("actor.card", "id"),
                           ("actor.usr_address", "id"), ("action.circulation", "id"),
                           ("action.hold_request", "id"), ("asset.copy", "id"),
                           ("money.billing", "id"), ("auditor.actor_usr_history", "audit_id")):
            (out[table],) = c.execute(
                sql.SQL("SELECT md5(string_agg(t::text, E'\\n' ORDER BY t.{})) FROM {} t")
                .format(sql.Identifier(key), sql.Identifier(*table.split(".")))).fetchone()
    return out


def test_fill_is_deterministic(eg, databases, server, catalog):
    """Same seed and sizes in another database (built by the superuser) -> same bytes;
    another seed -> other data."""
    prints = []
    for seed in (1, 2):
        db = databases.create("fx")
        with psycopg.connect(server.dsn_for(db)) as c:
            fx.build_schema(c, catalog)
            fx.fill(c, patrons=PATRONS, circulations=CIRCULATIONS, seed=seed)
            c.commit()
        prints.append(_fingerprint(server.dsn_for(db)))
    assert prints[0] == _fingerprint(eg["dsn"])
    assert all(prints[1][t] != prints[0][t] for t in ("actor.usr", "action.circulation"))


def test_build_schema_takes_the_callers_transaction(databases, server, catalog):
    db = databases.create("fx")
    with psycopg.connect(server.dsn_for(db)) as c:
        fx.build_schema(c, catalog)
        c.rollback()
        assert c.execute("SELECT to_regclass('action.circulation')").fetchone() == (None,)
