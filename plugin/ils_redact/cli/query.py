"""query: run one staff query through the gate, logged like an export.

A thin layer over :func:`ils_redact.query.run_query` (either engine: it asks the
engine of the connection for its part of the runner): the rows go to
stdout in the chosen format, a one-line JSON summary (rows, sha256, audit entries) to
stderr, and refusals to stderr one finding per line.  Database errors are shown by
SQLSTATE class (MariaDB: error number) only; ``--debug`` adds the server's text.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from .. import query as query_service
from ..catalog import Catalog, load_catalog
from ..errors import IlsRedactError
from ..gate import Gate
from ..query import FORMATS, QueryFailed, QueryRefused, run_query
from . import cli
from .context import CliContext, pass_ctx


def _read_sql(sql: str | None) -> str:
    if sql is None or sql == "-":
        return sys.stdin.read()
    return sql


def session_catalog(ctx: CliContext, conn: Any, catalog_path: str | None) -> Catalog:
    """The catalog a gated query is checked against, for this login's connection: a
    file given with ``--catalog``, else the live catalog (PostgreSQL), else, on Koha, the
    catalog the installed layer recorded (a restricted login sees none of the Koha tables
    in information_schema)."""
    if catalog_path:
        return load_catalog(catalog_path)
    return ctx.engine.session_catalog(conn)


def session_gate(ctx: CliContext, conn: Any, catalog: Catalog, profile: str,
                 request_id: int | None) -> Gate:
    """The gate this login's query is checked with, after the request's own check (the
    same for ``query`` and ``rewrite --request``)."""
    return query_service.session_gate(conn, ctx.rules, catalog, profile=profile,
                                      request_id=request_id)


@cli.command("query")
@click.option("--profile", type=click.Choice(["disclosure", "stats"]), required=True,
              help="disclosure (identity columns of a request's patrons, logged) or stats "
                   "(the suppressed views in ils_redact_stats; none on Koha: use `stats run`).")
@click.option("--request", "request_id", type=click.IntRange(min=1), metavar="ID",
              help="The approved request the query serves (disclosure: required).")
@click.option("--format", "out_fmt", type=click.Choice(FORMATS), default="table",
              show_default=True, help="Output format of the rows.")
@click.option("--catalog", "catalog_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="JSON catalog to check against instead of the live one.")
@click.argument("sql", required=False, metavar="[SQL | -]")
@pass_ctx
def query_cmd(ctx: CliContext, profile: str, request_id: int | None, out_fmt: str,
              catalog_path: str | None, sql: str | None) -> None:
    """Check SQL with the gate, then run only the SQL the gate regenerated.

    Read-only, with the rules' statement timeout and row cap; a disclosure query is
    logged before any row is read and again with the hash of what was printed.
    """
    text = _read_sql(sql)
    if not text.strip():
        raise IlsRedactError("no SQL given: pass it as an argument or on stdin")
    # a disclosure query appends to the audit log before and after it reads
    with ctx.connect(write="query --profile disclosure" if profile == "disclosure"
                     else None, keep_search_path=True) as conn:
        catalog = session_catalog(ctx, conn, catalog_path)
        conn.commit()
        try:
            outcome = run_query(conn, ctx.rules, catalog, text, profile=profile,
                             request_id=request_id, fmt=out_fmt)
        except QueryRefused as exc:
            for f in exc.findings:
                click.echo(f"{f.code} {f.object or '-'} {f.where()} {f.message}", err=True)
            logged = f"; audit entry {exc.audit_seq}" if exc.audit_seq else ""
            raise QueryRefused(f"{exc}{logged}") from None
        except QueryFailed as exc:
            if ctx.debug:
                click.echo(f"ils-redact: server said: {exc.detail}", err=True)
            logged = f"; audit entry {exc.audit_seq}" if exc.audit_seq else ""
            raise QueryFailed(f"{exc}{logged}", sqlstate=exc.sqlstate,
                              detail=exc.detail) from None
    sys.stdout.buffer.write(outcome.document)
    sys.stdout.flush()
    click.echo(json.dumps(outcome.summary()), err=True)
