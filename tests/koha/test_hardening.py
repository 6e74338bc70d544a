"""The MariaDB layer's hardening, each class played as its attacker plays it: a real staff
login on the real server, typing the SQL they would type.

1. an admin reads patrons of no request through ``patron_lookup``, in bulk, unlogged;
2. any session moves the clock with ``SET timestamp`` (export an expired request,
   expire everyone else's, report the current month);
3. ``access: role`` cannot narrow a court order's fields: the views serve whole rows;
4. scope keyed on the name before the first ``@`` (``victim@x``), and accounts of one
   name on two hosts;
5. staff forge audit entries (``audit_append``, ``log_refusal`` with any text);
6. the query gate of a staff login, which sees no Koha table, checks against the
   catalog install recorded;
7. reading requests never writes (a read-only transaction, a replica).
"""

# ruff: noqa: S608 - test SQL: names quoted with sqltext.ident/account

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pymysql
import pytest

from ils_redact.backends import mariadb as m
from ils_redact.backends.mariadb.connection import Connection
from ils_redact.backends.mariadb.sqltext import account, ident, string
from ils_redact.disclosure import audit, forms
from ils_redact.disclosure import export as ex
from ils_redact.disclosure import requests as rq
from ils_redact.errors import Refused
from ils_redact.stats import all_reports
from support.koha import PASSWORD, KohaDb, MariaServer, run_cli, write_koha_rules
from support.koha_workflow import Staff, identity_select, role_mode


@dataclasses.dataclass
class World:
    db: KohaDb
    staff: Staff

    @property
    def layer(self) -> str:
        return ident(self.db.layer)

    def trace(self, acct: str) -> list[tuple]:
        return self.db.rows(f"SELECT action, patrons, request_id, detail FROM {self.layer}.trace "
                            "WHERE account = %s ORDER BY seq", (acct,))

    def expire(self, rid: int, minutes: int = 5) -> None:
        """What the passing of time does to an approved request (root moves its expiry,
        and the expiry of its scope, into the past)."""
        with self.db.connect() as c:
            for table in ("request", "scope"):
                key = "id" if table == "request" else "request_id"
                c.execute(f"UPDATE {self.layer}.{table} SET expires_at = UTC_TIMESTAMP(6) - "
                          f"INTERVAL %s MINUTE WHERE {key} = %s", (minutes, rid))


@pytest.fixture(scope="module")
def world(mariadb: MariaServer) -> Iterator[World]:
    db = mariadb.koha_db()
    db.install()
    try:
        yield World(db, Staff.create(db))
    finally:
        mariadb.release(db)


def _errno(conn: Connection, sql: str, params=None) -> tuple[int, str]:
    with pytest.raises(pymysql.err.MySQLError) as exc:
        conn.rows(sql, params)
    return exc.value.args[0], str(exc.value.args[1])


def socket_connect(db: KohaDb, user: str, password: str = PASSWORD) -> Connection:
    """A connection through the server's Unix socket: the client host is ``localhost``
    (over TCP from this machine it is ``127.0.0.1``), so accounts on those two hosts are
    two different logins the tests can both use."""
    sock = db.scalar("SELECT @@socket")
    assert sock and Path(sock).exists(), f"the server's socket {sock} is not reachable"
    return m.connect(f"mysql://{quote(user, safe='')}:{quote(password, safe='')}@localhost/"
                     f"{quote(db.name, safe='')}?unix_socket={quote(sock)}", autocommit=True)


def create_account(db: KohaDb, user: str, host: str, kind: str) -> None:
    """What an administrator does by hand (``staff grant`` refuses both of these): an
    account in a layer role, as its default role."""
    role = ident(db.role(kind))
    with db.connect() as c:
        c.execute(f"CREATE USER {account(user, host)} IDENTIFIED BY {string(PASSWORD)}")
        c.execute(f"GRANT {role} TO {account(user, host)}")
        c.execute(f"SET DEFAULT ROLE {role} FOR {account(user, host)}")


# -- 1. the admin's patron lookup ------------------------------------------------------------

