"""A PostgreSQL hot standby: writes are refused in one line, reads work, a revoke reaches
the standby when it is replayed, expiry does not wait for replay, and ``status`` shows
the replay lag.  Against a primary and a streaming standby the tests start themselves
(PostgreSQL 15 and 18)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from support import create_role
from support.replication import ReplDb


@pytest.fixture(scope="module")
def access() -> str:
    """access: role: these tests read the identity views as a member of the disclosure
    role, as a reporting replica's staff would (in function mode such a member is drift
    that install moves to the exporter role, and status says so)."""
    return "role"


@pytest.fixture(scope="module")
def approved(repl_db_module: ReplDb) -> tuple[ReplDb, int]:
    """A request created by the clerk and approved by the director, on the primary."""
    r = repl_db_module
    out = r.ok("--format", "json", "request", "create", "--basis", "emergency",
               "--agency", "Metro Police", "--officer", "Jane Roe", "--badge", "4471",
               "--case", "26-1182", "--reason", "credible threat of violence",
               "--patron", "11", "--patron", "12", "--yes", user=r.clerk)
    rid = int(json.loads(out)["request"])
    r.ok("request", "approve", str(rid), user=r.director)
    r.replay()
    return r, rid


WRITES = {
    "request create": (("request", "create", "--basis", "emergency", "--agency", "Metro",
                        "--officer", "Jane Roe", "--badge", "1", "--case", "2",
                        "--reason", "threat", "--patron", "11", "--yes"), "clerk"),
    "request approve": (("request", "approve", "{rid}"), "director"),
    "request revoke": (("request", "revoke", "{rid}", "--reason", "withdrawn"), "director"),
    "request close": (("request", "close", "{rid}"), "director"),
    "export": (("export", "--request", "{rid}", "-o", "{tmp}/out.csv"), "clerk"),
    "staff grant": (("staff", "grant", "{prefix}newbie", "--role", "disclosure",
                     "--create"), "postgres"),
    "staff revoke": (("staff", "revoke", "{prefix}clerk", "--role", "disclosure"),
                     "postgres"),
    "install": (("install",), "postgres"),
    "uninstall": (("uninstall", "--yes", "--discard-audit"), "postgres"),
    "query --profile disclosure": (("query", "--profile", "disclosure", "--request", "{rid}",
                                    "SELECT family_name FROM actor.usr"), "clerk"),
}


@pytest.mark.parametrize("command", sorted(WRITES))
def test_a_write_on_the_standby_is_refused_in_one_line(approved, command: str,
                                                       tmp_path: Path) -> None:
    r, rid = approved
    args, who = WRITES[command]
    user = {"clerk": r.clerk, "director": r.director}.get(who, who)
    args = tuple(a.format(rid=rid, tmp=tmp_path, prefix=r.prefix) for a in args)
    before = r.scalar("SELECT count(*) FROM ils_redact.audit_log")
    res = r.cli(*args, node="standby", user=user)
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0] == (f"ils-redact: error: {command} writes, but 127.0.0.1:"
                        f"{r.h.standby.port}/{r.name} is a read-only replica (a hot standby "
                        "in recovery) (run it against the primary)")
    assert res.stdout == ""  # staff grant printed its SQL as if it ran
    assert not (tmp_path / "out.csv").exists()
    assert r.scalar("SELECT count(*) FROM ils_redact.audit_log") == before
    assert r.scalar("SELECT status FROM ils_redact.request WHERE id = %s", (rid,)) == "approved"


def test_a_read_only_session_is_refused_in_one_line(approved) -> None:
    """A primary whose sessions are read-only for this login (default_transaction_read_only
    set on the server, database, role or here in PGOPTIONS): refused the same way."""
    r, rid = approved
    res = r.cli("request", "revoke", str(rid), user=r.director,
                env={"PGOPTIONS": "-c default_transaction_read_only=on"})
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert res.stderr.strip() == (
        f"ils-redact: error: request revoke writes, but 127.0.0.1:{r.h.primary.port}/"
        f"{r.name} is read-only for this session (default_transaction_read_only is on) "
        "(run it against the primary)")


# Read-only commands must work on a reporting standby.  `request list/show/form/packet`
# swept expired requests first (a write) before the layer stopped writing on reads.
READS = {
    "request list": ("request", "list"),
    "request show": ("request", "show", "{rid}"),
    "request form": ("request", "form", "{rid}", "-o", "{tmp}/form.html"),
    "request packet": ("request", "packet", "{rid}", "-o", "{tmp}/packet"),
    "audit log": ("audit", "log"),
    "audit verify": ("audit", "verify"),
    "audit export": ("audit", "export", "-o", "{tmp}/audit.jsonl"),
    "staff list": ("staff", "list"),
    "status": ("status",),
    "plan": ("plan",),
    "verify": ("verify",),
    "staff grant --dry-run": ("staff", "grant", "{prefix}clerk", "--role", "stats",
                              "--dry-run"),
    "stats list": ("stats", "list"),
    "stats run": ("stats", "run", "circ_by_library_modifier", "--from", "2025-01", "--to",
                  "2025-03"),
    "query --profile stats": ("query", "--profile", "stats",
                              "SELECT 1 AS one"),
}


@pytest.mark.parametrize("command", sorted(READS))
def test_a_read_works_on_the_standby(approved, command: str, tmp_path: Path) -> None:
    r, rid = approved
    args = tuple(a.format(rid=rid, tmp=tmp_path, prefix=r.prefix) for a in READS[command])
    user = (r.director if command.startswith(("request", "audit")) else
            r.board if "stats" in command and "grant" not in command else "postgres")
    res = r.cli(*args, node="standby", user=user)
    assert res.returncode == 0, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr


def visible(r: ReplDb, node: str, login: str) -> set[int]:
    with psycopg.connect(r.dsn(node, login), autocommit=True) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(r.db.role("disclosure"))))
        return {row[0] for row in conn.execute("SELECT id FROM actor.usr")}


def _member(r: ReplDb, name: str) -> str:
    login = create_role(r.db.server, f"{r.prefix}{name}", member_of=(r.db.role("disclosure"),))
    return login


def _request_for(r: ReplDb, login: str, *extra: str) -> int:
    out = r.ok("--format", "json", "request", "create", "--basis", "emergency", "--agency",
               "Metro Police", "--officer", "Jane Roe", "--badge", "4471", "--case", "26-9",
               "--reason", "credible threat", "--patron", "21", "--patron", "22", "--for",
               login, "--yes", *extra, user=r.clerk)
    rid = int(json.loads(out)["request"])
    r.ok("request", "approve", str(rid), user=r.director)
    return rid


def test_a_revoke_reaches_the_standby_only_when_replayed(repl_db: ReplDb) -> None:
    r = repl_db
    member = _member(r, "member")
    rid = _request_for(r, member)
    r.replay()
    assert visible(r, "standby", member) == {21, 22}
    with psycopg.connect(r.dsn("standby"), autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
    try:
        r.ok("request", "revoke", str(rid), "--reason", "order withdrawn", user=r.director)
        assert visible(r, "primary", member) == set()
        # the standby has not replayed the revoke: it still shows the patrons
        assert visible(r, "standby", member) == {21, 22}
        res = r.cli("status", node="standby")
        assert "hot standby (read-only) of 127.0.0.1:" in res.stdout, res.stdout
        assert "bytes not yet replayed" in res.stdout and "PAUSED" in res.stdout
        data = json.loads(r.ok("--format", "json", "status", node="standby"))
        assert data["replication"]["role"] == "standby"
        assert data["replication"]["replay_paused"] is True
        assert data["replication"]["replay_behind_bytes"] > 0
    finally:
        with psycopg.connect(r.dsn("standby"), autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_resume()")
    r.replay()
    assert visible(r, "standby", member) == set()
    data = json.loads(r.ok("--format", "json", "status", node="standby"))
    assert data["replication"]["replay_behind_bytes"] == 0
    assert data["replication"]["seconds_since_last_replayed_commit"] is not None


def test_expiry_ends_access_on_the_standby_without_replay(repl_db: ReplDb) -> None:
    """The row policy compares the expiry with the standby's own clock: a paused (or
    delayed) standby stops showing an expired request's patrons on time."""
    r = repl_db
    member = _member(r, "member")
    rid = _request_for(r, member, "--hours", "0.004")  # 14.4 seconds
    r.replay()
    with psycopg.connect(r.dsn("standby"), autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
    try:
        assert visible(r, "standby", member) == {21, 22}
        left = r.scalar("SELECT extract(epoch FROM expires_at - clock_timestamp()) "
                        "FROM ils_redact.request WHERE id = %s", (rid,), node="standby")
        time.sleep(float(left) + 0.2)
        assert visible(r, "standby", member) == set()
    finally:
        with psycopg.connect(r.dsn("standby"), autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_resume()")


def test_status_on_the_primary_shows_its_standby(approved) -> None:
    r, _ = approved
    data = json.loads(r.ok("--format", "json", "status"))
    rep = data["replication"]
    assert rep["role"] == "primary"
    assert [s["name"] for s in rep["standbys"]] == ["standby1"]
    assert rep["standbys"][0]["state"] == "streaming"
    text = r.ok("status")
    assert "replication     primary, 1 standby(s) connected" in text
