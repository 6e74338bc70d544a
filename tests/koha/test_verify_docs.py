"""docs/ci.md's Koha section is run, not only read: its workflow parses, its script loads a
Koha schema into an empty database, installs and verifies (the container replaced by
ILS_REDACT_CI_DSN, the one switch the script has for this), and the MariaDB finding codes
are documented there."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

from ils_redact.backends.mariadb.connection import parse_dsn
from ils_redact.backends.mariadb.sqltext import account, ident
from support.koha import KohaDb, write_koha_rules
from support.koha_verify import KOHA_CONF, execute

DOC = Path(__file__).resolve().parents[2] / "docs" / "ci.md"
MARIADB_CODES = ("C-GLOBAL", "C-DATABASE", "C-DEFINER", "H-ANONYMOUS", "H-DEFINER-UNLOCKED",
                 "H-STALE-PROBE")


def koha_section() -> str:
    text = DOC.read_text(encoding="utf-8")
    return text[text.index("## Koha on MariaDB"):]


def block(after: str, lang: str) -> str:
    text = koha_section()
    m = re.compile(rf"```{lang}\n(.*?)```", re.S).search(text, text.index(after))
    assert m, f"no {lang} block after {after!r}"
    return m.group(1)


def test_the_mariadb_codes_are_documented_in_the_koha_section() -> None:
    section = koha_section()
    assert [c for c in MARIADB_CODES if f"`{c}`" not in section] == []


def test_the_workflow_is_valid_and_runs_the_script() -> None:
    wf = yaml.safe_load(block(".github/workflows/ils-redact-koha.yml`:", "yaml"))
    job = wf["jobs"]["verify"]
    assert job["strategy"]["matrix"]["mariadb"] == ["10.6", "10.11", "11.4"]
    step = next(s for s in job["steps"] if s.get("run") == "python ci/ils_redact_verify_koha.py")
    assert step["env"]["MARIADB_IMAGE"] == "mariadb:${{ matrix.mariadb }}"


def _library_repo(tmp: Path, koha: KohaDb, target: str, extra_sql: str = "") -> Path:
    repo = tmp / "library"
    for d in ("ci", "schema", "config"):
        (repo / d).mkdir(parents=True, exist_ok=True)
    (repo / "ci" / "ils_redact_verify_koha.py").write_text(
        block("`ci/ils_redact_verify_koha.py`:", "python"), encoding="utf-8")
    rules = write_koha_rules(tmp, f"{koha.prefix}ci_")
    (repo / "koha_rules.yaml").write_text(rules.read_text(encoding="utf-8"), encoding="utf-8")
    p = parse_dsn(koha.server.dsn)
    dump = subprocess.run(
        ["mariadb-dump", "-h", p["host"], "-P", str(p["port"]), "-u", p["user"] or "root",
         "--no-data", "--routines", "--triggers", koha.name],
        capture_output=True, text=True, check=True,
        env={**os.environ, "MYSQL_PWD": p["password"] or ""}).stdout
    assert dump.count("CREATE TABLE") == 293
    (repo / "schema" / "koha.sql").write_text(dump + extra_sql, encoding="utf-8")
    app = f"{koha.prefix}ci_koha"
    (repo / "schema" / "accounts.sql").write_text(
        f"CREATE USER {account(app, '%')};\n"
        f"GRANT ALL PRIVILEGES ON {ident(target)}.* TO {account(app, '%')};\n",
        encoding="utf-8")
    (repo / "config" / "koha-conf.xml").write_text(
        KOHA_CONF.format(database=target, user=app), encoding="utf-8")
    return repo


def _run_script(repo: Path, dsn: str) -> subprocess.CompletedProcess:
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "ILS_REDACT_CI_DSN": dsn, "PATH": path, "MARIADB_IMAGE": "mariadb:11.4"}
    env.pop("ILS_REDACT_DSN", None)
    return subprocess.run([sys.executable, "ci/ils_redact_verify_koha.py"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=900)


def test_the_script_loads_installs_and_verifies(koha: KohaDb, tmp_path: Path) -> None:
    target = f"{koha.prefix}ci1"
    execute(koha, f"CREATE DATABASE {ident(target)}")
    repo = _library_repo(tmp_path, koha, target)
    res = _run_script(repo, koha.server.dsn_for(target))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "verify: all rules hold" in res.stdout
    junit = ET.parse(repo / "ils-redact-verify-mariadb-11.4.xml").getroot()
    assert int(junit.get("tests")) > 900 and junit.get("failures") == "0"
    reporter = next(c for c in junit.iter("testcase") if c.get("name") == "reporter")
    assert reporter.find("skipped") is None  # config/koha-conf.xml was read


def test_the_script_fails_the_build_on_a_new_table(koha: KohaDb, tmp_path: Path) -> None:
    target = f"{koha.prefix}ci2"
    execute(koha, f"CREATE DATABASE {ident(target)}")
    repo = _library_repo(tmp_path, koha, target, extra_sql=(
        "\nCREATE TABLE patron_reading_challenge (borrowernumber INT, book TEXT);\n"))
    res = _run_script(repo, koha.server.dsn_for(target))
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-3000:]
    assert f"H-UNCLASSIFIED-RELATION  {target}.patron_reading_challenge" in res.stdout
    junit = ET.parse(repo / "ils-redact-verify-mariadb-11.4.xml").getroot()
    assert junit.get("failures") == "1"
