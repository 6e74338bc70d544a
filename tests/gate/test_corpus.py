"""Every YAML case under ``tests/gate/cases`` against the Evergreen reference catalog.

The format is documented at the top of each case file.  The same files are meant to be
run later against a real database as the restricted role (refused cases with the gate
switched off, to show the database refuses them too), so each case is runnable SQL for
PostgreSQL where possible.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from support.gate import ALL, CASES, case_gate

PROFILES = {"disclosure", "stats", "report"}
KEYS = {"name", "profile", "sql", "expect", "codes", "rewrite", "request", "search_path",
        "db", "note", "columns"}




def test_corpus_is_large_and_well_formed() -> None:
    assert len(ALL) >= 150
    names = [n for n, _ in ALL]
    assert len(names) == len(set(names)), "case names must be unique per file"
    for name, case in ALL:
        assert set(case) <= KEYS, f"{name}: unknown keys {set(case) - KEYS}"
        assert case["profile"] in PROFILES, name
        assert case["expect"] in ("allow", "refuse"), name
        if case["expect"] == "refuse":
            assert case.get("codes"), f"{name}: a refusal names the codes it expects"
            assert "rewrite" not in case, name
        else:
            assert not case.get("codes"), name
        assert case.get("db", "denied") in ("denied", "error", "allowed"), name
        if "columns" in case:
            assert case["profile"] == "disclosure", name


@pytest.mark.parametrize("case", [c for _, c in ALL], ids=[n for n, _ in ALL])
def test_case(case: dict[str, Any]) -> None:
    result = case_gate(case).check(case["sql"])
    got = sorted({f.code for f in result.findings})
    shown = "\n".join(str(f) for f in result.findings)
    if case["expect"] == "allow":
        assert result.ok, f"expected allow, got:\n{shown}"
        assert result.sql
        if "rewrite" in case:
            assert result.sql == " ".join(case["rewrite"].split()), result.sql
    else:
        assert not result.ok, f"expected a refusal, got:\n{result.sql}"
        assert result.sql is None
        missing = set(case["codes"]) - set(got)
        assert not missing, f"missing {sorted(missing)}; got:\n{shown}"
        for f in result.findings:
            assert f.message and f.code


def test_case_files_document_their_format() -> None:
    for path in Path(CASES).glob("*.yaml"):
        head = path.read_text(encoding="utf-8").split("\ncases:", 1)[0]
        assert "expect:" in head and "codes:" in head, f"{path.name}: document the format"
