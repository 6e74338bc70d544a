"""Layer v5: the attacks of the adversarial review, played as the attacker would.

Each test connects as a real login (a member of one layer role, or of none) and types
what the review typed; it failed on layer v4 and passes because of
``sql/postgresql/0005_hardening.sql`` and the functions written from the rules.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import errors, sql

from ils_redact.backends import postgresql as pg
from ils_redact.disclosure import forms
from ils_redact.servers import Server
from ils_redact.stats import all_reports
from support import EgDb, create_role, run_cli, write_rules

ADVISORY_KEY = 29674115650905188  # the key layer v4 serialised the audit chain on


# -- the installed library ---------------------------------------------------------------

class Staff:
    """Installed layer; one login per layer role (member of that role only), a second
    admin for the two-person rule, and a login with no role at all."""

    def __init__(self, db: EgDb) -> None:
        self.db = db
        self.admin = create_role(db.server, f"{db.prefix}h_admin", member_of=(db.role("admin"),))
        self.director = create_role(db.server, f"{db.prefix}h_director",
                                    member_of=(db.role("admin"),))
        self.disclosure = create_role(db.server, f"{db.prefix}h_disclosure",
                                      member_of=(db.role("disclosure"),))
        self.exporter = create_role(db.server, f"{db.prefix}h_exporter",
                                    member_of=(db.role("exporter"),))
        self.stats = create_role(db.server, f"{db.prefix}h_stats", member_of=(db.role("stats"),))
        self.stranger = create_role(db.server, f"{db.prefix}h_stranger")

    def connect(self, user: str | None = None, autocommit: bool = True):
        return self.db.connect(user, autocommit=autocommit)

    def request(self, grantee: str, *, columns: str = "ALL", patrons=(11, 12),
                approve: bool = True) -> int:
        cols = ("(SELECT array_agg(x) FROM jsonb_array_elements_text((SELECT value FROM "
                "ils_redact.setting WHERE key = 'identity_columns')) x)"
                if columns == "ALL" else "%(cols)s")
        with self.connect(self.admin) as conn:
            rid = conn.execute(
                "SELECT ils_redact.request_create('emergency', 'Metro Police', 'Jane Roe', "
                "'4471', '26-1182', 'credible threat', NULL, NULL, NULL, %(ids)s::bigint[], "
                f"NULL, {cols}, now() + interval '2 hours', %(grantee)s)",
                {"ids": list(patrons), "cols": columns.split(",") if columns != "ALL" else None,
                 "grantee": grantee}).fetchone()[0]
        if approve:
            with self.connect(self.director) as conn:
                assert conn.execute("SELECT ils_redact.request_approve(%s)",
                                    (rid,)).fetchone()[0] is None
        return rid

    def audit(self) -> list[tuple]:
        with self.connect() as conn:
            return conn.execute("SELECT seq, at, actor, action, request_id, detail, hash "
                                "FROM ils_redact.audit_log ORDER BY seq").fetchall()


@pytest.fixture
def staff(eg_db: EgDb) -> Staff:
    with eg_db.connect(autocommit=False) as conn:
        pg.install(conn, eg_db.rules, reports=all_reports)
    return Staff(eg_db)


def _rules_file(db: EgDb, tmp_path: Path) -> Path:
    return write_rules(tmp_path, db.prefix)


# -- row 17: plan trees --------------------------------------------------------------------

#: every setting a login may set that sends server-side detail to the client
DEBUG_ON = ("SET client_min_messages = debug5", "SET debug_print_parse = on",
            "SET debug_print_rewritten = on", "SET debug_print_plan = on",
            "SET debug_pretty_print = on", "SET trace_sort = on", "SET trace_notify = on",
            "SET log_parameter_max_length_on_error = -1")


def _debug_on(conn: psycopg.Connection) -> None:
    for stmt in DEBUG_ON:
        try:
            conn.execute(stmt)
        except psycopg.errors.UndefinedObject:  # a build without that trace setting
            pass


@dataclass(frozen=True)
class Message:
    severity: str | None
    message_primary: str | None
    message_detail: str | None
    context: str | None


class Messages:
    """What the server sent besides rows (copied in the handler: the driver frees the
    result behind a Diagnostic when the handler returns)."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.got: list[Message] = []
        conn.add_notice_handler(lambda d: self.got.append(Message(
            d.severity, d.message_primary, d.message_detail, d.context)))


def _leaks(msgs: Messages) -> list[str]:
    """Messages raised while a function ran: each carries a CONTEXT naming it (the
    caller's own statements, BEGIN included, print their trees without one)."""
    return [f"{d.severity} {d.message_primary} (from {d.context.splitlines()[0]})"
            for d in msgs.got if d.context]


def publish_month(db: EgDb, report: str, month: dt.date) -> None:
    """Publish one month of a report as the administrator (``stats publish``)."""
    from ils_redact.backends.postgresql import stats_publish as publish_pg
    from ils_redact.backends.postgresql.introspect import read_catalog

    with db.connect(autocommit=False) as conn:
        publish_pg.publish(conn, db.rules, read_catalog(conn), report, [month],
                           reports=all_reports)


