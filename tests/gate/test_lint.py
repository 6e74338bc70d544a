"""lint: classify saved report SQL offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from ils_redact.errors import IlsRedactError
from ils_redact.gate.lint import Linter, sql_files
from support.gate import evergreen_catalog, evergreen_rules


@pytest.fixture(scope="module")
def linter() -> Linter:
    return Linter(evergreen_rules(), evergreen_catalog())


@pytest.mark.parametrize("sql, verdict", [
    ("SELECT u.family_name, c.barcode FROM actor.usr u JOIN actor.card c ON c.usr = u.id",
     "disclosure"),
    ("SELECT * FROM actor.usr", "disclosure"),
    ("SELECT circ_lib, count(*) FROM action.circulation GROUP BY circ_lib", "statistics"),
    ("SELECT barcode FROM asset.copy WHERE status = 3", "no-patron-data"),
    ("SELECT u.family_name, c.xact_start FROM action.circulation c JOIN actor.usr u "
     "ON u.id = c.usr", "exposes"),
    ("SELECT usrname, passwd FROM actor.usr", "exposes"),
    ("SELECT * FROM reporter.nosuch", "invalid"),
    ("SELEC 1", "invalid"),
    ("DELETE FROM actor.usr", "invalid"),
])
def test_verdicts(linter: Linter, sql: str, verdict: str) -> None:
    assert linter.lint_text(sql).verdict == verdict


def test_exposures_name_tables_and_columns(linter: Linter) -> None:
    rec = linter.lint_text(
        "SELECT u.family_name, c.xact_start, cp.barcode FROM action.circulation c "
        "JOIN actor.usr u ON u.id = c.usr JOIN asset.copy cp ON cp.id = c.target_copy")
    assert rec.failed
    by_rel = {(e.relation, e.cls): e.columns for e in rec.exposes}
    assert by_rel[("action.circulation", "confidential")] == ("target_copy", "usr",
                                                              "xact_start")
    assert by_rel[("actor.usr", "identity")] == ("family_name", "id")
    assert not any(e.relation == "asset.copy" for e in rec.exposes)


def test_star_counts_as_every_column(linter: Linter) -> None:
    rec = linter.lint_text("SELECT * FROM money.billable_xact")
    (e,) = rec.exposes
    assert e.cls == "confidential" and "usr" in e.columns and len(e.columns) == 5


def test_secret_and_withheld(linter: Linter) -> None:
    rec = linter.lint_text("SELECT usrname, passwd FROM actor.usr")
    assert {(e.cls, e.columns) for e in rec.exposes} == {("secret", ("passwd",)),
                                                          ("withheld", ("usrname",))}


def test_lint_paths_and_folders(linter: Linter, tmp_path: Path) -> None:
    (tmp_path / "a.sql").write_text("SELECT family_name FROM actor.usr")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "b.sql").write_text("SELECT usr FROM action.hold_request")
    (sub / "notes.txt").write_text("not sql")
    records = linter.lint_paths([tmp_path])
    assert [Path(r.path).name for r in records] == ["a.sql", "b.sql"]
    assert [r.verdict for r in records] == ["disclosure", "exposes"]
    assert records[1].to_dict()["exposes"][0]["relation"] == "action.hold_request"


def test_missing_path_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(IlsRedactError):
        sql_files([tmp_path / "nope.sql"])


def test_not_utf8_is_a_user_error(linter: Linter, tmp_path: Path) -> None:
    p = tmp_path / "latin1.sql"
    p.write_bytes("SELECT 'caf\xe9'".encode("latin-1"))
    with pytest.raises(IlsRedactError, match="not UTF-8"):
        linter.lint_paths([p])
