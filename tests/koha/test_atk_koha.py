"""The MariaDB layer against the atk-koha review (B2, B4, B6), played as the staff logins
that found them, on a real server.

* B2: an admin read name and date of birth in bulk by making a throw-away draft after
  every lookup of 10 patrons (a draft counted as naming them).
* B4: a transaction that appended (or an XA transaction prepared after appending) held the
  audit lock: every append waited 50 s and failed with a generic lock-wait error.
* B6: request fields stored control characters, ANSI escapes and bidi overrides.
"""

# ruff: noqa: S608 - test SQL: names quoted with sqltext.ident/account

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pymysql
import pytest

from ils_redact.backends.mariadb.sqltext import ident
from support.koha import KohaDb
from support.koha_verify import verify_cli


def in_transaction(c: Any, query: str, params: Any = None) -> list[tuple]:
    """A request procedure as a client must call it: inside a transaction (layer 7
    refuses a request change alone in autocommit)."""
    c.execute("START TRANSACTION")
    try:
        rows = c.rows(query, params)
    except BaseException:
        c.execute("ROLLBACK")
        raise
    c.execute("COMMIT")
    return rows


def create(db: KohaDb, c: Any, ids: list[int], agency: str = "State Police",
           reason: str = "imminent danger") -> int:
    rows = in_transaction(
        c, f"CALL {ident(db.layer)}.request_create('emergency', %s, 'Pat Officer', "
        "'4711', '2026-CR-17', %s, NULL, NULL, NULL, %s, NULL, "
        "'[\"borrowers.surname\"]', UTC_TIMESTAMP(6) + INTERVAL 1 HOUR, NULL)",
        (agency, reason, json.dumps(ids)))
    return int(rows[0][0])


def lookup(db: KohaDb, c: Any, ids: list[int]) -> list[tuple]:
    return c.rows(f"CALL {ident(db.layer)}.patron_lookup(%s, NULL)", (json.dumps(ids),))


def error(exc: pytest.ExceptionInfo) -> str:
    return str(exc.value.args[1]) if len(exc.value.args) > 1 else str(exc.value)


# -- B2 ---------------------------------------------------------------------------------

def test_drafts_do_not_excuse_lookups(installed_module: KohaDb) -> None:
    """lookup 10 -> draft naming them -> lookup 10 more: refused (a draft nobody approved
    excuses nothing), and the refusal is traced."""
    db = installed_module
    carl = db.login("carl", "admin", "disclosure")
    read = 0
    with db.connect(carl) as c:
        with pytest.raises(pymysql.err.MySQLError) as exc:
            for i in range(20):
                ids = list(range(1000 + 10 * i, 1010 + 10 * i))
                read += len(lookup(db, c, ids))
                create(db, c, ids)
    assert read == 10, f"{read} patrons read through throw-away drafts"
    assert "lookup refused: 20 patrons looked up in the last 1 hour by " in error(exc)
    assert "are named by no approved request of theirs" in error(exc)
    assert db.scalar(f"SELECT COUNT(*) FROM {ident(db.layer)}.trace WHERE account = %s "
                     "AND action = 'lookup.refused'", (f"{carl}@%",)) == 1


def test_drafts_per_hour_are_bounded(installed_module: KohaDb) -> None:
    db = installed_module
    dave = db.login("dave", "admin", "disclosure")
    with db.connect(dave) as c:
        for i in range(5):
            create(db, c, [1500 + i])
        with pytest.raises(pymysql.err.MySQLError) as exc:
            create(db, c, [1510])
    assert f"{dave}@% has created 5 requests in the last hour that nobody has approved: " \
        "at most 5" in error(exc)
    assert db.scalar(f"SELECT COUNT(*) FROM {ident(db.layer)}.trace WHERE account = %s "
                     "AND action = 'request.refused'", (f"{dave}@%",)) == 1


def test_the_legitimate_flow_still_works(installed_module: KohaDb) -> None:
    """A clerk looks 10 patrons up, names them in a request, another admin approves it;
    the clerk's next lookup of 10 other patrons is within the bound."""
    db = installed_module
    erin, fred = db.login("erin", "admin", "disclosure"), db.login("fred", "admin")
    with db.connect(erin) as c:
        assert len(lookup(db, c, list(range(1200, 1210)))) == 10
        rid = create(db, c, list(range(1200, 1210)))
    with db.connect(fred) as c:
        in_transaction(c, f"CALL {ident(db.layer)}.request_approve(%s)", (rid,))
    with db.connect(erin) as c:
        assert len(lookup(db, c, list(range(1210, 1220)))) == 10