def _sample_calls(staff: Staff) -> dict[str, str]:
    """A call for every function a layer role may execute (arguments that run through)."""
    db = staff.db
    barcode = db.scalar("SELECT barcode FROM actor.card WHERE usr = 13 AND active LIMIT 1")
    export_rid = staff.request(staff.exporter)
    dis_rid = staff.request(staff.disclosure)
    draft = staff.request(staff.exporter, approve=False)
    calls = {
        "scope_patron_ids": "ils_redact.scope_patron_ids()",
        "export_check": f"ils_redact.export_check({dis_rid})",
        "request_patron_ids": f"ils_redact.request_patron_ids({dis_rid})",
        "csv_cell": "ils_redact.csv_cell('=1+1')",
        "log_refusal": f"ils_redact.log_refusal('export', {dis_rid}, 'refused in a test')",
        "log_query": (f"ils_redact.log_query('query', {dis_rid}, "
                      "'{\"sql\": \"SELECT 1\"}'::jsonb)"),
        "export_record": (f"ils_redact.export_record({dis_rid}, 'csv', "
                          "ARRAY['actor.usr.family_name'], 'x', 1, 1)"),
        "request_create": (
            "ils_redact.request_create('emergency', 'PD', 'A', '1', '2', 'threat', NULL, NULL, "
            "NULL, ARRAY[11]::bigint[], NULL, ARRAY['actor.usr.family_name'], "
            "now() + interval '1 hour', NULL)"),
        "request_approve": f"ils_redact.request_approve({draft})",
        "request_end": f"ils_redact.request_end({draft}, 'revoked', 'test')",
        "sweep_expired": "ils_redact.sweep_expired()",
        "patron_lookup": (f"ils_redact.patron_lookup(ARRAY[11, 12]::bigint[], "
                          f"ARRAY['{barcode}'])"),
        "export": f"ils_redact.export({export_rid}, 'csv')",
        "reports": "ils_redact_stats.reports()",
        "publications": "ils_redact_stats.publications()",
    }
    # published months, so the reports return entries (stats publish, layer 6)
    publish_month(db, "circ_by_library_modifier", dt.date(2024, 3, 1))
    with db.connect() as conn:
        for (name,) in conn.execute("SELECT name FROM ils_redact_stats.reports()"):
            calls[name] = f"ils_redact_stats.{name}(NULL, NULL)"
    return calls


def test_no_plan_tree_leaves_any_layer_function(staff: Staff) -> None:
    """Every function in the layer's schemas that any layer role may execute, called as a
    login in that role with every tree and trace a login may turn on: nothing planned
    inside a function reaches the client, and every definer function pins the settings."""
    db = staff.db
    calls = _sample_calls(staff)
    logins = {"admin": staff.admin, "disclosure": staff.disclosure,
              "exporter": staff.exporter, "stats": staff.stats}
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT p.oid, p.proname, p.oid::regprocedure::text, r.kind, p.prosecdef, "
            "p.proconfig FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "CROSS JOIN unnest(%s::text[], %s::text[]) r(kind, rolname) "
            "WHERE n.nspname IN ('ils_redact', 'ils_redact_stats') "
            "AND has_function_privilege(r.rolname, p.oid, 'EXECUTE') ORDER BY 2, 4",
            (list(logins), [db.role(k) for k in logins])).fetchall()
        unpinned = conn.execute(
            "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n "
            "ON n.oid = p.pronamespace WHERE n.nspname IN ('ils_redact', 'ils_redact_stats') "
            "AND p.prosecdef AND NOT p.proconfig @> ARRAY['client_min_messages=warning', "
            "'debug_print_parse=off', 'debug_print_rewritten=off', 'debug_print_plan=off', "
            "'search_path=pg_catalog, pg_temp', 'standard_conforming_strings=on', "
            "'DateStyle=ISO, MDY', 'IntervalStyle=postgres', 'extra_float_digits=1', "
            "'bytea_output=hex']").fetchall()
    assert unpinned == []
    assert {r[3] for r in rows} == set(logins), rows
    missing = sorted({r[2] for r in rows if r[1] not in calls})
    assert missing == [], f"no sample call for {missing}: add one to _sample_calls"
    leaks: list[str] = []
    ran = 0
    for _oid, name, sig, kind, secdef, _config in rows:
        with db.connect(logins[kind], autocommit=False) as conn:
            msgs = Messages(conn)
            _debug_on(conn)
            msgs.got.clear()
            conn.execute("SELECT 1")  # the caller's own trees do reach it: the check sees them
            assert any(d.message_primary == "plan:" for d in msgs.got)
            try:
                conn.execute(f"SELECT * FROM {calls[name]}").fetchall()  # noqa: S608 - from _sample_calls
                ran += 1
            except psycopg.Error as exc:
                leaks += [] if exc.diag.sqlstate else [f"{sig} as {kind}: {exc}"]
            conn.rollback()
            if secdef:  # an invoker function (csv_cell) plans only what its caller could
                leaks += [f"{sig} as {kind}: {x}" for x in _leaks(msgs)]
    assert leaks == []
    assert ran >= len(rows) - 2, "most sample calls must run through"


def _int8_arrays(detail: str) -> list[list[int]]:
    """Every int8[] constant of a node tree, decoded from its :constvalue bytes."""
    out = []
    for m in re.finditer(r":consttype 1016 [^{}]*?:constisnull false [^{}]*?"
                         r":constvalue \d+ \[([-\d\s]+)\]", detail):
        raw = bytes(int(x) & 0xFF for x in m.group(1).split())
        ndim, offset = struct.unpack("<ii", raw[4:12])
        if ndim != 1:
            continue
        n = struct.unpack("<i", raw[16:20])[0]
        start = 16 + 8 * ndim if offset == 0 else offset
        out.append(list(struct.unpack(f"<{n}q", raw[start:start + 8 * n])))
    return out


