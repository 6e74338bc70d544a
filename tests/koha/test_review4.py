"""The MariaDB layer against the fourth review (atk4koha), played as the logins that found
each break, on a real server.

* B1: ``SET SESSION group_concat_max_len = 4`` cut patron_lookup's list of resolved
  patrons to ``[5,60]``: ten patrons returned per call, two traced and audited, and the
  hourly bound never grew (an administrator read 202 patrons in 25 calls);
  export_check's list of a request's patrons could be cut the same way;
* B3: request_create inside a transaction the caller rolls back answered whether an id
  is a patron and whether a card is that patron's, and left no trace.
"""

# ruff: noqa: S608 - test SQL: names quoted with sqltext.ident

from __future__ import annotations

import json

import pymysql
import pytest

from support.koha import KohaDb
from support.koha_workflow import Staff


def _lookup(c, layer: str, ids: list[int]) -> list[tuple]:
    return c.rows(f"CALL `{layer}`.patron_lookup(%s, NULL)", (json.dumps(ids),))


def test_a_short_group_concat_limit_neither_hides_lookups_nor_lifts_the_bound(
        installed_module: KohaDb) -> None:
    db = installed_module
    carl = db.login("r4carl", "admin")
    with db.connect(carl, autocommit=False) as c:
        c.execute("SET SESSION group_concat_max_len = 4")
        first = _lookup(c, db.layer, [5, 60, 1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007])
        c.commit()
        assert len(first) == 10
        # the limit the caller chose is its own again after the call
        assert c.execute("SELECT @@SESSION.group_concat_max_len").fetchone()[0] == 4
        # the next ten new patrons pass max_patrons (10) in the hour: refused
        with pytest.raises(pymysql.err.MySQLError, match="lookup refused"):
            _lookup(c, db.layer, [5, 60] + list(range(1008, 1016)))
        c.rollback()
    traced = db.rows(f"SELECT action, patrons FROM `{db.layer}`.trace WHERE account LIKE %s "
                     "ORDER BY seq", (carl + "@%",))
    assert [a for a, _ in traced] == ["lookup", "lookup.refused"]
    assert sorted(json.loads(traced[0][1])) == [5, 60, 1000, 1001, 1002, 1003, 1004, 1005,
                                                1006, 1007]
    logged = db.rows(f"SELECT detail FROM `{db.layer}`.audit_log WHERE action = "
                     "'patron.lookup' AND actor LIKE %s", (carl + "@%",))
    assert [len(json.loads(d)["patrons"]) for (d,) in logged] == [10]


def test_a_short_group_concat_limit_cannot_change_whom_an_export_names(
        installed_module: KohaDb) -> None:
    """[300,301] cut to [300,3] would name patron 3, whom the request does not name."""
    db = installed_module
    staff = Staff(db, alice=db.login("r4ann", "admin"), bob=db.login("r4ben", "admin"),
                  dora="", erin="")
    eve = db.login("r4eve", "disclosure")
    rid = staff.request(staff.alice, [300, 301], grantee=eve, approve_as=staff.bob)
    for limit in (4, 5, 6, 7, 8):
        with db.connect(eve, autocommit=False) as c:
            c.execute(f"SET SESSION group_concat_max_len = {limit}")
            rows = c.rows(f"CALL `{db.layer}`.export(%s, 'csv')", (rid,))
            c.commit()
        document = rows[0][1]
        assert document is not None, rows
        patrons = {int(line.split(",")[0]) for line in document.splitlines()[1:]}
        assert patrons == {300, 301}, (limit, document)


