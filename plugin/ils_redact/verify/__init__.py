"""``ils-redact verify``: prove the rules on a live database, as each restricted role.

Run after every ILS upgrade and in a library's CI.  Four parts, each a list of checks:

1. catalog proof (``catalog_proof``): effective privileges of each restricted role through
   PUBLIC and the whole membership graph, against the allow-list (``expect``);
2. empirical proof (``empirical``): as each role, read every relation and call the
   functions that run with someone else's rights;
3. hazards (``hazards``): configurations that void the rules;
4. drift (``drift``): what ``ils-redact plan`` would change.

Verify changes nothing: each engine reads in a read-only transaction that it rolls back
(on MariaDB a temporary probe login acts as each role and is dropped before verify
returns).  Each engine's checks are its own (``backends/<engine>/verify/``, asked through
``Engine.verify``, which also says what account it needs); they share the vocabulary of
``ils_redact.checks``: checks, findings, the report.

Public API: :func:`verify` -> :class:`Report` (``exit_code`` 0 all hold, 1 a violation;
errors raise :class:`~ils_redact.errors.IlsRedactError`, exit 2), :class:`Check`,
:class:`Finding`, :data:`CODES`, :func:`junit_error`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..adapters import get_adapter
from ..backends import get_backend
from ..checks.findings import CODES, VIOLATION, WARNING, Check, Finding
from ..checks.report import Report, junit_error
from ..errors import IlsRedactError
from ..rules import Rules
from ..stats import all_reports


def verify(conn: Any, rules: Rules, *, ils_config: Path | str | None = None,
           backup_roles: Iterable[str] = (), exhaustive: bool = False,
           strict: bool = False) -> Report:
    """Every check, on the database ``conn`` is connected to (PostgreSQL: as a superuser,
    idle; MariaDB: as the administrator that ran install), by the engine of the rules'
    ILS; the connection must belong to it."""
    engine = get_backend(get_adapter(rules.adapter).engine)
    if not engine.owns(conn):
        raise IlsRedactError(f"the rules are for {engine.label}, but the connection is not "
                             "to such a server")
    report: Report = engine.verify(conn, rules, reports=all_reports, ils_config=ils_config,
                                   backup_roles=tuple(backup_roles), exhaustive=exhaustive,
                                   strict=strict)
    return report


__all__ = ["CODES", "VIOLATION", "WARNING", "Check", "Finding", "IlsRedactError", "Report",
           "junit_error", "verify"]
