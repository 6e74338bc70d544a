"""Logical replication and the REPLICATION attribute, against a real primary (PostgreSQL 15
and 18): what they copy past the layer, and what verify says about it.

Facts these tests establish (the same on 15 and 18):

* a subscription's initial copy runs ``COPY`` as the replication login, through row
  policies: the layer's passthrough policy lets it copy every patron; with
  ``row_security=off`` in the subscription's connection (PostgreSQL's advice against
  untrusted table owners) the copy stops ("query would be affected by row-level security
  policy"), which BYPASSRLS would "fix" by copying every patron anyway;
* the change stream after the copy is decoded from WAL and is not filtered by row policies
  at all;
* a REPLICATION login with no privilege on any table reads every change of every table
  through a logical slot with ``test_decoding``.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from psycopg import sql

from ils_redact.verify import verify
from support.replication import ReplDb


def q(r: ReplDb, query: sql.Composable | str, db: str | None = None,
      user: str = "postgres") -> list[tuple]:
    with psycopg.connect(r.h.primary.dsn(db or r.name, user), autocommit=True) as conn:
        cur = conn.execute(query)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def findings(r: ReplDb) -> list:
    with psycopg.connect(r.dsn()) as conn:
        report = verify(conn, r.db.rules)
    return [f for c in report.checks for f in c.findings]


def wait_for(pred, timeout: float = 30.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)


@contextmanager
def subscriber(r: ReplDb, name: str, publication: str, login: str,
               options: str = "") -> Iterator[str]:
    """A database on the same cluster with a copy of actor.usr's definition, subscribed to
    ``publication`` through ``login`` (the slot is made first: a subscription to the
    same cluster cannot create its own)."""
    node = r.h.primary
    db = name = f"{r.prefix}{name}"  # the database, the slot and the subscription
    q(r, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)), db="postgres")
    try:
        ddl = subprocess.run([node.tool("pg_dump"), "-s", "-t", "actor.usr", "--no-owner",
                              "--no-privileges", "-d", node.dsn(r.name)],
                             capture_output=True, text=True, check=True).stdout
        loaded = subprocess.run([node.tool("psql"), "-q", "-d", node.dsn(db)],
                                input="CREATE SCHEMA actor;\n" + ddl, capture_output=True,
                                text=True, check=True)
        assert q(r, "SELECT to_regclass('actor.usr') IS NOT NULL", db=db)[0][0], loaded.stderr
        q(r, sql.SQL("SELECT pg_create_logical_replication_slot({}, 'pgoutput')").format(
            sql.Literal(name)))
        conninfo = f"host=127.0.0.1 port={node.port} dbname={r.name} user={login}{options}"
        q(r, sql.SQL("CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH "
                     "(create_slot = false, slot_name = {})").format(
            sql.Identifier(name), sql.Literal(conninfo), sql.Identifier(publication),
            sql.Literal(name)), db=db)
        yield db
    finally:
        for stmt in ("ALTER SUBSCRIPTION {} DISABLE", "ALTER SUBSCRIPTION {} SET "
                     "(slot_name = NONE)", "DROP SUBSCRIPTION {}"):
            try:
                q(r, sql.SQL(stmt).format(sql.Identifier(name)), db=db)
            except psycopg.Error:
                pass
        wait_for(lambda: not q(r, sql.SQL(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = {} AND active").format(
            sql.Literal(name))), what="the slot to be released")
        q(r, sql.SQL("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                     "WHERE slot_name = {}").format(sql.Literal(name)))
        q(r, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)),
          db="postgres")


def sync_state(r: ReplDb, db: str) -> str:
    rows = q(r, "SELECT string_agg(srsubstate::text, '') FROM pg_subscription_rel", db=db)
    return rows[0][0] or ""


def test_a_publication_of_identity_tables_copies_every_patron(repl_db: ReplDb) -> None:
    r = repl_db
    login = f"{r.prefix}subscriber"
    pub = f"{r.prefix}patrons"
    # what logical replication needs on the publisher: REPLICATION and SELECT
    q(r, sql.SQL("CREATE ROLE {0} LOGIN REPLICATION; GRANT USAGE ON SCHEMA actor TO {0}; "
                 "GRANT SELECT ON actor.usr TO {0}; CREATE PUBLICATION {1} FOR TABLE "
                 "actor.usr").format(sql.Identifier(login), sql.Identifier(pub)))
    patrons = q(r, "SELECT count(*) FROM actor.usr")[0][0]
    # the disclosure role, with no approved request, sees nobody
    with psycopg.connect(r.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(r.db.role("disclosure"))))
        assert conn.execute("SELECT count(*) FROM actor.usr").fetchone() == (0,)
    with subscriber(r, "sub1", pub, login) as sub:
        slot = sub
        wait_for(lambda: sync_state(r, sub) in ("r", "s"), what="the initial copy")
        # every patron, through the passthrough policy
        assert q(r, "SELECT count(*) FROM actor.usr", db=sub)[0][0] == patrons > 0
        # and every later change, whatever the row policies say
        q(r, "UPDATE actor.usr SET family_name = 'Renamed-After-Copy' WHERE id = 250")
        wait_for(lambda: q(r, "SELECT family_name FROM actor.usr WHERE id = 250",
                           db=sub)[0][0] == "Renamed-After-Copy", what="the change")
        found = findings(r)
        pubs = [f for f in found if f.code == "H-PUBLICATION"]
        assert len(pubs) == 1 and pubs[0].object == f"publication {pub}"
        f = pubs[0]
        assert f.severity == "violation"
        assert f.why.startswith(f"publication {pub} (FOR TABLE) carries actor.usr (identity): "
                                "every row of these tables, every patron's")
        assert f"slot {slot} (pgoutput, active: {login} from 127.0.0.1)" in f.why
        assert f.fix == f'ALTER PUBLICATION "{pub}" DROP TABLE "actor"."usr";'
        # the subscription's login needs no BYPASSRLS, and is not told to take it
        assert not [f for f in found if f.code == "H-BACKUP-ROLE"], found
    # the fix, as printed: the publication carries no patron any more
    q(r, f.fix)
    assert not [f for f in findings(r) if f.code == "H-PUBLICATION"]


def test_row_security_off_stops_the_copy_at_the_first_identity_table(repl_db: ReplDb) -> None:
    """PostgreSQL's advice for subscriptions that do not trust table owners
    (``row_security=off``) makes the initial copy of an identity table fail: BYPASSRLS on
    the replication login would make it copy every patron.  The advice verify gives is to
    stop publishing the table, not BYPASSRLS."""
    r = repl_db
    login = f"{r.prefix}subscriber"
    pub = f"{r.prefix}patrons"
    q(r, sql.SQL("CREATE ROLE {0} LOGIN REPLICATION; GRANT USAGE ON SCHEMA actor TO {0}; "
                 "GRANT SELECT ON actor.usr TO {0}; CREATE PUBLICATION {1} FOR TABLE "
                 "actor.usr").format(sql.Identifier(login), sql.Identifier(pub)))
    log = r.h.primary.log
    start = log.stat().st_size
    with subscriber(r, "sub2", pub, login, options=" options=-crow_security=off") as sub:
        wait_for(lambda: 'query would be affected by row-level security policy for table '
                 '"usr"' in log.read_text(errors="replace")[start:], what="the copy error")
        assert sync_state(r, sub) not in ("r", "s")
        assert q(r, "SELECT count(*) FROM actor.usr", db=sub)[0][0] == 0
        found = findings(r)
        assert [f.code for f in found if f.code in ("H-PUBLICATION", "H-BACKUP-ROLE")] == \
            ["H-PUBLICATION"]


def test_publications_for_all_tables_and_for_schemas(repl_db: ReplDb) -> None:
    r = repl_db
    p = r.prefix
    q(r, sql.SQL(
        "CREATE PUBLICATION {all} FOR ALL TABLES; "
        "CREATE PUBLICATION {action} FOR TABLES IN SCHEMA action; "
        "CREATE PUBLICATION {harmless} FOR TABLE acq.cancel_reason, acq.claim_type; "
        "CREATE PUBLICATION {personal} FOR TABLE actor.usr_setting, acq.claim_type").format(
        all=sql.Identifier(f"{p}all"), action=sql.Identifier(f"{p}action"),
        harmless=sql.Identifier(f"{p}harmless"), personal=sql.Identifier(f"{p}personal")))
    found = {f.object: f for f in findings(r) if f.code == "H-PUBLICATION"}
    assert set(found) == {f"publication {p}all", f"publication {p}action",
                          f"publication {p}personal"}
    everything = found[f"publication {p}all"]
    assert everything.severity == "violation"
    assert everything.why.startswith(f"publication {p}all (FOR ALL TABLES) carries ")
    for part in ("(confidential)", "actor.usr", "(identity)",
                 "ils_redact.audit_log", "(ils-redact's requests, scope and audit log)",
                 "(secret)"):
        assert part in everything.why, everything.why
    assert everything.fix.startswith(f'DROP PUBLICATION "{p}all";')
    schema = found[f"publication {p}action"]
    assert schema.severity == "violation"
    assert schema.why.startswith(f"publication {p}action (FOR TABLES IN SCHEMA action) "
                                 "carries action.")
    assert schema.fix.startswith(f'ALTER PUBLICATION "{p}action" DROP TABLES IN SCHEMA '
                                 '"action";')
    personal = found[f"publication {p}personal"]
    assert personal.severity == "warning"
    assert "actor.usr_setting (personal)" in personal.why and "acq.claim_type" not in \
        personal.why
    # each fix, as printed (SQL up to the note), leaves nothing to report
    q(r, sql.SQL("DROP PUBLICATION {}").format(sql.Identifier(f"{p}all")))
    q(r, schema.fix.split(";")[0])
    q(r, personal.fix)
    assert not [f for f in findings(r) if f.code == "H-PUBLICATION"]


def test_a_replication_login_reads_every_change_past_the_layer(repl_db: ReplDb) -> None:
    """A staff login that also holds REPLICATION needs no grant to read patrons: a logical
    slot with test_decoding hands it every change of every table.  staff grant refuses
    such a login, and verify reports one that got there by hand."""
    r = repl_db
    login = f"{r.prefix}replclerk"
    slot = f"{r.prefix}peek"
    q(r, sql.SQL("CREATE ROLE {} LOGIN REPLICATION").format(sql.Identifier(login)))
    res = r.cli("staff", "grant", login, "--role", "disclosure")
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert res.stderr.strip().startswith(
        f"ils-redact: error: will not grant the disclosure role to {login}: it has "
        "REPLICATION")
    assert res.stdout == ""
    q(r, sql.SQL("GRANT {} TO {}").format(sql.Identifier(r.db.role("disclosure")),
                                          sql.Identifier(login)))
    try:
        q(r, sql.SQL("SELECT pg_create_logical_replication_slot({}, 'test_decoding')").format(
            sql.Literal(slot)), user=login)
        q(r, "UPDATE actor.usr SET family_name = 'Outside-Any-Scope' WHERE id = 250")
        # as the login: no request, no grant on actor.usr, and yet
        changes = [row[0] for row in q(r, sql.SQL(
            "SELECT data FROM pg_logical_slot_get_changes({}, NULL, NULL)").format(
            sql.Literal(slot)), user=login)]
        assert any("table actor.usr: UPDATE:" in c and "'Outside-Any-Scope'" in c
                   for c in changes), changes
        found = [f for f in findings(r) if f.code in ("H-REPLICATION-LOGIN",
                                                       "H-LOGICAL-SLOT")]
        by = {f.code: f for f in found}
        assert set(by) == {"H-REPLICATION-LOGIN", "H-LOGICAL-SLOT"}
        assert by["H-REPLICATION-LOGIN"].object == f"role {login}"
        assert by["H-REPLICATION-LOGIN"].why.startswith(
            f"{login} can act as {r.db.role('disclosure')} and it has REPLICATION")
        assert by["H-REPLICATION-LOGIN"].fix.startswith(f'ALTER ROLE "{login}" NOREPLICATION;')
        assert by["H-LOGICAL-SLOT"].why.startswith(
            f"logical replication slot {slot} uses the output plugin test_decoding")
    finally:
        q(r, sql.SQL("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                     "WHERE slot_name = {}").format(sql.Literal(slot)))


@pytest.fixture(autouse=True)
def _no_stray_slots(repl_db: ReplDb) -> Iterator[None]:
    yield
    assert not q(repl_db, "SELECT slot_name FROM pg_replication_slots "
                          "WHERE slot_type = 'logical'")