def test_stats_role_cannot_read_suppressed_counts_from_plan_trees(staff: Staff) -> None:
    """The attack as written: `SET client_min_messages = log; SET debug_print_plan = on;`
    then a report; the arrays of row sums and distinct-patron counts were in the trees."""
    publish_month(staff.db, "circ_by_library_modifier", dt.date(2024, 3, 1))
    with staff.connect(staff.stats) as conn:
        msgs = Messages(conn)
        conn.execute("SET client_min_messages = log")
        conn.execute("SET debug_print_plan = on")
        rows = conn.execute("SELECT * FROM ils_redact_stats.circ_by_library_modifier()"
                            ).fetchall()
    assert any(r[6] for r in rows), "the fixture has suppressed cells"
    arrays = [a for d in msgs.got for a in _int8_arrays(d.message_detail or "")]
    assert arrays == []
    assert [d for d in msgs.got if d.context] == []


# -- row 18: lookups and exports leave a durable trace -------------------------------------

def test_lateral_paging_through_patrons_is_refused(staff: Staff) -> None:
    """`BEGIN; SELECT ... FROM generate_series(a, b) g, LATERAL ils_redact.patron_lookup(
    ARRAY[g::bigint], NULL); ROLLBACK;`: one patron a call, every patron of the register."""
    with staff.connect(staff.admin, autocommit=False) as conn:
        with pytest.raises(errors.InvalidParameterValue, match="in one transaction"):
            conn.execute("SELECT l.* FROM generate_series(1, 60) g, "
                         "LATERAL ils_redact.patron_lookup(ARRAY[g::bigint], NULL) l").fetchall()
        conn.rollback()
        # ten calls of one: the eleventh is refused, in the same transaction
        for i in range(1, 11):
            conn.execute("SELECT * FROM ils_redact.patron_lookup(ARRAY[%s]::bigint[], NULL)",
                         (i,)).fetchall()
        with pytest.raises(errors.InvalidParameterValue, match="in one transaction"):
            conn.execute("SELECT * FROM ils_redact.patron_lookup(ARRAY[11]::bigint[], NULL)")
        conn.rollback()
        # a savepoint rolled back would forget the count: refused inside one
        conn.execute("SAVEPOINT s")
        with pytest.raises(errors.InvalidTransactionState, match="savepoint"):
            conn.execute("SELECT * FROM ils_redact.patron_lookup(ARRAY[11]::bigint[], NULL)")
        conn.rollback()
        # and in a DO block's exception handler (a subtransaction too)
        with pytest.raises(errors.InvalidTransactionState):
            conn.execute("DO $$ BEGIN PERFORM ils_redact.patron_lookup(ARRAY[11]::bigint[], "
                         "NULL); EXCEPTION WHEN division_by_zero THEN NULL; END $$")
        conn.rollback()


def server_log(server: Server) -> Path:
    """The server's log file: ``pg_current_logfile()`` with the logging collector, the
    embedded server's ``<data>/log``, or Debian's ``/var/log/postgresql`` file."""
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        data = Path(conn.execute("SHOW data_directory").fetchone()[0])
        current = conn.execute("SELECT pg_current_logfile()").fetchone()[0]
        major = conn.info.server_version // 10000
        cluster = conn.execute("SHOW cluster_name").fetchone()[0]
    candidates = []
    if current:
        candidates.append(data / current)
    candidates += [data / "log", Path(f"/var/log/postgresql/postgresql-{major}-"
                                      f"{(cluster or f'{major}/main').split('/')[-1]}.log")]
    for c in candidates:
        if c.is_file():
            return c
    raise AssertionError(f"cannot find the server log of {server.dsn} (tried {candidates})")


