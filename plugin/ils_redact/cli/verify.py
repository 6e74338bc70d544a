"""ils-redact verify: prove the rules on the live database (exit 0 hold, 1 violation, 2 error)."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import IlsRedactError
from . import cli
from .context import CliContext, pass_ctx


@cli.command()
@click.option("--ils-config", type=click.Path(dir_okay=False), metavar="PATH",
              help="Evergreen's opensrf.xml or Koha's koha-conf.xml: check the logins the "
                   "ILS's reports run as.")
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Also write JUnit XML (one test case per check) for CI systems.")
@click.option("--backup-role", "backup_roles", multiple=True, metavar="ROLE",
              help="A login that runs pg_dump (repeatable); members of pg_read_all_data "
                   "are found by themselves (REPLICATION logins need no BYPASSRLS).")
@click.option("--exhaustive", is_flag=True,
              help="Read every column of every relation one by one, instead of proving a "
                   "relation closed with one query that names no column.")
@click.option("--strict", is_flag=True, help="Warnings fail too (exit 1).")
@pass_ctx
def verify(ctx: CliContext, ils_config: str | None, junit_path: str | None,
           backup_roles: tuple[str, ...], exhaustive: bool, strict: bool) -> None:
    """Prove the rules on the live database, as each restricted role.

    Catalog proof (effective privileges through PUBLIC and every membership), empirical
    proof (every relation read and every SECURITY DEFINER function prepared as each
    restricted role), hazards and drift.  Runs in a read-only transaction that is rolled
    back: it changes nothing (on MariaDB, a temporary probe login acts as each role and is
    dropped).  Exit 0 when everything holds, 1 on any violation, 2 on error.
    """
    from ..verify import junit_error
    from ..verify import verify as run_verify

    try:
        rules = ctx.rules
        with ctx.connect() as conn:
            report = run_verify(conn, rules, ils_config=ils_config, backup_roles=backup_roles,
                                exhaustive=exhaustive, strict=strict)
    except IlsRedactError as exc:
        if junit_path:
            Path(junit_path).write_text(junit_error(str(exc)), encoding="utf-8")
        raise
    if junit_path:
        Path(junit_path).write_text(report.junit(), encoding="utf-8")
    ctx.emit(report.to_json(), lambda _: report.text())
    raise SystemExit(report.exit_code)
