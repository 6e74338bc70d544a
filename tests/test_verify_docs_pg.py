"""docs/ci.md is run, not only read: its workflow parses, its script loads a schema into an
empty database, installs and verifies (the container replaced by ILS_REDACT_CI_DSN, the
one switch the script has for this), and every finding code is documented."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

from ils_redact.servers import embedded_bin_dir
from ils_redact.verify import CODES
from support import ROOT, EgDb, dump_schema, write_rules

DOC = ROOT / "docs" / "ci.md"


def block(after: str, lang: str) -> str:
    """The first ```lang block after the line containing ``after``."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index(after)
    m = re.compile(rf"```{lang}\n(.*?)```", re.S).search(text, start)
    assert m, f"no {lang} block after {after!r}"
    return m.group(1)


def test_every_finding_code_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert [c for c in CODES if f"`{c}`" not in text] == []


def test_the_workflow_is_valid_and_runs_the_script() -> None:
    wf = yaml.safe_load(block(".github/workflows/ils-redact.yml`:", "yaml"))
    job = wf["jobs"]["verify"]
    assert job["strategy"]["matrix"]["postgres"] == ["15", "16", "17", "18"]
    runs = [s.get("run", "") for s in job["steps"]]
    assert "python ci/ils_redact_verify.py" in runs
    env = next(s["env"] for s in job["steps"] if s.get("run") == "python ci/ils_redact_verify.py")
    assert env["PG_IMAGE"] == "postgres:${{ matrix.postgres }}"


def _library_repo(tmp: Path, db: EgDb, prefix: str, extra_sql: str = "") -> Path:
    repo = tmp / "library"
    for d in ("ci", "schema", "config"):
        (repo / d).mkdir(parents=True, exist_ok=True)
    (repo / "ci" / "ils_redact_verify.py").write_text(block("`ci/ils_redact_verify.py`:",
                                                            "python"), encoding="utf-8")
    rules = write_rules(tmp, prefix)
    (repo / "redaction_rules.yaml").write_text(rules.read_text(encoding="utf-8"),
                                               encoding="utf-8")
    # roles are cluster-wide and the test server already has the ILS roles
    (repo / "schema" / "roles.sql").write_text("-- the ILS roles exist on this server\n",
                                               encoding="utf-8")
    dump = dump_schema(db)  # by the newest pg_dump (the embedded one)
    if db.server.version < 170000:  # a production dump comes from its own server's pg_dump
        dump = dump.replace("SET transaction_timeout = 0;\n", "")
    (repo / "schema" / "evergreen.sql").write_text(dump + extra_sql, encoding="utf-8")
    config = (ROOT / "tests" / "data" / "opensrf.xml.example").read_text(encoding="utf-8")
    (repo / "config" / "opensrf.xml").write_text(
        config.replace("<user>postgres</user>", f"<user>{db.app}</user>"), encoding="utf-8")
    return repo


def _run_script(repo: Path, dsn: str) -> subprocess.CompletedProcess:
    bindir = embedded_bin_dir()
    path = os.pathsep.join([str(Path(sys.executable).parent)]
                           + ([str(bindir)] if bindir else []) + [os.environ.get("PATH", "")])
    env = {**os.environ, "ILS_REDACT_CI_DSN": dsn, "PATH": path, "PG_IMAGE": "postgres:16"}
    env.pop("ILS_REDACT_DSN", None)
    return subprocess.run([sys.executable, "ci/ils_redact_verify.py"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=900)


def test_the_script_loads_installs_and_verifies(eg_db: EgDb, databases, run_prefix,
                                                tmp_path: Path) -> None:
    repo = _library_repo(tmp_path, eg_db, f"{run_prefix}ci1_")
    target = databases.create("ci")
    res = _run_script(repo, eg_db.server.dsn_for(target))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "verify: all rules hold" in res.stdout
    junit = ET.parse(repo / "ils-redact-verify-postgres-16.xml").getroot()
    assert int(junit.get("tests")) > 1900 and junit.get("failures") == "0"
    reporter = next(c for c in junit.iter("testcase") if c.get("name") == "reporter")
    assert reporter.find("skipped") is None  # config/opensrf.xml was read


def test_the_script_fails_the_build_on_a_hole(eg_db: EgDb, databases, run_prefix,
                                              tmp_path: Path) -> None:
    repo = _library_repo(tmp_path, eg_db, f"{run_prefix}ci2_",
                         extra_sql="\nGRANT SELECT ON action.circulation TO PUBLIC;\n")
    target = databases.create("ci")
    res = _run_script(repo, eg_db.server.dsn_for(target))
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-3000:]
    assert "H-PUBLIC-GRANT  action.circulation" in res.stdout
    junit = ET.parse(repo / "ils-redact-verify-postgres-16.xml").getroot()
    assert int(junit.get("failures")) >= 4  # the hazard and the three roles' catalogs
