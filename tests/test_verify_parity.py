"""ils-redact verify where both engines behave alike, written once and run on each:
Evergreen on PostgreSQL and Koha on MariaDB (``-m "not mariadb"`` leaves the second out).

What is engine-specific stays in tests/test_verify_pg.py and tests/koha/test_verify.py;
here the report's shape (JUnit, text), rules naming a table the database lacks, and a
database without the layer.  Real servers only, the real console script in a subprocess.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support import write_rules
from support.koha import write_koha_rules
from support.koha_verify import verify_cli as koha_verify_cli
from support.verify import verify_cli as pg_verify_cli

ENGINES = ["postgresql", pytest.param("mariadb", marks=pytest.mark.mariadb)]


@dataclass
class Library:
    """One engine's database as these tests see it."""

    engine: str
    db: Any  # support.EgDb | support.koha.KohaDb
    #: (text in the rules file, what it becomes, the relation verify names as unknown)
    missing_table: tuple[str, str, str]

    def rules(self, tmp: Path, edit: Callable[[str], str] | None = None) -> Path:
        if self.engine == "postgresql":
            return write_rules(tmp, self.db.prefix, edit)
        return write_koha_rules(tmp, self.db.prefix, edit)

    def verify(self, tmp: Path, *args: str, **kw: Any) -> Any:
        run = pg_verify_cli if self.engine == "postgresql" else koha_verify_cli
        return run(self.db, tmp, *args, **kw)


MISSING = {
    "postgresql": ("  actor.usr_privacy_waiver:", "  actor.usr_waiver:", "actor.usr_waiver"),
    "mariadb": ("  accountlines:", "  account_lines:", "account_lines"),
}


@pytest.fixture(scope="module", params=ENGINES)
def installed(request: pytest.FixtureRequest) -> Library:
    """An installed library, shared by the tests that only read it: Evergreen as
    installed; Koha with the staff of a real workflow and an approved request (a scope
    that is not the probe's)."""
    engine = request.param
    if engine == "postgresql":
        return Library(engine, request.getfixturevalue("eg_installed_module"),
                       MISSING[engine])
    from support.koha_workflow import Staff

    db = request.getfixturevalue("installed_module")
    staff = Staff.create(db)
    staff.request(staff.alice, [101, 202], grantee=staff.dora, approve_as=staff.bob)
    return Library(engine, db, MISSING[engine])


@pytest.fixture(params=ENGINES)
def not_installed(request: pytest.FixtureRequest) -> Library:
    engine = request.param
    db = request.getfixturevalue("eg_db" if engine == "postgresql" else "koha")
    return Library(engine, db, MISSING[engine])


def test_not_installed_is_an_error_with_a_junit_error(not_installed: Library,
                                                      tmp_path: Path) -> None:
    db = not_installed.db
    run = not_installed.verify(tmp_path)
    assert run.returncode == 2
    assert f"ils-redact is not installed in database {db.name}" in run.stderr
    err = run.junit_root().find("./testsuite/testcase/error")
    assert err is not None and "not installed" in err.get("message")


def test_rules_naming_a_missing_table_are_an_error(installed: Library,
                                                   tmp_path: Path) -> None:
    old, new, unknown = installed.missing_table
    rules = installed.rules(tmp_path, lambda t: t.replace(old, new, 1))
    run = installed.verify(tmp_path, rules=rules)
    assert run.returncode == 2
    assert f"unknown relation {unknown}" in run.stderr


def test_junit_has_one_case_per_check(installed: Library, tmp_path: Path) -> None:
    db = installed.db
    run = installed.verify(tmp_path)
    assert run.returncode == 0, run.explain()
    root = run.junit_root()
    cases = root.findall("./testsuite/testcase")
    assert int(root.get("tests")) == len(cases) == len(run.data["checks"])
    assert root.get("failures") == "0" and root.get("skipped") == "1"
    names = {(c.get("classname"), c.get("name")) for c in cases}
    assert ("ils_redact.verify.catalog", "disclosure") in names
    assert ("ils_redact.verify", "drift") in names
    if installed.engine == "postgresql":
        assert ("ils_redact.verify.empirical.disclosure", "action.circulation") in names
        assert ("ils_redact.verify.hazard", "owner-rights-view") in names
        temp = next(c for c in cases if c.get("name") == "temp")
        assert temp.find("failure") is None and "warning" not in temp.find("system-out").text
        skipped = next(c for c in cases if c.get("name") == "reporter")
        assert "--ils-config" in skipped.find("skipped").get("message")
    else:
        assert ("ils_redact.verify.catalog", "definer") in names
        assert ("ils_redact.verify.empirical.disclosure", f"{db.name}.issues") in names
        assert ("ils_redact.verify.hazard", "anonymous") in names
        props = {p.get("name"): p.get("value") for p in root.find("./testsuite/properties")}
        assert props["database"] == db.name and "MariaDB" in props["server_version"]


def test_text_report(installed: Library, tmp_path: Path) -> None:
    db = installed.db
    run = installed.verify(tmp_path, fmt="text")
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "verify: all rules hold:" in out and "(exit 0)" in out
    if installed.engine == "postgresql":
        assert "catalog/disclosure" in out and "empirical/disclosure" in out
        rows = {line.split()[0]: line.split()[1] for line in out.splitlines()
                if line.startswith("hazard/")}
        assert rows["hazard/temp"] == rows["hazard/row-counters"] == "pass"
    else:
        assert out.startswith(f"ils-redact verify: database {db.name} (MariaDB 1")
        assert re.search(r"catalog/definer\s+pass", out)
        assert re.search(r"empirical/disclosure\s+pass\s+\d+ relations read as the role: 3 "
                         "readable", out)  # its view, its scope, the recorded catalog
