"""Reading and verifying the hash-chained audit log.

Each row's hash is sha256 over its fields and the previous row's hash.  The canonical
text is rebuilt here, in Python, from the stored columns: a superuser who alters a row,
deletes one, inserts one or reorders them cannot also change how this program hashes.
Cutting rows off the end leaves a valid shorter chain, so the head (last seq and hash) is
printed on every form and packet: compare it with ``--head`` later.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from .db import audit_by_seq, audit_select, query

GENESIS = "0" * 64

@dataclass(frozen=True)
class Entry:
    seq: int
    at: str
    actor: str
    action: str
    request_id: int | None
    detail_text: str
    prev_hash: str
    hash: str

    @property
    def detail(self) -> dict[str, Any]:
        return json.loads(self.detail_text)

    def canonical(self) -> str:
        return "\n".join([str(self.seq), self.at, self.actor, self.action,
                          "" if self.request_id is None else str(self.request_id),
                          self.detail_text, self.prev_hash])

    def computed_hash(self) -> str:
        return hashlib.sha256(self.canonical().encode("utf-8")).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, "actor": self.actor, "action": self.action,
                "request_id": self.request_id, "detail": self.detail,
                "prev_hash": self.prev_hash, "hash": self.hash}


def entries(conn: Any, *, request_id: int | None = None, since: dt.date | None = None,
            until: dt.date | None = None) -> list[Entry]:
    where: list[str] = []
    params: list[int | dt.date] = []
    if request_id is not None:
        where.append("request_id = %s")
        params.append(request_id)
    if since is not None:
        where.append("at >= %s")
        params.append(since)
    if until is not None:
        where.append("at < %s")
        params.append(until + dt.timedelta(days=1))
    q = audit_select(conn) + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY seq"
    return [Entry(*row) for row in query(conn, q, params)]


def entries_by_seq(conn: Any, seqs: list[int]) -> list[Entry]:
    """The entries with these sequence numbers (those that exist)."""
    if not seqs:
        return []
    return [Entry(*row) for row in audit_by_seq(conn, seqs)]


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    entries: int
    head_seq: int
    head_hash: str
    broken_seq: int | None = None
    problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries": self.entries, "head": f"{self.head_seq}:{self.head_hash}",
                "broken_seq": self.broken_seq, "problem": self.problem}


def verify(conn: Any, expect_head: str | None = None) -> VerifyResult:
    """Walk the chain from the first row; report the first row that does not hold."""
    rows = entries(conn)
    prev_hash, prev_seq = GENESIS, 0
    for e in rows:
        problem = None
        if e.seq != prev_seq + 1:
            problem = (f"sequence jumps from {prev_seq} to {e.seq}: "
                       + ("a row was deleted" if e.seq > prev_seq + 1 else "rows were reordered"))
        elif e.prev_hash != prev_hash:
            problem = "its prev_hash does not match the row before it (inserted or reordered)"
        elif e.computed_hash() != e.hash:
            problem = "its content does not match its hash (altered)"
        if problem:
            return VerifyResult(False, len(rows), prev_seq, prev_hash, e.seq, problem)
        prev_hash, prev_seq = e.hash, e.seq
    if expect_head:
        seq_s, _, h = expect_head.partition(":")
        try:
            seq = int(seq_s)
        except ValueError:
            seq = -1
        known = next((e for e in rows if e.seq == seq), None)
        if known is None or not known.hash.startswith(h):
            return VerifyResult(False, len(rows), prev_seq, prev_hash, seq,
                                f"the recorded head {expect_head} is not in the log "
                                "(rows were cut off the end, or the head is wrong)")
    return VerifyResult(True, len(rows), prev_seq, prev_hash)
