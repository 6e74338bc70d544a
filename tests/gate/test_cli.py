"""The CLI: ``ils-redact rewrite`` and ``ils-redact lint``; exit codes 0, 1 and 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ils_redact.cli import cli, main
from support.gate import REPO, stats_catalog

RULES = str(REPO / "redaction_rules.yaml")


@pytest.fixture(autouse=True)
def _no_dsn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ILS_REDACT_DSN", raising=False)


@pytest.fixture(scope="module")
def catalog_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("catalog") / "evergreen_with_stats.json"
    path.write_text(json.dumps(stats_catalog().to_json()))
    return str(path)


def run(*args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, ["--rules", RULES, *args], input=input)


def test_rewrite_allowed_prints_sql(catalog_file: str) -> None:
    r = run("rewrite", "--profile", "disclosure", "--catalog", catalog_file,
            "SELECT barcode FROM actor.card")
    assert r.exit_code == 0, r.output
    assert r.output.strip() == (
        'SELECT "card"."barcode" AS "barcode" FROM "actor"."card" AS "card" WHERE '
        '"card"."usr" = ANY(CAST((SELECT "ils_redact"."scope_patron_ids"()) AS '
        'BIGINT[])) LIMIT 1000')


def test_rewrite_refused_prints_findings_and_exits_1(catalog_file: str) -> None:
    r = run("rewrite", "--profile", "disclosure", "--catalog", catalog_file,
            "SELECT id,\n passwd FROM actor.usr")
    assert r.exit_code == 1
    assert r.output.startswith("R-SECRET-COLUMN actor.usr.passwd 2:2 ")


def test_rewrite_from_stdin_and_search_path(catalog_file: str) -> None:
    r = run("rewrite", "--profile", "stats", "--catalog", catalog_file, "--search-path",
            "ils_redact_stats", "-", input="SELECT month FROM circ_by_month")
    assert r.exit_code == 0, r.output
    assert '"ils_redact_stats"."circ_by_month"' in r.output


def test_rewrite_json(catalog_file: str) -> None:
    r = run("--format", "json", "rewrite", "--profile", "disclosure", "--catalog",
            catalog_file, "SELECT usr FROM action.circulation")
    assert r.exit_code == 1
    data = json.loads(r.output)
    assert data["ok"] is False and data["sql"] is None
    assert data["findings"][0]["code"] == "R-CONFIDENTIAL-RELATION"
    assert data["relations"] == ["action.circulation"]


def test_rewrite_without_catalog_uses_the_reference_and_says_so() -> None:
    r = CliRunner().invoke(cli, ["--rules", RULES, "rewrite", "--profile", "disclosure",
                                 "SELECT 1"])
    assert r.exit_code == 0
    assert "reference evergreen catalog" in r.stderr


def test_usage_errors_exit_2(catalog_file: str) -> None:
    r = run("rewrite", "--profile", "everything", "SELECT 1")
    assert r.exit_code == 2
    r = run("rewrite", "--profile", "disclosure", "--request", "0", "SELECT 1")
    assert r.exit_code == 2


@pytest.mark.parametrize("args", [
    ["rewrite", "--profile", "disclosure", "--catalog", "/nonexistent.json", "SELECT 1"],
    ["rewrite", "--profile", "stats", "--request", "3", "SELECT 1"],
    ["rewrite", "--profile", "disclosure", "--search-path", " , ", "SELECT 1"],
    # a request is checked in the database, as `query` checks it: offline it cannot be
    ["rewrite", "--profile", "disclosure", "--request", "12", "--catalog",
     "/nonexistent.json", "SELECT barcode FROM actor.card"],
    ["lint", "/nonexistent/folder"],
])
def test_ils_redact_errors_exit_2_with_one_line(args: list[str],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--rules", RULES, *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "ils-redact: error:" in err and "Traceback" not in err


def test_lint_exit_codes(catalog_file: str, tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.mkdir()
    (good / "cards.sql").write_text("SELECT barcode FROM actor.card")
    (good / "loans.sql").write_text(
        "SELECT circ_lib, count(*) FROM action.circulation GROUP BY circ_lib")
    r = run("lint", "--catalog", catalog_file, str(good))
    assert r.exit_code == 0, r.output
    assert "2 files: 1 disclosure, 1 statistics" in r.output
    bad = tmp_path / "bad.sql"
    bad.write_text("SELECT u.family_name, h.request_time FROM action.hold_request h "
                   "JOIN actor.usr u ON u.id = h.usr")
    r = run("lint", "--catalog", catalog_file, str(good), str(bad))
    assert r.exit_code == 1
    assert "confidential action.hold_request: request_time, usr" in r.output


def test_lint_json(catalog_file: str, tmp_path: Path) -> None:
    (tmp_path / "x.sql").write_text("SELECT * FROM nosuch")
    r = run("--format", "json", "lint", "--catalog", catalog_file, str(tmp_path))
    assert r.exit_code == 1
    data = json.loads(r.output)
    assert data["summary"]["invalid"] == 1
    assert data["files"][0]["verdict"] == "invalid"


def test_lint_empty_folder_is_a_usage_error(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--rules", RULES, "lint", str(tmp_path)])
    assert exc.value.code == 2
