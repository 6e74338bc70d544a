"""request, export, audit and staff: the disclosure workflow at the command line."""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
from pathlib import Path
from typing import Any

import click

from ..disclosure import audit as audit_mod
from ..disclosure import export as export_mod
from ..disclosure import forms
from ..disclosure import reconcile as reconcile_mod
from ..disclosure import requests as req_mod
from ..disclosure.db import commit_audited
from ..errors import EXIT_VIOLATION, IlsRedactError
from ..rules.model import STAFF_KINDS
from ..text import escaped
from . import cli
from .context import CliContext, pass_ctx


def _datetime(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        raise IlsRedactError(f"not a date and time: {value!r} (ISO 8601, e.g. "
                             "2026-12-01T17:00+00:00)") from None


def _date(value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise IlsRedactError(f"not a date: {value!r} (YYYY-MM-DD)") from None


def printable(value: Any) -> str:
    """Stored text as one safe line for a terminal: every character of
    :data:`ils_redact.text.UNPRINTABLE` shown as its escape (``\\x1b``, ``\\n``,
    ``\\u202e``).  Request fields, reasons, names and audit details are typed by other
    people (or were written before the database refused such characters)."""
    return escaped("" if value is None else str(value))


@cli.group()
def request() -> None:
    """Law-enforcement requests: create, approve, revoke, close, list, show, form, packet."""


@request.command("create")
@click.option("--basis", type=click.Choice(req_mod.BASES), required=True)
@click.option("--agency", required=True, help="The law-enforcement agency.")
@click.option("--officer", "officer_name", required=True, help="The officer's name.")
@click.option("--badge", "officer_badge", required=True, help="The officer's badge number.")
@click.option("--case", "case_number", required=True, help="The agency's case number.")
@click.option("--reason", "emergency_reason",
              help="Emergency: the officer's stated reason (imminent danger of physical harm).")
@click.option("--court", help="Court order: the issuing court.")
@click.option("--order-ref", "order_reference", help="Court order: its reference.")
@click.option("--order-date", help="Court order: its date (YYYY-MM-DD).")
@click.option("--barcode", "barcodes", multiple=True, help="A patron named by card barcode.")
@click.option("--patron", "patrons", multiple=True, type=int, help="A patron named by id.")
@click.option("--columns", help="Identity fields covered (comma-separated; court order: "
              "what the order names). Emergency default: all identity fields.")
@click.option("--expires", help="When access ends (ISO 8601 with time zone).")
@click.option("--hours", type=float, help="Access ends this many hours from now.")
@click.option("--for", "grantee", help="The login that will export (default: you): a login in "
              "the exporter or disclosure role.")
@click.option("--yes", is_flag=True, help="Do not ask to confirm the patrons.")
@pass_ctx
def request_create(ctx: CliContext, basis: str, agency: str, officer_name: str,
                   officer_badge: str, case_number: str, emergency_reason: str | None,
                   court: str | None, order_reference: str | None, order_date: str | None,
                   barcodes: tuple[str, ...], patrons: tuple[int, ...], columns: str | None,
                   expires: str | None, hours: float | None, grantee: str | None,
                   yes: bool) -> None:
    """Record a request (a draft until a different login approves it)."""
    rules = ctx.rules
    expires_at = _datetime(expires) or req_mod.default_expiry(rules, basis, hours)
    new = req_mod.NewRequest(
        basis=basis, agency=agency, officer_name=officer_name, officer_badge=officer_badge,
        case_number=case_number, emergency_reason=emergency_reason, court=court,
        order_reference=order_reference, order_date=_date(order_date),
        patrons=list(patrons), barcodes=list(barcodes), expires_at=expires_at,
        grantee=grantee)
    new.validate(rules)
    if expires_at is None:  # validate() has refused it already; this narrows the type
        raise IlsRedactError("missing expiry: a court order says until when (--expires)")
    names = [c.strip() for c in (columns or "").split(",") if c.strip()]
    new.columns = req_mod.resolve_columns(rules, names, basis)
    with ctx.connect(write="request create") as conn:
        found, unknown = req_mod.resolve_patrons(conn, new.patrons, new.barcodes)
        # the lookup's audit entry stands on its own, and no lock on the audit log is
        # held while the clerk reads and confirms
        commit_audited(conn, what="the patron lookup")
        req_mod.require_known(conn, unknown)  # a refusal is logged
        if ctx.fmt == "text":
            click.echo(printable(f"{basis} request from {agency} ({officer_name}, badge "
                                 f"{officer_badge}), case {case_number}; access until "
                                 f"{expires_at.isoformat()}"))
            click.echo("patrons named:")
            for f in found:
                shown = ", ".join(f"{k}={v}" for k, v in f.display.items() if v is not None)
                click.echo(printable(f"  {f.named_as:>16}  ->  patron {f.patron_id}: {shown}"))
            click.echo(f"fields covered: {', '.join(new.columns)}")
        if not yes:
            if not sys.stdin.isatty():
                raise IlsRedactError("confirm the patrons: run interactively or pass --yes")
            click.confirm("Are these the people the request names?", abort=True)
        request_id = req_mod.create(conn, new, found)  # a refusal is logged
        commit_audited(conn, what=f"request {request_id}")
    ctx.emit({"request": request_id, "status": "draft", "patrons": [f.patron_id for f in found]},
             f"request {request_id} recorded as a draft; a different login must approve it: "
             f"ils-redact request approve {request_id}")


def _simple(ctx: CliContext, action: str, request_id: int, fn: Any, done: str) -> None:
    with ctx.connect(write=f"request {action}") as conn:
        fn(conn)  # a refusal's audit entry is committed by the service
        commit_audited(conn, what=f"the {action} of request {request_id}")
    ctx.emit({"request": request_id, "status": done}, f"request {request_id} {done}")


@request.command("approve")
@click.argument("request_id", type=int)
@pass_ctx
def request_approve(ctx: CliContext, request_id: int) -> None:
    """Approve a draft (by a different login than the one that created it)."""
    _simple(ctx, "approve", request_id, lambda c: req_mod.approve(c, request_id), "approved")


@request.command("revoke")
@click.argument("request_id", type=int)
@click.option("--reason", help="Why the request is revoked.")
@pass_ctx
def request_revoke(ctx: CliContext, request_id: int, reason: str | None) -> None:
    """End access now (the library's decision)."""
    _simple(ctx, "revoke", request_id,
            lambda c: req_mod.end(c, request_id, "revoked", reason), "revoked")


@request.command("close")
@click.argument("request_id", type=int)
@click.option("--reason", help="e.g. 'records delivered to the officer'.")
@pass_ctx
def request_close(ctx: CliContext, request_id: int, reason: str | None) -> None:
    """Close a finished request (access ends)."""
    _simple(ctx, "close", request_id,
            lambda c: req_mod.end(c, request_id, "closed", reason), "closed")


def _list_text(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no requests"
    out = [f"{'id':>4}  {'status':9} {'basis':12} {'patrons':>7}  {'expires':25} "
           f"{'created by':14} agency / case"]
    for r in rows:
        out.append(f"{r['id']:>4}  {printable(r['status']):9} {printable(r['basis']):12} "
                   f"{r['patrons']:>7}  {str(r['expires_at'])[:25]:25} "
                   f"{printable(r['created_by']):14} "
                   f"{printable(r['agency'])} / {printable(r['case_number'])}")
    return "\n".join(out)


@request.command("list")
@click.option("--status", type=click.Choice(["draft", "approved", "expired", "revoked",
                                             "closed"]))
@pass_ctx
def request_list(ctx: CliContext, status: str | None) -> None:
    """List requests (reads only: an expired request shows as expired)."""
    with ctx.connect() as conn:
        rows = req_mod.list_requests(conn, status)
        conn.rollback()
    ctx.emit(rows, _list_text)


@request.command("show")
@click.argument("request_id", type=int)
@pass_ctx
def request_show(ctx: CliContext, request_id: int) -> None:
    """Show one request and its audit entries."""
    with ctx.connect() as conn:
        r = req_mod.show(conn, request_id)
        r["audit"] = [e.to_json() for e in audit_mod.entries(conn, request_id=request_id)]
        conn.rollback()

    def text(d: dict[str, Any]) -> str:
        lines = [f"{k:18} {printable(v)}" for k, v in d.items()
                 if k not in ("patrons", "audit") and v is not None]
        lines.append("patrons            " + ", ".join(
            f"{p['patron_id']} ({printable(p['named_as'])})" for p in d["patrons"]))
        lines.append("audit:")
        lines += [f"  #{e['seq']} {e['at']} {printable(e['actor'])} {printable(e['action'])}"
                  for e in d["audit"]]
        return "\n".join(lines)

    ctx.emit(r, text)


@request.command("form")
@click.argument("request_id", type=int)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to FILE.")
@click.option("--library", help="The library's name, printed on the form.")
@pass_ctx
def request_form(ctx: CliContext, request_id: int, output: str | None,
                 library: str | None) -> None:
    """The officer's acknowledgement form (HTML, print it or save as PDF)."""
    with ctx.connect() as conn:
        page = forms.render_form(conn, ctx.rules, request_id, library)
        conn.rollback()
    if output:
        Path(output).write_text(page, encoding="utf-8")
        click.echo(f"wrote {output}")
    else:
        click.echo(page)


@request.command("packet")
@click.argument("request_id", type=int)
@click.option("-o", "--output", "out", type=click.Path(file_okay=False), required=True)
@click.option("--library", help="The library's name, printed on the form.")
@pass_ctx
def request_packet(ctx: CliContext, request_id: int, out: str, library: str | None) -> None:
    """Form, manifests, audit entries and audit verification, for judicial review."""
    with ctx.connect() as conn:
        files = forms.write_packet(conn, ctx.rules, request_id, Path(out), library)
        conn.rollback()
    ctx.emit([str(f) for f in files], lambda fs: f"wrote {len(fs)} files to {out}")


@cli.command("export")
@click.option("--request", "request_id", type=int, required=True)
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv",
              show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Write the file here and its manifest beside it (default: stdout).")
@pass_ctx
def export_cmd(ctx: CliContext, request_id: int, fmt: str, output: str | None) -> None:
    """Identity rows of the patrons in an approved request, logged with a manifest."""
    with ctx.connect(write="export") as conn:
        exported = export_mod.export(conn, request_id, fmt)  # every refusal is logged
    if output:
        manifest_path = export_mod.write(exported, Path(output))
        m = exported.manifest
        click.echo(f"wrote {output} ({m['rows']} rows, {m['patrons']} patrons, sha256 "
                   f"{m['sha256'][:16]}); manifest {manifest_path}; audit entry {m['audit_seq']}",
                   err=ctx.fmt == "json")
        if ctx.fmt == "json":
            ctx.emit(exported.manifest)
    else:
        sys.stdout.buffer.write(exported.document)
        sys.stdout.flush()
        click.echo(json.dumps(exported.manifest, default=str), err=True)


@cli.group()
def audit() -> None:
    """The append-only, hash-chained audit log."""


@audit.command("verify")
@click.option("--head", help="A head recorded earlier (SEQ:HASH, from a form or packet).")
@pass_ctx
def audit_verify(ctx: CliContext, head: str | None) -> None:
    """Check the hash chain; exit 1 naming the first broken entry."""
    with ctx.connect() as conn:
        res = audit_mod.verify(conn, head)
    ctx.emit(res.to_json(), lambda r: (
        f"audit log intact: {r['entries']} entries, head {r['head']}" if r["ok"] else
        f"audit log BROKEN at entry {r['broken_seq']}: {r['problem']}"))
    if not res.ok:
        raise SystemExit(EXIT_VIOLATION)


@audit.command("reconcile")
@click.option("--server-log", "server_logs", type=click.Path(dir_okay=False), required=True,
              multiple=True, help="A PostgreSQL server log (repeat for rotated files).")
@click.option("--log-format", type=click.Choice(reconcile_mod.FORMATS), default="auto",
              show_default=True, help="auto: .csv is csvlog, .json is jsonlog, else stderr "
              "(any log_line_prefix).")
@pass_ctx
def audit_reconcile(ctx: CliContext, server_logs: tuple[str, ...], log_format: str) -> None:
    """Every lookup, export and gated query the server log traced must be in the audit
    log; exit 1 naming each one whose entry is missing or different (rolled back)."""
    traces, bad = reconcile_mod.read_traces([Path(p) for p in server_logs], log_format)
    with ctx.connect() as conn:
        res = reconcile_mod.reconcile(conn, traces, bad)
        conn.rollback()

    def text(r: reconcile_mod.Result) -> str:
        lines = [f"{len(r.problems)} of {r.traces} traced lookups, exports and queries of "
                 f"database {printable(r.database)} have no matching audit entry"
                 if r.problems else
                 f"audit log matches the server log: {r.traces} traced lookups, exports and "
                 f"queries of database {printable(r.database)}"]
        lines += [f"  #{p.seq}: {printable(p.trace.describe())}: {printable(p.problem)}"
                  for p in r.problems]
        if r.traces == 0:
            lines.append("  (no trace lines for this database: is it the right log, and is "
                         "log_min_messages at LOG or below?)")
        if r.malformed:
            lines.append(f"  {len(r.malformed)} lines carry the marker but are not traces "
                         f"(first: {printable(r.malformed[0])})")
        return "\n".join(lines)

    if ctx.fmt == "json":
        ctx.emit(res.to_json())
    else:
        click.echo(text(res))
    if not res.ok:
        raise SystemExit(EXIT_VIOLATION)


@audit.command("log")
@click.option("--request", "request_id", type=int)
@click.option("--since", help="YYYY-MM-DD")
@click.option("--until", help="YYYY-MM-DD")
@pass_ctx
def audit_log(ctx: CliContext, request_id: int | None, since: str | None,
              until: str | None) -> None:
    """List audit entries."""
    with ctx.connect() as conn:
        rows = audit_mod.entries(conn, request_id=request_id, since=_date(since),
                                 until=_date(until))
    ctx.emit([e.to_json() for e in rows], lambda es: "\n".join(
        f"#{e['seq']:<5} {e['at']}  {printable(e['actor']):16} {printable(e['action']):26} "
        f"{'' if e['request_id'] is None else 'request ' + str(e['request_id'])}  "
        f"{printable(json.dumps(e['detail'], default=str)[:100])}" for e in es)
        or "no entries")


@audit.command("export")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True)
@pass_ctx
def audit_export(ctx: CliContext, output: str) -> None:
    """Archive the whole log as JSON lines (before an uninstall, or for a court)."""
    with ctx.connect() as conn:
        rows = audit_mod.entries(conn)
        res = audit_mod.verify(conn)
    with open(output, "w", encoding="utf-8") as fh:
        for e in rows:
            fh.write(json.dumps(e.to_json(), sort_keys=True) + "\n")
    click.echo(f"wrote {len(rows)} entries to {output}; chain "
               f"{'intact' if res.ok else 'BROKEN'}; head {res.head_seq}:{res.head_hash}")


@cli.group()
def staff() -> None:
    """Which logins act as disclosure, stats or admin staff."""


def _staff(ctx: CliContext) -> Any:
    """The engine's staff part (PostgreSQL role memberships, MariaDB roles)."""
    return ctx.engine.staff


#: the password hash in a printed CREATE ROLE / CREATE USER (SQL string literal)
_PASSWORD_LITERAL = re.compile(r"(\bPASSWORD\s+)'(?:[^']|'')*'", re.IGNORECASE)


def _without_password(statement: str) -> str:
    """A statement as printed: the new login's password hash shown as ``'***'`` (a hash
    on a terminal, in a CI log or a ticket can be attacked offline; the database gets
    the statement as planned)."""
    return _PASSWORD_LITERAL.sub(r"\1'***'", statement)


def _apply_staff_plan(ctx: CliContext, conn: Any, plan: Any, dry_run: bool) -> None:
    staff_mod = _staff(ctx)

    if ctx.fmt == "text":
        for s in plan.steps:
            if s.kind != "record":
                click.echo(_without_password(s.sql) + ";")
    if not dry_run and plan.steps:
        staff_mod.apply(conn, plan)


def _password_from_stdin() -> str:
    """One line of standard input, without its line ending (spaces are kept)."""
    line = sys.stdin.readline() if sys.stdin is not None else ""
    password = line.removesuffix("\n").removesuffix("\r")
    if not password:
        raise IlsRedactError("--password-stdin: standard input holds no password (one line, "
                             "e.g. from a file or a secrets manager: < password.txt)")
    return password


@staff.command("grant")
@click.argument("login")
@click.option("--role", "kind", type=click.Choice(STAFF_KINDS),
              required=True)
@click.option("--create", is_flag=True, help="Create the login if it does not exist.")
@click.option("--password-prompt", is_flag=True,
              help="With --create: ask for a password (sent hashed, never stored in rules).")
@click.option("--password-stdin", is_flag=True,
              help="With --create: read the password from the first line of standard input "
                   "(keeps it out of the command line and the shell history; for scripts).")
@click.option("--dry-run", is_flag=True, help="Print the statements only.")
@pass_ctx
def staff_grant(ctx: CliContext, login: str, kind: str, create: bool, password_prompt: bool,
                password_stdin: bool, dry_run: bool) -> None:
    """Let LOGIN act in a role (refused for superusers, BYPASSRLS and the ILS owner)."""
    staff_mod = _staff(ctx)

    if password_prompt and password_stdin:
        raise IlsRedactError("--password-prompt and --password-stdin: give one of them")
    if (password_prompt or password_stdin) and not create:
        raise IlsRedactError("a password is set only for a login that --create makes",
                             hint="add --create, or leave out the password option")
    password = _password_from_stdin() if password_stdin else None
    # on a replica this refuses before the password prompt or anything else is printed
    with ctx.connect(write=None if dry_run else "staff grant") as conn:
        if password_prompt:
            password = click.prompt("password", hide_input=True, confirmation_prompt=True)
        plan = staff_mod.plan_grant(conn, ctx.rules, login, kind, create=create,
                                   password=password)
        conn.rollback()
        _apply_staff_plan(ctx, conn, plan, dry_run)
    ctx.emit({"login": login, "role": kind, "applied": not dry_run},
             f"{login}: {kind}" + (" (dry run)" if dry_run else ""))


@staff.command("revoke")
@click.argument("login")
@click.option("--role", "kind", type=click.Choice(STAFF_KINDS),
              required=True)
@click.option("--dry-run", is_flag=True)
@pass_ctx
def staff_revoke(ctx: CliContext, login: str, kind: str, dry_run: bool) -> None:
    """Take a role away from LOGIN."""
    staff_mod = _staff(ctx)

    with ctx.connect(write=None if dry_run else "staff revoke") as conn:
        plan = staff_mod.plan_revoke(conn, ctx.rules, login, kind)
        conn.rollback()
        _apply_staff_plan(ctx, conn, plan, dry_run)
    ctx.emit({"login": login, "role": kind, "revoked": not dry_run},
             f"{login}: no longer {kind}" + (" (dry run)" if dry_run else ""))


@staff.command("list")
@pass_ctx
def staff_list(ctx: CliContext) -> None:
    """Logins that hold an ils-redact role."""
    staff_mod = _staff(ctx)

    with ctx.connect() as conn:
        rows = staff_mod.members(conn, ctx.rules)
    ctx.emit(rows, lambda rs: "\n".join(
        f"{printable(r['login']):24} {r['role']:11} via {printable(r['group'])}"
        + (" (created by ils-redact)" if r["created_by_ils_redact"] else "")
        + (" WARNING: superuser" if r.get("superuser") else "")
        + (" WARNING: BYPASSRLS" if r.get("bypassrls") else "") for r in rs) or "no staff")
