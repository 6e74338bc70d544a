"""How the workflow calls the layer's functions on PostgreSQL (the MariaDB twin is
``backends/mariadb/procedures.py``; ``disclosure.db`` picks one through the engine).

The layer's functions are called as ``SELECT * FROM ils_redact.f(...)``: values are
always parameters, the function names come from ``disclosure.db``, never from input.
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg
from psycopg import sql

from ...errors import CommitUnconfirmed, Refused, StateError

#: the audit log's fields in the text form the layer hashed them
AUDIT_SELECT = (
    "SELECT seq, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
    "actor::text, action, request_id, detail::text, prev_hash, hash FROM ils_redact.audit_log")

#: the server log holds one trace line per export (``audit reconcile`` reads them)
TRACES_EXPORTS = True


def call(conn: psycopg.Connection, name: str, args: list[Any]) -> list[tuple]:
    q = sql.SQL("SELECT * FROM {}.{}({})").format(
        sql.Identifier("ils_redact"), sql.Identifier(name),
        sql.SQL(", ").join(sql.Placeholder() * len(args)))
    try:
        return conn.execute(q, args).fetchall()
    except psycopg.errors.LockNotAvailable:
        raise audit_lock_busy(conn, name) from None
    except psycopg.errors.RaiseException as exc:
        raise Refused(exc.diag.message_primary or str(exc)) from None
    except (psycopg.errors.InvalidParameterValue,
            psycopg.errors.InsufficientPrivilege) as exc:
        raise Refused(exc.diag.message_primary or str(exc)) from None


def query(conn: psycopg.Connection, sql_text: str, params: list[Any] | None = None
          ) -> list[tuple]:
    return conn.execute(sql_text, params or None).fetchall()


def table(conn: psycopg.Connection, name: str) -> str:
    """One of the layer's tables as SQL: ``ils_redact.request``."""
    return f"ils_redact.{name}"


def clock_sql(conn: psycopg.Connection) -> str:
    """The statement's time, as the row policy compares it."""
    return "statement_timestamp()"


def normalize_request(row: dict[str, Any]) -> dict[str, Any]:
    return row


def audit_select(conn: psycopg.Connection) -> str:
    return AUDIT_SELECT


def audit_by_seq(conn: psycopg.Connection, seqs: list[int]) -> list[tuple]:
    """The audit rows with these sequence numbers, in one query."""
    return query(conn, AUDIT_SELECT + " WHERE seq = ANY (%s) ORDER BY seq", [seqs])


#: sessions other than ours in a transaction that wrote the audit log (they hold its lock
#: until they end, whatever lock the layer uses for the chain), or that hold the layer's
#: advisory lock on it
_AUDIT_HOLDERS = """
SELECT DISTINCT a.pid, a.usename, coalesce(nullif(a.application_name, ''), '?'),
       a.wait_event, extract(epoch FROM clock_timestamp() - a.xact_start)::int
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.granted AND l.pid <> pg_backend_pid()
  AND ((l.locktype = 'relation' AND l.relation = to_regclass('ils_redact.audit_log')
        AND l.mode = 'RowExclusiveLock')
       OR (l.locktype = 'advisory' AND l.classid::bigint * 4294967296 + l.objid::bigint
           = 29674115650905188))
ORDER BY 1
"""


def audit_lock_busy(conn: psycopg.Connection, what: str) -> StateError:
    """The error for a wait on the audit chain's lock that timed out (``lock_timeout``):
    one line naming the sessions that hold it.  Others' sessions show their pid, login and
    application to anybody; what they wait for only to a superuser or pg_read_all_stats."""
    conn.rollback()
    holders = []
    unseen = "a session that has ended since"
    try:
        rows = conn.execute(_AUDIT_HOLDERS).fetchall()
    except psycopg.errors.InsufficientPrivilege:  # pg_locks is not PUBLIC's any more
        conn.rollback()
        rows, unseen = [], ("another session (this login may not read pg_locks; a holder "
                            "whose transaction is older than 30 s is ended by the next "
                            "writer)")
    for pid, user, app, wait, secs in rows:
        waiting = " waiting for the synchronous standby" if wait == "SyncRep" else (
            f" waiting on {wait}" if wait else "")
        held = f" for {secs} s" if secs is not None else ""
        holders.append(f"session {pid} of login {user} ({app}), in a transaction{held}"
                       f"{waiting}")
    conn.rollback()
    who = "; ".join(holders) or unseen
    return StateError(f"{what}: gave up waiting for the audit log, which is locked by {who}; "
                      "nothing was recorded",
                      hint="try again; if it stays locked, a superuser can end it with "
                           "SELECT pg_cancel_backend(pid)")


def commit_audited(conn: psycopg.Connection, limit: float, *, what: str) -> None:
    """COMMIT a transaction that wrote the audit log, within ``limit`` seconds.

    With synchronous replication and no synchronous standby, PostgreSQL has written the
    commit locally and waits for a standby to confirm it, for ever, holding every lock of
    the transaction (the audit chain's too, so every later audit write waits as well).
    ``statement_timeout`` does not end that wait; a cancel request does: the commit then
    stands on the primary alone, and the server says so in a warning.  Here the cancel is
    sent after ``limit`` seconds and the outcome becomes one clear error: committed
    locally but unconfirmed, or not committed."""
    warnings: list[str] = []

    def notice(diag: psycopg.errors.Diagnostic) -> None:
        warnings.append(diag.message_primary or "")

    conn.add_notice_handler(notice)
    timer = threading.Timer(limit, conn.cancel_safe)
    timer.daemon = True
    timer.start()
    try:
        conn.commit()
    except psycopg.errors.QueryCanceled:
        raise CommitUnconfirmed(f"{what} was not committed: COMMIT did not finish within "
                                f"{limit:g} s and was cancelled; nothing was recorded") from None
    except psycopg.OperationalError as exc:
        raise CommitUnconfirmed(
            f"{what}: the connection failed during COMMIT ({str(exc).strip()[:120]}); whether "
            "it was committed is unknown", hint="check with `ils-redact audit log`") from None
    finally:
        timer.cancel()
        conn.remove_notice_handler(notice)
    if any("synchronous replication" in w for w in warnings):
        raise CommitUnconfirmed(
            f"{what} was committed locally on the primary, but no synchronous standby "
            f"confirmed it within {limit:g} s (synchronous_standby_names): a failover now "
            "would lose it",
            hint="bring a standby back (ils-redact status shows them), then check "
                 "`ils-redact audit log`")