def test_admin_lookup_is_bounded_and_leaves_a_trace_that_survives_rollback(world) -> None:
    db = world.db
    carl = db.login("carl", "admin", "disclosure")
    lookup = f"CALL {world.layer}.patron_lookup(%s, %s)"
    with db.connect(carl, autocommit=False) as c:
        # the attack as reported: names and birth dates of patrons in no request, and
        # then the transaction rolled back so that no audit entry remains
        rows = c.rows(lookup, ("[102,200,201]", None))
        c.rollback()
    assert sorted(r[1] for r in rows) == [102, 200, 201]
    traced = world.trace(f"{carl}@%")
    assert [(a, sorted(json.loads(p))) for a, p, _, _ in traced] == \
        [("lookup", [102, 200, 201])]
    with db.connect(carl, autocommit=False) as c:
        # more than a request may name, in one call: refused (ids and barcodes count)
        ids = json.dumps(list(range(300, 311)))
        assert _errno(c, lookup, (ids, None))[1].startswith(
            "a lookup confirms the patrons of one request: at most 10")
        assert _errno(c, lookup, ("[1,2,3,4,5,6]", '["200000000007","200000000008",'
                                  '"200000000009","200000000011","200000000012"]'))[0] == 1644
        # in one transaction, call after call: the three above and seven more are the
        # most a request could name; the eleventh is refused, and so after a rollback
        assert len(c.rows(lookup, ("[400,401,402,403,404,405,406]", None))) == 7
        no, msg = _errno(c, lookup, ("[407]", None))
        assert no == 1644 and "11 patrons looked up in the last 1 hour" in msg, msg
        c.rollback()
    with db.connect(carl, autocommit=False) as c:
        assert _errno(c, lookup, (None, '["200000000407"]'))[0] == 1644
    # what was returned and what was refused are both on record
    actions = [a for a, *_ in world.trace(f"{carl}@%")]
    assert actions == ["lookup", "lookup", "lookup.refused", "lookup.refused"]
    # a request that names them, once another login approves it, frees the lookups (the
    # CLI's own order of events); a draft alone frees nothing (atk-koha B2)
    new = rq.NewRequest(basis="emergency", agency="PD", officer_name="Jo", officer_badge="1",
                        case_number="C", emergency_reason="danger",
                        patrons=[102, 200, 201, 400, 401, 402, 403, 404, 405, 406],
                        columns=["borrowers.surname"],
                        expires_at=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1))
    with db.connect(carl, autocommit=False) as c:
        found, unknown = rq.resolve_patrons(c, new.patrons, [])
        assert not unknown
        rid = rq.create(c, new, found)
        c.commit()
        assert _errno(c, lookup, ("[500,501,502]", None))[0] == 1644
        c.rollback()
    with db.connect(world.staff.bob, autocommit=False) as c:
        rq.approve(c, rid)
        c.commit()
    with db.connect(carl, autocommit=False) as c:
        assert len(c.rows(lookup, ("[500,501,502]", None))) == 3
        c.commit()


def test_the_trace_is_append_only_and_no_staff_role_writes_it(world) -> None:
    db, staff = world.db, world.staff
    with db.connect() as c:
        for stmt in (f"UPDATE {world.layer}.trace SET account = 'x'",
                     f"DELETE FROM {world.layer}.trace"):
            with pytest.raises(pymysql.err.MySQLError) as exc:
                c.execute(stmt)
            assert exc.value.args[0] == 1644 and "append-only" in exc.value.args[1]
    for who in (staff.alice, staff.bob, staff.dora):
        with db.connect(who) as c:
            for stmt in (f"INSERT INTO {world.layer}.trace (at, account, action, patrons, "
                         "detail, conn) VALUES (NOW(), 'x', 'lookup', '[]', '{}', 1)",
                         f"SELECT * FROM {world.layer}.trace",
                         f"TRUNCATE TABLE {world.layer}.trace"):
                assert _errno(c, stmt)[0] in (1142, 1044), (who, stmt)


# -- 2. the clock ------------------------------------------------------------------------------

