"""``ils-redact serve``: the staff console in a browser.

Staff log in with their own database login and password; the console connects as that
login for the session and holds no credential of its own, so the database makes every
check (two-person rule, scope, expiry, audit).  ``--dsn`` names the server and the
database only, without a password.
"""

from __future__ import annotations

from pathlib import Path

import click

from . import cli
from .context import CliContext, pass_ctx


@cli.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but loopback needs TLS or --behind-proxy.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--certfile", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="TLS certificate (PEM, with its chain).")
@click.option("--keyfile", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="TLS private key (PEM).")
@click.option("--behind-proxy", is_flag=True,
              help="A TLS-terminating reverse proxy is in front: trust its X-Forwarded-For "
                   "and -Proto (one hop) and send Secure cookies.")
@click.option("--idle-timeout", default=15, show_default=True, type=click.IntRange(1, 24 * 60),
              help="Minutes without a request after which a session ends (and its database "
                   "connection is closed).")
@click.option("--library", help="The library's name, printed on forms and documents.")
@click.option("--verify-report", type=click.Path(dir_okay=False, path_type=Path),
              help="A report written by `ils-redact --format json verify`, shown to admins "
                   "(read only; the console never runs verify).")
@pass_ctx
def serve(ctx: CliContext, host: str, port: int, certfile: Path | None, keyfile: Path | None,
          behind_proxy: bool, idle_timeout: int, library: str | None,
          verify_report: Path | None) -> None:
    """Serve the staff console (requests, approval, export, forms, audit, statistics)."""
    import logging

    from ..console.app import ConsoleConfig
    from ..console.server import serve_forever

    logging.basicConfig(level=logging.DEBUG if ctx.debug else logging.INFO,
                        format="%(asctime)s %(name)s: %(message)s")
    config = ConsoleConfig(dsn=ctx.require_dsn(), rules=ctx.rules, library=library,
                           idle_timeout=idle_timeout * 60,
                           tls=certfile is not None or behind_proxy,
                           behind_proxy=behind_proxy, verify_report=verify_report,
                           debug=ctx.debug)
    serve_forever(config, host, port, certfile=certfile, keyfile=keyfile,
                  on_ready=lambda url: click.echo(
                      f"ils-redact console on {url} (Ctrl-C stops it; staff log in with "
                      "their own database login)", err=True))
