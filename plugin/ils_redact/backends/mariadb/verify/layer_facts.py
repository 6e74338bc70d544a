"""What verify reads about the layer's own guarantees on MariaDB, beyond privileges: the
clock the layer decides time by, the trace of lookups and exports reconciled with the
audit log, and login names shared by several accounts.

* The clock.  The layer reads SYSDATE(), which follows the server's clock; a server
  started with ``--sysdate-is-now`` makes it NOW(), which any session moves with
  ``SET timestamp`` (install refuses such a server; verify catches one restarted so).
* The trace.  Every patron lookup and export writes a row to the layer's ``trace`` table
  (Aria: a ROLLBACK leaves it) before it returns data.  An export whose audit entry is
  not in the log was rolled back after the document left the database; a lookup of
  patrons that no request of the same account named within the hour is an admin who
  read identities without a request (within the bound ``max_patrons``).  The table must
  stay non-transactional.
* Namesakes.  The layer keys scope and the audit log on the account (``user@host``); the
  identity views tell the caller's account by its user name and the grantee's host
  pattern, so two accounts of one user name whose host patterns overlap would share a
  scope.  Approval and ``staff grant`` refuse such names; an account created later by
  hand is found here.
"""

# ruff: noqa: S608 - verify SQL: identifiers only through sqltext.qname, values as parameters

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from ..connection import Connection, sysdate_is_now
from ..generated import LOOKUP_WINDOW_HOURS
from ..sqltext import qname

#: an export younger than this may still be committing its audit entry
SETTLE_SECONDS = 10
NON_TRANSACTIONAL = ("Aria", "MyISAM")


@dataclass(frozen=True)
class UnloggedExport:
    seq: int
    at: str
    account: str
    request_id: int | None
    audit_seq: int | None