def test_the_clock_set_back_exports_no_expired_request(world) -> None:
    db, staff = world.db, world.staff
    rid = staff.request(staff.alice, [41, 42], approve_as=staff.bob)
    world.expire(rid, minutes=5)
    with db.connect() as c:
        last = audit.entries(c)[-1]
    with db.connect(staff.alice, autocommit=False) as c:
        c.execute(f"SET ROLE {ident(db.role('exporter'))}")
        c.execute("SET timestamp = UNIX_TIMESTAMP() - 600")
        seq, document, manifest = c.rows(f"CALL {world.layer}.export(%s, 'csv')", (rid,))[0]
        c.commit()
    assert document is None, "an expired request was exported with the clock set back"
    assert "expired" in json.loads(manifest)["refused"]
    with db.connect() as c:
        entries = audit.entries(c)
        assert audit.verify(c).ok
        now = c.execute("SELECT UTC_TIMESTAMP(6)").fetchone()[0]
    new = [e for e in entries if e.seq > last.seq]
    assert [e.action for e in new] == ["request.expired", "export.refused"]
    # audit times are the server's, in order: not back-dated by the session
    times = [dt.datetime.fromisoformat(e.at.rstrip("Z")) for e in entries]
    assert times == sorted(times)
    assert all(abs((t - now).total_seconds()) < 120 for t in times[-2:])


def test_the_clock_set_ahead_expires_nobody_elses_request(world) -> None:
    db, staff = world.db, world.staff
    theirs = staff.request(staff.alice, [51], grantee=staff.dora, approve_as=staff.bob)
    mine = staff.request(staff.bob, [52], grantee=staff.alice, approve_as=staff.carol)
    with db.connect(staff.alice, autocommit=False) as c:
        c.execute("SET timestamp = UNIX_TIMESTAMP() + 2 * 86400")
        out = ex.export(c, mine, "csv")  # its sweep runs by the clock
    assert out.manifest["rows"] == 1
    assert db.scalar(f"SELECT status FROM {world.layer}.request WHERE id = %s",
                     (theirs,)) == "approved"
    assert len(db.rows(identity_select(db, "WHERE borrowernumber = 51"), user=staff.dora)) == 1
    with db.connect() as c:
        entry = [e for e in audit.entries(c, request_id=mine) if e.action == "export"][-1]
        now = c.execute("SELECT UTC_TIMESTAMP(6)").fetchone()[0]
    at = dt.datetime.fromisoformat(entry.at.rstrip("Z"))
    assert abs((at - now).total_seconds()) < 120, "the export entry is dated by the session"


def test_the_clock_set_ahead_reports_no_incomplete_month(world) -> None:
    db = world.db
    analyst = db.login("analyst", "stats")
    this_month = dt.datetime.now(dt.timezone.utc).date().replace(day=1)
    next_month = (this_month + dt.timedelta(days=40)).replace(day=1)
    with db.connect(analyst) as c:
        c.execute("SET timestamp = UNIX_TIMESTAMP() + 40 * 86400")
        no, msg = _errno(c, f"CALL {world.layer}.report_circ_by_category(%s, %s)",
                         ((this_month - dt.timedelta(days=62)).replace(day=1), next_month))
    assert no == 1644 and "complete months only" in msg


def test_install_refuses_a_server_whose_sysdate_is_now(world) -> None:
    """The real server follows its clock; the check that install runs says so (a server
    started with --sysdate-is-now is refused: tests/koha/test_sysdate_is_now.py)."""
    with world.db.connect() as c:
        assert not m.connection.sysdate_is_now(c)
        c.execute("SET timestamp = 86400")
        assert c.execute("SELECT YEAR(NOW()), YEAR(SYSDATE())").fetchone()[0] == 1970
        assert c.execute(f"SELECT YEAR({world.layer}.clock_utc())").fetchone()[0] > 2000


# -- 3. field limits ---------------------------------------------------------------------------

