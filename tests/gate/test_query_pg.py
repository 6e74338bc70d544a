"""``ils-redact query`` end to end: the real console script, a full install, the
restricted login (a member of the disclosure role) and a request approved for it by
another login.  Every property is checked against the database: rows, audit entries,
READ ONLY, the statement timeout, the row cap and what an error shows."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from psycopg import sql

from ils_redact.backends import postgresql as pg
from ils_redact.stats import all_reports
from support import EgDb, create_role, run_cli, write_rules

PATRONS = (11, 12)


class Library:
    """An install with a clerk (admin) who records requests, a director (admin) who
    approves them, and a reader: a login in the disclosure role (role access)."""

    def __init__(self, db: EgDb, tmp: Path) -> None:
        self.db = db
        self.tmp = tmp
        self.rules = write_rules(tmp, db.prefix)
        self.clerk = f"{db.prefix}clerk"
        self.director = f"{db.prefix}director"
        self.reader = f"{db.prefix}reader"

    def cli(self, *args: str, user: str | None = None, rules: Path | None = None,
            input: str | None = None) -> subprocess.CompletedProcess:
        dsn = self.db.dsn_as(user) if user else self.db.dsn
        return run_cli("--dsn", dsn, "--rules", str(rules or self.rules), *args, input=input)

    def ok(self, *args: str, user: str | None = None) -> str:
        res = self.cli(*args, user=user)
        assert res.returncode == 0, (args, res.stdout, res.stderr)
        return res.stdout

    def request(self, *extra: str, approve: bool = True,
                patrons: tuple[int, ...] = PATRONS) -> int:
        args = ["--format", "json", "request", "create", "--basis", "emergency",
                "--agency", "Metro Police", "--officer", "Jane Roe", "--badge", "4471",
                "--case", "26-1182", "--reason", "credible threat of violence",
                "--for", self.reader, "--yes", *extra]
        for p in patrons:
            args += ["--patron", str(p)]
        rid = int(json.loads(self.ok(*args, user=self.clerk))["request"])
        if approve:
            self.ok("request", "approve", str(rid), user=self.director)
        return rid

    def query(self, sql_text: str, *args: str, rules: Path | None = None,
              user: str | None = None) -> subprocess.CompletedProcess:
        return self.cli("query", *args, sql_text, user=user or self.reader, rules=rules)

    def audit(self) -> list[dict]:
        return json.loads(self.ok("--format", "json", "audit", "log"))

    def rules_with(self, old: str, new: str) -> Path:
        def edit(text: str) -> str:
            assert old in text
            return text.replace(old, new, 1)
        return write_rules(self.tmp, self.db.prefix, edit)


@pytest.fixture
def lib(eg_db: EgDb, tmp_path: Path) -> Library:
    with eg_db.connect(autocommit=False) as conn:
        pg.install(conn, eg_db.rules, reports=all_reports)
    lib = Library(eg_db, tmp_path)
    lib.ok("staff", "grant", lib.clerk, "--role", "admin", "--create")
    lib.ok("staff", "grant", lib.director, "--role", "admin", "--create")
    create_role(eg_db.server, lib.reader, member_of=(eg_db.role("disclosure"),))
    return lib


def owner_rows(db: EgDb, query: str, params: tuple = ()) -> list[tuple]:
    with db.connect(db.owner) as conn:
        return [tuple(r) for r in conn.execute(query, params)]


def test_allowed_query_returns_scoped_patrons_and_is_logged(lib: Library) -> None:
    rid = lib.request()
    text = "SELECT id, family_name, dob FROM actor.usr ORDER BY id"
    res = lib.query(text, "--profile", "disclosure", "--request", str(rid), "--format", "json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["columns"] == ["id", "family_name", "dob"]
    want = owner_rows(lib.db, "SELECT id, family_name, dob::text FROM actor.usr "
                      "WHERE id = ANY(%s) ORDER BY id", (list(PATRONS),))
    assert [tuple(r) for r in doc["rows"]] == want
    summary = json.loads(res.stderr.strip().splitlines()[-1])
    assert summary["rows"] == len(PATRONS)
    # two entries: before the read (what runs) and after (what was printed)
    entries = [e for e in lib.audit() if e["request_id"] == rid]
    query_e, finished = entries[-2], entries[-1]
    assert (query_e["action"], finished["action"]) == ("query", "query.finished")
    assert query_e["actor"] == finished["actor"] == lib.reader
    assert query_e["detail"]["sql_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert f'"ils_redact"."request_patron_ids"({rid})' in query_e["detail"]["sql"]
    assert query_e["detail"]["profile"] == "disclosure"
    assert finished["detail"]["sha256"] == hashlib.sha256(res.stdout.encode()).hexdigest()
    assert finished["detail"]["rows"] == len(PATRONS)
    assert finished["detail"]["query_seq"] == query_e["seq"] == summary["audit_seq"]
    assert lib.cli("audit", "verify").returncode == 0


def test_star_gives_permitted_columns_of_scoped_patrons(lib: Library) -> None:
    rid = lib.request()
    res = lib.query("SELECT * FROM actor.card", "--profile", "disclosure", "--request",
                    str(rid), "--format", "json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["columns"] == ["id", "usr", "barcode", "active"]
    assert {r[1] for r in doc["rows"]} == set(PATRONS)
    want = owner_rows(lib.db, "SELECT count(*) FROM actor.card WHERE usr = ANY(%s)",
                      (list(PATRONS),))[0][0]
    assert len(doc["rows"]) == want


def test_refused_query_names_the_finding_and_is_logged(lib: Library) -> None:
    rid = lib.request()
    before = len(lib.audit())
    res = lib.query("SELECT u.family_name\nFROM actor.usr u JOIN action.circulation c "
                    "ON c.usr = u.id", "--profile", "disclosure", "--request", str(rid))
    assert res.returncode == 1
    assert res.stdout == ""
    assert "R-CONFIDENTIAL-RELATION action.circulation 2:" in res.stderr
    assert "circulation" in res.stderr and "75 ILCS 70" in res.stderr
    new = lib.audit()[before:]
    assert [e["action"] for e in new] == ["query.refused"]
    assert new[0]["request_id"] == rid and new[0]["actor"] == lib.reader
    assert "R-CONFIDENTIAL-RELATION action.circulation" in new[0]["detail"]["reason"]


def test_unapproved_or_foreign_request_is_refused(lib: Library) -> None:
    draft = lib.request(approve=False)
    res = lib.query("SELECT family_name FROM actor.usr", "--profile", "disclosure",
                    "--request", str(draft))
    assert res.returncode == 1 and "not approved" in res.stderr
    assert lib.audit()[-1]["action"] == "query.refused"
    # a request approved for another login gives this one nothing
    other = f"{lib.db.prefix}other"
    create_role(lib.db.server, other, member_of=(lib.db.role("disclosure"),))
    rid = lib.request()
    res = lib.query("SELECT family_name FROM actor.usr", "--profile", "disclosure",
                    "--request", str(rid), user=other)
    assert res.returncode == 1 and f"approved for {lib.reader}" in res.stderr
    # and no request at all is a usage error
    res = lib.query("SELECT family_name FROM actor.usr", "--profile", "disclosure")
    assert res.returncode == 2 and "--request" in res.stderr


def test_court_order_reaches_only_the_fields_it_names(lib: Library) -> None:
    rid = lib.request("--columns", "family_name,actor.card.barcode")
    ok = lib.query("SELECT u.family_name, c.barcode FROM actor.usr u JOIN actor.card c "
                   "ON c.usr = u.id", "--profile", "disclosure", "--request", str(rid),
                   "--format", "json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["columns"] == ["family_name", "barcode"]
    res = lib.query("SELECT family_name FROM actor.usr WHERE dob < '1970-01-01'",
                    "--profile", "disclosure", "--request", str(rid))
    assert res.returncode == 1
    assert "R-WITHHELD-COLUMN actor.usr.dob" in res.stderr
    assert f"not among the fields request {rid} covers" in res.stderr


#: an alias column list that calls actor.usr's 35th column (dob) family_name: columns are
#: renamed by position (threat model row 19); family_name itself, the 17th, becomes c16,
#: and id keeps its name so the scope predicate still finds it
RELABEL_DOB = ("SELECT u.family_name FROM actor.usr AS u(id, "  # noqa: S608 - the attack
               + ", ".join(f"c{i}" for i in range(1, 34)) + ", family_name) ORDER BY 1")


def test_court_order_alias_column_list_cannot_relabel_dob(lib: Library) -> None:
    """Issue 12 item 4: through the gate, a court order naming only family_name, the date
    of birth relabelled family_name by an alias column list."""
    rid = lib.request("--columns", "family_name")
    dobs = {str(r[0]) for r in owner_rows(lib.db, "SELECT dob FROM actor.usr WHERE id = "
                                         "ANY(%s)", (list(PATRONS),))}
    res = lib.query(RELABEL_DOB, "--profile", "disclosure", "--request", str(rid),
                    "--format", "json")
    assert res.returncode == 1, res.stdout
    assert res.stdout == "" and not any(d in res.stderr for d in dobs)
    assert "R-WITHHELD-COLUMN actor.usr.dob" in res.stderr
    assert "u.family_name is column dob of actor.usr" in res.stderr
    assert lib.audit()[-1]["action"] == "query.refused"
    # the same name, meaning what it says, is what the order covers
    ok = lib.query("SELECT u.surname FROM actor.usr AS u(c0, c1, c2, c3, c4, c5, c6, c7, c8, "
                   "c9, c10, c11, c12, c13, c14, c15, surname) ORDER BY 1", "--profile",
                   "disclosure", "--request", str(rid), "--format", "json")
    assert ok.returncode == 0, ok.stderr
    want = owner_rows(lib.db, "SELECT family_name FROM actor.usr WHERE id = ANY(%s) "
                      "ORDER BY 1", (list(PATRONS),))
    assert [tuple(r) for r in json.loads(ok.stdout)["rows"]] == want


def test_rewrite_applies_the_request_checks_of_query(lib: Library) -> None:
    """``rewrite --request`` checks the request in the database as ``query`` does (one
    code path): the court order's fields, the approval, the login it was approved for."""
    rid = lib.request("--columns", "family_name")

    def rewrite(text: str, request: int, user: str | None = None
                ) -> subprocess.CompletedProcess:
        return lib.cli("rewrite", "--profile", "disclosure", "--request", str(request), text,
                       user=user or lib.reader)

    for text in ("SELECT dob FROM actor.usr", RELABEL_DOB):
        res = rewrite(text, rid)
        assert res.returncode == 1, res.stdout
        assert "R-WITHHELD-COLUMN actor.usr.dob" in res.stdout
        assert f"not among the fields request {rid} covers" in res.stdout
        assert lib.query(text, "--profile", "disclosure", "--request",
                         str(rid)).returncode == 1
    ok = rewrite("SELECT family_name FROM actor.usr", rid)
    assert ok.returncode == 0, ok.stderr
    assert f'"ils_redact"."request_patron_ids"({rid})' in ok.stdout
    # a request that does not serve this login is refused by both, for the same reason
    draft = lib.request(approve=False)
    other = f"{lib.db.prefix}other"
    create_role(lib.db.server, other, member_of=(lib.db.role("disclosure"),))
    for request, user, why in ((draft, None, "not approved"),
                               (rid, other, f"approved for {lib.reader}")):
        res = rewrite("SELECT family_name FROM actor.usr", request, user)
        assert res.returncode == 1 and why in res.stderr, (res.stdout, res.stderr)
        q = lib.query("SELECT family_name FROM actor.usr", "--profile", "disclosure",
                      "--request", str(request), user=user)
        assert q.returncode == 1 and why in q.stderr


