"""Export: the bytes the database rendered, written as they are, with their manifest.

The database renders the document (CSV or JSON), hashes it and appends the manifest to
the audit log in the transaction that read the rows.  Here we only check that the bytes
we received hash to what the log says, write them, and write the manifest beside them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import IlsRedactError, Refused
from .db import CommitUnconfirmed, call, commit_audited
from .refusals import refuse


@dataclass(frozen=True)
class Exported:
    document: bytes
    manifest: dict[str, Any]


def export(conn: Any, request_id: int, fmt: str) -> Exported:
    """The logged export.  Every refusal is an audit entry: the export function logs its
    own (``Refused.audit_seq``); one raised before it decides (its checks roll back with
    it) is logged here with ``log_refusal``."""
    if fmt not in ("csv", "json"):
        raise IlsRedactError(f"unknown format {fmt!r}: csv or json")
    try:
        rows = call(conn, "export", [request_id, fmt])
    except Refused as exc:
        raise refuse(conn, "export", request_id, str(exc), exc.message,
                     hint=exc.hint) from None
    seq, document, manifest = rows[0]
    if isinstance(manifest, str):
        manifest = json.loads(manifest)
    if document is None:
        commit_audited(conn, what=f"the refusal of request {request_id}'s export (audit "
                                  f"entry {seq})")  # keep the logged refusal
        raise Refused(f"export of request {request_id} refused: {manifest.get('refused')} "
                      f"(audit entry {seq})", audit_seq=int(seq))
    data = document.encode("utf-8")
    if hashlib.sha256(data).hexdigest() != manifest["sha256"]:
        raise IlsRedactError("the exported bytes do not match the hash the database logged; "
                             "nothing was written")
    manifest = dict(manifest, audit_seq=seq)
    try:  # the read and its audit entry stand together: no file without a durable entry
        commit_audited(conn, what=f"the export of request {request_id} (audit entry {seq})")
    except CommitUnconfirmed as exc:
        raise CommitUnconfirmed(exc.message + "; the exported file was not written",
                                hint=exc.hint) from None
    return Exported(data, manifest)


def write(exported: Exported, output: Path) -> Path:
    """Write the document and ``<output>.manifest.json``; returns the manifest path."""
    output.write_bytes(exported.document)
    manifest_path = output.with_name(output.name + ".manifest.json")
    manifest = dict(exported.manifest, file=output.name)
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n",
                             encoding="utf-8")
    return manifest_path