def _wait_for(path: Path, needle: str, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if needle in path.read_text(encoding="utf-8", errors="replace"):
            return
        time.sleep(0.2)
    raise AssertionError(f"{needle!r} never reached {path}")


def test_rolled_back_lookup_and_export_are_found_in_the_server_log(staff: Staff,
                                                                    server: Server,
                                                                    tmp_path: Path) -> None:
    db = staff.db
    log = server_log(server)
    rid = staff.request(staff.exporter)
    with staff.connect(staff.admin, autocommit=False) as conn:
        conn.execute("SELECT * FROM ils_redact.patron_lookup(ARRAY[14, 15]::bigint[], NULL)"
                     ).fetchall()
        (lookup_seq,) = conn.execute("SELECT max(seq) FROM ils_redact.audit_log").fetchone()
        conn.rollback()
    with staff.connect(staff.exporter, autocommit=False) as conn:
        seq, doc, _ = conn.execute("SELECT * FROM ils_redact.export(%s, 'csv')",
                                   (rid,)).fetchone()
        assert doc
        conn.rollback()
    with staff.connect(staff.admin) as conn:  # committed: matches its trace
        conn.execute("SELECT * FROM ils_redact.patron_lookup(ARRAY[16]::bigint[], NULL)"
                     ).fetchall()
    (committed,) = [e for e in staff.audit() if e[3] == "patron.lookup"][-1:]
    _wait_for(log, f'"hash": "{committed[6]}"')
    res = run_cli("--dsn", db.dsn, "--rules", str(_rules_file(db, tmp_path)), "--format",
                  "json", "audit", "reconcile", "--server-log", str(log))
    assert res.returncode == 1, res.stdout + res.stderr
    out = json.loads(res.stdout)
    bad = {(p["logged"]["action"], p["logged"]["login"], tuple(p["logged"]["patrons"]))
           for p in out["problems"]}
    assert bad == {("patron.lookup", staff.admin, (14, 15)),
                   ("export", staff.exporter, (11, 12))}, out
    assert {p["seq"] for p in out["problems"]} == {lookup_seq, seq}
    assert out["traces"] >= 3  # the committed lookup and the request's own are matched
    text = run_cli("--dsn", db.dsn, "--rules", str(_rules_file(db, tmp_path)), "audit",
                   "reconcile", "--server-log", str(log))
    assert text.returncode == 1 and "have no matching audit entry" in text.stdout


def test_the_login_a_request_discloses_to_cannot_approve_it(staff: Staff) -> None:
    """The attack: the director creates a request naming himself as grantee is refused
    already (creator); here the clerk records it for the director (or the director for a
    login he also uses) and the grantee approves his own access."""
    with staff.connect() as conn:  # the director also exports (one person, two hats)
        conn.execute(sql.SQL("GRANT {} TO {}").format(
            sql.Identifier(staff.db.role("exporter")), sql.Identifier(staff.director)))
    rid = staff.request(staff.director, approve=False)
    with staff.connect(staff.director) as conn:
        reason = conn.execute("SELECT ils_redact.request_approve(%s)", (rid,)).fetchone()[0]
    assert reason == "the login a request discloses to cannot approve it (two-person rule)"
    with staff.connect() as conn:
        assert conn.execute("SELECT status FROM ils_redact.request WHERE id = %s",
                            (rid,)).fetchone()[0] == "draft"
        assert conn.execute("SELECT count(*) FROM ils_redact.scope WHERE request_id = %s",
                            (rid,)).fetchone()[0] == 0
    assert staff.audit()[-1][3] == "request.approve.refused"


def test_an_application_name_in_the_log_prefix_cannot_hide_a_rolled_back_lookup(
        staff: Staff, server: Server, tmp_path: Path) -> None:
    """The attack: with ``%a`` in ``log_line_prefix`` (pgBadger's advice), the caller's
    ``application_name`` precedes the real trace on the line; a marker there (alone, or
    with a committed entry's JSON) must not stand in for the trace of the lookup the
    caller rolled back."""
    db = staff.db
    log = server_log(server)
    with staff.connect(staff.admin) as conn:  # a committed lookup, to forge with
        conn.execute("SELECT * FROM ils_redact.patron_lookup(ARRAY[16]::bigint[], NULL)"
                     ).fetchall()
    cseq, _, actor, action, _, _, h = staff.audit()[-1]
    committed = json.dumps({"database": db.name, "seq": cseq, "hash": h, "action": action,
                            "login": actor, "at": "x", "request": None, "patrons": [16]})
    with staff.connect(staff.admin, autocommit=False) as conn:
        conn.execute("SET application_name = 'ils-redact audit-trace {}'")
        conn.execute("SELECT * FROM ils_redact.patron_lookup(ARRAY[17, 18]::bigint[], NULL)"
                     ).fetchall()
        (seq,) = conn.execute("SELECT max(seq) FROM ils_redact.audit_log").fetchone()
        conn.rollback()
    needle = f'"seq": {seq}, '
    _wait_for(log, needle)
    line = next(ln for ln in log.read_text(encoding="utf-8", errors="replace").splitlines()
                if "ils-redact audit-trace" in ln and needle in ln
                and f'"database": "{db.name}"' in ln)
    message = line[line.index("LOG:"):]
    forged = tmp_path / "postgresql.log"
    forged.write_text("".join(
        f"2026-12-04 10:00:00 UTC [4242]: user={staff.admin},db={db.name},app={app},"
        f"client=[local] {message}\n"
        for app in ("ils-redact audit-trace {}", f"ils-redact audit-trace {committed}")),
        encoding="utf-8")
    res = run_cli("--dsn", db.dsn, "--rules", str(_rules_file(db, tmp_path)), "--format",
                  "json", "audit", "reconcile", "--server-log", str(forged))
    assert res.returncode == 1, res.stdout + res.stderr
    out = json.loads(res.stdout)
    assert [p["seq"] for p in out["problems"]] == [seq, seq], out
    assert {tuple(p["logged"]["patrons"]) for p in out["problems"]} == {(17, 18)}
    assert out["malformed"] == []


def test_a_forged_trace_with_a_huge_number_cannot_stop_reconcile(
        staff: Staff, server: Server, tmp_path: Path) -> None:
    """The attack: any login writes a line with the marker into the server log (``DO``
    with ``RAISE LOG``), its seq ``1e400`` (infinity once decoded) or ``Infinity``; the
    reading crashed on it, so no rolled-back disclosure was reported while the file was
    kept.  A forged line may add a false alarm; it never stops the reading."""
    db = staff.db
    log = server_log(server)
    with staff.connect(staff.admin, autocommit=False) as conn:
        conn.execute("SELECT * FROM ils_redact.patron_lookup(ARRAY[19]::bigint[], NULL)"
                     ).fetchall()
        (seq,) = conn.execute("SELECT max(seq) FROM ils_redact.audit_log").fetchone()
        conn.rollback()
    with staff.connect(staff.stranger) as conn:  # a login with no role writes the lines
        for value in ("1e400", "Infinity", "-Infinity", "NaN", "1.5", "true", '"7"'):
            conn.execute(sql.SQL("DO $$BEGIN RAISE LOG 'ils-redact audit-trace %', {}; END$$")
                         .format(sql.Literal(f'{{"database": "{db.name}", "seq": {value}, '
                                             f'"hash": "x", "action": "patron.lookup", '
                                             f'"login": "x", "at": "x", "patrons": [1]}}')))
        # atk3: a lone surrogate stopped the text report (UnicodeEncodeError)
        conn.execute(sql.SQL("DO $$BEGIN RAISE LOG 'ils-redact audit-trace %', {}; END$$")
                     .format(sql.Literal(f'{{"database": "{db.name}", "seq": 2, "hash": "x", '
                                         '"action": "export", "login": "\\ud800", '
                                         '"at": "x", "patrons": [1]}')))
        conn.execute(sql.SQL("DO $$BEGIN RAISE LOG 'ils-redact audit-trace %', {}; END$$")
                     .format(sql.Literal("[" * 100_000 + "]" * 100_000)))
    needle = f'"seq": {seq}, '
    _wait_for(log, needle)
    _wait_for(log, '"seq": 1e400')
    res = run_cli("--dsn", db.dsn, "--rules", str(_rules_file(db, tmp_path)), "--format",
                  "json", "audit", "reconcile", "--server-log", str(log))
    assert res.returncode == 1, res.stdout + res.stderr
    out = json.loads(res.stdout)
    assert seq in {p["seq"] for p in out["problems"]}, out
    assert len(out["malformed"]) >= 9, out["malformed"]
    text = run_cli("--dsn", db.dsn, "--rules", str(_rules_file(db, tmp_path)), "audit",
                   "reconcile", "--server-log", str(log))
    assert text.returncode == 1 and "Traceback" not in text.stderr, text.stderr
    assert f"#{seq}" in text.stdout, text.stdout


def test_reconcile_reads_csvlog_and_jsonlog(staff: Staff, tmp_path: Path) -> None:
    from ils_redact.disclosure import reconcile

    db = staff.db
    with staff.connect(staff.admin) as conn:
        conn.execute("SELECT * FROM ils_redact.patron_lookup(ARRAY[11]::bigint[], NULL)"
                     ).fetchall()
    seq, _, actor, action, _, _, h = staff.audit()[-1]
    payload = json.dumps({"database": db.name, "seq": seq, "hash": h, "action": action,
                          "login": actor, "at": "x", "request": None, "patrons": [11]})
    gone = json.dumps({"database": db.name, "seq": seq + 50, "hash": "0" * 64,
                       "action": "export", "login": actor, "at": "x", "request": 1,
                       "patrons": [12]})
    csv_log = tmp_path / "pg.csv"
    csv_log.write_text("".join(
        f'2026-01-01 00:00:00 UTC,"u","{db.name}",1,"[local]",x,1,"SELECT",'
        f'2026-01-01 00:00:00 UTC,3/4,0,LOG,00000,"ils-redact audit-trace '
        + p.replace('"', '""') + '",,,,,,,,,"client backend",,0\n' for p in (payload, gone)))
    json_log = tmp_path / "pg.json"
    json_log.write_text("".join(json.dumps({"timestamp": "x", "error_severity": "LOG",
                                            "message": "ils-redact audit-trace " + p}) + "\n"
                                for p in (payload, gone)))
    for path in (csv_log, json_log):
        traces, bad = reconcile.read_traces([path])
        assert bad == [] and len(traces) == 2
        with db.connect() as conn:
            res = reconcile.reconcile(conn, traces)
        assert res.traces == 2 and [p.seq for p in res.problems] == [seq + 50]


# -- break 5: staff forge audit entries ----------------------------------------------------

def test_staff_cannot_forge_audit_entries(staff: Staff, tmp_path: Path) -> None:
    rid = staff.request(staff.disclosure)
    other = staff.request(staff.exporter)
    before = len(staff.audit())
    for login in (staff.disclosure, staff.admin, staff.exporter, staff.stats):
        with staff.connect(login) as conn:
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute("SELECT ils_redact.audit_append('export', %s, '{}')", (rid,))
    with staff.connect(staff.disclosure) as conn:
        # log_refusal: fixed actions, bounded reason, control characters replaced
        with pytest.raises(errors.InvalidParameterValue, match="not an action"):
            conn.execute("SELECT ils_redact.log_refusal('export\" by dana', %s, 'x')", (rid,))
        seq = conn.execute("SELECT ils_redact.log_refusal('export', %s, %s)",
                           (rid, "\x1b[2J" + "x" * 5000)).fetchone()[0]
        # the query gate's actions only, for the caller's own request
        with pytest.raises(errors.InvalidParameterValue):
            conn.execute("SELECT ils_redact.log_query('export', %s, '{}')", (rid,))
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT ils_redact.log_query('query', %s, '{}')", (other,))
        # export_record (which builds the manifest itself: no "by dana", no HTML in rows)
        # is for the export function's owner only: not even for the login's own request
        for target in (other, rid):
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute("SELECT * FROM ils_redact.export_record(%s, 'csv', "
                             "ARRAY['actor.usr.family_name'], 'x', 1, 99)", (target,))
            conn.rollback()
    reason = staff.db.scalar("SELECT detail ->> 'reason' FROM ils_redact.audit_log "
                             "WHERE seq = %s", (seq,))
    assert len(reason) == 1000 and "\x1b" not in reason
    assert len(staff.audit()) == before + 1


def test_form_and_packet_escape_and_show_malformed_entries(staff: Staff,
                                                           tmp_path: Path) -> None:
    """Entries written before v5 (when staff could append anything): an 'export' "by dana"
    with HTML in rows, and one with an empty detail, made the form unsafe or crash."""
    rid = staff.request(staff.disclosure)
    with staff.connect() as conn:  # as a superuser: what a v4 disclosure login could do
        conn.execute("SELECT ils_redact.audit_append('export', %s, %s)", (rid, json.dumps(
            {"exported_by": "dana", "columns": ["actor.usr.dob"], "format": "csv",
             "rows": "<script>alert(1)</script>", "patrons": 1, "sha256": "0" * 64})))
        conn.execute("SELECT ils_redact.audit_append('export', %s, '{}')", (rid,))
        conn.execute("SELECT ils_redact.audit_append('export', %s, '[1, 2]')", (rid,))
    with staff.connect(autocommit=False) as conn:
        page = forms.render_form(conn, staff.db.rules, rid)
        files = forms.write_packet(conn, staff.db.rules, rid, tmp_path / "packet")
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert page.count("Malformed audit entry") == 3
    assert {f.name for f in files} >= {"form.html", "audit-entries.json"}
    assert "<script>" not in (tmp_path / "packet" / "form.html").read_text()


# -- row 22, and the entry time ------------------------------------------------------------

def test_a_stranger_cannot_freeze_the_audit_chain(staff: Staff) -> None:
    rid = staff.request(staff.exporter, approve=False)
    with staff.connect(staff.stranger) as hold:
        hold.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_KEY,))
        with pytest.raises(errors.InsufficientPrivilege):
            hold.execute("SELECT 1 FROM ils_redact.audit_chain_lock FOR UPDATE")
        with staff.connect(staff.director) as conn:
            conn.execute("SET lock_timeout = '3s'")
            assert conn.execute("SELECT ils_redact.request_approve(%s)",
                                (rid,)).fetchone()[0] is None
        with staff.connect(staff.exporter) as conn:
            conn.execute("SET lock_timeout = '3s'")
            assert conn.execute("SELECT document FROM ils_redact.export(%s, 'csv')",
                                (rid,)).fetchone()[0]


