"""State shared by the commands of one invocation: options, rules, connection, output."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import click

from ..adapters import Adapter, get_adapter
from ..backends import LABELS, dsn_engine, get_backend
from ..engine import Engine
from ..errors import IlsRedactError
from ..rules import Rules, load_rules

#: engine name -> how people call the server (kept for callers of this name)
ENGINE_NAMES = LABELS

__all__ = ["ENGINE_NAMES", "CliContext", "dsn_engine", "pass_ctx", "read_only_failure"]

#: the engine of this invocation once known (``main`` says what an interruption left)
CURRENT: dict[str, Engine] = {}


@dataclass
class CliContext:
    dsn: str | None
    rules_path: str | None
    fmt: str
    debug: bool

    @cached_property
    def rules(self) -> Rules:
        return load_rules(self.rules_path)

    @cached_property
    def adapter(self) -> Adapter:
        return get_adapter(self.rules.adapter)

    @property
    def engine(self) -> Engine:
        """The engine of the rules' ILS: everything engine-specific is asked of it."""
        engine = get_backend(self.adapter.engine)
        CURRENT["engine"] = engine
        return engine

    #: the name the commands used before the engine interface
    backend = engine

    def require_dsn(self) -> str:
        if not self.dsn:
            raise IlsRedactError("no database given: pass --dsn or set ILS_REDACT_DSN")
        return self.dsn

    def connect(self, *, write: str | None = None, **kwargs: Any) -> Any:
        """Open the connection.  ``write`` names a command that writes (``export``,
        ``request approve``, ...): on a hot standby or a read-only replica it is refused in
        one line (exit 2) before anything is printed or sent."""
        dsn = self.require_dsn()
        engine = self.engine
        if dsn_engine(dsn) != engine.name:
            raise IlsRedactError(
                f"the rules are for {self.adapter.name} on {engine.label}, but --dsn "
                f"names a {LABELS[dsn_engine(dsn)]} server",
                hint="mysql://user@host:3306/koha for Koha, postgresql://... for Evergreen; "
                     "or pass the other adapter's rules with --rules")
        conn = engine.connect(dsn, debug=self.debug, **kwargs)
        if write:
            try:
                engine.require_primary(conn, write)
            except BaseException:
                conn.close()
                raise
        return conn

    # -- output ----------------------------------------------------------------------
    def emit(self, data: Any, text: Callable[[Any], str] | str | None = None) -> None:
        """JSON for ``--format json``; otherwise the text rendering."""
        if self.fmt == "json":
            click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))
        elif callable(text):
            click.echo(text(data))
        elif text is not None:
            click.echo(text)
        else:
            click.echo(json.dumps(data, indent=2, default=str))


def read_only_failure(exc: BaseException) -> str | None:
    """One line for a write the server refused because it is read-only, when the check
    at connection time could not see it coming (a server demoted while the command ran,
    a read-only transaction): PostgreSQL's SQLSTATE 25006, MariaDB's error 1290."""
    from ..backends import engines

    for engine in engines():
        refused = engine.write_refused(exc)
        if refused is not None:
            return refused
    return None


pass_ctx = click.make_pass_decorator(CliContext)
