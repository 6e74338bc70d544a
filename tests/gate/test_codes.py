"""Every finding code the code base can emit is listed by ``ils-redact codes`` and
documented: the gate's in docs/query-gate.md, verify's in docs/ci.md.

The codes are collected from the source itself (every string literal shaped like a code,
in every module of the package), so a code added anywhere, by any branch, fails here until
it is registered, listed and documented; and a documented code that nothing can emit any
more fails too.
"""

from __future__ import annotations

import ast
import json
import re
from functools import cache
from pathlib import Path

import pytest
from click.testing import CliRunner

import ils_redact
from ils_redact.cli import cli
from ils_redact.gate.findings import CODES as GATE_CODES
from ils_redact.gate.findings import Finding
from ils_redact.verify.findings import CODES as VERIFY_CODES
from support.gate import REPO

PACKAGE = Path(ils_redact.__file__).resolve().parent
CODE = re.compile(r"[A-Z]-[A-Z0-9]+(?:-[A-Z0-9]+)*")
#: which document explains which component's codes
DOCS = {"gate": REPO / "docs" / "query-gate.md", "verify": REPO / "docs" / "ci.md"}


@cache
def source_codes() -> dict[str, set[str]]:
    """code -> the modules whose string literals spell it."""
    found: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                    CODE.fullmatch(node.value):
                found.setdefault(node.value, set()).add(
                    str(path.relative_to(PACKAGE.parent)))
    return found


def listed() -> list[dict[str, str]]:
    res = CliRunner().invoke(cli, ["codes", "--format", "json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def documented(component: str) -> set[str]:
    text = DOCS[component].read_text(encoding="utf-8")
    return set(re.findall(rf"`({CODE.pattern})`", text))


def test_the_source_emits_codes_and_the_collection_finds_them() -> None:
    codes = source_codes()
    assert len(codes) >= 50
    # the collection reaches both components and every family of verify
    assert {c[0] for c in codes} >= {"R", "C", "E", "H", "D"}
    assert "ils_redact/gate/statement.py" in codes["R-VARIABLE"]


def test_every_code_in_the_source_is_registered() -> None:
    registered = set(GATE_CODES) | set(VERIFY_CODES)
    missing = {c: sorted(m) for c, m in source_codes().items() if c not in registered}
    assert not missing, f"codes used in the source but in no registry: {missing}"


def test_codes_lists_every_code_the_source_can_emit() -> None:
    rows = listed()
    by_code = {r["code"]: r for r in rows}
    assert len(by_code) == len(rows), "a code is listed twice"
    assert set(source_codes()) <= set(by_code), sorted(set(source_codes()) - set(by_code))
    assert set(by_code) == set(GATE_CODES) | set(VERIFY_CODES)
    for row in rows:
        assert row["component"] == ("gate" if row["code"].startswith("R-") else "verify")
        assert row["meaning"] and "\n" not in row["meaning"], row


def test_codes_as_text() -> None:
    res = CliRunner().invoke(cli, ["codes"])
    assert res.exit_code == 0
    lines = res.output.splitlines()
    assert len(lines) == len(GATE_CODES) + len(VERIFY_CODES)
    assert any(re.match(r"R-ALIAS-COLUMNS +gate +an alias column list", ln) for ln in lines)
    assert any(re.match(r"H-TEMP +verify +", ln) for ln in lines)
    glob = CliRunner().invoke(cli, ["--format", "json", "codes"])
    assert json.loads(glob.output) == listed()


@pytest.mark.parametrize("component", sorted(DOCS))
def test_every_code_is_documented_and_every_documented_code_exists(component: str) -> None:
    mine = {r["code"] for r in listed() if r["component"] == component}
    mine |= {c for c in source_codes() if (c.startswith("R-")) == (component == "gate")}
    docs = documented(component)
    assert not mine - docs, f"{DOCS[component].name} does not document {sorted(mine - docs)}"
    stale = {c for c in docs - mine if c[0] in ("R" if component == "gate" else "CEHD")}
    assert not stale, f"{DOCS[component].name} documents codes nothing emits: {sorted(stale)}"


def test_a_gate_finding_with_an_unregistered_code_is_a_bug() -> None:
    with pytest.raises(ValueError, match="unknown gate finding code R-NOPE"):
        Finding("R-NOPE", "made up")
