"""What a restricted login can read on MariaDB, through a real connection as that login.

The disclosure role holds nothing on the Koha database: it reads identity columns through
the layer's definer views, for patrons in its own active scope only.  Every other column
of every Koha table is refused; unscoped, expired, revoked and unapproved patrons give no
rows; the optimizer cannot be talked into showing an out-of-scope value (the warning
oracle); EXPLAIN and the view definitions are refused.
"""

# ruff: noqa: S608 - test SQL: names quoted with sqltext.ident

from __future__ import annotations

from collections.abc import Iterator

import pymysql
import pytest

from ils_redact.backends.mariadb.sqltext import account, ident
from ils_redact.disclosure import requests as rq
from support.koha import KohaDb, MariaServer
from support.koha_workflow import Staff, identity_select, warnings_of

SCOPED = [101, 202, 303]
OTHER = [404, 505]  # in a request for erin that is never approved


@pytest.fixture(scope="module")
def world(mariadb: MariaServer) -> Iterator[tuple[KohaDb, Staff, int]]:
    db = mariadb.koha_db()
    db.install()
    staff = Staff.create(db)
    rid = staff.request(staff.alice, SCOPED, grantee=staff.dora, approve_as=staff.bob)
    staff.request(staff.alice, OTHER, grantee=staff.erin)  # a draft
    try:
        yield db, staff, rid
    finally:
        mariadb.release(db)


def _denied(conn, sql: str) -> int:
    with pytest.raises(pymysql.err.MySQLError) as exc:
        conn.execute(sql).fetchall()
    return exc.value.args[0]


def test_scoped_patrons_identity_columns_are_readable(world) -> None:
    db, staff, _ = world
    with db.connect(staff.dora) as c:
        got = c.execute(identity_select(db, "ORDER BY borrowernumber")).fetchall()
    cols = ", ".join(ident(x) for x in db.rules.identity[0].columns)
    want = db.rows(f"SELECT {cols} FROM {ident(db.name)}.borrowers WHERE borrowernumber IN "
                   f"({', '.join(map(str, SCOPED))}) ORDER BY borrowernumber")
    assert [tuple(r) for r in got] == [tuple(r) for r in want]
    assert len(got) == len(SCOPED)
    assert all(r[1] for r in got), "every scoped row has its card number"


def test_no_row_of_an_unscoped_patron(world) -> None:
    db, staff, _ = world
    with db.connect(staff.dora) as c:
        for pid in OTHER + [1, 2, 1999]:
            assert c.execute(identity_select(db, "WHERE borrowernumber = %s"),
                             (pid,)).fetchall() == ()
        assert c.execute(f"SELECT COUNT(*) FROM {ident(db.layer)}.borrowers").fetchone()[0] \
            == len(SCOPED)
        # the scope view shows the caller's own scope only
        assert sorted(r[0] for r in c.execute(
            f"SELECT patron_id FROM {ident(db.layer)}.scope_patrons")) == SCOPED
    with db.connect(staff.erin) as c:  # erin's request is a draft: nothing
        assert c.execute(f"SELECT COUNT(*) FROM {ident(db.layer)}.borrowers").fetchone()[0] == 0


def test_every_column_of_every_koha_table_is_refused(world) -> None:
    """Iterate the live catalog: the disclosure login reads no column of any Koha table,
    identity columns included (those only through the views)."""
    db, staff, _ = world
    with db.connect() as c:
        cols = c.execute("SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS "
                         "WHERE TABLE_SCHEMA = %s ORDER BY 1, ORDINAL_POSITION",
                         (db.name,)).fetchall()
    assert len({t for t, _ in cols}) == 293
    opened = []
    with db.connect(staff.dora) as c:
        for table, col in cols:
            try:
                c.execute(f"SELECT {ident(col)} FROM {ident(db.name)}.{ident(table)} "
                          "LIMIT 1").fetchall()
                opened.append(f"{table}.{col}")
            except pymysql.err.MySQLError as exc:
                assert exc.args[0] in (1142, 1143), exc
        assert _denied(c, f"SELECT * FROM {ident(db.name)}.borrowers") == 1142
        assert _denied(c, f"USE {ident(db.name)}") == 1044
    assert opened == []


def test_view_has_identity_columns_only(world) -> None:
    db, staff, _ = world
    identity = set(db.rules.identity[0].columns)
    with db.connect() as c:
        cols = {r[0] for r in c.execute(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND "
            "TABLE_NAME = 'borrowers'", (db.layer,))}
    assert cols == identity
    with db.connect(staff.dora) as c:
        for col in ("password", "userid", "borrowernotes", "lastseen", "secret"):
            assert _denied(c, f"SELECT {ident(col)} FROM {ident(db.layer)}.borrowers") == 1054


