"""``ils-redact demo``: the whole story on an embedded PostgreSQL, no setup."""

from __future__ import annotations

import functools
import sys

import click

from ..errors import EXIT_VIOLATION
from . import cli
from .context import CliContext, pass_ctx


@cli.command()
@click.option("--patrons", default=10_000, show_default=True, type=click.IntRange(100))
@click.option("--circulations", type=click.IntRange(0),
              help="Default: 10 per patron (100,000 for 10,000 patrons).")
@click.option("--keep", is_flag=True, help="Keep the database (and the embedded server).")
@click.option("--serve", is_flag=True,
              help="Then serve the staff console on the demo database (until Ctrl-C) and "
                   "print its URL and the demo logins' passwords.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="With --serve: the console's port on 127.0.0.1.")
@pass_ctx
def demo(ctx: CliContext, patrons: int, circulations: int | None, keep: bool, serve: bool,
         port: int) -> None:
    """Build an Evergreen-shaped database, install, answer a request, show the refusals.

    Uses an embedded PostgreSQL unless --dsn names a server (a superuser DSN; the demo
    creates its own database and roles there, prefixed ils_redact_demo_).
    """
    from .. import demo as demo_mod

    text = ctx.fmt == "text"
    err = sys.stderr  # click.get_text_stream warns as deprecated from click 8.5
    tty = err.isatty()

    def progress(stage: str, done: int, total: int) -> None:
        """One line on the terminal, rewritten as the fixture moves through its stages."""
        if not (text and tty):
            return
        width = 24
        filled = width * done // max(total, 1)
        err.write(f"\r   [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {stage:30}")
        if done >= total:
            err.write("\r" + " " * (width + 50) + "\r")
        err.flush()

    say = click.echo if text else (lambda _m: None)
    then = None
    if serve:
        from ..console.demo import serve_demo

        then = functools.partial(serve_demo, database=demo_mod.DEMO_DB, host="127.0.0.1",
                                 port=port, say=say)

    res = demo_mod.run(dsn=ctx.dsn, patrons=patrons,
                       circulations=circulations if circulations is not None else patrons * 10,
                       keep=keep, say=say, progress=progress, then=then)
    if ctx.fmt == "json":
        ctx.emit(demo_mod.summary(res))
    else:
        click.echo("demo: every property held" if res.ok else "demo: A PROPERTY FAILED")
    if not res.ok:
        raise SystemExit(EXIT_VIOLATION)
