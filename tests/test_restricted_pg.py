"""What the disclosure role can and cannot read, proven as that role on a real server.

The restricted login here is a member of the disclosure role and connects with psql-like
freedom (no gate): the database alone must hold the line.  Every relation and column of
the catalog is tried, not a hand-picked few.
"""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors, sql

from ils_redact.backends import postgresql as pg
from ils_redact.stats import all_reports
from support import EgDb, create_role

SCOPED = (11, 12)  # patrons put in scope


@pytest.fixture
def installed(eg_db: EgDb):
    with eg_db.connect(autocommit=False) as conn:
        pg.install(conn, eg_db.rules, reports=all_reports)
    clerk = create_role(eg_db.server, f"{eg_db.prefix}clerk",
                        member_of=(eg_db.role("disclosure"),))
    with eg_db.connect() as conn:
        # the core's scope table, written as the layer's functions would (the request
        # workflow that writes it is tested in test_disclosure_pg.py)
        for p in SCOPED:
            conn.execute("INSERT INTO ils_redact.scope (patron_id, grantee, expires_at) "
                         "VALUES (%s, %s, now() + interval '1 hour')", (p, clerk))
        conn.execute("ANALYZE")
    return eg_db, clerk


def _readable(conn: psycopg.Connection, query: sql.Composable) -> bool:
    try:
        conn.execute(query)
        return True
    except errors.InsufficientPrivilege:
        return False


def test_identity_columns_of_scoped_patrons(installed) -> None:
    db, clerk = installed
    rules = db.rules
    for t in rules.identity:
        cols = sql.SQL(", ").join(map(sql.Identifier, t.columns))
        q = sql.SQL("SELECT {} FROM {} WHERE {} = ANY (%s) ORDER BY 1").format(
            cols, sql.Identifier(*t.relation.split(".")), sql.Identifier(t.patron_key))
        with db.connect(clerk) as conn:
            got = conn.execute(q, (list(SCOPED),)).fetchall()
        with db.connect(db.owner) as conn:
            want = conn.execute(q, (list(SCOPED),)).fetchall()
        assert got == want and got, t.relation


def test_unscoped_patrons_are_invisible(installed) -> None:
    db, clerk = installed
    for t in db.rules.identity:
        q = sql.SQL("SELECT DISTINCT {} FROM {}").format(
            sql.Identifier(t.patron_key), sql.Identifier(*t.relation.split(".")))
        with db.connect(clerk) as conn:
            seen = {r[0] for r in conn.execute(q)}
        assert seen <= set(SCOPED), t.relation
        assert seen, t.relation


def test_every_other_column_of_every_relation_is_refused(installed) -> None:
    """Iterate over the live catalog: permission denied for every column that is not an
    identity column, in every relation of every schema (views and the layer included)."""
    db, clerk = installed
    allowed = {(t.relation, c) for t in db.rules.identity for c in t.columns}
    with db.connect() as conn:
        columns = conn.execute(
            "SELECT n.nspname, c.relname, a.attname FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r','v','m','p','f') "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') "
            "ORDER BY 1, 2, a.attnum").fetchall()
    assert len(columns) > 5000
    wrong_open, wrong_closed = [], []
    with db.connect(clerk) as conn:
        for schema, rel, col in columns:
            q = sql.SQL("SELECT {} FROM {} WHERE false").format(
                sql.Identifier(col), sql.Identifier(schema, rel))
            ok = _readable(conn, q)
            expected = (f"{schema}.{rel}", col) in allowed
            if ok and not expected:
                wrong_open.append(f"{schema}.{rel}.{col}")
            if expected and not ok:
                wrong_closed.append(f"{schema}.{rel}.{col}")
    assert not wrong_open, wrong_open[:20]
    assert not wrong_closed, wrong_closed


def test_named_confidential_reads_refused_by_the_database(installed) -> None:
    db, clerk = installed
    with db.connect(clerk) as conn:
        for q in ("SELECT count(*) FROM action.circulation",
                  "SELECT count(*) FROM money.billable_xact",
                  "SELECT count(*) FROM auditor.actor_usr_history",
                  "SELECT passwd FROM actor.usr",
                  "SELECT * FROM actor.usr",
                  "SELECT count(*) FROM action.all_circulation",
                  "SELECT * FROM ils_redact.scope",
                  "INSERT INTO ils_redact.scope (patron_id, grantee, expires_at) "
                  "VALUES (1, current_user, now() + interval '1 day')",
                  "SELECT * FROM ils_redact.request",
                  "SELECT * FROM ils_redact.audit_log",
                  "SELECT ils_redact.request_approve(1)"):
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(q)


