"""The ``ils-redact`` command: a thin click layer over library functions.

Every command calls one function that is also usable from Python and from tests; this
package only parses options, picks the output format and maps outcomes to exit codes:
0 success, 1 a check found violations or a request was refused, 2 usage, configuration
or connection error.  Errors are one clean line on stderr; ``--debug`` adds the traceback.

Command modules (``cli/*.py``) register themselves on :data:`cli` when imported below.
"""

from __future__ import annotations

import sys
from importlib import import_module

import click

from ..errors import EXIT_USAGE, IlsRedactError, RulesErrors
from .context import CliContext

COMMAND_MODULES = ("core", "demo", "disclosure", "gate", "query", "stats", "verify")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--dsn", envvar="ILS_REDACT_DSN", metavar="DSN",
              help="libpq conninfo or URI of the ILS database (env ILS_REDACT_DSN).")
@click.option("--rules", "rules_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Rules file (default ./redaction_rules.yaml if present, else the packaged "
                   "Evergreen default).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Output format.")
@click.option("--debug", is_flag=True, help="Show tracebacks and SQL as it runs.")
@click.version_option(package_name="ils-redact")
@click.pass_context
def cli(ctx: click.Context, dsn: str | None, rules_path: str | None, fmt: str,
        debug: bool) -> None:
    """Make library-records confidentiality hold inside the ILS database.

    Rules (redaction_rules.yaml) -> plan (reviewable SQL) -> install (one transaction).
    """
    ctx.obj = CliContext(dsn=dsn, rules_path=rules_path, fmt=fmt, debug=debug)
    _STATE["debug"] = debug


_STATE: dict[str, bool] = {"debug": False}

for _mod in COMMAND_MODULES:
    import_module(f"{__name__}.{_mod}")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: exit codes and one-line errors."""
    try:
        rv = cli.main(args=argv, prog_name="ils-redact", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("ils-redact: aborted", err=True)
        sys.exit(EXIT_USAGE)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_USAGE)
    except IlsRedactError as exc:
        if _STATE["debug"]:
            raise
        if isinstance(exc, RulesErrors):
            for line in exc.lines():
                click.echo(f"ils-redact: error: {line}", err=True)
        else:
            click.echo(f"ils-redact: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("ils-redact: interrupted; nothing was committed", err=True)
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)
