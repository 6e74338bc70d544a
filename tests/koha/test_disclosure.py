"""The disclosure workflow on MariaDB: two-person approval, the logged export that
matches its manifest, refusals that are logged and not raised, the limits from the rules,
and the hash-chained audit log that finds tampering by root."""

# ruff: noqa: S608 - test SQL: names quoted with sqltext.ident

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator

import pymysql
import pytest

from ils_redact.backends.mariadb.sqltext import ident
from ils_redact.disclosure import audit
from ils_redact.disclosure import export as ex
from ils_redact.disclosure import requests as rq
from ils_redact.errors import Refused
from support.koha import PASSWORD, KohaDb, MariaServer, run_cli, write_koha_rules
from support.koha_workflow import Staff


@pytest.fixture(scope="module")
def world(mariadb: MariaServer) -> Iterator[tuple[KohaDb, Staff]]:
    db = mariadb.koha_db()
    db.install()
    try:
        yield db, Staff.create(db)
    finally:
        mariadb.release(db)


def _actions(db: KohaDb, request_id: int) -> list[str]:
    return [r[0] for r in db.rows(f"SELECT action FROM {ident(db.layer)}.audit_log WHERE "
                                  "request_id = %s ORDER BY seq", (request_id,))]


def test_self_approval_is_refused_and_logged(world) -> None:
    db, staff = world
    rid = staff.request(staff.alice, [11, 12])
    with db.connect(staff.alice, autocommit=False) as c:
        with pytest.raises(Refused, match="two-person rule"):
            rq.approve(c, rid)
        c.commit()
    assert _actions(db, rid) == ["request.created", "request.approve.refused"]
    assert db.scalar(f"SELECT status FROM {ident(db.layer)}.request WHERE id = %s",
                     (rid,)) == "draft"
    # the database refuses it too, whatever the client does: approved_by <> created_by
    with db.connect() as c:
        with pytest.raises(pymysql.err.MySQLError):
            c.execute(f"UPDATE {ident(db.layer)}.request SET status = 'approved', approved_by "
                      "= created_by WHERE id = %s", (rid,))


def test_the_account_a_request_discloses_to_cannot_approve_it(world) -> None:
    """The attack: alice records a request for bea, bea (an admin too) approves her own
    access; the database refuses it and logs the refusal."""
    db, staff = world
    bea = db.login("bea", "admin", "disclosure")
    rid = staff.request(staff.alice, [13], grantee=bea)
    with db.connect(bea, autocommit=False) as c:
        with pytest.raises(Refused, match="discloses to cannot approve it"):
            rq.approve(c, rid)
        c.commit()
    assert _actions(db, rid) == ["request.created", "request.approve.refused"]
    assert db.scalar(f"SELECT status FROM {ident(db.layer)}.request WHERE id = %s",
                     (rid,)) == "draft"


def test_export_matches_its_manifest_and_the_audit_entry(world) -> None:
    db, staff = world
    rid = staff.request(staff.alice, [21, 22, 23], approve_as=staff.bob)
    for fmt in ("csv", "json"):
        with db.connect(staff.alice, autocommit=False) as c:
            out = ex.export(c, rid, fmt)
        m = out.manifest
        assert hashlib.sha256(out.document).hexdigest() == m["sha256"]
        assert m["bytes"] == len(out.document) and m["rows"] == 3 and m["patrons"] == 3
        assert m["request"] == rid and m["format"] == fmt
        assert m["exported_by"] == f"{staff.alice}@%"  # the account, not a name
        entry = db.rows(f"SELECT action, detail FROM {ident(db.layer)}.audit_log WHERE seq = %s",
                        (m["audit_seq"],))[0]
        assert entry[0] == "export" and json.loads(entry[1])["sha256"] == m["sha256"]
        text = out.document.decode()
        for pid in (21, 22, 23):
            assert f"patron{pid}@example.org" in text
        assert "patron24@example.org" not in text
        if fmt == "json":
            doc = json.loads(text)
            assert [r["patron_id"] for r in doc["records"]] == [21, 22, 23]
            assert doc["records"][0]["values"]["email"] == "patron21@example.org"
        else:
            lines = text.splitlines()
            assert lines[0].startswith('patron_id,relation,"borrowers.borrowernumber"')
            assert [ln.split(",")[0] for ln in lines[1:]] == ["21", "22", "23"]


def test_court_order_exports_only_the_named_columns(world) -> None:
    db, staff = world
    rid = staff.request(staff.alice, [31], basis="court-order",
                        columns=["surname", "firstname", "cardnumber"], hours=24,
                        approve_as=staff.bob)
    with db.connect(staff.alice, autocommit=False) as c:
        out = ex.export(c, rid, "csv")
    header = out.document.decode().splitlines()[0]
    assert header == ('patron_id,relation,"borrowers.cardnumber","borrowers.surname",'
                      '"borrowers.firstname"')
    assert out.manifest["columns"] == ["borrowers.cardnumber", "borrowers.surname",
                                       "borrowers.firstname"]


