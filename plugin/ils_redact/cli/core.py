"""plan, install, uninstall, status, rules check, catalog dump."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ..catalog import load_catalog
from ..errors import EXIT_VIOLATION
from ..plan import Plan
from ..rules import check_against_catalog
from . import cli
from .context import CliContext, pass_ctx


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
              help="Plan offline against a JSON catalog (format of shared/schemas).")
@click.option("--uninstall", "for_uninstall", is_flag=True,
              help="Show what uninstall would run instead.")
@pass_ctx
def plan(ctx: CliContext, catalog_path: str | None, for_uninstall: bool) -> None:
    """Print the exact SQL `install` would run, changing nothing."""
    backend = ctx.backend
    if catalog_path:
        catalog = load_catalog(catalog_path)
        p = backend.offline_install_plan(ctx.rules, catalog)
        _print_plan(ctx, p, backend.plan_digest(p))
        return
    with ctx.connect() as conn:
        with conn.transaction(force_rollback=True):  # read-only by construction
            conn.execute("SET TRANSACTION READ ONLY")
            if for_uninstall:
                p, blocking = backend.compute_uninstall_plan(conn)
                p.notes.extend(f"blocks uninstall: {b}" for b in blocking)
            else:
                p = backend.compute_install_plan(conn, ctx.rules)
    _print_plan(ctx, p, backend.plan_digest(p))


@cli.command()
@click.option("--lock-timeout", default="10s", show_default=True,
              help="How long to wait for a lock on a busy ILS table before giving up.")
@click.option("--expect", metavar="SHA256",
              help="Refuse unless the plan is the one reviewed (prefix of its sha256).")
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary.")
@pass_ctx
def install(ctx: CliContext, lock_timeout: str, expect: str | None, quiet: bool) -> None:
    """Apply the plan in one transaction (idempotent: a second run changes nothing)."""
    with ctx.connect() as conn:
        p = ctx.backend.install(conn, ctx.rules, lock_timeout=lock_timeout, expect=expect)
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
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def uninstall(ctx: CliContext, lock_timeout: str, discard_audit: bool, yes: bool) -> None:
    """Remove exactly what install created, in one transaction."""
    if not yes and sys.stdin.isatty():
        click.confirm("Remove ils-redact (roles, grants, policies and its schema) from "
                      "this database?", abort=True)
    with ctx.connect() as conn:
        p = ctx.backend.uninstall(conn, lock_timeout=lock_timeout, discard_audit=discard_audit)
    if ctx.fmt == "json":
        ctx.emit({"database": p.database, "statements": len(p.steps),
                  "steps": [s.to_json() for s in p.steps]})
    else:
        click.echo(f"uninstalled from database {p.database}: {len(p.steps)} statements")


def _status_text(s: dict[str, Any]) -> str:
    engine = {"postgresql": "PostgreSQL", "mariadb": "MariaDB"}.get(s.get("engine", ""), "")
    lines = [f"database        {s['database']} ({engine} {s['server_version']})".replace(
        "( ", "(")]
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
    with ctx.connect() as conn:
        with conn.transaction(force_rollback=True):
            s = ctx.backend.status(conn, ctx.rules)
    s.setdefault("engine", ctx.adapter.engine)
    ctx.emit(s, _status_text)
    if s["installed"] and not s["in_sync"]:
        raise SystemExit(EXIT_VIOLATION)


@cli.group()
def rules() -> None:
    """Work with the rules file."""


@rules.command("check")
@click.option("--catalog", "catalog_path", type=click.Path(exists=True, dir_okay=False),
              help="Check names against a JSON catalog instead of the adapter's reference.")
@pass_ctx
def rules_check(ctx: CliContext, catalog_path: str | None) -> None:
    """Validate the rules (schema, then names against a catalog); no database needed."""
    r = ctx.rules
    catalog = load_catalog(catalog_path) if catalog_path else ctx.adapter.reference_catalog()
    notices = check_against_catalog(r, catalog)
    data = {"rules": str(r.path), "adapter": r.adapter, "sha256": r.sha256,
            "identity_tables": len(r.identity), "classified": len(r.classified_relations()),
            "unclassified": [n.object for n in notices]}
    ctx.emit(data, lambda d: f"{d['rules']}: ok ({d['identity_tables']} identity tables, "
             f"{d['classified']} relations classified"
             + (f"; {len(d['unclassified'])} unclassified)" if d["unclassified"] else ")"))


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
        cat = ctx.backend.read_catalog(conn)
    text = json.dumps(cat.to_json(), indent=1)
    if output:
        Path(output).write_text(text + "\n", encoding="utf-8")
        click.echo(f"wrote {output}: {len(cat.relations)} relations")
    else:
        click.echo(text)
