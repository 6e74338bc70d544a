"""Verify on Koha as a library's CI runs it: the pytest plugin in a subprocess (one test per
check), its JUnit, and Koha's own database account read from koha-conf.xml."""

# ruff: noqa: S608 - test SQL: names quoted with sqltext.ident/account

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ils_redact.backends.mariadb.sqltext import account, ident
from ils_redact.backends.mariadb.verify.hazards import CLASSES
from support.koha import KohaDb, write_koha_rules
from support.koha_verify import KOHA_CONF, execute, verify_cli


def pytest_in(where: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                           "-o", "addopts=", "-rA", *args], cwd=where, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A library's own test directory: one test of its own."""
    d = tmp_path / "library-ci"
    d.mkdir()
    (d / "test_own.py").write_text("def test_own():\n    assert 1 + 1 == 2\n", encoding="utf-8")
    return d


def test_pytest_plugin_on_a_koha_database(installed: KohaDb, project: Path,
                                          tmp_path: Path) -> None:
    db = installed
    rules = write_koha_rules(tmp_path, db.prefix)
    junit = tmp_path / "pytest-junit.xml"
    opts = (f"--ils-redact-dsn={db.dsn}", f"--ils-redact-rules={rules}")
    res = pytest_in(project, *opts, f"--junitxml={junit}")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr
    cases = ET.parse(junit).getroot().findall(".//testcase")
    names = {c.get("name") for c in cases}
    assert "test_own" in names  # the library's own tests run alongside
    assert {"catalog/disclosure", "catalog/stats", "catalog/exporter", "catalog/definer",
            "drift"} <= names
    assert {f"hazard/{c}" for c in CLASSES} <= names
    assert f"empirical/disclosure/{db.name}.issues" in names
    assert f"empirical/disclosure/{db.layer}.borrowers" in names
    assert sum(1 for n in names if n.startswith("empirical/exporter/")) > 293
    assert "SKIPPED" in res.stdout and "koha-conf.xml" in res.stdout  # no --ils-config

    # a table-level SELECT on a confidential table: the role's, the table's and drift fail
    execute(db, f"GRANT SELECT ON {ident(db.name)}.issues TO {ident(db.role('disclosure'))}")
    res = pytest_in(project, *opts, "-k", "disclosure or drift")
    assert res.returncode == 1
    out = res.stdout
    assert "FAILED ils-redact-verify::catalog/disclosure" in out
    assert f"FAILED ils-redact-verify::empirical/disclosure/{db.name}.issues" in out
    assert "FAILED ils-redact-verify::drift" in out
    assert f"C-TABLE-SELECT {db.name}.issues" in out
    assert (f"fix: REVOKE SELECT ON {ident(db.name)}.`issues` FROM "
            f"{ident(db.role('disclosure'))};") in out
    assert "3 failed" in out


def test_pytest_plugin_when_verify_cannot_run(koha: KohaDb, project: Path,
                                              tmp_path: Path) -> None:
    rules = write_koha_rules(tmp_path, koha.prefix)
    res = pytest_in(project, f"--ils-redact-dsn={koha.dsn}", f"--ils-redact-rules={rules}")
    assert res.returncode == 1
    assert "FAILED ils-redact-verify::verify" in res.stdout
    assert f"ils-redact is not installed in database {koha.name}" in res.stdout
    # a PostgreSQL DSN with Koha rules: one clean line, no traceback
    res = pytest_in(project, "--ils-redact-dsn=postgresql://nobody@127.0.0.1:1/x",
                    f"--ils-redact-rules={rules}")
    assert res.returncode == 1 and "not a MariaDB DSN" in res.stdout


def test_koha_account_from_koha_conf(installed: KohaDb, tmp_path: Path) -> None:
    """Koha's saved SQL reports run as the account in koha-conf.xml: it may hold the Koha
    database, nothing more."""
    db = installed
    app = f"{db.prefix}koha"
    execute(db, f"CREATE USER {account(app, '%')} IDENTIFIED BY 'koha-pw'",
            f"GRANT ALL PRIVILEGES ON {ident(db.name)}.* TO {account(app, '%')}")
    conf = tmp_path / "koha-conf.xml"
    conf.write_text(KOHA_CONF.format(database=db.name, user=app), encoding="utf-8")
    run = verify_cli(db, tmp_path, "--ils-config", str(conf))
    assert run.returncode == 0, run.explain()
    check = run.check("hazard/reporter")
    assert check["status"] == "pass"
    assert f"Koha connects as {app} (1 accounts)" in check["detail"]
    assert "ils-redact lint --koha-saved-sql" in check["detail"]

    # Koha installed with a server-wide account: every report reads the layer too
    execute(db, f"GRANT SELECT, PROCESS ON *.* TO {account(app, '%')}")
    run = verify_cli(db, tmp_path, "--ils-config", str(conf))
    assert run.returncode == 1
    f = run.only("H-REPORTER-SUPERUSER", f"login {app}@%")
    assert f"Koha connects as {app}@% ({conf}: yazgfs/config/user), which holds global " \
        "PROCESS, SELECT: every saved SQL report runs with it" in f["why"]
    assert f["fix"].startswith(f"REVOKE PROCESS ON *.* FROM {account(app, '%')}; "
                               f"REVOKE SELECT ON *.* FROM {account(app, '%')};")

    # through a role, and on the layer database
    execute(db, f"REVOKE SELECT, PROCESS ON *.* FROM {account(app, '%')}",
            f"CREATE ROLE {ident(db.prefix + 'kohaextra')}",
            f"GRANT SELECT ON {ident(db.layer)}.* TO {ident(db.prefix + 'kohaextra')}",
            f"GRANT {ident(db.prefix + 'kohaextra')} TO {account(app, '%')}")
    run = verify_cli(db, tmp_path, "--ils-config", str(conf))
    assert run.returncode == 1
    f = run.only("H-REPORTER-SUPERUSER", f"login {app}@%")
    assert f"through role {db.prefix}kohaextra holds SELECT on {db.layer}.* on the layer" \
        in f["why"]

    # a login this server does not have, or another Koha database: warnings
    conf.write_text(KOHA_CONF.format(database=db.name, user=f"{db.prefix}elsewhere"),
                    encoding="utf-8")
    run = verify_cli(db, tmp_path, "--ils-config", str(conf))
    assert run.returncode == 0 and run.codes("warning") == {"H-REPORTER-UNKNOWN-ROLE"}
    conf.write_text(KOHA_CONF.format(database="otherkoha", user=app), encoding="utf-8")
    run = verify_cli(db, tmp_path, "--ils-config", str(conf))
    assert run.returncode == 0 and "names database otherkoha" in run.findings()[0]["why"]
    # not a Koha configuration: exit 2, one line
    conf.write_text("<opensrf><default/></opensrf>", encoding="utf-8")
    run = verify_cli(db, tmp_path, "--ils-config", str(conf))
    assert run.returncode == 2
    assert "not a Koha configuration (no <config> element under <opensrf>)" in run.stderr


def test_backup_role_is_for_postgresql(installed: KohaDb, tmp_path: Path) -> None:
    run = verify_cli(installed, tmp_path, "--backup-role", "dump")
    assert run.returncode == 2 and "--backup-role applies to PostgreSQL" in run.stderr
