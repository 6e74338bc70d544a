"""Refusals are audit entries, whoever refuses and through whichever tool.

The layer's functions log what they refuse themselves (an export of an expired request,
an approval by the creator).  What is refused before a layer function decides (a barcode
that names nobody, a refusal raised by the function's checks, which rolls back its own
entry) is logged here, with the layer's ``log_refusal``, so that a Python caller, the
CLI and the console leave the same trail.  The outcome is structured: the
:class:`~ils_redact.errors.Refused` carries the entry's number (``audit_seq``), never a
message to parse.
"""

from __future__ import annotations

from typing import Any

from ..errors import CommitUnconfirmed, Refused
from .db import call, commit_audited


def log_refusal(conn: Any, action: str, request_id: int | None, reason: str) -> int | None:
    """Write and commit a ``<action>.refused``-style entry; its number, or None when this
    login may not write the log (it is refused anyway).  The connection's transaction
    is rolled back first: what was refused leaves nothing behind but this entry.  A
    commit that a synchronous standby did not confirm is raised
    (:class:`~ils_redact.errors.CommitUnconfirmed`): the entry may not be durable."""
    try:
        conn.rollback()
        rows = call(conn, "log_refusal", [action, request_id, reason])
        commit_audited(conn, what=f"the audit entry of the refused {action}")
    except CommitUnconfirmed:
        raise
    except Exception:  # noqa: BLE001 - a login without the right to log: refuse anyway
        conn.rollback()
        return None
    seq = rows[0][0] if rows and rows[0] else None
    return int(seq) if seq is not None else None


def refuse(conn: Any, action: str, request_id: int | None, reason: str, message: str, *,
           hint: str | None = None) -> Refused:
    """Log the refusal (:func:`log_refusal`) and return the error to raise."""
    seq = log_refusal(conn, action, request_id, reason)
    return Refused(message, hint=hint, audit_seq=seq)


def keep_refusal(conn: Any, exc: Refused, what: str) -> Refused:
    """A refusal a layer function logged itself: commit, so its entry stays when the
    caller rolls back, and return the error (marked logged) to raise."""
    commit_audited(conn, what=what)
    exc.logged = True
    return exc