def test_a_held_audit_lock_is_waited_for_briefly_and_named(staff: Staff) -> None:
    rid = staff.request(staff.exporter, approve=False)
    with staff.connect(staff.admin, autocommit=False) as hold:
        hold.execute("SELECT ils_redact.request_end(%s, 'closed', 'done')", (rid + 99,))
        pid = hold.info.backend_pid
        # the holder's transaction may not sit idle for long
        assert hold.execute("SHOW idle_in_transaction_session_timeout").fetchone()[0] == "1min"
        with staff.connect(staff.director) as conn:
            t0 = time.monotonic()
            with pytest.raises(errors.LockNotAvailable, match=f"pid {pid}, login {staff.admin}"):
                conn.execute("SELECT ils_redact.request_approve(%s)", (rid,))
            assert 4 < time.monotonic() - t0 < 30
        hold.rollback()


def test_entry_times_never_decrease(staff: Staff) -> None:
    """A session that appends twice in one transaction while another waits for the lock:
    the waiter's time used to be read before the wait, earlier than the holder's second
    entry that precedes it in the chain."""
    with staff.connect(staff.admin, autocommit=False) as hold:
        hold.execute("SELECT ils_redact.log_refusal('query', NULL, 'first')")
        done = threading.Event()

        def waiter() -> None:
            with staff.connect(staff.director) as conn:
                conn.execute("SELECT ils_redact.log_refusal('query', NULL, 'waiter')")
            done.set()

        t = threading.Thread(target=waiter)
        t.start()
        time.sleep(1.0)
        hold.execute("SELECT ils_redact.log_refusal('query', NULL, 'second')")
        hold.commit()
        t.join(30)
    assert done.is_set()
    entries = staff.audit()
    assert [e[5]["reason"] for e in entries[-3:]] == ["first", "second", "waiter"]
    times = [e[1] for e in entries]
    assert times == sorted(times)