def test_no_table_level_grant_and_no_write(installed) -> None:
    db, clerk = installed
    with db.connect(clerk) as conn:
        for q in ("UPDATE actor.usr SET family_name = 'x' WHERE id = 11",
                  "DELETE FROM actor.card WHERE usr = 11",
                  "INSERT INTO actor.card (id, usr, barcode, active) VALUES (1e6, 11, 'x', true)",
                  "TRUNCATE actor.usr_address"):
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(q)
    dis = db.role("disclosure")
    for table in ("actor.usr", "actor.card", "actor.usr_address"):
        for priv in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES",
                     "TRIGGER"):
            assert not db.scalar("SELECT has_table_privilege(%s, %s, %s)", (dis, table, priv))


def test_pg_stats_shows_nothing_about_restricted_columns(installed) -> None:
    db, clerk = installed
    assert db.scalar("SELECT count(*) FROM pg_stats WHERE schemaname = 'actor' "
                     "AND tablename = 'usr'") > 10  # the owner's view: stats exist
    n = db.scalar("SELECT count(*) FROM pg_stats WHERE schemaname NOT IN "
                  "('pg_catalog', 'information_schema')", user=clerk)
    assert n == 0


def test_leaky_temporary_function_sees_no_hidden_rows(installed) -> None:
    """Install takes TEMP from PUBLIC (hardening), so the clerk cannot create the leaky
    function at all; row-level security holds on its own too: with TEMP granted back by
    hand, the function sees no hidden row."""
    db, clerk = installed
    with db.connect(clerk) as conn:
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("CREATE FUNCTION pg_temp.leak(text) RETURNS boolean LANGUAGE sql "
                         "AS 'SELECT true'")
    with db.connect() as conn:
        conn.execute(sql.SQL("GRANT TEMPORARY ON DATABASE {} TO {}").format(
            sql.Identifier(db.name), sql.Identifier(clerk)))
    notices: list[str] = []
    with db.connect(clerk) as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        conn.execute("""
            CREATE FUNCTION pg_temp.leak(text) RETURNS boolean LANGUAGE plpgsql COST 0.0000001
            AS $$ BEGIN RAISE NOTICE 'leak:%', $1; RETURN true; END $$""")
        rows = conn.execute(
            "SELECT family_name FROM actor.usr WHERE pg_temp.leak(family_name)").fetchall()
    with db.connect(db.owner) as conn:
        visible = {r[0] for r in conn.execute(
            "SELECT family_name FROM actor.usr WHERE id = ANY (%s)", (list(SCOPED),))}
    leaked = {n.split(":", 1)[1] for n in notices if n.startswith("leak:")}
    assert {r[0] for r in rows} == visible
    assert leaked <= visible


def test_scope_is_index_driven(installed) -> None:
    db, clerk = installed
    with db.connect(clerk) as conn:
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN SELECT id, family_name FROM actor.usr"))
    assert "Index" in plan and "InitPlan" in plan, plan


def test_expired_scope_and_other_logins_see_nothing(installed) -> None:
    db, clerk = installed
    other = create_role(db.server, f"{db.prefix}other_clerk",
                        member_of=(db.role("disclosure"),))
    assert db.scalar("SELECT count(*) FROM actor.usr", user=other) == 0
    with db.connect() as conn:
        conn.execute("UPDATE ils_redact.scope SET expires_at = now() - interval '1 second'")
    assert db.scalar("SELECT count(*) FROM actor.usr", user=clerk) == 0
    assert db.scalar("SELECT count(*) FROM actor.card", user=clerk) == 0


def test_stats_role_reads_the_reports_and_nothing_else(installed) -> None:
    """The stats role holds no privilege on any ILS relation or column; what it may call
    is the installed report functions in ils_redact_stats and nothing else (the full
    per-relation sweep is in test_stats_pg.py)."""
    db, _ = installed
    stats = create_role(db.server, f"{db.prefix}counter", member_of=(db.role("stats"),))
    with db.connect(stats) as conn:
        for q in ("SELECT count(*) FROM actor.usr", "SELECT count(*) FROM action.circulation"):
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(q)
    with db.connect() as conn:
        held = conn.execute(
            "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f') "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND (has_table_privilege(%(r)s, c.oid, 'SELECT') "
            "OR has_any_column_privilege(%(r)s, c.oid, 'SELECT'))",
            {"r": db.role("stats")}).fetchall()
        callable_ = {r[0] for r in conn.execute(
            "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n "
            "ON n.oid = p.pronamespace WHERE n.nspname IN ('ils_redact', 'ils_redact_stats') "
            "AND has_function_privilege(%s, p.oid, 'EXECUTE')", (db.role("stats"),))}
    assert held == []
    assert callable_ and all(f.startswith("ils_redact_stats.") for f in callable_)
    assert not any(h in f for f in callable_ for h in ("suppress_page", "period_bounds"))
