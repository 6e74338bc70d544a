"""plan, install, uninstall, status, rules check, catalog dump."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ..catalog import load_catalog
from ..errors import EXIT_VIOLATION, IlsRedactError, StateError
from ..plan import Plan
from ..releases import detect_release
from ..rules import check_against_catalog, release_notes
from ..stats import all_reports
from . import cli
from .context import CURRENT, CliContext, pass_ctx


def _print_plan(ctx: CliContext, plan: Plan, digest: str) -> None:
    if ctx.fmt == "json":
        data = plan.to_json()
        data["sha256"] = digest
        ctx.emit(data)
    else:
        click.echo(plan.render(), nl=False)
        if not plan.empty and plan.action == "install":
            click.echo(f"-- plan sha256 {digest[:16]}: `ils-redact install --expect "
                       f"{digest[:16]}` applies exactly this plan")


@cli.command()
@click.option("--catalog", "catalog_path", type=click.Path(exists=True, dir_okay=False),
              help="Plan offline against a JSON catalog (as `catalog dump` writes it).")
@click.option("--uninstall", "for_uninstall", is_flag=True,
              help="Show what uninstall would run instead.")
@pass_ctx
def plan(ctx: CliContext, catalog_path: str | None, for_uninstall: bool) -> None:
    """Print the exact SQL `install` would run, changing nothing."""
    engine = ctx.engine
    if catalog_path:
        catalog = load_catalog(catalog_path)
        p = engine.offline_install_plan(ctx.rules, catalog, reports=all_reports)
        _print_plan(ctx, p, p.digest())
        return
    with ctx.connect() as conn:
        with conn.transaction(force_rollback=True):  # read-only by construction
            conn.execute("SET TRANSACTION READ ONLY")
            if for_uninstall:
                p, blocking = engine.compute_uninstall_plan(conn)
                p.notes.extend(f"blocks uninstall: {b}" for b in blocking)
            else:
                p = engine.compute_install_plan(conn, ctx.rules, reports=all_reports)
    _print_plan(ctx, p, p.digest())


@cli.command()
@click.option("--lock-timeout", default="10s", show_default=True,
              help="How long to wait for a lock on a busy ILS table before giving up.")
@click.option("--expect", metavar="SHA256",
              help="Refuse unless the plan is the one reviewed (prefix of its sha256).")
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary.")
@pass_ctx
def install(ctx: CliContext, lock_timeout: str, expect: str | None, quiet: bool) -> None:
    """Apply the plan (idempotent: a second run changes nothing).

    The plan's header says how the server applies it: PostgreSQL in one transaction;
    MariaDB statement by statement, in an order that leaves nothing readable when
    interrupted (a second run finishes it)."""
    with ctx.connect(write="install") as conn:
        p = ctx.engine.install(conn, ctx.rules, reports=all_reports,
                               lock_timeout=lock_timeout, expect=expect)
    for note in p.notes:  # said even when nothing changed, or with --quiet
        if note.startswith("warning: "):
            click.echo(note, err=True)
    summary = (f"installed: {len(p.changes())} changes in database {p.database}"
               if not p.empty else f"nothing to install: database {p.database} already "
               "matches the rules")
    if ctx.fmt == "json":
        ctx.emit({"database": p.database, "changes": len(p.changes()),
                  "statements": len(p.steps), "steps": [s.to_json() for s in p.steps]})
    else:
        if not quiet and not p.empty:
            click.echo(p.render(), nl=False)
        click.echo(summary)


@cli.command()
@click.option("--lock-timeout", default="10s", show_default=True)
@click.option("--discard-audit", is_flag=True,
              help="Allow dropping a non-empty audit log (export it first).")
@click.option("--orphaned", metavar="DATABASE",
              help="Remove the roles (and the staff logins ils-redact created) that a "
                   "database dropped without uninstall left on the server; run from any "
                   "database of the server.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def uninstall(ctx: CliContext, lock_timeout: str, discard_audit: bool, orphaned: str | None,
              yes: bool) -> None:
    """Remove exactly what install created (as install applies its plan: in one
    transaction on PostgreSQL, statement by statement on MariaDB)."""
    if orphaned is not None:
        _uninstall_orphaned(ctx, orphaned, yes, discard_audit)
        return
    with ctx.connect(write="uninstall") as conn:  # a replica is refused before asking
        if not yes and sys.stdin.isatty():
            click.confirm("Remove ils-redact (roles, grants, policies and its schema) from "
                          "this database?", abort=True)
        p = ctx.engine.uninstall(conn, lock_timeout=lock_timeout, discard_audit=discard_audit)
    if ctx.fmt == "json":
        ctx.emit({"database": p.database, "statements": len(p.steps),
                  "steps": [s.to_json() for s in p.steps]})
    else:
        click.echo(f"uninstalled from database {p.database}: {len(p.steps)} statements")


def _orphans_text(o: dict[str, Any]) -> str:
    db = o["database"]
    lines = [f"database {db} " + ("exists without the layer (dropped and created again?)"
                                  if o["database_exists"] else "no longer exists")]
    if o.get("layer_database"):
        lines.append(f"  layer database {o['layer_database']} ({o['audit_entries']} audit "
                     "entries)")
    lines += [f"  role  {r}" for r in o["roles"]]
    lines += [f"  account {a} (the layer's definer)" for a in o.get("accounts", [])]
    lines += [f"  login {name} (created by ils-redact for {db})" for name in o["logins"]]
    lines += [f"  login {name} is kept: {why}" for name, why in o["kept_logins"].items()]
    lines += [f"  {m} stops being a member of {', '.join(gs)}"
              for m, gs in o["members"].items()]
    return "\n".join(lines)


def _uninstall_orphaned(ctx: CliContext, database: str, yes: bool,
                        discard_audit: bool) -> None:
    """``uninstall --orphaned DATABASE``: the engine is the DSN's (no rules needed)."""
    from ..backends import engine_for_dsn

    engine = engine_for_dsn(ctx.require_dsn())
    CURRENT["engine"] = engine
    orphaned = engine.orphaned
    with engine.connect(ctx.require_dsn(), debug=ctx.debug) as conn:
        engine.require_primary(conn, "uninstall --orphaned")
        orphaned.require_admin(conn)
        found = orphaned.find(conn, database, discard_audit=discard_audit)
        conn.rollback()
        if ctx.fmt == "text":
            click.echo(_orphans_text(found.to_json()))
        if found.blockers:
            raise StateError("uninstall --orphaned refused, nothing was changed: "
                             + "; ".join(found.blockers),
                             hint="remove these by hand, then run it again")
        if not yes:
            if not sys.stdin.isatty():
                raise IlsRedactError("confirm the removal: run interactively or pass --yes")
            click.confirm(f"Drop these roles and logins of database {database}?", abort=True)
        removed, p = orphaned.remove(conn, database, discard_audit=discard_audit)
    ctx.emit(dict(removed.to_json(), statements=[s.sql for s in p.steps]),
             f"removed {len(removed.roles)} roles and {len(removed.logins)} logins left by "
             f"database {database} ({len(p.steps)} statements)")