def test_function_sources_run_and_rows_from_refuses_cleanly(lib: Library) -> None:
    """Issue 12: ``unnest(...) WITH ORDINALITY`` was regenerated into SQL the server
    refused (an ``offset`` column), and ``ROWS FROM (query_to_xml(...))`` crashed the
    gate with a traceback.  As the restricted login, through ``query``."""
    rid = lib.request()
    res = lib.query("SELECT * FROM unnest(ARRAY['a', 'b']) WITH ORDINALITY", "--profile",
                    "disclosure", "--request", str(rid), "--format", "json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["columns"] == ["unnest", "ordinality"]
    assert sorted(map(tuple, doc["rows"])) == [("a", 1), ("b", 2)]
    res = lib.query("SELECT u.id, x.part, x.n FROM actor.usr u, LATERAL unnest("
                    "string_to_array(u.family_name, ' ')) WITH ORDINALITY AS x(part, n) "
                    "ORDER BY u.id, x.n", "--profile", "disclosure", "--request", str(rid),
                    "--format", "json")
    assert res.returncode == 0, res.stderr
    want = owner_rows(lib.db, "SELECT u.id, x.part, x.n FROM actor.usr u, LATERAL unnest("
                      "string_to_array(u.family_name, ' ')) WITH ORDINALITY AS x(part, n) "
                      "WHERE u.id = ANY(%s) ORDER BY u.id, x.n", (list(PATRONS),))
    assert [tuple(r) for r in json.loads(res.stdout)["rows"]] == want and want
    res = lib.query("SELECT * FROM ROWS FROM (query_to_xml('SELECT passwd FROM actor.usr', "
                    "true, true, ''))", "--profile", "disclosure", "--request", str(rid))
    assert res.returncode == 1
    assert "Traceback" not in res.stderr and res.stdout == ""
    assert "R-FUNCTION query_to_xml" in res.stderr


def test_database_error_is_not_echoed(lib: Library) -> None:
    rid = lib.request()
    name = owner_rows(lib.db, "SELECT family_name FROM actor.usr WHERE id = %s",
                      (PATRONS[0],))[0][0]
    text = "SELECT CAST(family_name AS INTEGER) FROM actor.usr"
    res = lib.query(text, "--profile", "disclosure", "--request", str(rid))
    assert res.returncode == 1
    assert "data exception (22P02)" in res.stderr
    assert name not in res.stderr and name not in res.stdout
    assert "invalid input syntax" not in res.stderr
    entries = lib.audit()
    assert [e["action"] for e in entries[-2:]] == ["query", "query.failed"]
    assert entries[-1]["detail"]["sqlstate"] == "22P02"
    assert name not in json.dumps(entries[-1])
    # --debug shows the server's own text, value included
    dbg = lib.cli("--debug", "query", "--profile", "disclosure", "--request", str(rid),
                  text, user=lib.reader)
    assert dbg.returncode != 0 and "invalid input syntax" in dbg.stderr


def test_read_only_holds(lib: Library) -> None:
    """A function that writes, allow-listed by a careless rules file: the gate lets it
    through and the READ ONLY transaction stops it."""
    db = lib.db
    with db.connect() as conn:
        conn.execute("CREATE TABLE public.ils_redact_written (n int)")
        conn.execute("CREATE FUNCTION public.ils_redact_write() RETURNS int LANGUAGE sql "
                     "VOLATILE AS 'INSERT INTO public.ils_redact_written VALUES (1) "
                     "RETURNING n'")
        conn.execute(sql.SQL("GRANT INSERT, SELECT ON public.ils_redact_written TO {}")
                     .format(sql.Identifier(lib.reader)))
    rules = lib.rules_with("  functions: []", "  functions: [public.ils_redact_write]")
    rid = lib.request()
    res = lib.query("SELECT public.ils_redact_write() AS n", "--profile", "disclosure",
                    "--request", str(rid), rules=rules)
    assert res.returncode == 1, res.stdout
    assert "read-only transaction (25006)" in res.stderr
    assert db.scalar("SELECT count(*) FROM public.ils_redact_written") == 0
    # the same login, outside the gate, can write: the transaction mode did it
    with db.connect(lib.reader) as conn:
        conn.execute("SELECT public.ils_redact_write()")
    assert db.scalar("SELECT count(*) FROM public.ils_redact_written") == 1


def test_statement_timeout_holds(lib: Library) -> None:
    rules = lib.rules_with("statement_timeout_ms: 5000", "statement_timeout_ms: 200")
    rid = lib.request()
    res = lib.query("SELECT count(*) FROM generate_series(1, 2000000000) AS g",
                    "--profile", "disclosure", "--request", str(rid), rules=rules)
    assert res.returncode == 1
    assert "statement timeout" in res.stderr and "57014" in res.stderr
    entries = lib.audit()
    assert [e["action"] for e in entries[-2:]] == ["query", "query.failed"]
    assert entries[-2]["detail"]["statement_timeout_ms"] == 200
    assert entries[-1]["detail"]["sqlstate"] == "57014"


def test_row_cap_holds(lib: Library) -> None:
    rid = lib.request()
    res = lib.query("SELECT g FROM generate_series(1, 5000) AS g", "--profile",
                    "disclosure", "--request", str(rid), "--format", "csv")
    assert res.returncode == 0, res.stderr
    assert len(res.stdout.splitlines()) == 1 + 1000
    assert json.loads(res.stderr.splitlines()[-1])["capped"] is True
    rules = lib.rules_with("row_cap: 1000", "row_cap: 1")
    res = lib.query("SELECT id FROM actor.usr ORDER BY id LIMIT 50", "--profile",
                    "disclosure", "--request", str(rid), "--format", "json", rules=rules)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["rows"] == [[PATRONS[0]]]
    entry = [e for e in lib.audit() if e["action"] == "query"][-1]
    assert entry["detail"]["sql"].endswith("LIMIT 1") and entry["detail"]["row_cap"] == 1


def test_a_client_that_dies_leaves_the_first_entry(lib: Library) -> None:
    rid = lib.request()
    rules = lib.rules_with("statement_timeout_ms: 5000", "statement_timeout_ms: 120000")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "ils-redact"), "--dsn",
         lib.db.dsn_as(lib.reader), "--rules", str(rules), "query", "--profile",
         "disclosure", "--request", str(rid),
         "SELECT count(*) FROM generate_series(1, 2000000000) AS g"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        pid = None
        for _ in range(1200):  # the CLI starts, reads the catalog, logs, then fetches
            pid = lib.db.scalar("SELECT pid FROM pg_stat_activity WHERE usename = %s "
                                "AND query LIKE 'FETCH%%' AND state = 'active'",
                                (lib.reader,))
            if pid:
                break
            time.sleep(0.05)
        assert pid, "the gated query never started"
        assert lib.db.scalar("SELECT pg_terminate_backend(%s)", (pid,))
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1, err
    assert "57P01" in err and "terminating" not in err
    actions = [e["action"] for e in lib.audit() if e["request_id"] == rid]
    assert actions[-1] == "query" and "query.finished" not in actions


def test_csv_and_table_output_are_defused(lib: Library) -> None:
    rid = lib.request()
    res = lib.query("SELECT '=HYPERLINK(1)' AS a, chr(27) || '[31mred' AS b", "--profile",
                    "disclosure", "--request", str(rid), "--format", "csv")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[1].startswith("'=HYPERLINK(1)")
    res = lib.query("SELECT chr(27) || '[31mred' AS b", "--profile", "disclosure",
                    "--request", str(rid))
    assert res.returncode == 0 and "\x1b" not in res.stdout and "?[31mred" in res.stdout


def test_stats_profile_runs_without_audit(lib: Library) -> None:
    statsman = f"{lib.db.prefix}statsman"
    create_role(lib.db.server, statsman, member_of=(lib.db.role("stats"),))
    before = len(lib.audit())
    res = lib.query("SELECT count(*) AS n FROM generate_series(1, 3) AS g", "--profile",
                    "stats", "--format", "json", user=statsman)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["rows"] == [[3]]
    res = lib.query("SELECT family_name FROM actor.usr", "--profile", "stats",
                    user=statsman)
    assert res.returncode == 1 and "R-NOT-PERMITTED actor.usr" in res.stderr
    assert len(lib.audit()) == before