def test_a_narrower_request_is_not_served_by_the_views(world) -> None:
    """dora holds the disclosure role (the role-mode grant): a court order naming only the
    surname gives her no row through the views or the lookup; the export renders the
    surname alone."""
    db, staff = world.db, world.staff
    rid = staff.request(staff.alice, [61], grantee=staff.dora, basis="court-order",
                        columns=["surname"], hours=24, approve_as=staff.bob)
    with db.connect(staff.dora) as c:
        assert c.execute(identity_select(db, "WHERE borrowernumber = 61")).fetchall() == ()
        assert c.rows(f"CALL {world.layer}.lookup_borrowers('[61]')") == []
        assert c.execute(f"SELECT COUNT(*) FROM {world.layer}.scope_patrons WHERE request_id "
                         "= %s", (rid,)).fetchone()[0] == 0
        out = ex.export(c, rid, "json")
    doc = json.loads(out.document)
    assert doc["columns"] == ["borrowers.surname"]
    assert doc["records"][0]["values"] == {"surname": db.scalar(
        f"SELECT surname FROM {ident(db.name)}.borrowers WHERE borrowernumber = 61")}


@pytest.fixture(scope="module")
def role_world(mariadb: MariaServer) -> Iterator[World]:
    db = mariadb.koha_db()
    db.install(role_mode(db.rules))
    try:
        yield World(db, Staff.create(db))
    finally:
        mariadb.release(db)


def test_role_mode_refuses_a_request_for_fewer_fields(role_world) -> None:
    db, staff = role_world.db, role_world.staff
    with pytest.raises(Refused, match="access: role cannot limit a request"):
        staff.request(staff.alice, [71], grantee=staff.dora, basis="court-order",
                      columns=["surname"], hours=24, approve_as=staff.bob)
    with db.connect(staff.dora) as c:
        assert c.execute(identity_select(db, "WHERE borrowernumber = 71")).fetchall() == ()
    # every identity field: allowed, and served
    staff.request(staff.alice, [72], grantee=staff.dora, basis="court-order",
                  columns=["borrowers.*"], hours=24, approve_as=staff.bob)
    with db.connect(staff.dora) as c:
        assert len(c.execute(identity_select(db, "WHERE borrowernumber = 72")).fetchall()) == 1


def test_role_mode_serves_no_narrower_request_approved_before(role_world, tmp_path) -> None:
    """A narrower request approved while the layer was in function mode: once in role
    mode, neither the views nor the export serve it."""
    db, staff = role_world.db, role_world.staff
    db.install(db.rules)  # function mode
    try:
        rid = staff.request(staff.alice, [73], grantee=staff.dora, basis="court-order",
                            columns=["surname"], hours=24, approve_as=staff.bob)
    finally:
        db.install(role_mode(db.rules))
    with db.connect(staff.dora) as c:
        assert c.execute(identity_select(db, "WHERE borrowernumber = 73")).fetchall() == ()
        with pytest.raises(Refused, match="access: role cannot limit"):
            ex.export(c, rid, "csv")


# -- 4. accounts, not names ----------------------------------------------------------------------

def test_a_login_named_victim_at_x_reads_nothing_of_victims_scope(world, tmp_path) -> None:
    db, staff = world.db, world.staff
    rules = str(write_koha_rules(tmp_path, db.prefix))
    evil = f"{staff.dora}@x"
    # staff grant refuses to create it ...
    out = run_cli("--dsn", db.dsn, "--rules", rules, "staff", "grant", f"{evil}@%",
                  "--create", "--role", "disclosure")
    assert out.returncode == 2 and "a user name with '@'" in out.stderr, out.stderr
    assert db.scalar("SELECT COUNT(*) FROM mysql.user WHERE User = %s", (evil,)) == 0
    # ... and an administrator who makes it by hand gives it nothing of dora's scope
    staff.request(staff.alice, [81], grantee=staff.dora, approve_as=staff.bob)
    create_account(db, evil, "%", "disclosure")
    with db.connect(staff.dora) as c:
        assert len(c.execute(identity_select(db, "WHERE borrowernumber = 81")).fetchall()) == 1
    with db.connect(evil) as c:
        assert c.execute("SELECT USER()").fetchone()[0].startswith(f"{evil}@")
        assert c.execute(identity_select(db)).fetchall() == ()
        assert c.rows(f"CALL {world.layer}.lookup_borrowers(NULL)") == []
        assert c.execute(f"SELECT COUNT(*) FROM {world.layer}.scope_patrons").fetchone()[0] == 0