def _status_text(s: dict[str, Any]) -> str:
    engine = {"postgresql": "PostgreSQL", "mariadb": "MariaDB"}.get(s.get("engine", ""), "")
    lines = [f"database        {s['database']} ({engine} {s['server_version']})".replace(
        "( ", "(")]
    if s.get("ils_release"):
        lines.append(f"ils release     {s['ils_release']}")
    if not s["installed"]:
        lines.append("installed       no")
    else:
        lines += [
            f"installed       yes, layer v{s['layer_version']} "
            f"(this tool has v{s['layer_version_available']})",
            f"installed at    {s.get('installed_at', '?')} by {s.get('installed_by', '?')} "
            f"with ils-redact {s.get('installed_by_tool', '?')}",
            f"rules sha256    {s['rules_sha256'][:16]} "
            + ("(changed since install)" if s.get("rules_changed") else "(as installed)"),
        ]
    if s.get("error"):
        lines.append(f"drift           unknown: {s['error']}")
    elif s["installed"]:
        drift = s["drift"] or []
        lines.append("drift           none" if not drift else
                     f"drift           {len(drift)} changes pending (ils-redact plan):")
        lines += [f"                  {d}" for d in drift[:20]]
    if s.get("unclassified"):
        lines.append(f"unclassified    {len(s['unclassified'])} relations/columns "
                     "(ils-redact verify)")
    return "\n".join(lines)


