"""``ils-redact stats list``, ``stats run`` and ``stats publish``.

``list`` and ``run`` connect as the login given by ``--dsn`` (a member of the stats role:
``ils-redact staff grant LOGIN --role stats``); the reports are described by the database
itself, so no rules file is needed, and the engine is the DSN's (``mysql://`` for Koha on
MariaDB).  ``publish`` is the administrator's (the install DSN and rules): it counts,
suppresses and records a month once; ``run`` returns published months only.

Months are inclusive everywhere: ``--month 2026-03`` or ``--from 2026-01 --to 2026-03``
(January, February and March).
"""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from ..errors import IlsRedactError
from ..sdc import results as run_mod
from ..sdc.publish import month_range, next_month
from ..stats import all_reports
from ..stats import render as render_mod
from . import cli
from .context import CURRENT, CliContext, pass_ctx


@contextmanager
def _connect(ctx: CliContext) -> Any:
    """(connection, the module that lists and runs reports) for the DSN's engine."""
    from ..backends import engine_for_dsn

    dsn = ctx.require_dsn()
    engine = engine_for_dsn(dsn)
    CURRENT["engine"] = engine
    kwargs: dict[str, Any] = {}
    if engine.stats_autocommit:
        kwargs["autocommit"] = True  # each statement of a report commits its work rows
    with engine.connect(dsn, debug=ctx.debug, **kwargs) as conn:
        yield conn, engine.stats_runner


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


def _months(month: str | None, period_from: str | None, period_to: str | None
            ) -> tuple[dt.date | None, dt.date | None]:
    """(first month, first month NOT included) from inclusive options."""
    if month and (period_from or period_to):
        raise IlsRedactError("give --month, or --from/--to, not both")
    if month:
        period_from = period_to = month
    lo = run_mod.parse_month(period_from, "--from" if not month else "--month")
    last = run_mod.parse_month(period_to, "--to" if not month else "--month")
    hi = next_month(last) if last else None
    if lo and hi and lo >= hi:
        raise IlsRedactError(f"--from {period_from} is after --to {period_to}")
    return lo, hi


_MONTH_OPTIONS = (
    click.option("--month", metavar="YYYY-MM", help="One month."),
    click.option("--from", "period_from", metavar="YYYY-MM",
                 help="First month included."),
    click.option("--to", "period_to", metavar="YYYY-MM",
                 help="Last month included (default: the last complete month; the current "
                      "month is never reported)."),
)


def _month_options(f: Any) -> Any:
    for opt in reversed(_MONTH_OPTIONS):
        f = opt(f)
    return f


@stats.command("run")
@click.argument("name")
@_month_options
@click.option("--format", "out_fmt", type=click.Choice(sorted(render_mod.RENDERERS)),
              default="csv", show_default=True, help="Output format.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write to this file instead of standard output.")
@pass_ctx
def stats_run(ctx: CliContext, name: str, month: str | None, period_from: str | None,
              period_to: str | None, out_fmt: str, output: str | None) -> None:
    """Run report NAME over whole months (published months only)."""
    lo, hi = _months(month, period_from, period_to)
    with _connect(ctx) as (conn, runner):
        result = runner.run_report(conn, name, lo, hi)
    text = render_mod.render(result, out_fmt)
    n = sum(1 for e in result.entries if e.suppressed)
    covers = result.covers_text()
    if output:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"{name}: {len(result.entries)} entries ({n} suppressed) -> {output}; "
                   f"{covers}", err=True)
    else:
        click.echo(text, nl=False)
        click.echo(f"{name}: {covers}", err=True)


@stats.command("publish")
@click.argument("name")
@_month_options
@pass_ctx
def stats_publish(ctx: CliContext, name: str, month: str | None, period_from: str | None,
                  period_to: str | None) -> None:
    """Publish months of report NAME (administrator: the install DSN and rules).

    Counts each month once, solves the least-cost suppression that protects every small
    cell (docs/statistics.md) and records the released entries; `stats run` returns
    them from then on.  A month already published is kept as it was."""
    lo, hi = _months(month, period_from, period_to)
    if (lo is None) != (hi is None):
        raise IlsRedactError("give --month, or both --from and --to")
    months = month_range(lo, hi - dt.timedelta(days=1)) if lo and hi else None
    with ctx.connect(write="stats publish") as conn:
        catalog = ctx.backend.read_catalog(conn)
        results = ctx.engine.stats_publish(conn, ctx.rules, catalog, name, months,
                                               reports=all_reports)

    def text(_: Any) -> str:
        lines = []
        for r in results:
            when = r.period.strftime("%Y-%m") if r.period else "all time"
            if r.status != "published":
                lines.append(f"{name} {when}: {r.status}"
                             + (f" ({r.published_at}); kept as it was" if r.published_at
                                else ""))
                continue
            c = r.counts()
            lines.append(f"{name} {when}: published {c['entries']} entries: {c['released']} "
                         f"released, {c['primary']} suppressed below k, {c['complement']} "
                         f"suppressed as complements, {c['shared']} kept from another "
                         f"report; {'; '.join(r.methods())}")
            lines += [f"    note: {n}" for p in r.pages for n in p.page.notes]
        return "\n".join(lines)

    ctx.emit([r.to_dict() for r in results], text)
