"""The pytest plugin, as a library's CI runs it: pytest in a subprocess, in a directory of
its own, with the options on the command line (the plugin arrives by its entry point)."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from psycopg import sql

from ils_redact.backends import postgresql as pg
from ils_redact.backends.postgresql.verify.hazards import CLASSES
from ils_redact.rules import load_rules
from ils_redact.stats import all_reports
from support import EgDb, write_rules
from support.verify import install


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


def test_without_the_options_the_plugin_does_nothing(project: Path) -> None:
    res = pytest_in(project, "-q")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 passed" in res.stdout and "ils-redact" not in res.stdout
    # it is loaded, though: its options are there
    helped = pytest_in(project, "--help")
    assert "--ils-redact-dsn=DSN" in helped.stdout
    # half the options is a usage error, not a silent skip
    half = pytest_in(project, "--ils-redact-dsn", "postgresql:///nowhere")
    assert half.returncode == 4
    assert "--ils-redact-dsn and --ils-redact-rules go together" in half.stderr


def test_one_test_per_check_and_failures_name_the_findings(eg_db: EgDb, project: Path,
                                                          tmp_path: Path) -> None:
    db = install(eg_db)
    rules = write_rules(tmp_path, db.prefix)
    junit = tmp_path / "pytest-junit.xml"
    # the KEY=VALUE form: pytest takes a separate path argument into its rootdir choice
    opts = (f"--ils-redact-dsn={db.dsn}", f"--ils-redact-rules={rules}")
    res = pytest_in(project, *opts, f"--junitxml={junit}")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr
    cases = ET.parse(junit).getroot().findall(".//testcase")
    names = {c.get("name") for c in cases}
    assert "test_own" in names  # the library's own tests run alongside
    assert {"catalog/disclosure", "catalog/stats", "catalog/exporter", "catalog/admin",
            "drift"} <= names
    assert {f"hazard/{c}" for c in CLASSES} <= names
    assert "empirical/disclosure/action.circulation" in names
    assert "empirical/stats/functions" in names
    assert sum(1 for n in names if n.startswith("empirical/exporter/")) > 640
    assert "IlsRedactVerifyWarning" not in res.stdout  # a default install: no warning
    assert "SKIPPED" in res.stdout and "--ils-config" in res.stdout  # reporter not checked

    # seed a table-level SELECT: the role's catalog test and the relation's test fail
    with db.connect() as conn:
        conn.execute(sql.SQL("GRANT SELECT ON actor.usr TO {}").format(
            sql.Identifier(db.role("disclosure"))))
    res = pytest_in(project, *opts, "-k", "disclosure or drift")
    assert res.returncode == 1
    out = res.stdout
    assert "FAILED ils-redact-verify::catalog/disclosure" in out
    assert "FAILED ils-redact-verify::empirical/disclosure/actor.usr" in out
    assert "FAILED ils-redact-verify::drift" in out
    assert "C-TABLE-SELECT actor.usr" in out
    assert f'fix: REVOKE SELECT ON "actor"."usr" FROM "{db.role("disclosure")}";' in out  # noqa: S608 - expected output
    assert "3 failed" in out

    # TEMP left to PUBLIC (hardening.revoke_public_temp: false): a warning, which
    # --ils-redact-strict fails
    off = write_rules(tmp_path, db.prefix, lambda t: t.replace(
        "revoke_public_temp: true", "revoke_public_temp: false"))
    with db.connect(autocommit=False) as conn:
        pg.install(conn, load_rules(off), reports=all_reports)
    opts = (f"--ils-redact-dsn={db.dsn}", f"--ils-redact-rules={off}")
    res = pytest_in(project, *opts, "-k", "temp")
    assert res.returncode == 0 and "IlsRedactVerifyWarning" in res.stdout, res.stdout[-3000:]
    res = pytest_in(project, *opts, "--ils-redact-strict", "-k", "temp")
    assert res.returncode == 1 and "FAILED ils-redact-verify::hazard/temp" in res.stdout


def test_verify_that_cannot_run_is_one_failing_test(eg_db: EgDb, project: Path,
                                                    tmp_path: Path) -> None:
    rules = write_rules(tmp_path, eg_db.prefix)
    res = pytest_in(project, f"--ils-redact-dsn={eg_db.dsn}", f"--ils-redact-rules={rules}")
    assert res.returncode == 1
    assert "FAILED ils-redact-verify::verify" in res.stdout
    assert f"ils-redact is not installed in database {eg_db.name}" in res.stdout
    assert "1 failed, 1 passed" in res.stdout