@dataclass
class LayerFacts:
    sysdate_is_now: bool = False
    #: ENGINE of the layer's trace table (None: no trace table, a layer before version 4)
    trace_engine: str | None = None
    unlogged_exports: list[UnloggedExport] = field(default_factory=list)
    #: account -> patron ids it looked up that no request of its own named within the hour
    unrequested: dict[str, list[int]] = field(default_factory=dict)
    #: account -> number of lookups refused (more than a request names)
    refused_lookups: dict[str, int] = field(default_factory=dict)
    #: live scope rows no approved, unexpired request accounts for
    unapproved_scope: list[UnapprovedScope] = field(default_factory=list)
    #: prepared XA transactions (XA RECOVER): (the fix's xid SQL, readable xid)
    xa_prepared: list[tuple[str, str]] = field(default_factory=list)
    #: transactions others wait for on the audit lock: (thread id, user, started)
    audit_lock_holders: list[tuple[int, str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class UnapprovedScope:
    """Live scope rows of one grantee and request (None: no request) whose request is not
    approved and unexpired: only ``request_approve`` writes scope, so such rows were put
    there some other way (a planted function run by an administrator, a hand edit)."""

    grantee: str
    request_id: int | None
    status: str | None  # the request's status, None when it does not exist
    rows: int
    patrons: int


def read_layer_facts(conn: Connection, layer: str) -> LayerFacts:
    facts = LayerFacts(sysdate_is_now=sysdate_is_now(conn))
    row = conn.execute("SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                       "AND TABLE_NAME = 'trace'", (layer,)).fetchone()
    if not row:
        return facts
    facts.trace_engine = str(row[0])
    trace, log = qname(layer, "trace"), qname(layer, "audit_log")
    request, patron = qname(layer, "request"), qname(layer, "request_patron")
    clock = f"{qname(layer, 'clock_utc')}()"
    for seq, at, acct, rid, audit_seq in conn.execute(
            f"SELECT t.seq, t.at, t.account, t.request_id, "
            f"CAST(JSON_VALUE(t.detail, '$.audit_seq') AS SIGNED) FROM {trace} t "
            f"LEFT JOIN {log} a ON a.seq = CAST(JSON_VALUE(t.detail, '$.audit_seq') AS SIGNED) "
            "AND a.action = 'export' AND a.request_id <=> t.request_id "
            "AND JSON_VALUE(a.detail, '$.sha256') = JSON_VALUE(t.detail, '$.sha256') "
            f"WHERE t.action = 'export' AND a.seq IS NULL "
            f"AND t.at < {clock} - INTERVAL {SETTLE_SECONDS} SECOND ORDER BY t.seq").fetchall():
        facts.unlogged_exports.append(UnloggedExport(int(seq), f"{at.isoformat()}Z", str(acct),
                                                     rid, audit_seq))
    unrequested: dict[str, set[int]] = defaultdict(set)
    for acct, pid in conn.execute(
            f"SELECT t.account, j.p FROM {trace} t, "
            "JSON_TABLE(t.patrons, '$[*]' COLUMNS (p BIGINT PATH '$')) j "
            f"WHERE t.action = 'lookup' AND t.at < {clock} - INTERVAL {LOOKUP_WINDOW_HOURS} HOUR "
            f"AND NOT EXISTS (SELECT 1 FROM {request} r JOIN {patron} rp ON rp.request_id = r.id "
            "WHERE r.created_by = t.account AND rp.patron_id = j.p AND r.created_at >= t.at "
            "AND r.approved_by IS NOT NULL AND r.approved_by <> t.account "
            f"AND r.created_at < t.at + INTERVAL {LOOKUP_WINDOW_HOURS} HOUR)").fetchall():
        unrequested[str(acct)].add(int(pid))
    facts.unrequested = {a: sorted(ps) for a, ps in sorted(unrequested.items())}
    facts.refused_lookups = {str(a): int(n) for a, n in conn.execute(
        f"SELECT account, COUNT(*) FROM {trace} WHERE action = 'lookup.refused' "
        "GROUP BY account ORDER BY account").fetchall()}
    facts.unapproved_scope = read_unapproved_scope(conn, layer)
    facts.xa_prepared = read_xa_prepared(conn)
    facts.audit_lock_holders = read_audit_lock_holders(conn, layer)
    return facts


def read_xa_prepared(conn: Connection) -> list[tuple[str, str]]:
    """Prepared XA transactions.  InnoDB keeps one, with its row locks, across the
    disconnect of the session that prepared it and across restarts, until someone runs
    XA COMMIT or XA ROLLBACK: one that appended to the audit log (or locked it with
    SELECT ... FOR UPDATE) holds the audit lock and every append waits for it."""
    try:
        rows = conn.execute("XA RECOVER").fetchall()
    except Exception:  # noqa: BLE001 - no privilege to list them: nothing to report
        return []
    out = []
    for fmt, glen, blen, data in rows:
        raw = data if isinstance(data, bytes) else str(data).encode("utf-8", "surrogateescape")
        gtrid, bqual = raw[:int(glen)], raw[int(glen):int(glen) + int(blen)]
        sql_xid = f"X'{gtrid.hex()}'" + (f", X'{bqual.hex()}'" if bqual else "") + \
            (f", {int(fmt)}" if int(fmt) != 1 else "")
        if not bqual and int(fmt) != 1:
            sql_xid = f"X'{gtrid.hex()}', '', {int(fmt)}"
        shown = gtrid.decode("utf-8", "backslashreplace")
        out.append((sql_xid, shown))
    return out


def read_audit_lock_holders(conn: Connection, layer: str) -> list[tuple[int, str, str]]:
    """Transactions holding a lock on the audit lock row that another transaction waits
    for (INNODB_LOCKS lists contended locks only)."""
    try:
        rows = conn.execute(
            "SELECT DISTINCT t.trx_mysql_thread_id, COALESCE(p.USER, ''), t.trx_started "
            "FROM information_schema.INNODB_LOCK_WAITS w "
            "JOIN information_schema.INNODB_LOCKS l ON l.lock_id = w.blocking_lock_id "
            "JOIN information_schema.INNODB_TRX t ON t.trx_id = w.blocking_trx_id "
            "LEFT JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id "
            "WHERE l.lock_table IN (%s, %s) ORDER BY 1",
            (f"`{layer}`.`audit_lock`", f"`{layer}`.`audit_log`")).fetchall()
    except Exception:  # noqa: BLE001 - the tables are absent on this server: none known
        return []
    return [(int(i), str(u), str(at)) for i, u, at in rows]


def read_unapproved_scope(conn: Connection, layer: str) -> list[UnapprovedScope]:
    """Live scope rows (not expired) whose request is missing, not approved or expired."""
    scope, request = qname(layer, "scope"), qname(layer, "request")
    clock = f"{qname(layer, 'clock_utc')}()"
    return [UnapprovedScope(str(g), None if rid is None else int(rid),
                            None if st is None else str(st), int(n), int(p))
            for g, rid, st, n, p in conn.execute(
                f"SELECT s.grantee, s.request_id, r.status, COUNT(*), "
                f"COUNT(DISTINCT s.patron_id) FROM {scope} s "
                f"LEFT JOIN {request} r ON r.id = s.request_id "
                f"WHERE s.expires_at > {clock} AND (r.id IS NULL OR r.status <> 'approved' "
                f"OR r.expires_at <= {clock}) "
                "GROUP BY s.grantee, s.request_id, r.status "
                "ORDER BY s.grantee, s.request_id").fetchall()]