def test_one_name_on_two_hosts_is_two_accounts(world) -> None:
    """'v'@'127.0.0.1' is the grantee; 'v'@'localhost', made later by an administrator and
    given the disclosure role, is another person: nothing of v's scope, by any path."""
    db, staff = world.db, world.staff
    v = f"{db.prefix}v"
    create_account(db, v, "127.0.0.1", "disclosure")
    rid = staff.request(staff.alice, [91], grantee=f"{v}@127.0.0.1", approve_as=staff.bob)
    create_account(db, v, "localhost", "disclosure")
    with db.connect(v) as c:  # TCP from 127.0.0.1: the grantee
        assert c.execute("SELECT CURRENT_USER()").fetchone()[0] == f"{v}@127.0.0.1"
        assert [r[0] for r in c.execute(identity_select(db))] == [91]
    with socket_connect(db, v) as c:  # the unix socket: v@localhost
        assert c.execute("SELECT CURRENT_USER()").fetchone()[0] == f"{v}@localhost"
        assert c.execute(identity_select(db)).fetchall() == ()
        assert c.rows(f"CALL {world.layer}.lookup_borrowers(NULL)") == []
        with pytest.raises(Refused, match="refused"):
            ex.export(c, rid, "csv")
    # and a request for a name two accounts share is refused: which one would it be?
    with pytest.raises(Refused, match="no single account"):
        staff.request(staff.alice, [92], grantee=v)


def test_a_grantee_with_an_address_mask_host_is_refused(world) -> None:
    """The identity views match the client host with the grantee's wildcards only: an
    'address/mask' account is refused as a grantee (it would get no rows, or, matched
    loosely, another's)."""
    db, staff = world.db, world.staff
    n = f"{db.prefix}n"
    create_account(db, n, "127.0.0.0/255.0.0.0", "disclosure")
    with pytest.raises(Refused, match="address/mask host"):
        staff.request(staff.alice, [93], grantee=f"{n}@127.0.0.0/255.0.0.0")


def test_staff_grant_refuses_a_second_account_of_one_name(world) -> None:
    from ils_redact.backends.mariadb import staff as staff_mod

    db = world.db
    w = f"{db.prefix}w"
    with db.connect() as c:
        c.execute(f"CREATE USER {account(w, 'localhost')}")
        staff_mod.plan_grant(c, db.rules, f"{w}@localhost", "disclosure")  # one account: fine
        with pytest.raises(Refused, match="has the same user name"):
            staff_mod.plan_grant(c, db.rules, f"{w}@%", "disclosure", create=True)
        c.execute(f"CREATE USER {account(w, '%')}")
        with pytest.raises(Refused, match="has the same user name"):
            staff_mod.plan_grant(c, db.rules, f"{w}@localhost", "disclosure")


# -- 5. the audit log's integrity ---------------------------------------------------------------

def test_staff_cannot_append_to_the_audit_log(world) -> None:
    db, staff = world.db, world.staff
    rid = staff.request(staff.alice, [95], grantee=staff.dora, approve_as=staff.bob)
    hers = staff.request(staff.bob, [96], grantee=staff.alice, approve_as=staff.carol)
    with db.connect() as c:
        before = len(audit.entries(c))
    for who in (staff.dora, staff.alice, staff.bob):
        with db.connect(who) as c:
            no, _ = _errno(c, f"CALL {world.layer}.audit_append('request.revoked', %s, "
                              "'{\"reason\": \"forged\"}', @s)", (rid,))
            assert no == 1370, who
    # log_refusal: a fixed set of actions, at most 500 characters of reason
    with db.connect(staff.bob) as c:
        no, msg = _errno(c, f"CALL {world.layer}.log_refusal('request.revoked', %s, 'x')",
                         (rid,))
        assert no == 1644 and "not a refusal ils-redact logs" in msg
        c.rows(f"CALL {world.layer}.log_refusal('request.create', NULL, %s)", ("y" * 100_000,))
    # query_log: a disclosure login logs its queries, nothing else
    with db.connect(staff.dora) as c:
        no, _ = _errno(c, f"CALL {world.layer}.query_log('request.revoked', %s, '{{}}')", (rid,))
        assert no == 1644
        no, _ = _errno(c, f"CALL {world.layer}.query_log('query', %s, '{{}}')", (hers,))
        assert no == 1644  # not a request of dora's
    with db.connect() as c:
        new = audit.entries(c)[before:]
        assert audit.verify(c).ok
    assert [e.action for e in new] == ["request.create.refused"]
    assert len(new[0].detail["reason"]) == 500
    assert db.scalar(f"SELECT status FROM {world.layer}.request WHERE id = %s",
                     (rid,)) == "approved"


