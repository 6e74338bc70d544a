"""One library on either engine, as the parity tests see it (tests/test_parity.py,
tests/test_verify_parity.py): Evergreen on PostgreSQL or Koha on MariaDB behind the same
few verbs, so a behaviour both engines share is written once.

Only what differs is here: how the rules file is written, what "nothing installed" and
"the same as before" mean on each server, and the names a test needs (a table to drop
from the rules, a source for a custom report).  Everything else goes through the CLI,
which is the same on both.
"""

# ruff: noqa: S608 - test SQL: names are the test's own role and layer names

from __future__ import annotations

import gzip
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support import run_cli, write_rules
from support import snapshot as pg_snapshot
from support.koha import snapshot as koha_snapshot
from support.koha import write_koha_rules

ENGINES = ["postgresql", pytest.param("mariadb", marks=pytest.mark.mariadb)]

#: (text in the rules file, what it becomes, the relation verify names as unknown)
MISSING = {
    "postgresql": ("  actor.usr_privacy_waiver:", "  actor.usr_waiver:", "actor.usr_waiver"),
    "mariadb": ("  accountlines:", "  account_lines:", "account_lines"),
}

#: a custom statistics report's source and month column, and three refused shapes of it:
#: (group_by, patron_column, what the refusal says)
CUSTOM = {
    "postgresql": ("action.circulation", "xact_start", [
        ("[usr]", "usr", "R-PATRON-KEY-IN-GROUPING"),
        ("[circ_lib, id]", "usr", "R-PATRON-KEY-IN-GROUPING"),
        ("[circ_lib]", "circ_lib", "does not identify a patron")]),
    "mariadb": ("old_issues", "issuedate", [
        ("[borrowernumber]", "borrowernumber", "R-PATRON-KEY-IN-GROUPING"),
        ("[branchcode, issue_id]", "borrowernumber", "R-PATRON-KEY-IN-GROUPING"),
        ("[branchcode]", "branchcode", "does not identify a patron")]),
}


