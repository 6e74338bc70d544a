"""The MariaDB layer against the third review (atk-koha2), played as the staff logins
that found each break, on a real server.  (B1, the planted view under ``stats publish``:
tests/koha/test_planted.py.)

* B6: a transaction the exporter opened before a revoke (START TRANSACTION WITH
  CONSISTENT SNAPSHOT) still saw the request approved: its export after the revoke
  disclosed the patrons.
"""

# ruff: noqa: S608 - test SQL: names quoted with sqltext.ident

from __future__ import annotations

import json

import pymysql
import pytest
from test_atk_koha import in_transaction

from ils_redact.disclosure import requests as rq
from ils_redact.errors import Refused
from support.koha import KohaDb
from support.koha_workflow import Staff


def test_a_snapshot_opened_before_a_revoke_exports_nothing(installed_module: KohaDb
                                                           ) -> None:
    db = installed_module
    staff = Staff(db, alice=db.login("k2ann", "admin"), bob=db.login("k2ben", "admin"),
                  dora="", erin="")
    eve = db.login("k2eve", "disclosure")  # function mode: the exporter role
    rid = staff.request(staff.alice, [42, 43], grantee=eve, approve_as=staff.bob)
    layer = f"`{db.layer}`"
    with db.connect(eve, autocommit=False) as c:
        c.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        with db.connect(staff.bob, autocommit=False) as d:
            rq.end(d, rid, "revoked", "case closed")
            d.commit()
        rows = c.rows(f"CALL {layer}.export(%s, 'csv')", (rid,))
        c.rollback()
    assert rows and rows[0][1] is None, rows  # no document
    assert "revoked" in str(rows[0][2]), rows


def test_a_held_request_row_gives_a_refusal_not_a_traceback(installed_module: KohaDb
                                                            ) -> None:
    """B5: the grantee, also an admin (the README's clerk), holds its request's row with
    SELECT ... FOR UPDATE; the director's revoke waited out innodb_lock_wait_timeout and
    ended in the driver's traceback.  It is a refusal that says what holds it and that
    nothing changed (the veto itself is a known limit: docs/threat-model.md)."""
    db = installed_module
    staff = Staff(db, alice=db.login("k2cat", "admin"), bob=db.login("k2dan", "admin"),
                  dora="", erin="")
    clerk = db.login("k2fay", "admin", "disclosure")
    rid = staff.request(staff.alice, [44], grantee=clerk, approve_as=staff.bob)
    with db.connect(clerk, autocommit=False) as holder:
        holder.rows(f"SELECT id FROM `{db.layer}`.request WHERE id = %s FOR UPDATE", (rid,))
        with db.connect(staff.bob, autocommit=False) as d:
            d.execute("SET SESSION innodb_lock_wait_timeout = 2")
            with pytest.raises(Refused, match="locked by another session's open transaction"):
                rq.end(d, rid, "revoked", "case closed")
            d.rollback()
        holder.rollback()
    assert db.scalar(f"SELECT status FROM `{db.layer}`.request WHERE id = %s", (rid,)) \
        == "approved"


def test_a_request_names_a_patron_by_its_id_or_its_own_card(installed_module: KohaDb
                                                            ) -> None:
    """B10: request_create recorded any text as the name a patron is known by, so the
    officer's form could name patron 77's card (or a person) while the export disclosed
    patron 56.  Only the id or a card of that very patron is recorded."""
    db = installed_module
    gus = db.login("k2gus", "admin", "disclosure")
    card = {n: db.scalar(f"SELECT cardnumber FROM `{db.name}`.borrowers "
                         "WHERE borrowernumber = %s", (n,)) for n in (56, 77)}
    call = (f"CALL `{db.layer}`.request_create('emergency', 'State Police', 'Pat Officer', "
            "'4711', '2026-CR-17', 'imminent danger', NULL, NULL, NULL, '[56]', %s, "
            "'[\"borrowers.surname\"]', UTC_TIMESTAMP(6) + INTERVAL 1 HOUR, NULL)")
    with db.connect(gus) as c:
        for named in (card[77], "Smith, John", "0" + str(card[56])):
            with pytest.raises(pymysql.err.MySQLError) as exc:
                in_transaction(c, call, (json.dumps([named]),))
            assert "which is neither its id nor a card of that patron" in str(exc.value)
        for named in (card[56], "56"):
            rid = int(in_transaction(c, call, (json.dumps([named]),))[0][0])
            assert db.scalar(f"SELECT named_as FROM `{db.layer}`.request_patron "
                             "WHERE request_id = %s", (rid,)) == named


def test_a_request_change_alone_in_autocommit_is_refused(installed_module: KohaDb) -> None:
    """atk3: with autocommit on (the mariadb client's default) each statement of a
    procedure commits alone, so an approval whose audit append then failed stayed
    approved with no entry.  A request is recorded, approved, revoked or closed inside a
    transaction only; there, a failed append undoes the change."""
    db = installed_module
    hal, ida = db.login("k2hal", "admin", "disclosure"), db.login("k2ida", "admin")
    call = (f"CALL `{db.layer}`.request_create('emergency', 'State Police', 'Pat Officer', "
            "'4711', '2026-CR-17', 'imminent danger', NULL, NULL, NULL, '[57]', NULL, "
            "'[\"borrowers.surname\"]', UTC_TIMESTAMP(6) + INTERVAL 1 HOUR, NULL)")
    before = db.scalar(f"SELECT COUNT(*) FROM `{db.layer}`.request")
    with db.connect(hal) as c:
        with pytest.raises(pymysql.err.MySQLError, match="inside a transaction"):
            c.rows(call)
        assert db.scalar(f"SELECT COUNT(*) FROM `{db.layer}`.request") == before
        rid = int(in_transaction(c, call)[0][0])
    with db.connect(ida) as c:
        with pytest.raises(pymysql.err.MySQLError, match="inside a transaction"):
            c.rows(f"CALL `{db.layer}`.request_approve(%s)", (rid,))
        assert db.scalar(f"SELECT status FROM `{db.layer}`.request WHERE id = %s",
                         (rid,)) == "draft"
        # the attack: the audit log's lock held by another session; inside a transaction
        # the approval fails whole
        with db.connect(hal, autocommit=False) as holder:
            holder.rows(f"CALL `{db.layer}`.log_refusal('export', NULL, 'hold')")
            with pytest.raises(pymysql.err.MySQLError):
                in_transaction(c, f"CALL `{db.layer}`.request_approve(%s)", (rid,))
            holder.rollback()
    assert db.scalar(f"SELECT status FROM `{db.layer}`.request WHERE id = %s",
                     (rid,)) == "draft"
