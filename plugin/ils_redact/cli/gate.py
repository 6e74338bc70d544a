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

import json
import sys
from collections import Counter

import click

from ..catalog import Catalog, load_catalog
from ..errors import EXIT_VIOLATION, IlsRedactError
from ..gate import PROFILES, Gate, GateResult
from ..gate.lint import VERDICTS, Linter, LintRecord
from ..query import QueryRefused
from ..text import escaped
from . import cli
from .context import CliContext, pass_ctx

_ENGINE_DIALECT = {"postgresql": "postgres", "mariadb": "mysql"}


def gate_catalog(ctx: CliContext, catalog_path: str | None) -> Catalog:
    """The catalog to check against: file, live database, or the reference catalog."""
    if catalog_path:
        return load_catalog(catalog_path)
    if ctx.dsn:
        with ctx.connect(keep_search_path=True) as conn:
            # what this login sees (MariaDB staff see no Koha table: what install recorded)
            return ctx.engine.session_catalog(conn)
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
              help="Disclosure request the query serves, checked in the database as "
                   "`query` checks it (needs --dsn; default: offline, every request in the "
                   "caller's active scope, the whole identity allow-list).")
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
    if request_id is not None:
        result = _check_for_request(ctx, profile, request_id, catalog_path, search_path,
                                    text)
    else:
        catalog = gate_catalog(ctx, catalog_path)
        gate = Gate(ctx.rules, catalog, profile,
                    dialect=_ENGINE_DIALECT.get(catalog.engine, "postgres"),
                    search_path=_search_path(search_path), cache_size=0)
        result = gate.check(text)
    data = {"profile": profile, "request": request_id, **result.to_dict()}
    if result.ok:
        ctx.emit(data, result.sql)
        return
    ctx.emit(data, format_findings(result))
    raise SystemExit(EXIT_VIOLATION)


def _check_for_request(ctx: CliContext, profile: str, request_id: int,
                       catalog_path: str | None, search_path: str | None,
                       text: str) -> GateResult:
    """``rewrite --request``: the request is checked in the database exactly as ``query``
    checks it (approved, unexpired, approved for this login; the gate narrowed to the
    fields it names), by the same function; only the execution is left out."""
    from .query import session_catalog, session_gate

    if profile != "disclosure":
        raise IlsRedactError("--request applies to the disclosure profile only")
    if not ctx.dsn:
        raise IlsRedactError(
            f"--request {request_id}: the request is checked in the database (approved, "
            f"unexpired, approved for you, the fields it covers), as `query` checks it",
            hint="give --dsn (your own login), or leave out --request to check against "
                 "the whole identity allow-list offline")
    if search_path is not None:
        raise IlsRedactError("--search-path is for offline checks: with --request, names "
                             "resolve through your login's own search path, as `query` "
                             "resolves them")
    with ctx.connect(keep_search_path=True) as conn:
        catalog = session_catalog(ctx, conn, catalog_path)
        conn.commit()
        try:
            gate = session_gate(ctx, conn, catalog, profile, request_id)
        except QueryRefused as exc:
            logged = f"; audit entry {exc.audit_seq}" if exc.audit_seq else ""
            raise QueryRefused(f"{exc}{logged}") from None
        return gate.check(text)


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
    # report names and SQL come from the ILS (Koha's saved_sql: any staff member with the
    # reports module writes them): no escape sequence reaches the administrator's terminal
    return "\n".join(escaped(line) for line in lines)


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


# -- finding codes -------------------------------------------------------------------------

def finding_codes() -> list[dict[str, str]]:
    """Every finding code the gate and verify can report: code, component, meaning."""
    from ..checks.findings import CODES as VERIFY_CODES
    from ..gate.findings import CODES as GATE_CODES

    rows = [{"code": c, "component": "gate", "meaning": m} for c, m in GATE_CODES.items()]
    rows += [{"code": c, "component": "verify", "meaning": m}
             for c, m in VERIFY_CODES.items()]
    return rows


def _codes_text(rows: list[dict[str, str]]) -> str:
    width = max(len(r["code"]) for r in rows)
    return "\n".join(f"{r['code']:<{width}}  {r['component']:<6}  {r['meaning']}"
                     for r in rows)


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default=None,
              help="Output format (default: the global --format).")
@pass_ctx
def codes(ctx: CliContext, fmt: str | None) -> None:
    """List every finding code of the query gate (R-...) and of verify (C-, E-, H-, D-).

    Codes are stable: logs, CI and scripts may match on them.  The gate's are explained
    in docs/query-gate.md, verify's in docs/ci.md.
    """
    rows = finding_codes()
    if (fmt or ctx.fmt) == "json":
        click.echo(json.dumps(rows, indent=2))
    else:
        click.echo(_codes_text(rows))