def test_layer_tables_and_definitions_are_closed(world) -> None:
    db, staff, _ = world
    layer = ident(db.layer)
    with db.connect(staff.dora) as c:
        for table in ("scope", "request", "request_patron", "audit_log", "setting",
                      "installed_object", "meta"):
            assert _denied(c, f"SELECT * FROM {layer}.{ident(table)}") == 1142, table
        assert _denied(c, f"EXPLAIN SELECT * FROM {layer}.borrowers") == 1345
        assert _denied(c, f"ANALYZE SELECT * FROM {layer}.borrowers") == 1345
        assert _denied(c, f"SHOW CREATE VIEW {layer}.borrowers") == 1142
        for stmt in (f"UPDATE {layer}.borrowers SET surname = 'x'",
                     f"DELETE FROM {layer}.borrowers",
                     f"INSERT INTO {layer}.scope (patron_id, grantee, expires_at, created_by, "
                     "created_at) VALUES (1, 'x', NOW(), 'x', NOW())",
                     f"TRUNCATE TABLE {layer}.audit_log", f"DROP TABLE {layer}.audit_log",
                     f"CALL {layer}.request_approve(1)",
                     f"CALL {layer}.patron_lookup('[1]', NULL)"):
            assert _denied(c, stmt) in (1142, 1370, 1044), stmt
        # the lookup procedure may be called, its text not read
        shown = c.execute(f"SHOW CREATE PROCEDURE {layer}.lookup_borrowers").fetchone()
        assert shown[2] is None, "SHOW CREATE PROCEDURE shows the body to a caller"


OPTIMIZER_SWITCHES = (
    "default",
    "semijoin=off,materialization=off",
    "semijoin=off,materialization=off,in_to_exists=on,exists_to_in=off,subquery_cache=off",
    "condition_pushdown_for_derived=off,derived_merge=on",
    "derived_merge=off,derived_with_keys=off",
    "derived_with_keys=off,join_cache_hashed=off,join_cache_bka=off",
)


@pytest.mark.parametrize("switch", OPTIMIZER_SWITCHES)
def test_the_warning_oracle_shows_nothing_out_of_scope(world, switch: str) -> None:
    """``email + 0`` warns with the value it could not convert.  If the caller's condition
    ever ran on a row outside the scope, its email would appear in a warning: the views
    are TEMPTABLE with a LIMIT so that it cannot, whatever optimizer_switch says."""
    db, staff, _ = world
    scoped = {f"patron{p}@example.org" for p in SCOPED}
    layer = ident(db.layer)
    with db.connect(staff.dora) as c:
        c.execute(f"SET SESSION optimizer_switch = {_lit(switch)}")
        c.execute("SET SESSION max_error_count = 65535")
        c.execute("SET SESSION join_cache_level = 8")
        for q in (f"SELECT * FROM {layer}.borrowers WHERE email + 0 = 1",
                  f"SELECT * FROM {layer}.borrowers WHERE CAST(email AS DECIMAL) = 7 "
                  "OR surname = 'zz'",
                  f"SELECT b1.surname FROM {layer}.borrowers b1 JOIN {layer}.borrowers b2 "
                  "ON b1.email + 0 = b2.borrowernumber",
                  f"SELECT borrowernumber FROM {layer}.borrowers WHERE borrowernumber IN "
                  f"(SELECT borrowernumber FROM {layer}.borrowers WHERE email + 0 > 0)",
                  f"SELECT STRAIGHT_JOIN * FROM {layer}.borrowers WHERE email + 0 = 1",
                  f"SELECT * FROM {layer}.borrowers WHERE email + 0 = 1 ORDER BY email"):
            c.execute(q).fetchall()
            seen = warnings_of(c)
            leaked = [w for w in seen if "@example.org" in w
                      and not any(s in w for s in scoped)]
            assert seen, q  # the oracle fired: the check is not vacuous
            assert leaked == [], (switch, q, leaked[:3])


def _lit(s: str) -> str:
    from ils_redact.backends.mariadb.sqltext import string

    return string(s)


def test_expired_revoked_and_unapproved_give_zero_rows(world) -> None:
    db, staff, _ = world
    layer = ident(db.layer)
    # a second approved request for dora, then its expiry passes (the clock is the
    # view's: moving expires_at into the past as root is what time does)
    rid = staff.request(staff.alice, [606], grantee=staff.dora, approve_as=staff.bob)
    count = f"SELECT COUNT(*) FROM {layer}.borrowers WHERE borrowernumber = 606"
    assert db.scalar(count, user=staff.dora) == 1
    with db.connect() as c:
        c.execute(f"UPDATE {layer}.scope SET expires_at = UTC_TIMESTAMP(6) - INTERVAL 1 SECOND "
                  "WHERE request_id = %s", (rid,))
    assert db.scalar(count, user=staff.dora) == 0
    # revoked: access ends at once
    rid2 = staff.request(staff.alice, [707], grantee=staff.dora, approve_as=staff.bob)
    count2 = f"SELECT COUNT(*) FROM {layer}.borrowers WHERE borrowernumber = 707"
    assert db.scalar(count2, user=staff.dora) == 1
    with db.connect(staff.bob, autocommit=False) as c:
        rq.end(c, rid2, "revoked", "no longer needed")
        c.commit()
    assert db.scalar(count2, user=staff.dora) == 0
    # unapproved: a draft gives nothing
    staff.request(staff.alice, [808], grantee=staff.dora)
    assert db.scalar(f"SELECT COUNT(*) FROM {layer}.borrowers WHERE borrowernumber = 808",
                     user=staff.dora) == 0