# -- row 24: control characters ------------------------------------------------------------

def test_control_characters_are_refused_and_printed_escaped(staff: Staff,
                                                           tmp_path: Path) -> None:
    db = staff.db
    with staff.connect(staff.admin) as conn:
        for agency in ("Metro\x1b]0;pwned\x07 Police", "PD\r", "PD\u202e",
                       # the third review: characters that hide on the printed form
                       "PD\u200f", "P\u200dD", "PD\ufeff", "PD\U000e0041",
                       "26-11\u00ad82", "PD\u3164", "PD\ufe0f"):
            with pytest.raises(errors.InvalidParameterValue, match="agency contains control"):
                conn.execute(
                    "SELECT ils_redact.request_create('emergency', %s, 'A', '1', '2', 'r', NULL, "
                    "NULL, NULL, ARRAY[11]::bigint[], NULL, ARRAY['actor.usr.family_name'], "
                    "now() + interval '1 hour', NULL)", (agency,))
        rid = staff.request(staff.exporter, approve=False)
        with pytest.raises(errors.InvalidParameterValue, match="reason contains control"):
            conn.execute("SELECT ils_redact.request_end(%s, 'revoked', %s)",
                         (rid, "done\x1b[2K"))
    # a row written before the database refused them is printed escaped
    with staff.connect() as conn:
        conn.execute("ALTER TABLE ils_redact.request DROP CONSTRAINT request_text_printable")
        conn.execute("UPDATE ils_redact.request SET agency = %s, case_number = %s WHERE id = %s",
                     ("Metro\x1b]0;owned\x07", "1\x1b[2J\r", rid))
    rules = _rules_file(db, tmp_path)
    for args in (("request", "list"), ("request", "show", str(rid)), ("audit", "log")):
        res = run_cli("--dsn", db.dsn_as(staff.director), "--rules", str(rules), *args)
        assert res.returncode == 0, res.stderr
        assert "\x1b" not in res.stdout and "\r" not in res.stdout and "\x07" not in res.stdout
        if args[0] == "request":
            assert "Metro\\x1b]0;owned\\x07" in res.stdout, res.stdout
    from ils_redact.cli.disclosure import printable

    assert printable("a\x1b[31mb\u202ec\nd") == "a\\x1b[31mb\\u202ec\\nd"


