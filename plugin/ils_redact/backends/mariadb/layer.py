"""The layer's versioned SQL for MariaDB: ``sql/mariadb/bootstrap.sql`` and
``NNNN_*.sql``, split into statements and rendered with quoted names.

Each statement becomes its own plan step (MariaDB commits DDL statement by statement,
so the plan cannot be one transaction); each is idempotent, so an interrupted install
runs a file again from the top.  Statements that create a view, routine or trigger are
known by the object they create, so ``install`` can re-create one that was dropped or
replaced by hand without re-running the rest of its file.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ...resources import sql_dir
from .sqltext import render, split_script

_CREATES = re.compile(
    r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?:ALGORITHM\s*=\s*\w+\s+)?(?:DEFINER\s*=\s*\S+\s+)?"
    r"(?:SQL\s+SECURITY\s+\w+\s+)?(VIEW|PROCEDURE|FUNCTION|TRIGGER)\s+"
    r"(?:\{layer\}|`(?:[^`]|``)+`)\.(?:`((?:[^`]|``)+)`|(\w+))", re.IGNORECASE)


@dataclass(frozen=True)
class Statement:
    version: int  # 0 for the bootstrap
    index: int
    text: str  # with placeholders
    objtype: str | None = None  # VIEW | PROCEDURE | FUNCTION | TRIGGER
    name: str | None = None

    @property
    def key(self) -> str | None:
        return f"{self.objtype.lower()} {self.name}" if self.objtype and self.name else None

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]

    def render(self, names: dict[str, str]) -> str:
        return render(self.text, names)


@dataclass(frozen=True)
class LayerFile:
    version: int
    path: Path

    @property
    def statements(self) -> tuple[Statement, ...]:
        return _statements(self.path, self.version)


@lru_cache(maxsize=16)
def _statements(path: Path, version: int) -> tuple[Statement, ...]:
    out = []
    for i, text in enumerate(split_script(path.read_text(encoding="utf-8"))):
        m = _CREATES.match(text)
        objtype = name = None
        if m:
            objtype = m.group(1).upper()
            name = m.group(2).replace("``", "`") if m.group(2) else m.group(3)
        out.append(Statement(version, i, text, objtype, name))
    return tuple(out)


def bootstrap() -> LayerFile:
    return LayerFile(0, sql_dir("mariadb") / "bootstrap.sql")


def layer_files() -> list[LayerFile]:
    return [LayerFile(int(p.name[:4]), p)
            for p in sorted(sql_dir("mariadb").glob("[0-9][0-9][0-9][0-9]_*.sql"))]


def layer_version_available() -> int:
    return max(f.version for f in layer_files())


def layer_objects() -> dict[str, Statement]:
    """Every view, routine and trigger the versioned files create, by key; a later file's
    statement replaces an earlier one's."""
    out: dict[str, Statement] = {}
    for f in layer_files():
        for s in f.statements:
            if s.key:
                out[s.key] = s
    return out
