"""The README is a front page and the documentation stands on its own.

Reviewers and libraries get the repository and nothing else, so no page, no --help text
and no module may point at a file outside it; every link between pages must land on a
page and a heading that exist; the README keeps its first two commands (the demo and the
tests) and stays short; and every test the README's law table names exists.
"""
from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from ils_redact.cli import cli

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
#: the package as the repository holds it (CI installs a built copy into site-packages)
PACKAGE = ROOT / "plugin" / "ils_redact"
PAGES = [README, *sorted(DOCS.glob("*.md"))]

#: what pointing outside the repository looks like: the project's working files, the
#: shared facts it was built from, and absolute paths of the machine it was built on
OUTSIDE = re.compile(r"STYLE\.md|THREAT_MODEL|shared/schemas|\.\./shared|/work/|\bshared/")


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _package_texts() -> Iterator[tuple[str, str]]:
    """Every text file of the package (modules, SQL, rules, templates, schemas), the
    repository's SQL, default rules and tools."""
    roots = [PACKAGE, ROOT / "sql", ROOT / "tools"]
    for base in roots:
        for path in sorted(base.rglob("*")):
            if path.is_file() and path.suffix in {".py", ".sql", ".yaml", ".yml", ".json",
                                                  ".html", ".txt", ".css", ".md"}:
                yield _rel(path), path.read_text(encoding="utf-8")
    yield "redaction_rules.yaml", (ROOT / "redaction_rules.yaml").read_text(encoding="utf-8")


def _help_texts() -> Iterator[tuple[str, str]]:
    """The rendered --help of every command and group, as a user sees it."""
    def walk(cmd: click.Command, path: list[str]) -> Iterator[tuple[str, str]]:
        with click.Context(cmd, info_name=" ".join(path)) as ctx:
            yield " ".join(path) + " --help", cmd.get_help(ctx)
        if isinstance(cmd, click.Group):
            for name in sorted(cmd.commands):
                yield from walk(cmd.commands[name], [*path, name])
    yield from walk(cli, ["ils-redact"])


def _offenders(items: Iterator[tuple[str, str]]) -> list[str]:
    found = []
    for where, text in items:
        for number, line in enumerate(text.splitlines(), 1):
            m = OUTSIDE.search(line)
            if m:
                found.append(f"{where}:{number}: {m.group(0)}: {line.strip()}")
    return found


def test_no_page_points_outside_the_repository() -> None:
    bad = _offenders((_rel(p), p.read_text(encoding="utf-8")) for p in PAGES)
    assert not bad, "\n".join(bad)


def test_no_module_or_packaged_file_points_outside_the_repository() -> None:
    bad = _offenders(_package_texts())
    assert not bad, "\n".join(bad)


def test_no_help_text_points_outside_the_repository() -> None:
    helps = list(_help_texts())
    assert len(helps) > 30, "the command tree was not walked"
    bad = _offenders(iter(helps))
    assert not bad, "\n".join(bad)


def test_the_check_has_teeth() -> None:
    for text in ("see ../shared/STYLE.md", "(THREAT_MODEL row 7)", "/work/main/x",
                 "the format of shared/schemas"):
        assert _offenders(iter([("x", text)])), text
    for text in ("docs/threat-model.md, fact 7", "a shared lock", "shared_buffers"):
        assert not _offenders(iter([("x", text)])), text


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"`", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    anchors: set[str] = set()
    in_code = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            anchors.add(_slug(line.lstrip("#")))
    return anchors


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_every_link_lands_on_a_page_and_a_heading(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            broken.append(f"{target}: no file {file}")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {_rel(dest)}")
        elif ROOT not in dest.parents and dest != ROOT:
            broken.append(f"{target}: outside the repository")
    assert not broken, f"{_rel(page)}:\n" + "\n".join(broken)


def test_the_readme_is_a_front_page() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move detail into docs/"
    first_block = []
    in_code = False
    for line in lines:
        if line.startswith("```"):
            if in_code:
                break
            in_code = True
        elif in_code:
            first_block.append(line)
    # the first two commands: the main job (the demo on the embedded default) and the tests
    assert first_block[0].startswith("pip install '.[test]' && ils-redact demo "), first_block
    assert first_block[1].split("#")[0].strip() == "pytest", first_block
    for page in DOCS.glob("*.md"):
        assert f"(docs/{page.name})" in README.read_text(encoding="utf-8"), \
            f"README.md does not link docs/{page.name}"


def _test_names() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "tests").rglob("test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names.update(n.name for n in ast.walk(tree)
                     if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
    return names


def test_the_law_tables_tests_exist() -> None:
    text = README.read_text(encoding="utf-8")
    table = text[text.index("## The law, clause by clause"):]
    table = table[:table.index("\n\n", table.index("|---"))]
    named = re.findall(r"`(?:[\w/]+\.py::)?(test_\w+)`", table)
    files = re.findall(r"`(?:tests/)?([\w/]+\.py)(?:::\w+)?`", table)
    assert len(named) >= 15
    missing = sorted(set(named) - _test_names())
    assert not missing, f"README.md's law table names tests that do not exist: {missing}"
    for file in files:
        assert list((ROOT / "tests").rglob(file)), f"README.md's law table: no tests/{file}"
