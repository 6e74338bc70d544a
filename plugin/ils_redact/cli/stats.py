"""``ils-redact stats list`` and ``stats run``: suppressed reports for the statistics role.

Connects as the login given by ``--dsn`` (a member of the stats role: ``ils-redact staff
grant LOGIN --role stats``); the reports are described by the database itself, so no
rules file is needed, and the engine is the DSN's (``mysql://`` for Koha on MariaDB).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import click

from ..stats import render as render_mod
from ..stats import run as run_mod
from . import cli
from .context import CliContext, dsn_engine, pass_ctx


@contextmanager
def _connect(ctx: CliContext) -> Any:
    """(connection, the module that lists and runs reports) for the DSN's engine."""
    from ..backends import get_backend

    dsn = ctx.require_dsn()
    engine = dsn_engine(dsn)
    runner: ModuleType = run_mod
    kwargs: dict[str, Any] = {}
    if engine == "mariadb":
        from ..backends.mariadb import stats_run as runner

        kwargs["autocommit"] = True  # each statement of a report commits its work rows
    with get_backend(engine).connect(dsn, debug=ctx.debug, **kwargs) as conn:
        yield conn, runner


@cli.group()
def stats() -> None:
    """Aggregate-only statistics reports (k distinct patrons, complementary suppression)."""


@stats.command("list")
@pass_ctx
def stats_list(ctx: CliContext) -> None:
    """The reports installed in this database."""
    with _connect(ctx) as (conn, runner):
        reports = runner.list_reports(conn)

    def text(data: Any) -> str:
        lines = []
        for r in reports:
            dims = r.rows_title + (f" x {r.cols_title}" if r.cols_title else "")
            tag = " (custom)" if r.custom else ""
            lines.append(f"{r.name}{tag}: {r.title}\n    per month x {dims}; "
                         f"{', '.join(r.measures)}; released at >= {r.k} distinct patrons")
        return "\n".join(lines) or "no reports installed"

    ctx.emit([{"name": r.name, "title": r.title, "description": r.description,
               "rows": r.rows_title, "columns": r.cols_title, "measures": list(r.measures),
               "monthly": r.timed, "custom": r.custom, "k": r.k, "time_zone": r.time_zone}
              for r in reports], text)


@stats.command("run")
@click.argument("name")
@click.option("--from", "period_from", metavar="DATE",
              help="First month included (YYYY-MM or the first day of a month).")
@click.option("--to", "period_to", metavar="DATE",
              help="First month NOT included (default: the current month, which is never "
                   "reported).")
@click.option("--format", "out_fmt", type=click.Choice(sorted(render_mod.RENDERERS)),
              default="csv", show_default=True, help="Output format.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write to this file instead of standard output.")
@pass_ctx
def stats_run(ctx: CliContext, name: str, period_from: str | None, period_to: str | None,
              out_fmt: str, output: str | None) -> None:
    """Run report NAME over whole months."""
    lo = run_mod.parse_month(period_from, "--from")
    hi = run_mod.parse_month(period_to, "--to")
    with _connect(ctx) as (conn, runner):
        result = runner.run_report(conn, name, lo, hi)
    text = render_mod.render(result, out_fmt)
    if output:
        Path(output).write_text(text, encoding="utf-8")
        n = sum(1 for e in result.entries if e.suppressed)
        click.echo(f"{name}: {len(result.entries)} entries ({n} suppressed) -> {output}",
                   err=True)
    else:
        click.echo(text, nl=False)
