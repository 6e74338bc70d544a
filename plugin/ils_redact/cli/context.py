"""State shared by the commands of one invocation: options, rules, connection, output."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import click

from ..adapters import Adapter, get_adapter
from ..errors import IlsRedactError
from ..rules import Rules, load_rules

ENGINE_NAMES = {"postgresql": "PostgreSQL", "mariadb": "MariaDB"}


def dsn_engine(dsn: str) -> str:
    """``mariadb`` for a mysql:// or mariadb:// URI, else ``postgresql`` (URI or libpq
    key=value conninfo)."""
    scheme = dsn.split("://", 1)[0].lower() if "://" in dsn else ""
    return "mariadb" if scheme in ("mysql", "mariadb") else "postgresql"


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
    def backend(self) -> Any:
        from ..backends import get_backend

        return get_backend(self.adapter.engine)

    def require_dsn(self) -> str:
        if not self.dsn:
            raise IlsRedactError("no database given: pass --dsn or set ILS_REDACT_DSN")
        return self.dsn

    def connect(self, **kwargs: Any) -> Any:
        dsn = self.require_dsn()
        engine = self.adapter.engine
        if dsn_engine(dsn) != engine:
            raise IlsRedactError(
                f"the rules are for {self.adapter.name} on {ENGINE_NAMES[engine]}, but --dsn "
                f"names a {ENGINE_NAMES[dsn_engine(dsn)]} server",
                hint="mysql://user@host:3306/koha for Koha, postgresql://... for Evergreen; "
                     "or pass the other adapter's rules with --rules")
        return self.backend.connect(dsn, debug=self.debug, **kwargs)

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


pass_ctx = click.make_pass_decorator(CliContext)