# -- B6 ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("agency", "reason", "field"), [
    ("Metro\x1b[2J\x1b[31mPolice", "imminent danger", "agency"),
    ("Metro\u202eecilop", "imminent danger", "agency"),
    ("Metro Police\r\nAPPROVED by director", "imminent danger", "agency"),
    ("Metro Police", "danger\x1b]0;pwn\x07", "emergency reason"),
    ("Metro Police", "danger\u2066x", "emergency reason"),
    # atk-koha2 B4: NUL and the characters that hide themselves on a printed form
    ("Metro\x00Police", "imminent danger", "agency"),
    ("Metro\u200fPolice", "imminent danger", "agency"),
    ("Metro Police", "danger\u200dx", "emergency reason"),
    ("Metro Police", "danger\ufeffx", "emergency reason"),
    ("Metro Police", "danger\U000e0041x", "emergency reason"),
    # atk3: Unicode's default-ignorable characters (a soft hyphen, a blank filler)
    ("Metro\u00adPolice", "imminent danger", "agency"),
    ("Metro Police", "danger\u3164x", "emergency reason"),
])
def test_request_text_refuses_control_characters(installed_module: KohaDb, agency: str,
                                                 reason: str, field: str) -> None:
    db = installed_module
    gina = db.login(f"gina{abs(hash((agency, reason))) % 10_000}", "admin", "disclosure")
    with db.connect(gina) as c:
        with pytest.raises(pymysql.err.MySQLError) as exc:
            create(db, c, [1700], agency=agency, reason=reason)
        assert error(exc) == (f"the {field} contains control characters (escape codes, "
                              "carriage returns, direction overrides): refused")
        # a newline and a tab in the reason are text, as on PostgreSQL; accents are letters
        create(db, c, [1701], agency="Policía Municipal", reason="line one\n\tline two")


# -- B4 ---------------------------------------------------------------------------------

def test_an_open_transaction_holding_the_audit_lock_fails_appends_fast(
        installed_module: KohaDb) -> None:
    db = installed_module
    hank, ivan = db.login("hank", "admin"), db.login("ivan", "admin")
    with db.connect(hank) as holder, db.connect(ivan) as other:
        own = other.execute("SELECT @@SESSION.innodb_lock_wait_timeout").fetchone()[0]
        holder.execute("START TRANSACTION")
        holder.rows(f"CALL {ident(db.layer)}.log_refusal('export', NULL, 'hold')")
        t = time.monotonic()
        with pytest.raises(pymysql.err.MySQLError) as exc:
            other.rows(f"CALL {ident(db.layer)}.log_refusal('export', NULL, 'blocked')")
        waited = time.monotonic() - t
        # the caller's session keeps its own setting after the refusal
        assert other.execute("SELECT @@SESSION.innodb_lock_wait_timeout").fetchone()[0] == own
        holder.rollback()
    assert waited < 15, f"waited {waited:.1f} s"
    assert exc.value.args[0] == 1205
    assert "the audit log is locked by another transaction (waited 5 s): " in error(exc)


def test_a_prepared_xa_transaction_is_reported_with_its_fix(installed_module: KohaDb,
                                                            tmp_path: Path) -> None:
    """XA START; append; XA END; XA PREPARE; disconnect: the hold outlives the session.
    Appends fail within seconds, verify names the xid and the fix, and the fix frees it."""
    db = installed_module
    jill, kate = db.login("jill", "admin"), db.login("kate", "admin")
    xid = f"zzfk{int(time.time())}"
    with db.connect(jill) as c:
        c.execute(f"XA START '{xid}'")
        c.rows(f"CALL {ident(db.layer)}.log_refusal('export', NULL, 'xa hold')")
        c.execute(f"XA END '{xid}'")
        c.execute(f"XA PREPARE '{xid}'")
    try:
        with db.connect(kate) as c:
            t = time.monotonic()
            with pytest.raises(pymysql.err.MySQLError) as exc:
                c.rows(f"CALL {ident(db.layer)}.log_refusal('export', NULL, 'blocked')")
            assert time.monotonic() - t < 15
        assert "the audit log is locked by another transaction" in error(exc)
        run = verify_cli(db, tmp_path)
        f = run.only("H-XA-PREPARED", f"XA transaction {xid}")
        assert f["severity"] == "warning"
        assert f["fix"] == f"XA ROLLBACK X'{xid.encode().hex()}';"
        with db.connect() as c:
            c.execute(f["fix"])
        with db.connect(kate) as c:
            c.rows(f"CALL {ident(db.layer)}.log_refusal('export', NULL, 'free again')")
    finally:
        with db.connect() as c:
            if any(r[3] in (xid, xid.encode()) for r in c.execute("XA RECOVER").fetchall()):
                c.execute(f"XA ROLLBACK '{xid}'")


# -- B3 ---------------------------------------------------------------------------------

def test_a_lookup_is_an_audit_entry(installed_module: KohaDb) -> None:
    """As on PostgreSQL: a patron lookup appends a hash-chained audit entry (action
    patron.lookup, the patrons it resolved) besides its trace row."""
    db = installed_module
    lena = db.login("lena", "admin")
    with db.connect(lena) as c:
        assert len(lookup(db, c, [5, 6])) == 2
    rows = db.rows(f"SELECT action, JSON_EXTRACT(detail, '$.patrons') FROM "
                   f"{ident(db.layer)}.audit_log WHERE actor = %s", (f"{lena}@%",))
    assert [(a, json.loads(p)) for a, p in rows] == [("patron.lookup", [5, 6])]
