"""The officer's acknowledgement form and the judicial-review packet.

The form is HTML with print styles (a browser prints it to paper or PDF): the library's
own confidentiality policy, the request as recorded, what was disclosed (fields, row
counts and hashes, never values), the audit head at the time of printing, and signature
lines.  The packet puts the form, the manifests, the request's audit entries and the
result of ``audit verify`` in one folder for a court to review later.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from pathlib import Path
from typing import Any

from ..resources import package_file
from ..rules import Rules
from ..text import escaped_lines
from . import audit
from .requests import show

_CSS = """
body { font-family: Georgia, 'Times New Roman', serif; max-width: 46em; margin: 2em auto;
       line-height: 1.45; color: #111; }
h1 { font-size: 1.5em; margin-bottom: .2em; } h2 { font-size: 1.15em; margin-top: 1.6em;
     border-bottom: 1px solid #999; }
table { border-collapse: collapse; width: 100%; } td, th { text-align: left;
        vertical-align: top; padding: .25em .5em; border-bottom: 1px solid #ddd; }
th { width: 14em; font-weight: normal; color: #444; }
.policy { white-space: pre-wrap; border: 1px solid #bbb; padding: 1em; background: #fafafa; }
.sig { margin-top: 2.5em; display: grid; grid-template-columns: 1fr 1fr; gap: 2.5em; }
.line { border-top: 1px solid #000; padding-top: .2em; margin-top: 2.8em; font-size: .9em; }
.small { font-size: .85em; color: #444; } code { font-size: .85em; word-break: break-all; }
tr.malformed td { color: #900; }
@media print { body { margin: 0; max-width: none; } .noprint { display: none; }
               h2 { page-break-after: avoid; } .sig { page-break-inside: avoid; } }
"""



def _h(value: object) -> str:
    """Text for the printed form: HTML-escaped, with hidden characters shown as escapes
    (a NUL, a bidi mark or a zero-width character would change what the officer and the
    court read)."""
    return html.escape(escaped_lines(str(value)))


def policy_text(rules: Rules) -> str:
    path = rules.policy_text or package_file("templates/policy_template.md")
    return Path(path).read_text(encoding="utf-8")


def _rows(pairs: list[tuple[str, Any]]) -> str:
    out = []
    for k, v in pairs:
        if v is None or v == "":
            continue
        if isinstance(v, list | tuple):
            v = ", ".join(map(str, v))
        out.append(f"<tr><th>{_h(k)}</th><td>{_h(str(v))}</td></tr>")
    return "<table>" + "".join(out) + "</table>"


def disclosures(entries: list[audit.Entry]) -> list[dict[str, Any]]:
    """The ``export`` entries' manifests (with their seq and time).  A detail that is not
    a JSON object is kept under ``detail``: :func:`malformed` names what is wrong."""
    out = []
    for e in entries:
        if e.action != "export":
            continue
        try:
            detail: Any = e.detail
        except ValueError:
            detail = e.detail_text
        base = dict(detail) if isinstance(detail, dict) else {"detail": detail}
        out.append(dict(base, audit_seq=e.seq, at=e.at))
    return out


def malformed(x: dict[str, Any]) -> list[str]:
    """What keeps an export entry from being a manifest the layer wrote (entries written
    by hand, or by a version that let staff append to the log): empty if nothing."""
    problems = []
    for key in ("exported_by", "format", "sha256"):
        if not isinstance(x.get(key), str):
            problems.append(f"{key} missing or not text")
    for key in ("rows", "patrons"):
        v = x.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            problems.append(f"{key} missing or not a count")
    cols = x.get("columns")
    if not isinstance(cols, list) or not all(isinstance(c, str) for c in cols):
        problems.append("columns missing or not a list of fields")
    sha = x.get("sha256")
    if isinstance(sha, str) and (len(sha) != 64 or any(c not in "0123456789abcdef"
                                                       for c in sha)):
        problems.append("sha256 is not a SHA-256 hash")
    return problems


def _export_row(x: dict[str, Any]) -> str:
    esc = _h
    problems = malformed(x)
    if problems:
        recorded = {k: v for k, v in x.items() if k not in ("audit_seq", "at")}
        return (f"<tr class=\"malformed\"><td>{esc(str(x.get('at')))}</td><td colspan=\"4\">"
                f"<strong>Malformed audit entry #{esc(str(x.get('audit_seq')))}</strong>: "
                f"{esc('; '.join(problems))}. Recorded as: <code>"
                f"{esc(json.dumps(recorded, sort_keys=True, default=str))}</code></td></tr>")
    return (f"<tr><td>{esc(str(x['at']))}</td><td>{esc(x['exported_by'])}</td>"
            f"<td>{esc(', '.join(x['columns']))}</td><td>{esc(str(x['rows']))} rows, "
            f"{esc(str(x['patrons']))} patrons</td><td>{esc(x['format'])}<br><code>"
            f"{esc(x['sha256'])}</code></td></tr>")


def render_form(conn: Any, rules: Rules, request_id: int, library: str | None = None) -> str:
    req = show(conn, request_id)
    entries = audit.entries(conn, request_id=request_id)
    check = audit.verify(conn)
    basis = "Court order" if req["basis"] == "court-order" else "Emergency (no court order)"
    details = [
        ("Request", f"#{req['id']} ({req['status']})"),
        ("Basis", basis),
        ("Agency", req["agency"]),
        ("Officer", f"{req['officer_name']}, badge {req['officer_badge']}"),
        ("Case number", req["case_number"]),
    ]
    if req["basis"] == "emergency":
        details.append(("Officer's stated reason", req["emergency_reason"]))
    else:
        details += [("Issuing court", req["court"]),
                    ("Order", f"{req['order_reference']} of {req['order_date']}")]
    details += [
        ("Identity fields covered", req["columns"]),
        ("Patrons named", [p["named_as"] for p in req["patrons"]]),
        ("Recorded by", f"{req['created_by']} at {req['created_at']}"),
        ("Approved by", f"{req['approved_by']} at {req['approved_at']}"
         if req["approved_by"] else "not approved"),
        ("Access expires", req["expires_at"]),
    ]
    if req["ended_by"]:
        details.append(("Ended", f"{req['status']} by {req['ended_by']} at {req['ended_at']}"
                        + (f": {req['end_reason']}" if req["end_reason"] else "")))
    exports = disclosures(entries)
    if exports:
        rows = "".join(_export_row(x) for x in exports)
        disclosed = ("<table><tr><th>When</th><th>By</th><th>Fields</th><th>Count</th>"
                     f"<th>File (sha256)</th></tr>{rows}</table>")
    else:
        disclosed = "<p>Nothing has been disclosed under this request.</p>"
    head = f"{check.head_seq}:{check.head_hash}"
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = f"Request for patron records #{req['id']}"
    lib = _h(library) if library else "The library"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_h(title)}</title>
<style>{_CSS}</style></head><body>
<h1>{_h(title)}</h1>
<p class="small">{lib} &middot; printed {now} &middot; ils-redact</p>
<h2>The library's confidentiality policy</h2>
<div class="policy">{_h(policy_text(rules))}</div>
<h2>The request</h2>
{_rows(details)}
<h2>What was disclosed</h2>
<p>Identity information only: the fields listed, for the patrons named. Records of what
a patron borrowed, held, searched, listed, requested or paid are never disclosed.</p>
{disclosed}
<h2>Acknowledgement</h2>
<p>I, the officer named above, acknowledge that this request is made within the limits of
the law: under a court order, or in an emergency where obtaining a court order is
impractical and there is probable cause to believe there is an imminent danger of physical
harm; that the information is limited to identifying a suspect, witness or victim of a
crime; and that the library may seek judicial review of this request.</p>
<div class="sig">
  <div><div class="line">Officer: signature</div><div class="line">Name and badge</div>
       <div class="line">Date</div></div>
  <div><div class="line">Library staff: signature</div><div class="line">Name and title</div>
       <div class="line">Date</div></div>
</div>
<h2>For later review</h2>
<p class="small">Audit log at printing: {check.entries} entries, chain
{"intact" if check.ok else "BROKEN at entry " + str(check.broken_seq)}; head
<code>{_h(head)}</code>. Keep this number: <code>ils-redact audit verify --head
{_h(head)}</code> proves later that no entry up to here was removed.</p>
</body></html>
"""


def write_packet(conn: Any, rules: Rules, request_id: int, out: Path,
                 library: str | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def put(name: str, text: str) -> None:
        p = out / name
        p.write_text(text, encoding="utf-8")
        written.append(p)

    put("form.html", render_form(conn, rules, request_id, library))
    req = show(conn, request_id)
    put("request.json", json.dumps(req, indent=2, default=str) + "\n")
    entries = audit.entries(conn, request_id=request_id)
    put("audit-entries.json", json.dumps([e.to_json() for e in entries], indent=2) + "\n")
    for x in disclosures(entries):
        put(f"manifest-{x['audit_seq']}.json", json.dumps(x, indent=2, sort_keys=True,
                                                          default=str) + "\n")
    check = audit.verify(conn)
    put("audit-verify.json", json.dumps(check.to_json(), indent=2) + "\n")
    put("policy.txt", policy_text(rules))
    put("README.txt", (
        f"Judicial-review packet for disclosure request #{request_id}\n\n"
        "form.html           the request, what was disclosed, signatures (print it)\n"
        "request.json        the request as recorded in the database\n"
        "audit-entries.json  every audit-log entry about this request\n"
        "manifest-N.json     one per export: fields, row count, sha256 of the file handed over\n"
        "audit-verify.json   the result of `ils-redact audit verify` when this was written\n"
        "policy.txt          the library's confidentiality policy\n\n"
        f"Audit head when written: {check.head_seq}:{check.head_hash}\n"))
    return written
