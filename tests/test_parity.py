"""What both engines do alike, written once and run on each: Evergreen on PostgreSQL and
Koha on MariaDB (``-m "not mariadb"`` leaves the second out).

The sysadmin's spine through the CLI (plan changes nothing, install twice is a no-op,
status sees drift and install repairs it, uninstall leaves what was there), the
disclosure lifecycle and its audit trail through the CLI, and the statistics rules'
refusals.  What only one engine has stays in its own files
(tests/test_install_pg.py, tests/koha/test_install.py, ...).  Real servers only.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import pytest

from ils_redact.verify import verify
from support import run_cli
from support.parity import ENGINES, Library, line_of, with_custom_reports


@pytest.fixture(params=ENGINES)
def library(request: pytest.FixtureRequest) -> Library:
    """A fresh library database (nothing of ils-redact in it)."""
    engine = request.param
    return Library(engine, request.getfixturevalue(
        "eg_db" if engine == "postgresql" else "koha"))


def _status(library: Library, rules: Path) -> tuple[int, dict]:
    res = library.cli(rules, "--format", "json", "status")
    assert res.returncode in (0, 1), res.stderr
    return res.returncode, json.loads(res.stdout)


def test_plan_changes_nothing(library: Library, tmp_path: Path) -> None:
    rules = library.rules(tmp_path)
    before = library.snapshot()
    res = library.cli(rules, "plan")
    assert res.returncode == 0, res.stderr
    assert "CREATE ROLE" in res.stdout
    # how each server is told: row-level security, or a client script of definer objects
    marker = ("ENABLE ROW LEVEL SECURITY" if library.engine == "postgresql"
              else "DELIMITER $$")
    assert marker in res.stdout
    assert library.snapshot() == before
    assert not library.layer_exists() and library.prefixed_roles() == 0
    # offline, from the adapter's packaged schema facts: no server at all
    offline = run_cli("--rules", str(rules), "plan", "--catalog",
                      str(library.reference_catalog_file(tmp_path)))
    assert offline.returncode == 0, offline.stderr
    assert "CREATE ROLE" in offline.stdout and marker in offline.stdout


def test_install_twice_is_a_no_op_and_status_follows_drift(library: Library,
                                                           tmp_path: Path) -> None:
    rules = library.rules(tmp_path)
    code, st = _status(library, rules)
    assert code == 0 and not st["installed"] and not st["in_sync"] and st["drift"]

    res = library.cli(rules, "install", "--quiet")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("installed: ") and " changes in database " in res.stdout
    after_first = library.snapshot()
    res = library.cli(rules, "install")
    assert res.returncode == 0, res.stderr
    assert res.stdout == (f"nothing to install: database {library.db.name} already matches "
                          "the rules\n")
    assert library.snapshot() == after_first
    assert library.install_log() == ["install"]  # an empty plan is not logged

    code, st = _status(library, rules)
    assert code == 0 and st["installed"] and st["in_sync"] and st["drift"] == []
    assert st["rules_changed"] is False
    assert st["installed_rules_sha256"] == st["rules_sha256"]
    assert st["layer_version"] == st["layer_version_available"]

    # a privilege removed by hand is drift: status says so (exit 1), install puts it back
    library.drop_a_grant()
    code, st = _status(library, rules)
    assert code == 1 and not st["in_sync"] and st["drift"], st
    res = library.cli(rules, "install", "--quiet")
    assert res.returncode == 0 and res.stdout.startswith("installed: "), res.stderr
    code, st = _status(library, rules)
    assert code == 0 and st["in_sync"], st
    assert library.snapshot() == after_first


def test_uninstall_leaves_what_was_there(library: Library, tmp_path: Path) -> None:
    rules = library.rules(tmp_path)
    before = library.snapshot()
    res = library.cli(rules, "install", "--quiet")
    assert res.returncode == 0, res.stderr
    assert library.snapshot() != before and library.layer_exists()
    res = library.cli(rules, "uninstall", "--yes")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"uninstalled from database {library.db.name}: ")
    after = library.snapshot()
    for key in before:  # one key at a time first: a failure names what differs
        assert after[key] == before[key], key
    assert after == before
    assert not library.layer_exists() and library.prefixed_roles() == 0


@pytest.mark.parametrize("case", [0, 1, 2], ids=["patron-key", "row-key", "not-a-patron"])
def test_custom_report_with_a_patron_key_is_refused_at_install(library: Library,
                                                               tmp_path: Path,
                                                               case: int) -> None:
    """A custom report grouped by the patron key (or by a per-row key, or counting
    something that is not a patron) would release one person's numbers: refused with the
    rules file's line, and nothing is installed."""
    source, time_column, cases = library.custom
    group_by, patron, code = cases[case]
    rules = library.rules(tmp_path, with_custom_reports(
        "    - name: loans_per_person\n"
        f"      source: {source}\n"
        f"      group_by: {group_by}\n"
        f"      patron_column: {patron}\n"
        f"      time_column: {time_column}\n"))
    res = library.cli(rules, "install")
    assert res.returncode == 2, res.stderr
    assert code in res.stderr
    needle = "group_by:" if code.startswith("R-") else "patron_column:"
    assert f"{rules}:{line_of(rules, needle)}:" in res.stderr
    assert not library.layer_exists() and library.prefixed_roles() == 0


