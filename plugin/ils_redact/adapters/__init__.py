"""ILS adapters, found through the ``ils_redact.adapters`` entry-point group.

An adapter says what an ILS is: which database engine it runs on, its default rules, the
facts of its real schema (for offline planning and demo fixtures), how to build a demo
database and which statistics reports it offers.  SQL generation belongs to the backend
(``ils_redact.backends``), so a new ILS on PostgreSQL or MariaDB is a small package that
registers one entry point; the built-in Evergreen adapter is registered the same way.
"""

from __future__ import annotations

import gzip
import json
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from ..catalog import Catalog, catalog_from_json
from ..errors import IlsRedactError, did_you_mean

GROUP = "ils_redact.adapters"


@dataclass(frozen=True)
class Adapter:
    """What ils-redact needs to know about one ILS."""

    name: str
    engine: str  # "postgresql" or "mariadb"
    description: str
    preset_path: Path
    reference_catalog_path: Path
    #: dotted path of a module with ``build(conn, ...)`` that creates a demo database
    fixture_module: str | None = None
    #: dotted path of a module with the standard statistics reports
    reports_module: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def reference_catalog(self) -> Catalog:
        """The ILS's real schema facts, shipped with the adapter."""
        return _read_catalog(self.reference_catalog_path)


@lru_cache(maxsize=4)
def _read_catalog(path: Path) -> Catalog:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return catalog_from_json(json.load(fh), source=str(path))


@lru_cache(maxsize=1)
def available_adapters() -> dict[str, Adapter]:
    """name -> Adapter.  A broken third-party adapter warns and is skipped, so one bad
    plugin cannot stop a sysadmin from using the others (as sqlfluff loads plugins)."""
    found: dict[str, Adapter] = {}
    for ep in entry_points(group=GROUP):
        try:
            obj = ep.load()
        except Exception as exc:  # noqa: BLE001 - a plugin's own bug
            warnings.warn(f"ils-redact: adapter {ep.name} failed to load: {exc}", stacklevel=2)
            continue
        if not isinstance(obj, Adapter):
            warnings.warn(f"ils-redact: entry point {ep.name} is not an Adapter", stacklevel=2)
            continue
        found[obj.name] = obj
    return found


def get_adapter(name: str) -> Adapter:
    adapters = available_adapters()
    if name in adapters:
        return adapters[name]
    hint = did_you_mean(name, adapters) or (
        f"installed adapters: {', '.join(sorted(adapters)) or 'none (is ils-redact installed?)'}"
    )
    raise IlsRedactError(f"unknown adapter {name!r}", hint=hint)
