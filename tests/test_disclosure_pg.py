"""The disclosure workflow, end to end, as the real logins, through the real CLI."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import threading
from pathlib import Path

import psycopg
import pytest
from psycopg import errors, sql

from ils_redact.backends import postgresql as pg
from ils_redact.stats import all_reports
from support import EgDb, create_role, run_cli, write_rules


class Desk:
    """An installed library with three staff logins: a clerk who records requests and
    exports, a director who approves, and a second clerk."""

    def __init__(self, db: EgDb, rules: Path) -> None:
        self.db = db
        self.rules = rules
        self.clerk = f"{db.prefix}clerk"
        self.director = f"{db.prefix}director"
        self.clerk2 = f"{db.prefix}clerk2"

    def run(self, *args: str, user: str | None = None, input: str | None = None):
        dsn = self.db.dsn_as(user) if user else self.db.dsn
        return run_cli("--dsn", dsn, "--rules", str(self.rules), *args, input=input)

    def ok(self, *args: str, user: str | None = None) -> str:
        res = self.run(*args, user=user)
        assert res.returncode == 0, (args, res.stdout, res.stderr)
        return res.stdout

    def create(self, *extra: str, basis: str = "emergency", user: str | None = None,
               patrons: tuple[str, ...] = ("--patron", "11", "--patron", "12")) -> int:
        args = ["--format", "json", "request", "create", "--basis", basis,
                "--agency", "Metro Police", "--officer", "Jane Roe", "--badge", "4471",
                "--case", "26-1182", *patrons, "--yes"]
        if basis == "emergency":
            args += ["--reason", "credible threat of violence at the branch"]
        out = self.ok(*args, *extra, user=user or self.clerk)
        return int(json.loads(out)["request"])

    def audit(self) -> list[dict]:
        return json.loads(self.ok("--format", "json", "audit", "log"))


@pytest.fixture
def desk(eg_db: EgDb, tmp_path: Path) -> Desk:
    with eg_db.connect(autocommit=False) as conn:
        pg.install(conn, eg_db.rules, reports=all_reports)
    d = Desk(eg_db, write_rules(tmp_path, eg_db.prefix))
    d.ok("staff", "grant", d.clerk, "--role", "admin", "--create")
    d.ok("staff", "grant", d.clerk, "--role", "disclosure")
    d.ok("staff", "grant", d.director, "--role", "admin", "--create")
    d.ok("staff", "grant", d.clerk2, "--role", "disclosure", "--create")
    return d


def requests_count(db: EgDb) -> int:
    return db.scalar("SELECT count(*) FROM ils_redact.request")


def test_self_approval_is_refused_and_logged(desk: Desk) -> None:
    rid = desk.create()
    res = desk.run("request", "approve", str(rid), user=desk.clerk)
    assert res.returncode == 1
    assert "cannot approve it (two-person rule)" in res.stderr
    assert desk.db.scalar("SELECT status FROM ils_redact.request WHERE id = %s", (rid,)) == "draft"
    assert desk.audit()[-1]["action"] == "request.approve.refused"
    # the database holds the rule, not just the CLI
    with desk.db.connect(desk.clerk) as conn:
        assert conn.execute("SELECT ils_redact.request_approve(%s)", (rid,)).fetchone()[0]
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("UPDATE ils_redact.request SET approved_by = 'x'")  # no UPDATE grant
    assert desk.db.scalar("SELECT count(*) FROM ils_redact.scope") == 0


@pytest.fixture
def scoped(desk: Desk) -> tuple[Desk, int]:
    rid = desk.create()
    desk.ok("request", "approve", str(rid), user=desk.director)
    return desk, rid


def visible_patrons(db: EgDb, user: str) -> set[int]:
    with db.connect(user) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(db.role("disclosure"))))
        return {r[0] for r in conn.execute("SELECT id FROM actor.usr")}


def test_scope_follows_the_request(scoped) -> None:
    desk, rid = scoped
    db = desk.db
    # a login that is a member of the disclosure role (role access) sees the patrons of
    # approved requests granted to it, and nobody else
    member = create_role(db.server, f"{db.prefix}member", member_of=(db.role("disclosure"),))
    with db.connect() as conn:
        conn.execute("UPDATE ils_redact.request SET grantee = %s WHERE id = %s", (member, rid))
        conn.execute("UPDATE ils_redact.scope SET grantee = %s WHERE request_id = %s",
                     (member, rid))
    assert visible_patrons(db, member) == {11, 12}
    with db.connect(member) as conn:
        assert conn.execute("SELECT count(*) FROM actor.card").fetchone()[0] >= 2
    # expired: zero rows, without any job running
    with db.connect() as conn:
        conn.execute("UPDATE ils_redact.scope SET expires_at = now() - interval '1 second'")
        conn.execute("UPDATE ils_redact.request SET expires_at = now() - interval '1 second'")
    assert visible_patrons(db, member) == set()
    listed = json.loads(desk.ok("--format", "json", "request", "list", user=desk.director))
    assert listed[0]["status"] == "expired"
    # reading never writes (a read-only replica can list); the next write path records it
    assert desk.audit()[-1]["action"] != "request.expired"
    with db.connect(desk.director) as conn:
        conn.execute("SELECT ils_redact.sweep_expired()")
    assert desk.audit()[-1]["action"] == "request.expired"


def test_revoked_and_unapproved_give_zero_rows(scoped) -> None:
    desk, rid = scoped
    db = desk.db
    member = create_role(db.server, f"{db.prefix}member", member_of=(db.role("disclosure"),))
    rid2 = desk.create("--for", member)
    assert visible_patrons(db, member) == set()  # draft
    desk.ok("request", "approve", str(rid2), user=desk.director)
    assert visible_patrons(db, member) == {11, 12}
    desk.ok("request", "revoke", str(rid2), "--reason", "order withdrawn", user=desk.director)
    assert visible_patrons(db, member) == set()


def test_disclosure_role_cannot_write_scope_or_audit_or_see_other_scope(scoped) -> None:
    desk, rid = scoped
    db = desk.db
    member = create_role(db.server, f"{db.prefix}member", member_of=(db.role("disclosure"),))
    with db.connect(member) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(db.role("disclosure"))))
        for q in ("INSERT INTO ils_redact.scope (patron_id, grantee, expires_at) "
                  "VALUES (1, current_user, now() + interval '1 day')",
                  "UPDATE ils_redact.scope SET grantee = session_user",
                  "INSERT INTO ils_redact.audit_log VALUES (99, now(), 'x', 'x', NULL, '{}', "
                  "'x', 'x')",
                  "DELETE FROM ils_redact.audit_log",
                  "SELECT * FROM ils_redact.request_patron",
                  "SELECT * FROM ils_redact.request",
                  "SELECT * FROM ils_redact.scope",
                  "SELECT ils_redact.request_approve(1)",
                  "SELECT ils_redact.sweep_expired()"):
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(q)
        # another login's request: its patron list is empty for us
        assert conn.execute("SELECT ils_redact.request_patron_ids(%s)", (rid,)).fetchone()[0] \
            == []
    # the exporter login of another clerk is refused, and that is logged
    res = desk.run("export", "--request", str(rid), user=desk.clerk2)
    assert res.returncode == 1 and f"approved for {desk.clerk}" in res.stderr
    assert desk.audit()[-1]["action"] == "export.refused"
    # an exporter login cannot read the tables at all: the function is the only way in
    with db.connect(desk.clerk2) as conn:
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT family_name FROM actor.usr")


def test_emergency_export_has_exactly_the_identity_columns(scoped, tmp_path: Path) -> None:
    desk, rid = scoped
    rules = desk.db.rules
    allow = [f"{t.relation}.{c}" for t in rules.identity for c in t.columns]
    out = tmp_path / "e.json"
    desk.ok("export", "--request", str(rid), "--format", "json", "-o", str(out),
            user=desk.clerk)
    doc = json.loads(out.read_text())
    assert doc["columns"] == allow
    for rec in doc["records"]:
        assert set(rec["values"]) <= {c.rsplit(".", 1)[1] for c in allow
                                      if c.rsplit(".", 1)[0] == rec["relation"]}
    manifest = json.loads((tmp_path / "e.json.manifest.json").read_text())
    assert hashlib.sha256(out.read_bytes()).hexdigest() == manifest["sha256"]
    csv_out = tmp_path / "e.csv"
    desk.ok("export", "--request", str(rid), "--format", "csv", "-o", str(csv_out),
            user=desk.clerk)
    rows = list(csv.reader(io.StringIO(csv_out.read_text())))
    header = rows[0]
    assert header == ["patron_id", "relation", *allow]
    assert "passwd" not in csv_out.read_text() and "last_xact_id" not in csv_out.read_text()
    # the JSON document carries the same values as the CSV, record for record (it once
    # carried every value as null: keys looked up by a name they were not stored under)
    assert len(doc["records"]) == len(rows) - 1 > 0
    for rec, row in zip(doc["records"], rows[1:], strict=True):
        assert [str(rec["patron_id"]), rec["relation"]] == row[:2]
        cells = dict(zip(header, row, strict=True))
        for col, value in rec["values"].items():
            want = cells[f"{rec['relation']}.{col}"]
            got = "" if value is None else (str(value).lower() if isinstance(value, bool)
                                            else str(value))
            assert got == want.removeprefix("'") or got == want, (rec["relation"], col)
        assert any(v is not None for v in rec["values"].values()), rec


def test_court_order_discloses_only_the_named_columns(desk: Desk, tmp_path: Path) -> None:
    rid = desk.create("--court", "Circuit Court of Cook County", "--order-ref", "26-MR-311",
                      "--order-date", "2026-11-20", "--hours", "48",
                      "--columns", "family_name,first_given_name,actor.usr_address.*",
                      basis="court-order")
    desk.ok("request", "approve", str(rid), user=desk.director)
    out = tmp_path / "c.csv"
    desk.ok("export", "--request", str(rid), "--format", "csv", "-o", str(out), user=desk.clerk)
    header = next(csv.reader(io.StringIO(out.read_text())))
    addr = [f"actor.usr_address.{c}" for c in desk.db.rules.identity_table(
        "actor.usr_address").columns]
    assert header == ["patron_id", "relation", "actor.usr.first_given_name",
                      "actor.usr.family_name", *addr]
    # no row of a table whose fields the order does not name (actor.card): an empty row
    # per card would tell how many cards the patron has (the fourth review)
    relations = {row[1] for row in csv.reader(io.StringIO(out.read_text()))}
    assert relations == {"relation", "actor.usr", "actor.usr_address"}, relations


def test_columns_outside_the_allow_list_are_refused(desk: Desk) -> None:
    n = requests_count(desk.db)
    for cols in ("passwd", "actor.usr.last_xact_id", "action.circulation.usr"):
        res = desk.run("request", "create", "--basis", "court-order", "--agency", "PD",
                       "--officer", "A", "--badge", "1", "--case", "2", "--court", "C",
                       "--order-ref", "R", "--order-date", "2026-11-01", "--hours", "4",
                       "--patron", "11", "--columns", cols, "--yes", user=desk.clerk)
        assert res.returncode == 1, res.stderr
        assert "not an identity column" in res.stderr
    # the database refuses it too, whatever the client says
    with desk.db.connect(desk.clerk) as conn:
        with pytest.raises(errors.InsufficientPrivilege, match="never disclosed"):
            conn.execute(
                "SELECT ils_redact.request_create('emergency', 'PD', 'A', '1', '2', 'r', NULL, "
                "NULL, NULL, ARRAY[11]::bigint[], ARRAY['11'], ARRAY['actor.usr.passwd'], "
                "now() + interval '1 hour', NULL)")
    assert requests_count(desk.db) == n


@pytest.mark.parametrize("args,exit_code,message", [
    (["--expires", "2020-01-01T00:00+00:00"], 2, "is in the past"),
    (["--expires", "tomorrow"], 2, "not a date and time"),
    (["--hours", "200"], 2, "later than the rules allow"),
    (["--officer", " "], 2, "missing officer name"),
    (["--reason", ""], 2, "needs the officer's stated reason"),
    (["--basis", "subpoena"], 2, "Invalid value for '--basis'"),
    ([*[x for i in range(11) for x in ("--patron", str(20 + i))]], 1, "at most 10 patrons"),
    (["--barcode", "no-such-card"], 1, "unknown patrons: no-such-card"),
])
def test_bad_inputs_are_refused_and_write_nothing(desk: Desk, args, exit_code, message) -> None:
    n = requests_count(desk.db)
    base = {"--basis": "emergency", "--agency": "Metro Police", "--officer": "Jane Roe",
            "--badge": "4471", "--case": "26-1", "--reason": "threat"}
    for i in range(0, len(args), 2):
        if args[i] in base:
            base[args[i]] = args[i + 1]
    extra = [a for i in range(0, len(args), 2) if args[i] not in base
             for a in args[i:i + 2]]
    if not any(a in ("--patron", "--barcode") for a in extra):
        extra += ["--patron", "11"]
    flat = [x for k, v in base.items() for x in (k, v)]
    res = desk.run("request", "create", *flat, *extra, "--yes", user=desk.clerk)
    assert res.returncode == exit_code, res.stderr
    assert message in res.stderr + res.stdout
    assert "Traceback" not in res.stderr
    assert requests_count(desk.db) == n
    assert desk.db.scalar("SELECT count(*) FROM ils_redact.scope") == 0


def test_court_order_needs_expiry_and_order_details(desk: Desk) -> None:
    res = desk.run("request", "create", "--basis", "court-order", "--agency", "PD",
                   "--officer", "A", "--badge", "1", "--case", "2", "--patron", "11",
                   "--columns", "family_name", "--yes", user=desk.clerk)
    assert res.returncode == 2 and "court, the order reference and its date" in res.stderr
    res = desk.run("request", "create", "--basis", "court-order", "--agency", "PD",
                   "--officer", "A", "--badge", "1", "--case", "2", "--patron", "11",
                   "--court", "C", "--order-ref", "R", "--order-date", "2026-11-01",
                   "--columns", "family_name", "--yes", user=desk.clerk)
    assert res.returncode == 2 and "missing expiry" in res.stderr
    assert requests_count(desk.db) == 0


def test_two_concurrent_exports_are_both_logged_in_order(scoped) -> None:
    desk, rid = scoped
    from ils_redact.disclosure import export as export_mod

    barrier = threading.Barrier(2)
    results: list = []

    def one(fmt: str) -> None:
        with psycopg.connect(desk.db.dsn_as(desk.clerk)) as conn:
            barrier.wait()
            results.append(export_mod.export(conn, rid, fmt))

    threads = [threading.Thread(target=one, args=(f,)) for f in ("csv", "json")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2
    exports = [e for e in desk.audit() if e["action"] == "export"]
    assert len(exports) == 2
    assert exports[1]["seq"] == exports[0]["seq"] + 1
    assert sorted(e["detail"]["sha256"] for e in exports) == sorted(
        r.manifest["sha256"] for r in results)
    assert desk.run("audit", "verify").returncode == 0


def _tamper(db: EgDb, statement: str) -> None:
    with db.connect() as conn:
        conn.execute("SET session_replication_role = replica")  # superuser: skips triggers
        conn.execute(statement)


@pytest.mark.parametrize("tamper,broken,problem", [
    ("UPDATE ils_redact.audit_log SET detail = jsonb_set(detail, '{reason}', '\"edited\"') "
     "WHERE seq = 3", 3, "altered"),
    ("DELETE FROM ils_redact.audit_log WHERE seq = 2", 3, "a row was deleted"),
    ("UPDATE ils_redact.audit_log SET seq = -seq WHERE seq IN (2, 3); "
     "UPDATE ils_redact.audit_log SET seq = CASE seq WHEN -2 THEN 3 ELSE 2 END WHERE seq < 0",
     2, "inserted or reordered"),
    ("INSERT INTO ils_redact.audit_log SELECT 6, at, actor, 'request.approved', request_id, "
     "detail, hash, repeat('a', 64) FROM ils_redact.audit_log WHERE seq = 5", 6, "altered"),
])
def test_superuser_tampering_is_detected(desk: Desk, tamper: str, broken: int,
                                         problem: str) -> None:
    rid = desk.create()
    desk.run("request", "approve", str(rid), user=desk.clerk)  # refused, logged
    desk.ok("request", "approve", str(rid), user=desk.director)
    desk.run("export", "--request", str(rid), user=desk.clerk2)  # refused, logged
    assert [e["action"] for e in desk.audit()] == [
        "patron.lookup", "request.created", "request.approve.refused", "request.approved",
        "export.refused"]
    assert desk.run("audit", "verify").returncode == 0
    _tamper(desk.db, tamper)
    res = desk.run("--format", "json", "audit", "verify")
    assert res.returncode == 1
    out = json.loads(res.stdout)
    assert out["broken_seq"] == broken and problem in out["problem"], out
    text = desk.run("audit", "verify")
    assert f"BROKEN at entry {broken}" in text.stdout


def test_cut_off_tail_is_caught_by_a_recorded_head(scoped) -> None:
    desk, rid = scoped
    head = json.loads(desk.ok("--format", "json", "audit", "verify"))["head"]
    _tamper(desk.db, "DELETE FROM ils_redact.audit_log WHERE seq = (SELECT max(seq) FROM "
                     "ils_redact.audit_log)")
    assert desk.run("audit", "verify").returncode == 0  # a shorter chain is still a chain
    res = desk.run("audit", "verify", "--head", head)
    assert res.returncode == 1 and "not in the log" in res.stdout


def test_audit_log_is_append_only_even_for_its_owner(scoped) -> None:
    desk, _ = scoped
    with desk.db.connect() as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(desk.db.role("owner"))))
        for q in ("UPDATE ils_redact.audit_log SET actor = 'x'",
                  "DELETE FROM ils_redact.audit_log",
                  "TRUNCATE ils_redact.audit_log"):
            with pytest.raises(errors.InsufficientPrivilege, match="append-only"):
                conn.execute(q)


def test_staff_grant_refuses_logins_that_bypass_rls(desk: Desk) -> None:
    db = desk.db
    bypass = f"{db.prefix}bypass"
    with db.connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN BYPASSRLS").format(sql.Identifier(bypass)))
    su = db.scalar("SELECT current_user")
    owner_member = create_role(db.server, f"{db.prefix}ownerish", member_of=(db.owner,))
    for login, why in ((su, "superuser"), (bypass, "BYPASSRLS"), (db.owner, "owner of the ILS"),
                       (owner_member, "owner of the ILS")):
        for kind in ("disclosure", "stats"):
            res = desk.run("staff", "grant", login, "--role", kind)
            assert res.returncode == 1, res.stderr
            assert why in res.stderr
    listed = json.loads(desk.ok("--format", "json", "staff", "list"))
    assert {r["login"] for r in listed} == {desk.clerk, desk.director, desk.clerk2}


def test_form_and_packet(scoped, tmp_path: Path) -> None:
    desk, rid = scoped
    desk.ok("export", "--request", str(rid), "-o", str(tmp_path / "x.csv"), user=desk.clerk)
    form = tmp_path / "form.html"
    desk.ok("request", "form", str(rid), "-o", str(form), "--library", "Test Library",
            user=desk.director)
    page = form.read_text()
    manifest = json.loads((tmp_path / "x.csv.manifest.json").read_text())
    assert "CONFIDENTIALITY OF PATRON RECORDS" in page  # the policy template
    assert "Jane Roe" in page and "4471" in page and manifest["sha256"] in page
    assert "@media print" in page and "Officer: signature" in page
    family = desk.db.scalar("SELECT family_name FROM actor.usr WHERE id = 11")
    assert family not in page  # fields and counts, never values
    packet = tmp_path / "packet"
    desk.ok("request", "packet", str(rid), "-o", str(packet), user=desk.director)
    names = sorted(p.name for p in packet.iterdir())
    assert names == sorted(["form.html", "request.json", "audit-entries.json",
                            f"manifest-{manifest['audit_seq']}.json", "audit-verify.json",
                            "policy.txt", "README.txt"])
    assert json.loads((packet / "audit-verify.json").read_text())["ok"] is True


def test_policy_text_from_the_rules(desk: Desk, tmp_path: Path) -> None:
    policy = tmp_path / "our_policy.md"
    policy.write_text("THE TEST LIBRARY KEEPS RECORDS CONFIDENTIAL.\n")
    rules = write_rules(tmp_path, desk.db.prefix, lambda t: t.replace(
        "policy_text: null", "policy_text: our_policy.md"))
    rid = desk.create()
    res = run_cli("--dsn", desk.db.dsn_as(desk.director), "--rules", str(rules), "request",
                  "form", str(rid))
    assert res.returncode == 0 and "THE TEST LIBRARY KEEPS RECORDS CONFIDENTIAL." in res.stdout


def test_uninstall_keeps_the_audit_log_unless_told(scoped, tmp_path: Path) -> None:
    desk, _ = scoped
    res = desk.run("uninstall", "--yes")
    assert res.returncode == 2 and "audit log holds" in res.stderr
    archive = tmp_path / "audit.jsonl"
    desk.ok("audit", "export", "-o", str(archive))
    assert len(archive.read_text().splitlines()) == len(desk.audit())
    desk.ok("uninstall", "--yes", "--discard-audit")
    # logins ils-redact created are gone with it
    assert desk.db.scalar("SELECT count(*) FROM pg_roles WHERE rolname LIKE %s",
                          (desk.db.prefix + "%",)) == 0


def test_patron_lookups_are_capped_and_logged(desk: Desk) -> None:
    """An admin cannot page through the patron list unnoticed."""
    with desk.db.connect(desk.clerk) as conn:
        rows = conn.execute("SELECT * FROM ils_redact.patron_lookup(ARRAY[11, 12]::bigint[], "
                            "NULL)").fetchall()
        assert [r[1] for r in rows] == [11, 12]
        with pytest.raises(errors.InvalidParameterValue, match="at most 10 patrons"):
            conn.execute("SELECT * FROM ils_redact.patron_lookup("
                         "ARRAY(SELECT generate_series(1, 11))::bigint[], NULL)")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT ils_redact.patron_ids_known(ARRAY[1]::bigint[])")
    entry = desk.audit()[-1]
    assert entry["action"] == "patron.lookup" and entry["actor"] == desk.clerk
    assert entry["detail"]["ids"] == [11, 12] and entry["detail"]["found"] == 2


def test_a_python_caller_leaves_the_same_audit_trail(scoped) -> None:
    """Audit semantics live in the library, not in the CLI: a refusal through the Python
    API is an audit entry, and the error names it (``Refused.audit_seq``)."""
    from ils_redact.disclosure import export as export_mod
    from ils_redact.disclosure import requests as req_mod
    from ils_redact.errors import Refused

    desk, rid = scoped
    # refused and logged by the export function itself (approved for another login)
    with desk.db.connect(desk.clerk2, autocommit=False) as conn:
        with pytest.raises(Refused) as refused:
            export_mod.export(conn, rid, "csv")
    last = desk.audit()[-1]
    assert last["action"] == "export.refused" and last["request_id"] == rid
    assert refused.value.logged and refused.value.audit_seq == last["seq"]
    # refused before any layer function decides: logged by the library
    with desk.db.connect(desk.clerk, autocommit=False) as conn:
        with pytest.raises(Refused) as refused:
            req_mod.require_known(conn, ["NO-SUCH-CARD"])
    last = desk.audit()[-1]
    assert last["action"] == "request.create.refused"
    assert refused.value.audit_seq == last["seq"]
    assert "unknown patrons: NO-SUCH-CARD" in str(refused.value)
