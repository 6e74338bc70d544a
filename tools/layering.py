"""The package's import graph: cycles between ils_redact's subpackages, and imports that
reach into one engine's modules from outside ``backends/``.

``python tools/layering.py`` prints the graph's cycles and the deep imports;
``tests/test_layering.py`` fails on either (beyond its documented allow-list).  Every
import counts, including those inside functions: a lazy import is still a dependency,
and hiding a cycle behind one is what this measures.  Imports under ``if TYPE_CHECKING:``
are left out: they name types for the checker and never run.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "plugin" / "ils_redact"
PACKAGE = "ils_redact"
ENGINES = ("postgresql", "mariadb")


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, dotted
    target: str  # the imported module, dotted (a name imported from a package that is a
    #              module of it counts as that module)
    path: Path
    line: int


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(dotted: str) -> bool:
    rel = Path(*dotted.split(".")[1:]) if "." in dotted else Path()
    base = ROOT / rel
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _resolve(source: str, is_package: bool, level: int, module: str | None) -> str:
    if level == 0:
        return module or ""
    parts = source.split(".")
    if not is_package:
        parts = parts[:-1]
    parts = parts[: len(parts) - (level - 1)]
    return ".".join(parts + ([module] if module else []))


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the nodes inside ``if TYPE_CHECKING:`` blocks."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) \
                and node.test.id == "TYPE_CHECKING":
            for child in node.body:
                out |= {id(n) for n in ast.walk(child)}
    return out


def imports(root: Path = ROOT) -> Iterator[Import]:
    for path in sorted(root.rglob("*.py")):
        source = module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        skip = _type_checking_only(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == PACKAGE:
                        yield Import(source, alias.name, path, node.lineno)
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(source, path.name == "__init__.py", node.level, node.module)
                if base.split(".")[0] != PACKAGE:
                    continue
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    yield Import(source, sub if _is_module(sub) else base, path, node.lineno)


def subpackage(dotted: str) -> str:
    """The first component under ils_redact (a subpackage, or a top-level module)."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else ""


def package_graph(found: list[Import] | None = None) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for imp in found if found is not None else imports():
        a, b = subpackage(imp.source), subpackage(imp.target)
        if a and b and a != b:
            graph.setdefault(a, set()).add(b)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def deep_imports(found: list[Import] | None = None) -> list[Import]:
    """Imports of ``ils_redact.backends.<engine>.<module>`` from outside ``backends/``,
    one per import statement and module."""
    out: dict[tuple[str, int, str], Import] = {}
    for imp in found if found is not None else imports():
        t = imp.target.split(".")
        if (len(t) > 3 and t[1] == "backends" and t[2] in ENGINES
                and subpackage(imp.source) != "backends"):
            out.setdefault((imp.source, imp.line, imp.target), imp)
    return list(out.values())


def main() -> int:
    found = list(imports())
    graph = package_graph(found)
    cyc = cycles(graph)
    deep = deep_imports(found)
    print(f"package import cycles: {len(cyc)}")
    for c in cyc:
        print("  " + " <-> ".join(c))
    print(f"deep imports into backends.<engine>.<module> from outside backends/: {len(deep)}"
          f" (in {len({d.source for d in deep})} modules)")
    for d in deep:
        print(f"  {d.path.relative_to(ROOT.parent.parent)}:{d.line}: {d.target}")
    return 1 if cyc else 0


if __name__ == "__main__":
    sys.exit(main())
