"""What verify reports: checks that pass or fail, and findings as records.

A finding is an expected outcome, not an error (STYLE 7): a stable code, a severity, the
object concerned, why it matters in one line, and the fix.  A *check* is one thing that is
proven (the catalog of one role, one relation read as one role, one hazard class, the
drift); it passes when it holds no violation.  Checks are what JUnit and the pytest plugin
turn into test cases, so their ids are stable: ``catalog/disclosure``,
``empirical/disclosure/action.circulation``, ``hazard/owner-rights-view``, ``drift``.

User errors (no connection, a bad rules file, not installed) are exceptions (exit 2).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..text import printable

VIOLATION = "violation"
#: reported, exit 0 unless ``--strict``: a known default that weakens defence in depth
#: (TEMP through PUBLIC), or something verify could not check
WARNING = "warning"

#: code -> one-line meaning.  Codes are stable; messages may improve.
CODES: dict[str, str] = {
    # catalog proof: effective privileges against the rules' allow-list
    "C-MEMBERSHIP": "a restricted role can act as another role (SET ROLE or inherited rights)",
    "C-ATTRIBUTE": "SUPERUSER, BYPASSRLS or CREATEROLE on a restricted role or a role it reaches",
    "C-OWNER": "a restricted role (or a role it reaches) owns an object: owners bypass RLS",
    "C-PRIVILEGE": "a privilege the rules do not give (write, sequence, column, CREATE)",
    "C-TABLE-SELECT": "table-level SELECT: covers every column, including columns added later",
    "C-RLS-DISABLED": "row-level security is off on a table a restricted role reads",
    "C-MISSING": "a privilege the rules give is not held: the role cannot do its job",
    "C-LAYER-FUNCTION": "a layer function a restricted role calls was altered (owner, search_path)",
    "C-LOGIN": "a login that reaches a restricted role bypasses it or holds more than it allows",
    "C-ACCESS-MODE": "under disclosure.access: function, a login can act as the disclosure role "
                     "(direct SQL instead of the logged export)",
    # MariaDB (Koha): privileges at levels PostgreSQL does not have, and the definer account
    "C-GLOBAL": "a global privilege (ON *.*) on a restricted role, through a role or PUBLIC",
    "C-DATABASE": "a database-level privilege (ON db.*) on a restricted role: every table, "
                  "those added later too",
    "C-DEFINER": "the layer's definer account (or definer role) holds more than the layer "
                 "gives it or a role, or the definer role is granted to someone",
    # empirical proof: the same, as the role, on the live database
    "E-READABLE": "the role read columns the rules close to it",
    "E-CLOSED": "the role could not read columns the rules give it",
    "E-ROWS": "the role saw rows outside the scope of an approved request",
    "E-FUNCTION": "the role may call a function the rules do not give it",
    "E-FUNCTION-DENIED": "the role may not call a function the rules give it",
    "E-PROBE-ERROR": "a probe failed for another reason: that part is not proven",
    # hazards: configurations that void the rules
    "H-OWNER-RIGHTS-VIEW": "a view running with its owner's rights over protected data is granted",
    "H-SECURITY-DEFINER": "a SECURITY DEFINER function a restricted role can execute",
    "H-INHERITANCE-PARENT": "reading an inheritance parent returns a protected child's rows",
    "H-TEMP": "TEMP on the database: pg_temp functions and tables for a restricted role",
    "H-PUBLIC-GRANT": "a grant to PUBLIC on a protected relation",
    "H-DEFAULT-PRIVILEGES": "default privileges open future tables to PUBLIC or a restricted role",
    "H-UNCLASSIFIED-RELATION": "a relation the rules do not classify (new since they were written)",
    "H-UNCLASSIFIED-COLUMN": "a column of an identity table the rules do not classify",
    "H-BACKUP-ROLE": "a backup role (pg_dump) that row-level security now breaks",
    "H-PUBLICATION": "a publication carries protected tables to subscribers outside the layer",
    "H-LOGICAL-SLOT": "a logical slot whose output plugin decodes every table's changes",
    "H-REPLICATION-LOGIN": "a login of a restricted role holds REPLICATION (pg_basebackup "
                           "copies the whole cluster)",
    "H-REPORTER-SUPERUSER": "the ILS reporter connects as a role that bypasses row-level security",
    "H-REPORTER-UNKNOWN-ROLE": "the ILS reporter's role does not exist here: not checked",
    "H-ANONYMOUS": "an anonymous account (''@host) holds or can take a restricted role",
    "H-DEFINER-UNLOCKED": "the layer's definer account is not locked: a login reads what the "
                          "views read",
    "H-PROXY": "an account may log in as the layer's definer or as a login that holds a "
               "restricted or admin role (PROXY)",
    "H-STALE-PROBE": "a probe login left on the server by a verify that did not finish",
    "H-REPLICA-FILTER": "a replication filter lets the Koha tables through but not the layer "
                        "database or the grant changes: revokes never reach the replica",
    "H-DELAYED-REPLICA": "a delayed replica (MASTER_DELAY): a revoke reaches it that late",
    "H-ROW-COUNTERS": "a restricted role may read the row counters (pg_stat_*_tables, "
                      "pg_stat_get_*): they count rows a row policy hides",
    "H-EXPLAIN-ANALYZE": "disclosure.access: role: the disclosure role's logins count hidden "
                         "rows and link their columns through EXPLAIN ANALYZE (a warning: "
                         "the mode's known limit)",
    "H-LAYER-OWNER": "a layer object is owned by a role a login can reach, or by a role that "
                     "is not one of the layer's owner roles: its members may alter, drop or "
                     "grant it",
    "H-CLOCK": "the layer's clock follows one a session sets (MariaDB --sysdate-is-now)",
    "H-TRACE": "the trace of lookups and exports is missing or transactional (MariaDB)",
    "H-TRACE-UNLOGGED": "an export whose audit entry was rolled back after the data left",
    "H-TRACE-LOOKUP": "patrons looked up that no request named (a warning)",
    "H-NAMESAKE": "a staff login shares its user name with another account (MariaDB)",
    "H-PLANTED-VIEW": "an SQL SECURITY INVOKER view with a Koha table's name: whoever reads "
                      "it runs its routines with their own privileges (MariaDB)",
    "H-PLANTED-ROUTINE": "an SQL SECURITY INVOKER routine such a view calls (MariaDB)",
    "H-XA-PREPARED": "a prepared XA transaction (it may hold the audit lock across "
                     "disconnects and restarts; a warning) (MariaDB)",
    "H-AUDIT-LOCK-HELD": "a transaction holds the audit lock others wait for (a warning) "
                         "(MariaDB)",
    "H-SCOPE-UNAPPROVED": "live scope rows no approved, unexpired request accounts for",
    # drift
    "D-DRIFT": "the plan the rules produce today differs from what the catalog holds",
    "D-TEMPORARY-OBJECT": "a layer role holds a privilege on an object in a session's "
                          "temporary schema (planted by another login): reported, never "
                          "named in SQL; it goes with that session",
}


@dataclass(frozen=True)
class Finding:
    """One reason a check does not hold.  ``object`` names what is wrong (a relation,
    ``relation.column``, a function signature, a role); ``role`` the restricted role kind
    concerned, if any."""

    code: str
    object: str
    why: str
    fix: str
    severity: str = VIOLATION
    role: str | None = None

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"unknown finding code {self.code}")
        # names come from the catalog, where anyone may create one: a control character
        # (a newline, a terminal escape) is shown as \xNN, never sent to a terminal or a
        # report (threat model rows 16 and 24)
        for name in ("object", "why", "fix"):
            object.__setattr__(self, name, printable(getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "severity": self.severity, "object": self.object,
                "role": self.role, "why": self.why, "fix": self.fix}

    def __str__(self) -> str:
        return f"{self.code} {self.object}: {self.why} (fix: {self.fix})"


@dataclass
class Check:
    """One thing proven.  ``detail`` says what was looked at (for the report)."""

    id: str
    title: str
    findings: list[Finding] = field(default_factory=list)
    detail: str = ""
    #: why the check did not run (e.g. no --ils-config given); None when it ran
    skipped: str | None = None

    @property
    def group(self) -> str:
        return self.id.split("/", 1)[0]

    def violations(self, strict: bool = False) -> list[Finding]:
        return [f for f in self.findings if f.severity == VIOLATION or strict]

    def status(self, strict: bool = False) -> str:
        """pass | warn | fail | skipped"""
        if self.skipped is not None:
            return "skipped"
        if self.violations(strict):
            return "fail"
        return "warn" if self.findings else "pass"

    def to_dict(self, strict: bool = False) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "status": self.status(strict),
                "detail": self.detail, "skipped": self.skipped,
                "findings": [f.to_dict() for f in self.findings]}


def run_parts(parts: Iterable[tuple[str, Any]], ctx: Any,
              timings: dict[str, float]) -> list[Check]:
    """The checks of each part of verify (a module with ``run(ctx)``), in order, with each
    part's time in seconds put in ``timings`` under its name: both servers run them so."""
    checks: list[Check] = []
    for name, part in parts:
        t = time.perf_counter()
        checks += part.run(ctx)
        timings[name] = time.perf_counter() - t
    return checks
