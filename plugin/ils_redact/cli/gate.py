"""rewrite, lint: the query gate from the command line (offline; nothing is executed).

``rewrite`` prints the SQL the gate would let run for a profile, or the reasons it
refuses; ``lint`` sorts saved report SQL files by which profile could run them and what
they expose.  Both are thin layers over :class:`ils_redact.gate.Gate` and
:class:`ils_redact.gate.lint.Linter`.  The ``query`` command, which executes, lives
elsewhere.

The catalog comes from ``--catalog FILE`` (a JSON catalog), else from the live database
when ``--dsn`` is given (read-only), else from the adapter's reference catalog (the
schema of a stock ILS; stderr says so, since a library's local tables are not in it).
"""

from __future__ import annotations

import sys
from collections import Counter

import click

from ..catalog import Catalog, load_catalog
from ..errors import EXIT_VIOLATION, IlsRedactError
from ..gate import PROFILES, Gate, GateResult
from ..gate.lint import VERDICTS, Linter, LintRecord
from . import cli
from .context import CliContext, pass_ctx

_ENGINE_DIALECT = {"postgresql": "postgres", "mariadb": "mysql"}


def gate_catalog(ctx: CliContext, catalog_path: str | None) -> Catalog:
    """The catalog to check against: file, live database, or the reference catalog."""
    if catalog_path:
        return load_catalog(catalog_path)
    if ctx.dsn:
        with ctx.connect() as conn:
            return ctx.backend.read_catalog(conn)
    catalog = ctx.adapter.reference_catalog()
    click.echo(f"ils-redact: no --catalog or --dsn: checking against the reference "
               f"{ctx.adapter.name} catalog (local tables and columns are unknown to it)",
               err=True)
    return catalog


def _search_path(raw: str | None) -> tuple[str, ...]:
    if raw is None:
        return ("public",)
    parts = tuple(p.strip() for p in raw.split(",") if p.strip())
    if not parts:
        raise IlsRedactError("--search-path needs at least one schema name")
    return parts


def _read_sql(sql: str | None) -> str:
    if sql is None or sql == "-":
        if sys.stdin is None:
            raise IlsRedactError("no SQL given: pass it as an argument or on stdin")
        return sys.stdin.read()
    return sql


def format_findings(result: GateResult) -> str:
    """One line per finding: code, object, line:column, message."""
    return "\n".join(f"{f.code} {f.object or '-'} {f.where()} {f.message}"
                     for f in result.findings)


@cli.command()
@click.option("--profile", type=click.Choice(PROFILES), required=True,
              help="disclosure (identity under a request), stats (ils_redact_stats views) "
                   "or report (statistics report over base tables).")
@click.option("--request", "request_id", type=click.IntRange(min=1), metavar="ID",
              help="Disclosure request the query serves (default: every request in the "
                   "caller's active scope).")
@click.option("--catalog", "catalog_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="JSON catalog to check against, offline.")
@click.option("--search-path", "search_path", metavar="A,B",
              help="Schemas that resolve unqualified names, as the role's search_path "
                   "(default: public).")
@click.argument("sql", required=False, metavar="[SQL | -]")
@pass_ctx
def rewrite(ctx: CliContext, profile: str, request_id: int | None, catalog_path: str | None,
            search_path: str | None, sql: str | None) -> None:
    """Print the SQL the gate would run for PROFILE, or why it refuses (exit 1)."""
    text = _read_sql(sql)
    catalog = gate_catalog(ctx, catalog_path)
    gate = Gate(ctx.rules, catalog, profile, request_id=request_id,
                dialect=_ENGINE_DIALECT.get(catalog.engine, "postgres"),
                search_path=_search_path(search_path), cache_size=0)
    result = gate.check(text)
    data = {"profile": profile, "request": request_id, **result.to_dict()}
    if result.ok:
        ctx.emit(data, result.sql)
        return
    ctx.emit(data, format_findings(result))
    raise SystemExit(EXIT_VIOLATION)


def _lint_text(records: list[LintRecord]) -> str:
    lines = []
    for r in records:
        usable = f" (usable by: {', '.join(r.usable_by)})" if r.usable_by else ""
        lines.append(f"{r.path}: {r.verdict}{usable}")
        for e in r.exposes:
            cols = ", ".join(e.columns) if e.columns else "(no columns named)"
            lines.append(f"  {e.cls} {e.relation}: {cols}")
        if r.verdict == "invalid":
            for fs in r.findings.values():
                lines.extend(f"  {f.code} {f.object or '-'} {f.where()} {f.message}"
                             for f in fs)
    counts = Counter(r.verdict for r in records)
    summary = ", ".join(f"{counts[v]} {v}" for v in VERDICTS if counts[v])
    lines.append(f"{len(records)} file{'s' if len(records) != 1 else ''}: {summary or 'none'}")
    return "\n".join(lines)


@cli.command()
@click.argument("paths", nargs=-1, metavar="PATH...")
@click.option("--catalog", "catalog_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="JSON catalog to check against, offline.")
@click.option("--search-path", "search_path", metavar="A,B",
              help="Schemas that resolve unqualified names (default: public).")
@click.option("--koha-saved-sql", "koha_saved_sql", is_flag=True,
              help="Koha: classify every report in the saved_sql table of the --dsn "
                   "database instead of files.")
@pass_ctx
def lint(ctx: CliContext, paths: tuple[str, ...], catalog_path: str | None,
         search_path: str | None, koha_saved_sql: bool) -> None:
    """Classify saved report SQL (.sql files or folders of them).

    Each query is usable by the disclosure profile, usable as a statistics report,
    reads no patron data, exposes confidential data (which tables and columns), or
    cannot be checked.  Exit 1 if any file exposes confidential data or cannot be
    checked, 0 otherwise.
    """
    if koha_saved_sql:
        if paths or catalog_path:
            raise IlsRedactError("--koha-saved-sql reads the reports from the database: "
                                 "give no PATH or --catalog")
        if ctx.adapter.name != "koha":
            raise IlsRedactError("--koha-saved-sql needs Koha rules (adapter: koha)")
        from ..adapters.koha.saved_sql import lint_saved_sql

        with ctx.connect() as conn:
            records = lint_saved_sql(conn, ctx.rules)
        if not records:
            raise IlsRedactError("the saved_sql table holds no reports")
    else:
        if not paths:
            raise IlsRedactError("name the .sql files or folders to check (or, for Koha, "
                                 "--koha-saved-sql)")
        catalog = gate_catalog(ctx, catalog_path)
        linter = Linter(ctx.rules, catalog, dialect=_ENGINE_DIALECT.get(catalog.engine,
                                                                        "postgres"),
                        search_path=_search_path(search_path))
        records = linter.lint_paths(paths)
        if not records:
            raise IlsRedactError(f"no .sql files in {', '.join(paths)}")
    data = {
        "files": [r.to_dict() for r in records],
        "summary": {v: sum(1 for r in records if r.verdict == v) for v in VERDICTS},
    }
    ctx.emit(data, _lint_text(records))
    if any(r.failed for r in records):
        raise SystemExit(EXIT_VIOLATION)