@dataclass
class Library:
    """One engine's database (``support.EgDb`` or ``support.koha.KohaDb``)."""

    engine: str
    db: Any

    @property
    def missing_table(self) -> tuple[str, str, str]:
        return MISSING[self.engine]

    @property
    def custom(self) -> tuple[str, str, list[tuple[str, str, str]]]:
        return CUSTOM[self.engine]

    def rules(self, tmp: Path, edit: Callable[[str], str] | None = None) -> Path:
        if self.engine == "postgresql":
            return write_rules(tmp, self.db.prefix, edit)
        return write_koha_rules(tmp, self.db.prefix, edit)

    def cli(self, rules: Path | None, *args: str) -> subprocess.CompletedProcess:
        """``ils-redact --dsn <superuser/admin DSN> [--rules R] ARGS``."""
        head = ["--dsn", self.db.dsn] + (["--rules", str(rules)] if rules else [])
        return run_cli(*head, *args)

    def snapshot(self) -> dict[str, Any]:
        """What must be the same when nothing should have changed: on PostgreSQL the
        schema dump, roles, policies and memberships; on MariaDB SHOW CREATE of every
        object and the grant-table rows of the database, its layer and its prefix."""
        if self.engine == "postgresql":
            return pg_snapshot(self.db)
        return koha_snapshot(self.db)

    def layer_exists(self) -> bool:
        if self.engine == "postgresql":
            return bool(self.db.scalar("SELECT to_regnamespace('ils_redact') IS NOT NULL"))
        return bool(self.db.scalar("SELECT COUNT(*) FROM information_schema.SCHEMATA "
                                   "WHERE SCHEMA_NAME = %s", (self.db.layer,)))

    def prefixed_roles(self) -> int:
        """Roles and accounts whose names start with this database's prefix."""
        if self.engine == "postgresql":
            return int(self.db.scalar("SELECT count(*) FROM pg_roles WHERE rolname LIKE %s",
                                      (self.db.prefix + "%",)))
        return int(self.db.scalar("SELECT COUNT(*) FROM mysql.user WHERE User LIKE %s",
                                  (self.db.prefix.replace("_", "\\_") + "%",)))

    def execute(self, statement: str) -> list[tuple]:
        """One statement as the superuser (PostgreSQL) or root (MariaDB); its rows."""
        with self.db.connect() as conn:
            cur = conn.execute(statement)
            return list(cur.fetchall()) if cur.description else []

    def install_log(self) -> list[str]:
        """The actions of the layer's install log, oldest first."""
        table = ("ils_redact.install_log" if self.engine == "postgresql"
                 else f"`{self.db.layer}`.install_log")
        return [r[0] for r in self.execute(f"SELECT action FROM {table} ORDER BY id")]

    def drop_a_grant(self) -> None:
        """Revoke, by hand, a privilege the rules give the disclosure role (drift)."""
        role = self.db.role("disclosure")
        if self.engine == "postgresql":
            self.execute(f'REVOKE SELECT (email) ON actor.usr FROM "{role}"')
        else:
            self.execute(f"REVOKE SELECT ON `{self.db.layer}`.borrowers FROM `{role}`")

    def seed_leaks(self) -> tuple[str, str, str]:
        """Grant, by hand, two reads the rules forbid: identity columns outside the
        allow-list to the disclosure role, one relation to the statistics role.  Returns
        (the disclosure check's id, what its finding names, the statistics check's id)."""
        d, st = self.db.role("disclosure"), self.db.role("stats")
        if self.engine == "postgresql":
            self.execute(f'GRANT SELECT (usrname, passwd) ON actor.usr TO "{d}"')
            self.execute(f'GRANT USAGE ON SCHEMA action TO "{st}"')
            self.execute(f'GRANT SELECT (id) ON action.circulation TO "{st}"')
            return ("empirical/disclosure/actor.usr", "usrname, passwd",
                    "empirical/stats/action.circulation")
        db, layer = self.db.name, self.db.layer
        self.execute(f"GRANT SELECT (email, password) ON `{db}`.borrowers TO `{d}`")
        self.execute(f"GRANT SELECT ON `{layer}`.scope TO `{st}`")
        return (f"empirical/disclosure/{db}.borrowers", "email, password (2 of",
                f"empirical/stats/{layer}.scope")

    def staff(self, rules: Path, name: str, *kinds: str) -> str:
        """A staff login ``<prefix>name`` in the given role kinds, made by ``staff grant``
        (MariaDB: an account ``name@%`` with the tests' password)."""
        if self.engine == "mariadb":
            return str(self.db.login(name, *kinds))
        login = f"{self.db.prefix}{name}"
        for i, kind in enumerate(kinds):
            res = self.cli(rules, "staff", "grant", login, "--role", kind,
                           *(["--create"] if i == 0 else []))
            assert res.returncode == 0, res.stderr
        return login

    def cli_as(self, login: str, rules: Path, *args: str) -> subprocess.CompletedProcess:
        """``ils-redact`` as a staff login."""
        from support.koha import PASSWORD

        dsn = (self.db.dsn_as(login) if self.engine == "postgresql"
               else self.db.dsn_as(login, PASSWORD))
        return run_cli("--dsn", dsn, "--rules", str(rules), *args)

    def card_of(self, patron: int) -> str:
        """An active card (barcode) of ``patron``."""
        if self.engine == "postgresql":
            return str(self.db.scalar("SELECT barcode FROM actor.card WHERE usr = %s AND "
                                      "active ORDER BY id LIMIT 1", (patron,)))
        return str(self.db.scalar(f"SELECT cardnumber FROM `{self.db.name}`.borrowers "
                                  "WHERE borrowernumber = %s", (patron,)))

    def surnames(self, patrons: list[int]) -> set[str]:
        """The patrons' family names as the ILS holds them (read as the superuser)."""
        if self.engine == "postgresql":
            return {r[0] for r in self.execute(
                "SELECT family_name FROM actor.usr WHERE id IN ("
                + ", ".join(str(int(n)) for n in patrons) + ")")}
        return {r[0] for r in self.execute(
            f"SELECT surname FROM `{self.db.name}`.borrowers WHERE borrowernumber IN ("
            + ", ".join(str(int(n)) for n in patrons) + ")")}

    @property
    def surname_column(self) -> str:
        return "actor.usr.family_name" if self.engine == "postgresql" else "borrowers.surname"

    def reference_catalog_file(self, tmp: Path) -> Path:
        """The adapter's packaged schema facts as a plain JSON file (``plan --catalog``)."""
        from ils_redact.adapters import get_adapter

        adapter = get_adapter("evergreen" if self.engine == "postgresql" else "koha")
        out = tmp / f"{adapter.name}_catalog.json"
        with gzip.open(adapter.reference_catalog_path, "rb") as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)
        return out


def line_of(path: Path, needle: str) -> int:
    """The first line of ``path`` (1-based) that holds ``needle``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(i for i, line in enumerate(lines, start=1) if needle in line)


def with_custom_reports(yaml_reports: str) -> Callable[[str], str]:
    """A rules edit that puts ``yaml_reports`` (indented list items) under
    ``statistics.reports``."""
    def edit(text: str) -> str:
        assert "  reports: []\n" in text
        return text.replace("  reports: []\n", "  reports:\n" + yaml_reports, 1)
    return edit