def test_exhaustive_reading_agrees_with_the_shortcut(library: Library, tmp_path: Path) -> None:
    """verify proves a relation closed with one query naming no column; reading every
    column alone must find exactly the same, here with leaks seeded in."""
    res = library.cli(library.rules(tmp_path), "install", "--quiet")
    assert res.returncode == 0, res.stderr
    disclosure, names, stats = library.seed_leaks()
    with library.db.connect(autocommit=False) as conn:
        fast = verify(conn, library.db.rules)
        slow = verify(conn, library.db.rules, exhaustive=True)

    def outcome(report):  # MariaDB's routine checks call each routine: not a reading
        return {(c.id, c.status(), c.detail, tuple(sorted(str(f) for f in c.findings)))
                for c in report.checks if c.id.startswith("empirical/")
                and not (library.engine == "mariadb" and c.id.endswith("/functions"))}

    assert outcome(fast) == outcome(slow)
    leak = fast.check(disclosure).findings
    assert [f.code for f in leak] == ["E-READABLE"] and names in leak[0].why
    assert [f.code for f in fast.check(stats).findings] == ["E-READABLE"]
    assert fast.exit_code == 1


def test_disclosure_lifecycle_through_the_cli(library: Library, tmp_path: Path) -> None:
    """A clerk records an emergency request (one patron by id, one by card), cannot
    approve it herself, cannot export the draft; the director approves; the export's
    document matches its manifest and its audit entry; a closed request exports nothing;
    the audit log says all of it, in order, and verifies."""
    rules = library.rules(tmp_path)
    res = library.cli(rules, "install", "--quiet")
    assert res.returncode == 0, res.stderr
    clerk = library.staff(rules, "clerk", "admin", "disclosure")
    director = library.staff(rules, "director", "admin")
    a, b = 62, 61
    res = library.cli_as(clerk, rules, "--format", "json", "request", "create", "--basis",
                         "emergency", "--agency", "Metro Police", "--officer", "Jane Roe",
                         "--badge", "4471", "--case", "26-1182", "--reason",
                         "credible threat of violence", "--patron", str(a), "--barcode",
                         library.card_of(b), "--hours", "2", "--yes")
    assert res.returncode == 0, res.stderr
    rid = int(json.loads(res.stdout)["request"])
    res = library.cli_as(clerk, rules, "request", "approve", str(rid))
    assert res.returncode == 1 and "two-person rule" in res.stderr, res.stderr
    res = library.cli_as(clerk, rules, "export", "--request", str(rid))
    assert res.returncode == 1 and "not approved" in res.stderr, res.stderr
    res = library.cli_as(director, rules, "request", "approve", str(rid))
    assert res.returncode == 0, res.stderr

    out = tmp_path / "records.csv"
    res = library.cli_as(clerk, rules, "export", "--request", str(rid), "--format", "csv",
                         "-o", str(out))
    assert res.returncode == 0, res.stderr
    data = out.read_bytes()
    manifest = json.loads((tmp_path / "records.csv.manifest.json").read_text())
    assert hashlib.sha256(data).hexdigest() == manifest["sha256"]
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    assert {int(r["patron_id"]) for r in rows} == {a, b}
    assert manifest["patrons"] == 2 and manifest["rows"] == len(rows)
    assert {r[library.surname_column] for r in rows if r[library.surname_column]} == \
        library.surnames([a, b])

    res = library.cli_as(director, rules, "request", "close", str(rid), "--reason",
                         "records delivered")
    assert res.returncode == 0, res.stderr
    res = library.cli_as(clerk, rules, "export", "--request", str(rid))
    assert res.returncode == 1 and "closed" in res.stderr, res.stderr

    res = library.cli_as(director, rules, "--format", "json", "audit", "log")
    assert res.returncode == 0, res.stderr
    entries = [e for e in json.loads(res.stdout) if e["request_id"] == rid]
    assert [e["action"] for e in entries] == [
        "request.created", "request.approve.refused", "export.refused", "request.approved",
        "export", "request.closed", "export.refused"]
    export = next(e for e in entries if e["action"] == "export")
    assert export["detail"]["sha256"] == manifest["sha256"]
    assert export["actor"].split("@")[0] == clerk
    res = library.cli_as(director, rules, "audit", "verify")
    assert res.returncode == 0 and "intact" in res.stdout, res.stdout + res.stderr
