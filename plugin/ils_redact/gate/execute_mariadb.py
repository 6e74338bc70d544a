"""Gated queries on MariaDB (Koha): the engine-neutral runner (``gate.execute``) with the
MariaDB engine's part (``backends/mariadb/query.py``), and the catalog a query is checked
against when none was read from the server.

``run_query`` and ``session_gate`` are ``gate.execute``'s: they ask the engine the
connection belongs to.  They are named here too for the callers that imported them from
this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..catalog import Catalog, catalog_from_json
from .execute import run_query, session_gate

if TYPE_CHECKING:
    from ..adapters import Adapter

__all__ = ["catalog_for", "run_query", "session_gate"]


def catalog_for(adapter: Adapter, database: str) -> Catalog:
    """The adapter's schema facts as the connected Koha database: its relations named
    ``<database>.<table>`` (the facts were read from a database of another name)."""
    ref = adapter.reference_catalog()
    data = ref.to_json()
    old = ref.database
    data["database"] = database
    for r in data["relations"]:
        if r.get("schema") == old:
            r["schema"] = database
        for fk in r.get("foreign_keys", ()):
            if fk.get("references", {}).get("schema") == old:
                fk["references"]["schema"] = database
    data["schemas"] = [database]
    return catalog_from_json(data, source=f"{ref.source} (as {database})")