@pytest.mark.parametrize("case", ["draft", "not-grantee", "revoked", "expired", "closed"])
def test_export_refusals_are_logged_not_raised(world, case: str) -> None:
    db, staff = world
    approve = None if case == "draft" else staff.bob
    if case == "not-grantee":
        # alice creates it for dora, carol approves: alice may not export it
        rid = staff.request(staff.alice, [41], grantee=staff.dora, approve_as=staff.carol)
    else:
        rid = staff.request(staff.alice, [41], approve_as=approve)
    if case in ("revoked", "closed"):
        with db.connect(staff.bob, autocommit=False) as c:
            rq.end(c, rid, case, "test")
            c.commit()
    if case == "expired":
        with db.connect() as c:
            # what the passing of time does to the request (the export checks its expiry)
            c.execute(f"UPDATE {ident(db.layer)}.request SET expires_at = UTC_TIMESTAMP(6) "
                      "- INTERVAL 1 SECOND WHERE id = %s", (rid,))
    with db.connect(staff.alice, autocommit=False) as c:
        with pytest.raises(Refused, match="refused"):
            ex.export(c, rid, "csv")
    actions = _actions(db, rid)
    assert actions[-1] == "export.refused", actions
    if case == "expired":
        assert "request.expired" in actions  # recorded by the sweep
        assert db.scalar(f"SELECT status FROM {ident(db.layer)}.request WHERE id = %s",
                         (rid,)) == "expired"


def test_limits_from_the_rules(world) -> None:
    db, staff = world
    with db.connect(staff.alice, autocommit=False) as c:
        too_many = list(range(100, 100 + db.rules.disclosure.max_patrons + 1))
        with pytest.raises(Refused, match="at most 10 patrons"):
            rq.create(c, _new(db, too_many), [rq.Resolved(str(p), p, {}) for p in too_many])
        c.rollback()
        with pytest.raises(Refused, match="not identity columns"):
            rq.create(c, _new(db, [5], columns=["borrowers.password"]),
                      [rq.Resolved("5", 5, {})])
        c.rollback()
        with pytest.raises(Refused, match="unknown patron ids"):
            rq.create(c, _new(db, [999999]), [rq.Resolved("999999", 999999, {})])
        c.rollback()
        with pytest.raises(Refused, match="later than the rules allow"):
            rq.create(c, _new(db, [5], hours=25), [rq.Resolved("5", 5, {})])
        c.rollback()


def _new(db: KohaDb, patrons: list[int], columns: list[str] | None = None,
         hours: float = 2) -> rq.NewRequest:
    import datetime as dt

    return rq.NewRequest(
        basis="emergency", agency="PD", officer_name="Jo", officer_badge="1",
        case_number="C", emergency_reason="danger", patrons=patrons,
        columns=columns or ["borrowers.surname"],
        expires_at=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=hours))


def test_patron_lookup_by_id_and_card_number(world) -> None:
    db, staff = world
    with db.connect(staff.bob) as c:
        found, unknown = rq.resolve_patrons(c, [7, 424242], ["200000000009"])
    assert unknown == ["424242"]
    assert [(f.named_as, f.patron_id) for f in found] == [("7", 7), ("200000000009", 9)]
    assert found[1].display["barcode"] == "200000000009"
    assert set(found[0].display) == set(db.rules.patron.display)


def test_audit_log_is_append_only_even_for_root(world) -> None:
    db, staff = world
    layer = ident(db.layer)
    with db.connect() as c:
        for stmt in (f"UPDATE {layer}.audit_log SET actor = 'x'",
                     f"DELETE FROM {layer}.audit_log"):
            with pytest.raises(pymysql.err.MySQLError) as exc:
                c.execute(stmt)
            assert exc.value.args[0] == 1644 and "append-only" in exc.value.args[1]
    # no staff role may TRUNCATE or DROP it (no trigger fires for those)
    for who in (staff.alice, staff.bob, staff.dora):
        with db.connect(who) as c:
            for stmt in (f"TRUNCATE TABLE {layer}.audit_log", f"DROP TABLE {layer}.audit_log",
                         f"DROP DATABASE {layer}"):
                with pytest.raises(pymysql.err.MySQLError) as exc:
                    c.execute(stmt)
                assert exc.value.args[0] in (1142, 1044), (who, stmt)
    # and no account or role ils-redact created holds DROP anywhere
    names = [db.role(k) for k in ("admin", "disclosure", "exporter", "stats")] + [db.owner]
    ph = ", ".join(["%s"] * len(names))
    assert db.scalar(f"SELECT COUNT(*) FROM mysql.tables_priv WHERE User IN ({ph}) AND "
                     "FIND_IN_SET('Drop', Table_priv)", names) == 0
    assert db.scalar(f"SELECT COUNT(*) FROM mysql.db WHERE User IN ({ph}) AND "
                     "Drop_priv = 'Y'", names) == 0