@cli.command()
@pass_ctx
def status(ctx: CliContext) -> None:
    """Installed version, rules hash, and drift between the rules and the catalog."""
    engine = ctx.engine
    with ctx.connect() as conn:
        with conn.transaction(force_rollback=True):
            s = engine.status(conn, ctx.rules, reports=all_reports)
            found = detect_release(conn, ctx.adapter.engine)
        with conn.transaction(force_rollback=True):
            s["replication"] = engine.replication_status(conn)
    s["ils_release"] = found.describe() if found else None
    s.setdefault("engine", ctx.adapter.engine)
    ctx.emit(s, lambda d: "\n".join([_status_text(d), *engine.replication_text(
        d["replication"])]))
    if s["installed"] and not s["in_sync"]:
        raise SystemExit(EXIT_VIOLATION)


@cli.group()
def rules() -> None:
    """Work with the rules file."""


@rules.command("check")
@click.option("--catalog", "catalog_path", type=click.Path(exists=True, dir_okay=False),
              help="Check against a JSON catalog instead of the adapter's reference.")
@pass_ctx
def rules_check(ctx: CliContext, catalog_path: str | None) -> None:
    """Validate the rules: schema, then names and classification against the live
    database when a DSN is given (the plan `plan` would print is computed, read-only), else
    against --catalog or the adapter's packaged reference catalog.  "ok" means `plan`
    accepts these rules there."""
    r = ctx.rules
    engine = ctx.engine
    if catalog_path or not ctx.dsn:
        catalog = load_catalog(catalog_path) if catalog_path else \
            ctx.adapter.reference_catalog()
        against = catalog_path or f"the packaged {ctx.adapter.name} reference catalog"
        notices = check_against_catalog(r, catalog)
        # what `plan --catalog` would do
        engine.offline_install_plan(r, catalog, reports=all_reports)
    else:
        with ctx.connect() as conn:
            with conn.transaction(force_rollback=True):  # read-only by construction
                conn.execute("SET TRANSACTION READ ONLY")
                catalog = engine.read_catalog(conn)
                notices = check_against_catalog(r, catalog)
                # exactly what `plan` does
                engine.compute_install_plan(conn, r, reports=all_reports)
        against = f"database {catalog.database}"
    data = {"rules": str(r.path), "adapter": r.adapter, "sha256": r.sha256,
            "against": against, "release": catalog.release,
            "notes": release_notes(r, catalog),
            "identity_tables": len(r.identity), "classified": len(r.classified_relations()),
            "unclassified": [n.object for n in notices]}
    ctx.emit(data, lambda d: f"{d['rules']}: ok ({d['identity_tables']} identity tables, "
             f"{d['classified']} relations classified"
             + (f"; {len(d['unclassified'])} unclassified)" if d["unclassified"] else ")")
             + f" against {d['against']}: {'; '.join(d['notes'])}")


@rules.command("schema")
def rules_schema() -> None:
    """Print the JSON Schema of the rules file (for editors)."""
    click.echo((Path(__file__).parent.parent / "rules" / "schema.json").read_text())


@cli.group()
def catalog() -> None:
    """Read the database catalog."""


@catalog.command("dump")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to FILE.")
@pass_ctx
def catalog_dump(ctx: CliContext, output: str | None) -> None:
    """Write the live catalog as JSON (for `plan --catalog` and `rewrite --catalog`)."""
    with ctx.connect() as conn:
        cat = ctx.engine.read_catalog(conn)
    text = json.dumps(cat.to_json(), indent=1)
    if output:
        Path(output).write_text(text + "\n", encoding="utf-8")
        click.echo(f"wrote {output}: {len(cat.relations)} relations")
    else:
        click.echo(text)
