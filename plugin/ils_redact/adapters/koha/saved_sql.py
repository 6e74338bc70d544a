"""Koha's own saved reports (the ``saved_sql`` table), classified by the query gate.

A Koha library keeps its report SQL in the database, written by staff over the years
and run from the staff client as the Koha database account: with every privilege on
every table.  ``ils-redact lint --koha-saved-sql`` reads them and sorts each one with the
same linter as report files (:mod:`ils_redact.gate.lint`), in the MySQL dialect against
the live Koha catalog, so a library sees which of its reports expose circulation data.

Koha's runtime parameters (``<<Enter a date|date>>``, ``<<Branch|branches>>``) are not
SQL; each becomes a string literal before the check, which changes no table or column
the query reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ...catalog import Catalog
from ...gate.lint import Linter, LintRecord
from ...rules import Rules

#: ``<<label>>`` and ``<<label|authorised value category>>``
PARAMETER = re.compile(r"<<[^<>]*>>")


@dataclass(frozen=True)
class SavedReport:
    id: int
    name: str
    sql: str

    @property
    def label(self) -> str:
        return f"saved_sql {self.id}: {self.name}"


def read_reports(conn: Any, database: str) -> list[SavedReport]:
    """Every saved report of the Koha database, by id, from the base table only: a view
    named ``saved_sql`` (the Koha account may plant one) would run its author's code
    with the privileges of whoever lints (backends/mariadb/basetable.py)."""
    from ...backends.mariadb.basetable import read_base_table

    rows = read_base_table(conn, database, "saved_sql")
    return sorted((SavedReport(int(r["id"]), _text(r.get("report_name")),
                               _text(r.get("savedsql"))) for r in rows),
                  key=lambda r: r.id)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value or "")


def checkable(sql: str) -> str:
    """The report with Koha's runtime parameters replaced by string literals."""
    return PARAMETER.sub("'koha-parameter'", sql)


def lint_reports(reports: list[SavedReport], rules: Rules, catalog: Catalog) -> list[LintRecord]:
    linter = Linter(rules, catalog, dialect="mysql", search_path=(catalog.database,))
    return [linter.lint_text(checkable(r.sql), r.label) for r in reports]


def lint_saved_sql(conn: Any, rules: Rules) -> list[LintRecord]:
    """Read and classify every saved report of the connection's Koha database."""
    from ...backends.mariadb import read_catalog
    from ...backends.mariadb.connection import current_database

    catalog = read_catalog(conn)
    return lint_reports(read_reports(conn, current_database(conn)), rules, catalog)