def test_concurrent_appends_keep_one_chain(world) -> None:
    db, staff = world
    errors: list[BaseException] = []

    def worker(who: str) -> None:
        try:
            with db.connect(who, autocommit=False) as c:
                for i in range(15):
                    c.execute(f"CALL {ident(db.layer)}.log_refusal('query', NULL, %s)",
                              (f"{who} {i}",)).fetchall()
                    c.commit()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(w,)) for w in (staff.alice, staff.bob)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with db.connect(staff.bob) as c:
        res = audit.verify(c)
    assert res.ok, res


def test_audit_tampering_by_root_is_detected(mariadb: MariaServer) -> None:
    """Root can drop the triggers and rewrite the log; verify finds an altered, a deleted
    and a reordered row, and a cut-off tail against a recorded head."""
    db = mariadb.koha_db()
    db.install()
    try:
        staff = Staff.create(db)
        for p in (51, 52, 53):
            staff.request(staff.alice, [p], approve_as=staff.bob)
        layer = ident(db.layer)
        with db.connect(staff.bob) as c:
            good = audit.verify(c)
        # each request: its patron lookup, created, approved
        assert good.ok and good.entries == 9
        head = f"{good.head_seq}:{good.head_hash}"
        with db.connect() as c:
            for trg in ("audit_log_no_update", "audit_log_no_delete"):
                c.execute(f"DROP TRIGGER {layer}.{ident(trg)}")
            snapshot = c.execute(f"SELECT * FROM {layer}.audit_log ORDER BY seq").fetchall()

            def restore() -> None:
                c.execute(f"DELETE FROM {layer}.audit_log")
                c.cursor().executemany(f"INSERT INTO {layer}.audit_log VALUES "
                              "(%s, %s, %s, %s, %s, %s, %s, %s)", snapshot)

            def check(problem: str, seq: int) -> None:
                with db.connect(staff.bob) as b:
                    res = audit.verify(b)
                assert not res.ok and res.broken_seq == seq and problem in res.problem, res

            c.execute(f"UPDATE {layer}.audit_log SET detail = JSON_SET(detail, '$.agency', "
                      "'Nobody') WHERE seq = 1")
            check("altered", 1)
            restore()
            c.execute(f"DELETE FROM {layer}.audit_log WHERE seq = 3")
            check("deleted", 4)
            restore()
            c.execute(f"UPDATE {layer}.audit_log SET seq = seq + 100 WHERE seq IN (2, 3)")
            c.execute(f"UPDATE {layer}.audit_log SET seq = 3 WHERE seq = 102")
            c.execute(f"UPDATE {layer}.audit_log SET seq = 2 WHERE seq = 103")
            check("", 2)
            restore()
            c.execute(f"DELETE FROM {layer}.audit_log WHERE seq = 9")  # the last entry
            with db.connect(staff.bob) as b:
                assert audit.verify(b).ok  # a shorter chain is a valid chain ...
                cut = audit.verify(b, expect_head=head)
            assert not cut.ok and "cut off" in cut.problem  # ... but not the head recorded
            restore()
            with db.connect(staff.bob) as b:
                assert audit.verify(b, expect_head=head).ok
    finally:
        mariadb.release(db)


def test_cli_refuses_a_non_exporter_and_lists_and_shows(world, tmp_path) -> None:
    """The console script with a MariaDB DSN, what only Koha shows: a login that is no
    exporter is refused by the database (exit 1, logged), and list, show and staff list
    work.  (Create, approve, export, close and the audit trail: tests/test_parity.py.)"""
    db, staff = world
    rules = str(write_koha_rules(tmp_path, db.prefix))

    def cli(user: str, *args: str):
        return run_cli("--dsn", db.dsn_as(user, PASSWORD), "--rules", rules, *args)

    rid = staff.request(staff.alice, [61, 62], approve_as=staff.bob)
    # bob is no exporter: the database refuses the call (exit 1), and the CLI logs it
    refused = cli(staff.bob, "export", "--request", str(rid), "-o", str(tmp_path / "x.csv"))
    assert refused.returncode == 1 and "execute command denied" in refused.stderr
    assert "export.refused" in _actions(db, rid)
    assert not (tmp_path / "x.csv").exists()
    ver = cli(staff.bob, "audit", "verify")
    assert ver.returncode == 0 and "intact" in ver.stdout, ver.stderr
    shown = cli(staff.bob, "--format", "json", "request", "show", str(rid))
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == "approved"
    listed = cli(staff.bob, "request", "list")
    assert listed.returncode == 0 and f"{rid:>4}  approved" in listed.stdout, listed.stdout
    staff_list = run_cli("--dsn", db.dsn, "--rules", rules, "staff", "list")
    assert staff_list.returncode == 0 and staff.dora in staff_list.stdout, staff_list.stderr