# -- 6. the catalog the gate checks against ------------------------------------------------------

def test_the_gate_of_a_staff_login_checks_the_recorded_catalog(koha: KohaDb, tmp_path) -> None:
    """A table of the library's own: the live catalog has it, the packaged one does not.
    A staff login's rewrite finds the Koha tables at all, and this one by what install
    recorded; a new table is found after the next install records it."""
    rules = str(write_koha_rules(tmp_path, koha.prefix))
    with koha.connect() as c:
        c.execute(f"CREATE TABLE {ident(koha.name)}.local_notes (borrowernumber INT, note TEXT)")
    koha.install()
    alice = koha.login("alice", "disclosure")  # function mode: the exporter role

    def rewrite(sql: str):
        return run_cli("--dsn", koha.dsn_as(alice), "--rules", rules, "--format", "json",
                       "rewrite", "--profile", "disclosure", sql)

    ok = rewrite("SELECT surname FROM borrowers")
    assert ok.returncode == 0, ok.stderr
    assert f"`{koha.layer}`.`borrowers`" in json.loads(ok.stdout)["sql"]
    local = rewrite("SELECT note FROM local_notes")
    assert local.returncode == 1
    codes = {f["code"] for f in json.loads(local.stdout)["findings"]}
    assert codes and "R-UNKNOWN-RELATION" not in codes, codes
    with koha.connect() as c:
        c.execute(f"CREATE TABLE {ident(koha.name)}.local_more (id INT)")
        assert any("catalog" in d for d in m.status(c, koha.rules, reports=all_reports)["drift"])
    before = rewrite("SELECT id FROM local_more")
    assert {f["code"] for f in json.loads(before.stdout)["findings"]} == {"R-UNKNOWN-RELATION"}
    koha.install()
    after = rewrite("SELECT id FROM local_more")
    assert "R-UNKNOWN-RELATION" not in {f["code"] for f in json.loads(after.stdout)["findings"]}


# -- 7. reading never writes -------------------------------------------------------------------

def test_reading_requests_writes_nothing(world, tmp_path) -> None:
    """On a read-only replica, or in a READ ONLY transaction: list, show, form, packet and
    the audit log work, and an approved request past its expiry shows as expired."""
    db, staff = world.db, world.staff
    rid = staff.request(staff.alice, [97], approve_as=staff.bob)
    world.expire(rid)
    with db.connect(staff.bob, autocommit=False) as c:
        c.execute("START TRANSACTION READ ONLY")
        listed = {r["id"]: r["status"] for r in rq.list_requests(c)}
        shown = rq.show(c, rid)
        form = forms.render_form(c, db.rules, rid)
        files = forms.write_packet(c, db.rules, rid, tmp_path / "packet")
        entries = audit.entries(c, request_id=rid)
        c.commit()
    assert listed[rid] == "expired" and shown["status"] == "expired"
    assert f"#{rid} (expired)" in form and files and entries
    assert db.scalar(f"SELECT status FROM {world.layer}.request WHERE id = %s",
                     (rid,)) == "approved"  # nothing was written
    # the next writing call records the expiry
    with db.connect(staff.bob, autocommit=False) as c:
        c.rows(f"CALL {world.layer}.sweep_expired()")
        c.commit()
    assert db.scalar(f"SELECT status FROM {world.layer}.request WHERE id = %s",
                     (rid,)) == "expired"
