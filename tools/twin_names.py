"""Public top-level names defined in both engine trees (PostgreSQL and MariaDB).

A name defined twice is either one operation of the engine interface implemented twice
(fine, if the interface declares it) or code that drifted apart from its twin.  The
trees are listed here by path; a file in neither is engine-neutral.

``python tools/twin_names.py [-v]`` prints the count (and with -v the names and where).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "plugin" / "ils_redact"

#: each engine's tree: directories (every file below) and single files (every engine
#: part now lives under backends/<engine>/: verify, the statistics SQL and runners, the
#: query runner's part)
TREES = {
    "postgresql": ["backends/postgresql"],
    "mariadb": ["backends/mariadb"],
}
#: files of the trees that are engine-neutral (none since verify moved under backends/)
NEUTRAL: set[str] = set()


def files(tree: list[str]) -> set[Path]:
    out: set[Path] = set()
    for pattern in tree:
        p = ROOT / pattern
        if p.is_dir():
            out |= set(p.rglob("*.py"))
        else:
            out |= set(ROOT.glob(pattern))
    return {f for f in out if str(f.relative_to(ROOT)) not in NEUTRAL}


def public_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if not n.startswith("_")}


def defined(engine: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in sorted(files(TREES[engine])):
        for n in public_names(f):
            out.setdefault(n, []).append(str(f.relative_to(ROOT)))
    return out


def twins() -> dict[str, tuple[list[str], list[str]]]:
    pg, maria = defined("postgresql"), defined("mariadb")
    return {n: (pg[n], maria[n]) for n in sorted(set(pg) & set(maria))}


def main() -> int:
    found = twins()
    print(f"public top-level names defined in both engine trees: {len(found)}")
    if "-v" in sys.argv:
        for n, (a, b) in found.items():
            print(f"  {n}: {', '.join(a)} | {', '.join(b)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
