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
from .context import CURRENT, CliContext, read_only_failure

COMMAND_MODULES = ("core", "demo", "disclosure", "gate", "query", "serve", "stats", "verify")


#: the group's options a sysadmin also writes after the subcommand (``verify --format
#: json``); those taking a value, then the flags
GLOBAL_VALUED = frozenset({"--dsn", "--rules", "--format", "--commit-timeout"})
GLOBAL_FLAGS = frozenset({"--debug"})


def hoist_global_options(group: click.Group, ctx: click.Context, args: list[str]) -> list[str]:
    """Move the group's options written after the subcommand in front of it.

    Sysadmins type ``ils-redact verify --format json``; click only reads group options
    before the subcommand.  An option the subcommand defines itself keeps its own meaning
    (``export --format csv`` is the file's format), and a value of one of the
    subcommand's options is never read as an option (``--reason --format``)."""
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "--":
        name = args[i].split("=", 1)[0]
        i += 2 if name in GLOBAL_VALUED and "=" not in args[i] else 1
    cmd: click.Command = group
    j = i
    while isinstance(cmd, click.Group) and j < len(args):
        sub = cmd.get_command(ctx, args[j])
        if sub is None:
            break
        cmd, j = sub, j + 1
    if cmd is group:
        return args
    own: dict[str, click.Parameter] = {}
    for p in cmd.params:
        for opt in [*getattr(p, "opts", []), *getattr(p, "secondary_opts", [])]:
            own[opt] = p
    moved: list[str] = []
    keep: list[str] = []
    k = j
    while k < len(args):
        a = args[k]
        if a == "--":
            keep.extend(args[k:])
            break
        name = a.split("=", 1)[0]
        if name in own:
            p = own[name]
            takes_value = (isinstance(p, click.Option) and not p.is_flag and not p.count
                           and "=" not in a)
            keep.extend(args[k:k + 2] if takes_value else [a])
            k += 2 if takes_value else 1
        elif name in GLOBAL_FLAGS:
            moved.append(a)
            k += 1
        elif name in GLOBAL_VALUED and ("=" in a or k + 1 < len(args)):
            moved.extend([a] if "=" in a else args[k:k + 2])
            k += 1 if "=" in a else 2
        else:
            keep.append(a)
            k += 1
    return [*args[:i], *moved, *args[i:j], *keep]


class Cli(click.Group):
    """The top-level group: accepts its options after the subcommand as well."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(self, ctx, list(args)))


@click.group(cls=Cli,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--dsn", envvar="ILS_REDACT_DSN", metavar="DSN",
              help="libpq conninfo or URI of the ILS database (env ILS_REDACT_DSN).")
@click.option("--rules", "rules_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Rules file (default ./redaction_rules.yaml if present, else the packaged "
                   "Evergreen default).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Output format.")
@click.option("--debug", is_flag=True, help="Show tracebacks and SQL as it runs.")
@click.option("--commit-timeout", type=click.FloatRange(min=0.1), default=30.0,
              show_default=True, metavar="SECONDS",
              help="How long to wait for the commit of an audit entry (an export, a request "
                   "change): with synchronous replication and no standby it would wait for "
                   "ever, holding the audit log's lock.")
@click.version_option(package_name="ils-redact")
@click.pass_context
def cli(ctx: click.Context, dsn: str | None, rules_path: str | None, fmt: str,
        debug: bool, commit_timeout: float) -> None:
    """Make library-records confidentiality hold inside the ILS database.

    Rules (redaction_rules.yaml) -> plan (reviewable SQL) -> install.
    """
    from ..disclosure import db

    db.COMMIT_TIMEOUT = commit_timeout
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
    except Exception as exc:
        refused = None if _STATE["debug"] else read_only_failure(exc)
        if refused is None:
            raise
        click.echo(f"ils-redact: error: {refused}", err=True)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        engine = CURRENT.get("engine")
        click.echo(f"ils-redact: {engine.interrupted if engine else 'interrupted'}",
                   err=True)
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)