# -- the form's "Patrons named" ------------------------------------------------------------

def test_named_as_is_what_the_database_resolved(staff: Staff) -> None:
    db = staff.db
    other = db.scalar("SELECT barcode FROM actor.card WHERE usr = 13 AND active LIMIT 1")
    own = db.scalar("SELECT barcode FROM actor.card WHERE usr = 11 AND active LIMIT 1")
    create = ("SELECT ils_redact.request_create('emergency', 'PD', 'A', '1', '2', 'r', NULL, "
              "NULL, NULL, ARRAY[11]::bigint[], %s, ARRAY['actor.usr.family_name'], "
              "now() + interval '1 hour', %s)")
    with staff.connect(staff.admin, autocommit=False) as conn:
        with pytest.raises(errors.InvalidParameterValue, match="did not resolve"):
            conn.execute(create, ([other], staff.exporter))
        conn.rollback()
        with pytest.raises(errors.InvalidParameterValue, match="did not resolve"):
            conn.execute(create, ([own], staff.exporter))  # true, but not looked up by it
        conn.rollback()
        conn.execute("SELECT * FROM ils_redact.patron_lookup(NULL, %s)", ([own],)).fetchall()
        rid = conn.execute(create, ([own], staff.exporter)).fetchone()[0]
        conn.commit()
    assert db.scalar("SELECT named_as FROM ils_redact.request_patron WHERE request_id = %s",
                     (rid,)) == own


# -- row 23: access: role ------------------------------------------------------------------

def test_role_mode_refuses_requests_for_some_fields_only(staff: Staff, tmp_path: Path) -> None:
    """With a court order naming only family_name, the role-mode disclosure login read
    dob, email, phone, barcode and address of that patron directly."""
    db = staff.db
    narrow = staff.request(staff.disclosure, columns="actor.usr.family_name")  # function mode
    with staff.connect() as conn:  # the library switches to access: role
        conn.execute("UPDATE ils_redact.setting SET value = '\"role\"' WHERE key = 'access'")
    with staff.connect(staff.disclosure) as conn:
        assert conn.execute("SELECT dob, email FROM actor.usr").fetchall() == []
        assert conn.execute("SELECT count(*) FROM actor.card").fetchone()[0] == 0
    with staff.connect(staff.admin) as conn:
        with pytest.raises(errors.InvalidParameterValue, match="disclosure.access: role"):
            conn.execute(
                "SELECT ils_redact.request_create('court-order', 'PD', 'A', '1', '2', NULL, "
                "'Circuit Court', '26-MR-1', '2026-11-20', ARRAY[12]::bigint[], NULL, "
                "ARRAY['actor.usr.family_name'], now() + interval '1 day', %s)",
                (staff.disclosure,))
    with staff.connect() as conn:  # a narrow draft from before the switch
        conn.execute("UPDATE ils_redact.setting SET value = '\"function\"' WHERE key = 'access'")
    draft = staff.request(staff.disclosure, columns="actor.usr.family_name", approve=False)
    with staff.connect() as conn:
        conn.execute("UPDATE ils_redact.setting SET value = '\"role\"' WHERE key = 'access'")
    with staff.connect(staff.director) as conn:
        refusal = conn.execute("SELECT ils_redact.request_approve(%s)", (draft,)).fetchone()[0]
    assert "disclosure.access: role" in refusal
    full = staff.request(staff.disclosure)
    with staff.connect(staff.disclosure) as conn:
        assert {r[0] for r in conn.execute("SELECT id FROM actor.usr")} == {11, 12}
    assert narrow and full
    # the CLI says why, as the database does
    rules = write_rules(tmp_path, db.prefix, lambda t: t.replace("access: function",
                                                                 "access: role"))
    res = run_cli("--dsn", db.dsn_as(staff.admin), "--rules", str(rules), "request", "create",
                  "--basis", "court-order", "--agency", "PD", "--officer", "A", "--badge", "1",
                  "--case", "2", "--court", "C", "--order-ref", "R", "--order-date",
                  "2026-11-01", "--hours", "4", "--patron", "11", "--columns", "family_name",
                  "--yes")
    assert res.returncode == 1 and "disclosure.access: role" in res.stderr, res.stderr


# -- issue 14: reading never writes --------------------------------------------------------

def test_read_commands_work_in_a_read_only_transaction(staff: Staff, tmp_path: Path) -> None:
    db = staff.db
    rid = staff.request(staff.exporter)
    with staff.connect() as conn:  # its time is up; nothing has recorded that yet
        conn.execute("UPDATE ils_redact.request SET expires_at = now() - interval '1 s' "
                     "WHERE id = %s", (rid,))
        conn.execute("UPDATE ils_redact.scope SET expires_at = now() - interval '1 s'")
    n = len(staff.audit())
    rules = _rules_file(db, tmp_path)
    ro = db.server.dsn_for(db.name, user=staff.director,
                           options="-c default_transaction_read_only=on")
    for args in (("--format", "json", "request", "list"), ("request", "show", str(rid)),
                 ("request", "form", str(rid), "-o", str(tmp_path / "f.html")),
                 ("request", "packet", str(rid), "-o", str(tmp_path / "p")),
                 ("audit", "log"), ("audit", "verify")):
        res = run_cli("--dsn", ro, "--rules", str(rules), *args)
        assert res.returncode == 0, (args, res.stderr)
        if args[-1] == "list":
            assert json.loads(res.stdout)[0]["status"] == "expired"
    assert "(expired)" in (tmp_path / "f.html").read_text()
    assert len(staff.audit()) == n
    with staff.connect(staff.director) as conn:  # a write path records the expiry
        conn.execute("SELECT ils_redact.sweep_expired()")
    assert staff.audit()[-1][3] == "request.expired"


