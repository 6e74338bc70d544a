"""Create, approve, end, list and show disclosure requests."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from ..errors import IlsRedactError, Refused
from ..rules import Rules
from .db import call, clock_sql, normalize_request, query, table
from .refusals import keep_refusal, refuse

BASES = ("court-order", "emergency")


@dataclass
class NewRequest:
    basis: str
    agency: str
    officer_name: str
    officer_badge: str
    case_number: str
    patrons: list[int] = field(default_factory=list)
    barcodes: list[str] = field(default_factory=list)
    emergency_reason: str | None = None
    court: str | None = None
    order_reference: str | None = None
    order_date: dt.date | None = None
    columns: list[str] = field(default_factory=list)
    expires_at: dt.datetime | None = None
    grantee: str | None = None

    def validate(self, rules: Rules, now: dt.datetime | None = None) -> None:
        """Input errors (exit 2, nothing written).  The database checks all of this again."""
        now = now or dt.datetime.now(dt.timezone.utc)
        if self.basis not in BASES:
            raise IlsRedactError(f"unknown basis {self.basis!r}: court-order or emergency")
        for name in ("agency", "officer_name", "officer_badge", "case_number"):
            if not (getattr(self, name) or "").strip():
                raise IlsRedactError(f"missing {name.replace('_', ' ')}: every request records "
                                     "the agency, the officer's name and badge, and the case")
        if self.basis == "emergency" and not (self.emergency_reason or "").strip():
            raise IlsRedactError("an emergency request needs the officer's stated reason "
                                 "(probable cause of imminent danger of physical harm)")
        if self.basis == "court-order":
            missing = [n for n in ("court", "order_reference", "order_date")
                       if not getattr(self, n)]
            if missing:
                raise IlsRedactError("a court-order request needs the issuing court, the order "
                                     f"reference and its date (missing: {', '.join(missing)})")
        if not self.patrons and not self.barcodes:
            raise IlsRedactError("name at least one patron (--barcode or --patron)")
        if self.expires_at is None:
            raise IlsRedactError("missing expiry: a court order says until when (--expires)")
        if self.expires_at.tzinfo is None:
            raise IlsRedactError("expiry needs a time zone (e.g. 2026-12-01T17:00+00:00)")
        if self.expires_at <= now:
            raise IlsRedactError(f"expiry {self.expires_at.isoformat()} is in the past")
        cap = (dt.timedelta(hours=rules.disclosure.emergency_hours)
               if self.basis == "emergency"
               else dt.timedelta(days=rules.disclosure.court_order_max_days))
        if self.expires_at > now + cap:
            raise IlsRedactError(f"expiry {self.expires_at.isoformat()} is later than the rules "
                                 f"allow for a {self.basis} request ({cap})")


def default_expiry(rules: Rules, basis: str, hours: float | None = None) -> dt.datetime | None:
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    if hours is not None:
        return now + dt.timedelta(hours=hours)
    if basis == "emergency":
        return now + dt.timedelta(hours=rules.disclosure.emergency_hours)
    return None


def resolve_columns(rules: Rules, names: list[str], basis: str) -> list[str]:
    """Qualified identity columns.  Emergency: the whole allow-list (names, addresses,
    phones, card, date of birth) unless fewer are named; court order: what the order
    names, chosen from the allow-list (``family_name``, ``actor.usr.dob``, ``actor.card.*``)."""
    allow = [f"{t.relation}.{c}" for t in rules.identity for c in t.columns]
    if not names:
        if basis == "emergency":
            return allow
        raise IlsRedactError("a court-order request names the identity columns the order "
                             "covers (--columns)")
    out: list[str] = []
    for name in names:
        if name.endswith(".*"):
            rel = name[:-2]
            hits = [c for c in allow if c.rsplit(".", 1)[0] == rel]
        elif name in allow:
            hits = [name]
        else:
            hits = [c for c in allow if c.rsplit(".", 1)[1] == name]
        if not hits:
            raise Refused(f"{name} is not an identity column; only these may be disclosed: "
                          + ", ".join(allow))
        if len(hits) > 1 and not name.endswith(".*"):
            raise IlsRedactError(f"{name} is ambiguous: {', '.join(hits)}")
        out += [h for h in hits if h not in out]
    return out


@dataclass(frozen=True)
class Resolved:
    named_as: str
    patron_id: int
    display: dict[str, Any]


def resolve_patrons(conn: Any, patrons: list[int], barcodes: list[str]
                    ) -> tuple[list[Resolved], list[str]]:
    """(found, unknown): who each named id or barcode is, for the creator to confirm."""
    rows = call(conn, "patron_lookup", [patrons or None, barcodes or None])
    found = [Resolved(r[0], int(r[1]), r[2]) for r in rows]
    seen = {f.named_as for f in found}
    unknown = [str(p) for p in patrons if str(p) not in seen] + \
              [b for b in barcodes if b not in seen]
    return found, unknown


def require_known(conn: Any, unknown: list[str]) -> None:
    """Refuse a request that names patrons nobody is (logged: ``request.create``)."""
    if unknown:
        reason = f"unknown patrons: {', '.join(unknown)}"
        raise refuse(conn, "request.create", None, reason, f"{reason}; nothing was created")


def create(conn: Any, req: NewRequest, resolved: list[Resolved]) -> int:
    """Record the request (a draft); a refusal is logged (``request.create``)."""
    try:
        return _create(conn, req, resolved)
    except Refused as exc:
        raise refuse(conn, "request.create", None, str(exc), exc.message,
                     hint=exc.hint) from None


def _create(conn: Any, req: NewRequest, resolved: list[Resolved]) -> int:
    ids: list[int] = []
    named: list[str] = []
    for r in resolved:
        if r.patron_id in ids:
            continue
        ids.append(r.patron_id)
        named.append(r.named_as)
    rows = call(conn, "request_create", [
        req.basis, req.agency, req.officer_name, req.officer_badge, req.case_number,
        req.emergency_reason, req.court, req.order_reference, req.order_date, ids, named,
        req.columns, req.expires_at, req.grantee])
    return int(rows[0][0])


def approve(conn: Any, request_id: int) -> None:
    """Approve; a refusal (the layer logged it) is committed so its entry stays."""
    refusal = call(conn, "request_approve", [request_id])[0][0]
    if refusal:
        raise keep_refusal(conn, Refused(f"request {request_id} not approved: {refusal}"),
                           f"the refused approve of request {request_id}")


#: the command that ends a request with each status (for messages)
_END_ACTION = {"revoked": "revoke", "closed": "close"}


def end(conn: Any, request_id: int, status: str, reason: str | None) -> None:
    """Revoke or close; a refusal (the layer logged it) is committed so its entry stays."""
    refusal = call(conn, "request_end", [request_id, status, reason])[0][0]
    if refusal:
        action = _END_ACTION.get(status, status)
        raise keep_refusal(conn, Refused(f"request {request_id} not {status}: {refusal}"),
                           f"the refused {action} of request {request_id}")


_REQUEST_COLUMNS = (
    "id", "basis", "agency", "officer_name", "officer_badge", "case_number",
    "emergency_reason", "court", "order_reference", "order_date", "columns", "grantee",
    "status", "expires_at", "created_by", "created_at", "approved_by", "approved_at",
    "ended_by", "ended_at", "end_reason")


def _select_list(conn: Any) -> str:
    """The request's columns, with the status as the row policy sees it: an approved
    request whose expiry has passed reads as expired (access ended by the clock) before
    any write path records it.  Reading never writes, so it works on a read-only
    replica and in a READ ONLY transaction."""
    status = _status_sql(conn)
    return ", ".join(f"{status} AS status" if c == "status" else f"r.{c}"
                     for c in _REQUEST_COLUMNS)


def _status_sql(conn: Any) -> str:
    return (f"CASE WHEN r.status = 'approved' AND r.expires_at <= {clock_sql(conn)} "
            "THEN 'expired' ELSE r.status END")


def list_requests(conn: Any, status: str | None = None, *, limit: int | None = None,
                  offset: int = 0, newest_first: bool = False) -> list[dict[str, Any]]:
    """Requests in id order (``newest_first`` reverses it), filtered by status as the row
    policy sees it, one page of ``limit`` rows from ``offset`` when a limit is given.  The
    filter and the page are the database's work: a console showing 50 of 1,000 requests
    reads 50."""
    request, patron = table(conn, "request"), table(conn, "request_patron")
    where, params = "", []  # type: tuple[str, list[Any]]
    if status is not None:
        where, params = f"WHERE {_status_sql(conn)} = %s", [status]
    page = ""
    if limit is not None:
        page = " LIMIT %s OFFSET %s"
        params += [int(limit), int(offset)]
    rows = query(conn, f"SELECT {_select_list(conn)}, (SELECT count(*) "  # noqa: S608
                 f"FROM {patron} p WHERE p.request_id = r.id) AS patrons "
                 f"FROM {request} r {where} ORDER BY r.id{' DESC' if newest_first else ''}"
                 f"{page}", params)
    return [normalize_request(conn, dict(zip(_REQUEST_COLUMNS + ("patrons",), r, strict=True)))
            for r in rows]


def count_requests(conn: Any, status: str | None = None) -> int:
    """How many requests :func:`list_requests` would list with no page."""
    request = table(conn, "request")
    where, params = ("", []) if status is None else (f"WHERE {_status_sql(conn)} = %s",
                                                     [status])
    rows = query(conn, f"SELECT count(*) FROM {request} r {where}", params)  # noqa: S608
    return int(rows[0][0])


def show(conn: Any, request_id: int) -> dict[str, Any]:
    request, patron = table(conn, "request"), table(conn, "request_patron")
    rows = query(conn, f"SELECT {_select_list(conn)} FROM {request} r "  # noqa: S608
                 "WHERE r.id = %s", [request_id])
    if not rows:
        raise IlsRedactError(f"no request {request_id}")
    req = normalize_request(conn, dict(zip(_REQUEST_COLUMNS, rows[0], strict=True)))
    req["patrons"] = [{"patron_id": p, "named_as": n} for p, n in query(
        conn, f"SELECT patron_id, named_as FROM {patron} "  # noqa: S608
        "WHERE request_id = %s ORDER BY patron_id", [request_id])]
    return req
