"""Synchronous replication with the standby down (PostgreSQL 15 and 18): a commit waits
for a standby that is not there, for ever, holding every lock of its transaction, the
audit chain's included.  The CLI bounds its own commits and says what happened; a session
stuck in COMMIT does not freeze every other audit write: their waits end, in one line
naming the session that holds the log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from support.replication import STANDBY_NAME, ReplDb


def request(r: ReplDb, patron: str = "11") -> int:
    out = r.ok("--format", "json", "request", "create", "--basis", "emergency", "--agency",
               "Metro Police", "--officer", "Jane Roe", "--badge", "4471", "--case", "26-7",
               "--reason", "credible threat", "--patron", patron, "--yes", user=r.clerk)
    return int(json.loads(out)["request"])


@pytest.fixture
def standby_down(repl_db: ReplDb) -> Iterator[ReplDb]:
    """Synchronous replication to the standby, and the standby stopped; both undone after
    (the pair is the session's)."""
    pair = repl_db.h.pair
    pair.set_synchronous(STANDBY_NAME)
    pair.standby.stop()
    try:
        yield repl_db
    finally:
        pair.set_synchronous("")  # releases every commit still waiting
        pair.standby.start()
        pair.wait_streaming()


def cli_within(r: ReplDb, seconds: float, *args: str, user: str,
               env: dict | None = None) -> tuple[subprocess.CompletedProcess, float]:
    """The console script, failing the test (instead of hanging it) after ``seconds``."""
    full = dict(os.environ)
    full.pop("ILS_REDACT_DSN", None)
    full.update(env or {})
    exe = Path(sys.executable).parent / "ils-redact"
    t = time.monotonic()
    try:
        res = subprocess.run([str(exe), "--dsn", r.dsn("primary", user), "--rules",
                              str(r.rules), *args], capture_output=True, text=True, env=full,
                             timeout=seconds)
    except subprocess.TimeoutExpired:
        pytest.fail(f"ils-redact {' '.join(args)} still waiting after {seconds} s")
    return res, time.monotonic() - t


def audit_actions(r: ReplDb) -> list[str]:
    with psycopg.connect(r.dsn(), autocommit=True) as conn:
        return [row[0] for row in conn.execute(
            "SELECT action FROM ils_redact.audit_log ORDER BY seq")]


def test_an_export_does_not_wait_for_ever_for_the_synchronous_standby(standby_down: ReplDb,
                                                                     tmp_path: Path) -> None:
    r = standby_down
    before = r.scalar("SELECT count(*) FROM ils_redact.request")
    # request create commits the patron lookup's audit entry before the clerk confirms:
    # that commit waits for the standby too, is bounded, says so, and nothing is created
    res, _ = cli_within(r, 90, "--commit-timeout", "2", "--format", "json", "request",
                        "create", "--basis", "emergency", "--agency", "Metro Police",
                        "--officer", "Jane Roe", "--badge", "4471", "--case", "26-7",
                        "--reason", "credible threat", "--patron", "11", "--yes",
                        user=r.clerk)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert res.stderr.strip() == (
        "ils-redact: error: the patron lookup was committed locally on the primary, but no "
        "synchronous standby confirmed it within 2 s (synchronous_standby_names): a failover "
        "now would lose it (bring a standby back (ils-redact status shows them), then check "
        "`ils-redact audit log`)")
    assert r.scalar("SELECT count(*) FROM ils_redact.request") == before
    assert audit_actions(r)[-1] == "patron.lookup"
    # the request, recorded while commits did not wait (asynchronous for a moment)
    r.h.pair.set_synchronous("")
    rid = request(r)
    r.h.pair.set_synchronous(STANDBY_NAME)
    res, _ = cli_within(r, 90, "--commit-timeout", "2", "request", "approve", str(rid),
                        user=r.director)
    assert res.returncode == 2 and "was committed locally on the primary" in res.stderr
    assert r.scalar("SELECT status FROM ils_redact.request WHERE id = %s", (rid,)) == "approved"
    out = tmp_path / "records.csv"
    res, took = cli_within(r, 90, "--commit-timeout", "3", "export", "--request", str(rid),
                           "-o", str(out), user=r.clerk)
    assert res.returncode == 2, (res.stdout, res.stderr)
    seq = r.scalar("SELECT max(seq) FROM ils_redact.audit_log")
    assert res.stderr.strip() == (
        f"ils-redact: error: the export of request {rid} (audit entry {seq}) was committed "
        "locally on the primary, but no synchronous standby confirmed it within 3 s "
        "(synchronous_standby_names): a failover now would lose it; the exported file was "
        "not written (bring a standby back (ils-redact status shows them), then check "
        "`ils-redact audit log`)")
    assert not out.exists()
    assert audit_actions(r)[-1] == "export"  # on the primary, as the message says
    assert 3 <= took < 60
    # the lock was released with the commit: the next audit write is not stuck behind it
    res, _ = cli_within(r, 90, "--commit-timeout", "2", "request", "revoke", str(rid),
                        user=r.director)
    assert res.returncode == 2 and "was committed locally on the primary" in res.stderr
    # status on the primary says why
    text = r.ok("status")
    assert "commits wait for 'standby1' (synchronous_standby_names)" in text
    assert "WARNING: no synchronous standby is connected" in text


@pytest.fixture
def stuck(standby_down: ReplDb) -> Iterator[tuple[ReplDb, int, int]]:
    """A session outside the CLI (psql, say) that revoked a request and is stuck in
    COMMIT waiting for the synchronous standby, holding the audit log."""
    r = standby_down
    pair = r.h.pair
    pair.set_synchronous("")
    pair.standby.start()
    pair.wait_streaming()
    rid, other = request(r), request(r, "12")
    pair.set_synchronous(STANDBY_NAME)
    pair.standby.stop()
    conn = psycopg.connect(r.dsn("primary", r.clerk))
    conn.execute("SELECT ils_redact.request_end(%s, 'revoked', 'stuck')", (rid,))
    done = threading.Event()

    def commit() -> None:
        try:
            conn.commit()
        finally:
            done.set()

    t = threading.Thread(target=commit, daemon=True)
    t.start()
    assert not done.wait(1.5)  # stuck in COMMIT
    try:
        yield r, conn.info.backend_pid, other
    finally:
        pair.set_synchronous("")
        assert done.wait(30)
        conn.close()


def test_a_stuck_session_does_not_freeze_the_audit_log(stuck) -> None:
    """The layer bounds the wait for the audit log's lock (lock_timeout inside its
    functions): every other audit write ends in seconds, naming who holds it."""
    r, pid, other = stuck
    res, took = cli_within(r, 60, "request", "approve", str(other), user=r.director)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert took < 30
    # pg_locks is no longer PUBLIC's (a login with no role watched checkouts through
    # it): the director may not read who holds the lock; a superuser may (below)
    assert res.stderr.strip().startswith(
        "ils-redact: error: request_approve: gave up waiting for the audit log, which is "
        "locked by another session (this login may not read pg_locks"), res.stderr


def test_the_lock_wait_names_the_session_that_holds_the_log(stuck) -> None:
    """However the wait is bounded (the layer's lock_timeout, or the session's as here),
    its end is one line naming the blocker, and nothing is recorded."""
    r, pid, other = stuck
    before = audit_actions(r)
    res, _ = cli_within(r, 60, "request", "approve", str(other), user=r.director,
                        env={"PGOPTIONS": "-c lock_timeout=1s"})
    assert res.returncode == 2, (res.stdout, res.stderr)
    line = res.stderr.strip()
    assert "\n" not in line
    assert line.startswith(
        "ils-redact: error: request_approve: gave up waiting for the audit log, which is "
        "locked by another session (this login may not read pg_locks"), line
    assert line.endswith("; nothing was recorded (try again; if it stays locked, a superuser "
                         "can end it with SELECT pg_cancel_backend(pid))")
    # a superuser also sees what it waits for
    res, _ = cli_within(r, 60, "request", "approve", str(other), user="postgres",
                        env={"PGOPTIONS": "-c lock_timeout=1s"})
    assert "waiting for the synchronous standby" in res.stderr, res.stderr
    assert audit_actions(r) == before
    assert r.scalar("SELECT status FROM ils_redact.request WHERE id = %s", (other,)) == "draft"