def test_request_checks_inside_a_rolled_back_transaction_are_traced_and_bounded(
        installed_module: KohaDb) -> None:
    db = installed_module
    dan = db.login("r4dan", "admin", "disclosure")
    call = (f"CALL `{db.layer}`.request_create('emergency', 'x', 'x', '1', '1', 'r', NULL, "
            "NULL, NULL, %s, %s, '[\"borrowers.surname\"]', UTC_TIMESTAMP(6) + INTERVAL 1 "
            "HOUR, NULL)")
    card = db.scalar(f"SELECT cardnumber FROM `{db.name}`.borrowers WHERE borrowernumber = 101")
    answers = []
    with db.connect(dan, autocommit=False) as c:
        for n in range(100, 112):  # "is this card patron n's?", eleven new patrons
            c.execute("START TRANSACTION")
            try:
                c.rows(call, (json.dumps([n]), json.dumps([card])))
                answers.append((n, "yes"))
            except pymysql.err.MySQLError as exc:
                answers.append((n, str(exc.args[1])[:40]))
            c.rollback()
    # the first ten probes answered; the eleventh patron is past the hourly bound
    assert answers[1] == (101, "yes")
    assert "lookup refused" in answers[-1][1], answers
    traced = db.rows(f"SELECT action, patrons FROM `{db.layer}`.trace WHERE account LIKE %s "
                     "ORDER BY seq", (dan + "@%",))
    assert [a for a, _ in traced] == ["lookup"] * 10 + ["lookup.refused"] * 2, traced
    assert db.scalar(f"SELECT COUNT(*) FROM `{db.layer}`.request WHERE created_by LIKE %s",
                     (dan + "@%",)) == 0


def test_exports_and_lookups_refuse_a_view_in_place_of_borrowers(koha: KohaDb) -> None:
    """B4: the Koha account renamed borrowers and put a DEFINER view in its place, whose
    function logged every row an export read (who asked about which patron, and when)."""
    from test_planted import app_account

    db = koha
    db.install()
    staff = Staff(db, alice=db.login("r4amy", "admin"), bob=db.login("r4bea", "admin"),
                  dora="", erin="")
    eve = db.login("r4eva", "disclosure")
    rid = staff.request(staff.alice, [42], grantee=eve, approve_as=staff.bob)
    app = app_account(db)
    with db.connect(app) as c:
        for stmt in (
                "CREATE TABLE zz_spied (who VARCHAR(200), patron BIGINT) ENGINE=MyISAM",
                "CREATE FUNCTION zz_spy(p BIGINT) RETURNS INT DETERMINISTIC MODIFIES SQL DATA "
                "SQL SECURITY DEFINER BEGIN INSERT INTO zz_spied VALUES (USER(), p); "
                "RETURN 1; END",
                "RENAME TABLE borrowers TO zz_borrowers_real",
                "CREATE SQL SECURITY DEFINER VIEW borrowers AS SELECT b.* FROM "
                "zz_borrowers_real b WHERE zz_spy(b.borrowernumber) = 1"):
            c.execute(stmt)
    with db.connect(eve, autocommit=False) as c:
        rows = c.rows(f"CALL `{db.layer}`.export(%s, 'csv')", (rid,))
        c.commit()
    assert rows[0][1] is None and "not a base table" in str(rows[0][2]), rows
    with db.connect(staff.alice, autocommit=False) as c:
        with pytest.raises(pymysql.err.MySQLError, match="not a base table"):
            _lookup(c, db.layer, [42])
        c.rollback()
    assert db.scalar(f"SELECT COUNT(*) FROM `{db.name}`.zz_spied") == 0
    with db.connect(app) as c:  # put Koha back for the fixture's clean-up
        c.execute("DROP VIEW borrowers")
        c.execute("RENAME TABLE zz_borrowers_real TO borrowers")


def test_a_request_discloses_only_to_an_exporter_or_disclosure_login(
        installed_module: KohaDb) -> None:
    """The parity gap: a request "for" the Koha application's account (or any login
    outside the two roles) was recorded and approved; PostgreSQL refuses it (layer 7)."""
    from test_planted import app_account

    db = installed_module
    staff = Staff(db, alice=db.login("r4ada", "admin", "disclosure"),
                  bob=db.login("r4bo", "admin"), dora="", erin="")
    app = app_account(db)
    with pytest.raises(Exception, match="holds neither the exporter nor the disclosure role"):
        staff.request(staff.alice, [17], grantee=app)
    # granted afterwards and taken away again before the approval: refused there too
    rid = staff.request(staff.alice, [17], grantee=db.login("r4cy", "disclosure"))
    with db.connect() as c:
        for kind in ("disclosure", "exporter"):  # function mode grants the exporter role
            if c.execute("SELECT COUNT(*) FROM mysql.roles_mapping WHERE User = %s AND "
                         "Role = %s", (f"{db.prefix}r4cy", db.role(kind))).fetchone()[0]:
                c.execute(f"REVOKE `{db.role(kind)}` FROM `{db.prefix}r4cy`@'%'")
    with pytest.raises(Exception, match="holds neither the exporter nor the disclosure role"):
        with db.connect(staff.bob, autocommit=False) as c:
            from ils_redact.disclosure import requests as rq

            rq.approve(c, rid)
    assert db.scalar(f"SELECT status FROM `{db.layer}`.request WHERE id = %s", (rid,)) == "draft"