def test_exporter_reads_nothing_directly(world) -> None:
    """In the default access mode staff get the exporter role: no view, no table."""
    db, staff, rid = world
    with db.connect(staff.alice) as c:
        c.execute(f"SET ROLE {ident(db.role('exporter'))}")
        assert _denied(c, identity_select(db)) == 1142
        assert _denied(c, f"SELECT * FROM {ident(db.name)}.issues") == 1142


def test_the_oracle_sees_what_a_merge_view_would_leak(world) -> None:
    """The same check against a MERGE view (what MariaDB makes by default) finds the
    leak: it is the TEMPTABLE + LIMIT of the generated views that closes it."""
    db, staff, _ = world
    layer = ident(db.layer)
    cols = ", ".join(f"t.{ident(c)}" for c in db.rules.identity[0].columns)
    with db.connect() as c:
        c.execute(f"CREATE ALGORITHM=MERGE DEFINER={account(db.owner, 'localhost')} SQL "
                  f"SECURITY DEFINER VIEW {layer}.merge_probe AS SELECT {cols} FROM "
                  f"{ident(db.name)}.borrowers t WHERE t.borrowernumber IN (SELECT "
                  f"sc.patron_id FROM {layer}.scope sc WHERE sc.grantee_user = "
                  "SUBSTRING_INDEX(USER(), '@', 1) AND sc.expires_at > UTC_TIMESTAMP(6))")
        c.execute(f"GRANT SELECT ON {layer}.merge_probe TO {ident(db.role('disclosure'))}")
    try:
        with db.connect(staff.dora) as c:
            assert c.execute(f"SELECT COUNT(*) FROM {layer}.merge_probe").fetchone()[0] == \
                len(SCOPED)
            c.execute("SET SESSION optimizer_switch = 'semijoin=off,materialization=off'")
            c.execute("SET SESSION max_error_count = 65535")
            c.execute(f"SELECT * FROM {layer}.merge_probe WHERE email + 0 = 1").fetchall()
            scoped = {f"patron{p}@example.org" for p in SCOPED}
            leaked = [w for w in warnings_of(c) if "@example.org" in w
                      and not any(s in w for s in scoped)]
        assert len(leaked) > 100, "a MERGE view shows out-of-scope emails in warnings"
    finally:
        with db.connect() as c:
            c.execute(f"REVOKE SELECT ON {layer}.merge_probe FROM "
                      f"{ident(db.role('disclosure'))}")
            c.execute(f"DROP VIEW {layer}.merge_probe")


def test_lookup_procedure_returns_the_callers_scope_only(world) -> None:
    """``lookup_borrowers``: the view's rows (unordered); ids only narrow the scope;
    another login's approved scope, an unknown id or an unscoped patron give nothing."""
    db, staff, _ = world
    lookup = f"CALL {ident(db.layer)}.lookup_borrowers(%s)"
    # erin gets an approved request of her own, for a patron dora is not given
    rid = staff.request(staff.alice, [909], grantee=staff.erin, approve_as=staff.bob)
    try:
        with db.connect(staff.dora) as c:
            view = [tuple(r) for r in c.execute(
                identity_select(db, "ORDER BY borrowernumber")).fetchall()]
            assert len(view) == len(SCOPED)
            assert sorted(c.rows(lookup, (None,))) == view  # in no particular order
            assert sorted(r[0] for r in c.rows(lookup, ("[303, 909, 404, 1, 101, 999999]",))) \
                == [101, 303]
            for ids in ("[909]", "[404]", "[]"):
                assert c.rows(lookup, (ids,)) == [], ids
            assert c.execute(identity_select(db, "WHERE borrowernumber = 909")).fetchall() \
                == ()
            with pytest.raises(pymysql.err.MySQLError):  # not JSON: an error, not rows
                c.rows(lookup, ("1) OR (1=1",))
        with db.connect(staff.erin) as c:
            assert [r[0] for r in c.rows(lookup, (None,))] == [909]
        with db.connect(staff.alice) as c:  # the exporter role (function mode): no lookup
            c.execute(f"SET ROLE {ident(db.role('exporter'))}")
            with pytest.raises(pymysql.err.MySQLError) as exc:
                c.rows(lookup, (None,))
            assert exc.value.args[0] == 1370
    finally:
        with db.connect(staff.bob, autocommit=False) as c:
            rq.end(c, rid, "revoked", "test over")
            c.commit()
    with db.connect(staff.erin) as c:  # revoked: at once
        assert c.rows(lookup, (None,)) == []
