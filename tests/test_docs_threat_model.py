"""docs/threat-model.md names, for every threat class, the tests that prove it.

The page is what an outside reviewer reads first, so a test renamed or removed must fail
the build rather than leave the page citing a proof that no longer runs. The node ids are
checked by reading the test files with ``ast`` (no database, no collection of the whole
suite), which is what pytest itself would collect for a plain function id.
"""
from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "threat-model.md"
NODE = re.compile(r"`(tests/[\w/]+\.py)::(\w+)(\[[^\]`]*\])?`")


@cache
def _test_names(path: Path) -> frozenset[str]:
    """Test function names pytest would collect: module level, and in Test* classes."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            names.update(n.name for n in node.body
                         if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
    return frozenset(n for n in names if n.startswith("test"))


def _class_rows() -> list[tuple[int, str, list[tuple[str, str]]]]:
    """(line, class, node ids) of every row of the threat-class tables."""
    rows = []
    text = DOC.read_text(encoding="utf-8").splitlines()
    in_classes = False
    for number, line in enumerate(text, 1):
        if line.startswith("## "):
            in_classes = line.strip() == "## Threat classes"
        if not in_classes or not line.startswith("|") or line.startswith("|---"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == "class":
            continue
        rows.append((number, cells[0],
                     [(m.group(1), m.group(2)) for m in NODE.finditer(cells[-1])]))
    return rows


def test_every_threat_class_names_at_least_one_test() -> None:
    rows = _class_rows()
    assert len(rows) >= 40, f"only {len(rows)} threat classes found in {DOC}"
    empty = [f"docs/threat-model.md:{n}: {cls}" for n, cls, ids in rows if not ids]
    assert not empty, "threat classes without a test:\n" + "\n".join(empty)


def test_every_named_test_exists() -> None:
    """Every node id anywhere on the page: the tables and the known limits."""
    missing = []
    lines = DOC.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        for path, name in ((m.group(1), m.group(2)) for m in NODE.finditer(line)):
            file = ROOT / path
            if not file.is_file():
                missing.append(f"docs/threat-model.md:{number}: {path} does not exist")
            elif name not in _test_names(file):
                missing.append(f"docs/threat-model.md:{number}: {path}::{name} does not exist")
    assert not missing, "\n".join(missing)


def test_the_check_has_teeth() -> None:
    """A made-up name is reported missing: the parser really reads the test files."""
    names = _test_names(ROOT / "tests" / "test_restricted_pg.py")
    assert "test_unscoped_patrons_are_invisible" in names
    assert "test_no_such_test_exists" not in names
    assert NODE.search("`tests/koha/test_restricted.py::test_view_has_identity_columns_only`")


def test_the_page_stands_alone() -> None:
    """Reviewers get the README, this page and an install: nothing outside the repository."""
    text = DOC.read_text(encoding="utf-8")
    for outside in ("../", "/work/", "THREAT_MODEL", "STYLE.md", "shared/"):
        assert outside not in text, f"docs/threat-model.md points outside the repository: {outside}"
    for link in re.findall(r"\]\(([^)#]+)", text):
        if not link.startswith(("http://", "https://")):
            assert (DOC.parent / link).exists(), f"docs/threat-model.md links to missing {link}"
