"""Errors a person can act on.

Two families, following sqlfluff and migra: a *user error* (bad rules file, unknown table,
no connection) stops the command with exit code 2 and one clean line naming the object; a
*refusal* (a request or query the law or the rules do not allow, a check that found
violations) is an expected outcome with exit code 1.  Tracebacks are for ``--debug`` only.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_VIOLATION = 1
EXIT_USAGE = 2


class IlsRedactError(Exception):
    """Base class: a problem the user must fix (configuration, usage, connection)."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class RulesError(IlsRedactError):
    """The rules file is malformed or names something that does not exist.

    ``where`` is ``file:line`` so an editor can jump to it.
    """

    def __init__(
        self,
        message: str,
        *,
        path: Path | str | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.line = line
        where = self.path or "<rules>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {message}", hint=hint)


class RulesErrors(IlsRedactError):
    """Several rules errors at once: a reviewer wants the whole list, not one per run."""

    def __init__(self, errors: list[RulesError]) -> None:
        self.errors = errors
        head = str(errors[0])
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(head + more)

    def lines(self) -> list[str]:
        return [str(e) for e in self.errors]


class CatalogError(IlsRedactError):
    """A catalog file or the live catalog cannot be read."""


class ConnectionFailed(IlsRedactError):
    """The database could not be reached with the DSN given."""


class ReadOnlyServer(IlsRedactError):
    """A command that writes was pointed at a server that cannot take writes: a hot
    standby or a read-only replica (exit 2: the fix is the DSN, not the request)."""


class StateError(IlsRedactError):
    """The database is not in a state the command can work from (e.g. not installed,
    a role that belongs to another database, an object the layer did not create)."""


class Refused(IlsRedactError):
    """The request is understood and refused: the law or the rules forbid it.

    ``audit_seq`` is the audit entry that records the refusal, when one does and its
    number is known; ``logged`` says whether an audit entry records it at all (the
    layer's approve and end functions log their refusals without returning the
    number).  Callers read these fields, never the message text."""

    exit_code = EXIT_VIOLATION

    def __init__(self, message: str, *, hint: str | None = None,
                 audit_seq: int | None = None, logged: bool | None = None) -> None:
        super().__init__(message, hint=hint)
        self.audit_seq = audit_seq
        self.logged = audit_seq is not None if logged is None else logged


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """Nearest valid name, as sqlglot and sqlfluff phrase it, or None."""
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"did you mean {matches[0]}?" if matches else None


class CommitUnconfirmed(StateError):
    """COMMIT did not finish in time: committed locally but not confirmed by the
    synchronous standby, or not committed at all."""


class QueryRefused(Refused):
    """The gate (or the request check) refused: nothing was executed."""

    def __init__(self, message: str, findings: Sequence[Any] = (),
                 audit_seq: int | None = None) -> None:
        super().__init__(message, audit_seq=audit_seq)
        self.findings = tuple(findings)


class QueryFailed(Refused):
    """The database refused or stopped the gated query.  ``message`` names the SQLSTATE
    class only; ``detail`` is the server's full text, for ``--debug``."""

    def __init__(self, message: str, *, sqlstate: str | None, detail: str,
                 audit_seq: int | None = None) -> None:
        super().__init__(message, audit_seq=audit_seq)
        self.sqlstate = sqlstate
        self.detail = detail