def test_a_request_or_approval_whose_entry_failed_cannot_be_committed_into_use(
        installed_module: KohaDb) -> None:
    """The re-check: with the audit lock held by another session, request_create and
    request_approve failed at their final audit append (1205 after 5 s), MariaDB undid
    that statement only, and the caller committed the rest: a request, and an approval
    with its scope, that the log never mentions."""
    db = installed_module
    staff = Staff(db, alice=db.login("r5ann", "admin", "disclosure"),
                  bob=db.login("r5bob", "admin"), dora="", erin="")
    holder = db.login("r5hol", "admin")
    rid = staff.request(staff.alice, [71])  # a draft, with its entry
    layer = f"`{db.layer}`"
    with db.connect(holder, autocommit=False) as h:
        h.execute(f"SELECT seq FROM {layer}.audit_log ORDER BY seq DESC LIMIT 1 FOR UPDATE")
        h.rows(f"SELECT seq FROM {layer}.audit_log FOR UPDATE")
        # the approval fails on the lock; the approver commits whatever is left
        with db.connect(staff.bob, autocommit=False) as c:
            c.execute("SET SESSION innodb_lock_wait_timeout = 2")
            c.execute("START TRANSACTION")
            with pytest.raises(pymysql.err.MySQLError):
                c.rows(f"CALL {layer}.request_approve(%s)", (rid,))
            c.execute("COMMIT")
        # so does a new request, recorded while the lock is held
        with db.connect(staff.alice, autocommit=False) as c:
            c.execute("SET SESSION innodb_lock_wait_timeout = 2")
            c.execute("START TRANSACTION")
            with pytest.raises(pymysql.err.MySQLError):
                c.rows(f"CALL {layer}.request_create('emergency', 'x', 'x', '1', '1', 'r', "
                       "NULL, NULL, NULL, '[72]', NULL, '[\"borrowers.surname\"]', "
                       "UTC_TIMESTAMP(6) + INTERVAL 1 HOUR, NULL)")
            c.execute("COMMIT")
        h.rollback()
    assert db.scalar(f"SELECT status FROM {layer}.request WHERE id = %s", (rid,)) == "draft"
    assert db.scalar(f"SELECT COUNT(*) FROM {layer}.scope WHERE request_id = %s", (rid,)) == 0
    orphan = db.scalar(f"SELECT MAX(id) FROM {layer}.request WHERE created_by LIKE %s",
                       (staff.alice + "@%",))
    if orphan != rid:  # the request row committed without its entry: never approvable
        with db.connect(staff.bob, autocommit=False) as c:
            c.execute("START TRANSACTION")
            refusal = c.rows(f"CALL {layer}.request_approve(%s)", (orphan,))[0][0]
            c.execute("COMMIT")
        assert "no audit entry of its creation" in str(refusal), refusal
    # and an approval written by hand, with no entry, exports nothing
    eve = db.login("r5eve", "disclosure")
    with db.connect(autocommit=False) as c:  # (a request changes inside a transaction)
        c.execute(f"UPDATE {layer}.request SET status = 'approved', approved_by = 'x@%%', "
                  f"approved_at = UTC_TIMESTAMP(6), grantee = %s WHERE id = %s",
                  (eve + "@%", rid))
        c.commit()
    with db.connect(eve, autocommit=False) as c:
        rows = c.rows(f"CALL {layer}.export(%s, 'csv')", (rid,))
        c.commit()
    assert rows[0][1] is None and "approval of this request has no audit entry" in \
        str(rows[0][2]), rows