# -- upgrade: a library on layer v4 ---------------------------------------------------------

def test_layer_v4_database_is_upgraded_to_v5(eg_db: EgDb, monkeypatch, tmp_path: Path) -> None:
    """Installed by the previous release (layer files 0001-0004 and its rules-derived
    functions), used (requests, an export, an entry a disclosure login appended, a request
    field with escape codes), then upgraded by the next install: the chain still verifies
    and continues, the old request still exports, and every v5 property holds."""
    import layer_v4_generated as v4
    from ils_redact.backends.postgresql import planner
    from ils_redact.backends.postgresql import stats as stats_pgsql
    from ils_redact.disclosure import audit

    files = planner.layer_files()
    with monkeypatch.context() as m:
        m.setattr(planner, "layer_files", lambda: [f for f in files if f.version <= 4])
        m.setattr(planner, "generated_functions", v4.generated_functions)
        m.setattr(stats_pgsql, "definer_function", v4.definer_function)
        m.setattr(stats_pgsql, "PINS", "    SET search_path = pg_catalog, pg_temp\n")
        with eg_db.connect(autocommit=False) as conn:
            pg.install(conn, eg_db.rules, reports=all_reports)
    assert eg_db.scalar("SELECT value FROM ils_redact.meta WHERE key = 'layer_version'") == "4"
    staff = Staff(eg_db)
    rid = staff.request(staff.exporter)
    with staff.connect(staff.exporter) as conn:
        assert conn.execute("SELECT document FROM ils_redact.export(%s, 'csv')",
                            (rid,)).fetchone()[0]
    with staff.connect(staff.disclosure) as conn:  # what v4 let a disclosure login do
        conn.execute("SELECT ils_redact.audit_append('export', %s, '{}')", (rid,))
    with staff.connect(staff.admin) as conn:
        old = conn.execute(
            "SELECT ils_redact.request_create('emergency', %s, 'A', '1', '2', 'r', NULL, NULL, "
            "NULL, ARRAY[13]::bigint[], ARRAY['not-a-barcode'], "
            "ARRAY['actor.usr.family_name'], now() + interval '2 hours', NULL)",
            ("Metro\x1b[2J Police",)).fetchone()[0]
    n_v4 = len(staff.audit())

    with eg_db.connect(autocommit=False) as conn:
        plan = pg.compute_install_plan(conn, eg_db.rules, reports=all_reports)
        conn.rollback()
    changed = {(s.kind, s.target) for s in plan.changes()}
    assert ("layer", "ils_redact layer v5") in changed
    assert ("function", "ils_redact.export(bigint, text)") in changed
    assert ("function", "ils_redact.patron_lookup(bigint[], text[])") in changed
    with eg_db.connect(autocommit=False) as conn:
        pg.install(conn, eg_db.rules, reports=all_reports)
    assert eg_db.scalar("SELECT value FROM ils_redact.meta WHERE key = 'layer_version'") == str(
        planner.layer_version_available())
    with eg_db.connect(autocommit=False) as conn:
        assert pg.compute_install_plan(conn, eg_db.rules, reports=all_reports).empty
        conn.rollback()

    # the chain verifies across the upgrade and goes on
    with staff.connect(staff.exporter) as conn:
        seq, doc, manifest = conn.execute("SELECT * FROM ils_redact.export(%s, 'csv')",
                                          (rid,)).fetchone()
    assert doc and seq == n_v4 + 1 and manifest["exported_by"] == staff.exporter
    with eg_db.connect(autocommit=False) as conn:
        check = audit.verify(conn)
        page = forms.render_form(conn, eg_db.rules, rid)
        old_page = forms.render_form(conn, eg_db.rules, old)
    assert check.ok and check.entries == n_v4 + 1, check
    assert page.count("Malformed audit entry") == 1  # the v4 entry of the disclosure login
    assert "not-a-barcode" in old_page  # recorded as v4 took it; new requests cannot
    # v5 holds: no staff role appends, every definer function pinned, the lock row
    with staff.connect(staff.disclosure) as conn:
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT ils_redact.audit_append('export', %s, '{}')", (rid,))
    assert eg_db.scalar(
        "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname IN ('ils_redact', 'ils_redact_stats') AND p.prosecdef "
        "AND NOT p.proconfig @> ARRAY['debug_print_plan=off', 'client_min_messages=warning']"
    ) == 0
    with staff.connect(staff.admin) as conn:
        with pytest.raises(errors.InvalidParameterValue, match="did not resolve"):
            conn.execute(
                "SELECT ils_redact.request_create('emergency', 'PD', 'A', '1', '2', 'r', NULL, "
                "NULL, NULL, ARRAY[13]::bigint[], ARRAY['not-a-barcode'], "
                "ARRAY['actor.usr.family_name'], now() + interval '2 hours', NULL)")
    # the v4 row with escape codes is kept (NOT VALID) and printed escaped
    res = run_cli("--dsn", eg_db.dsn_as(staff.director), "--rules",
                  str(_rules_file(eg_db, tmp_path)), "request", "list")
    assert res.returncode == 0 and "Metro\\x1b[2J Police" in res.stdout, res.stdout
    # the ILS owner's dump still reads every table of the layer
    with eg_db.connect(eg_db.owner) as conn:
        assert conn.execute("SELECT count(*) FROM ils_redact.audit_chain_lock").fetchone()[0] == 1
