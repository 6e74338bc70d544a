"""The package's layering, as the import graph shows it (``tools/layering.py``).

cli and console -> services (verify, disclosure, stats, query; the gate and the ILS
adapters beside them) -> the engine (``engine.py``, ``backends/``) -> plan, sdc (the
report model and the suppression arithmetic), rules, catalog, errors.  Three properties
are checked:

- no import cycle between ils_redact's subpackages (every import counts, lazy ones too;
  ``if TYPE_CHECKING:`` imports do not run and are left out);
- the engines import no service or front end (:data:`ABOVE_THE_ENGINES`);
- code outside ``backends/`` asks the engine object (``backends.get_backend``,
  ``engine_for``) and does not import ``backends.<engine>.<module>``, except the modules
  of :data:`DEEP_ALLOWED`, each with its reason.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

import layering  # noqa: E402

#: the services and front ends; an engine (``backends/``) imports none of them: what it
#: needs from a service is handed to it (the statistics reports, as a ``ReportSource``)
ABOVE_THE_ENGINES = ("stats", "gate", "query", "disclosure", "verify", "adapters", "cli",
                     "console", "demo", "pytest_plugin")

#: importing module (prefix) -> why it still imports an engine's modules directly
DEEP_ALLOWED = {
    # the adapters read their ILS's own tables (release, saved reports) with the
    # engine's quoting helpers
    "ils_redact.adapters.koha": "Koha's release and saved-report readers quote with "
                                "the MariaDB backend's helpers",
    # the demo builds an Evergreen database and its staff on PostgreSQL only
    "ils_redact.demo": "the demo is PostgreSQL only (embedded PostgreSQL, Evergreen)",
    "ils_redact.console.demo": "the console demo is PostgreSQL only",
}


def test_no_import_cycle_between_subpackages() -> None:
    cycles = layering.cycles(layering.package_graph(layering.imports()))
    assert cycles == [], "import cycles between subpackages: " + "; ".join(
        " <-> ".join(c) for c in cycles)


def test_the_engines_import_no_service() -> None:
    bad = sorted({f"{i.source} -> {i.target}" for i in layering.imports()
                  if i.source.startswith("ils_redact.backends.")
                  and layering.subpackage(i.target) in ABOVE_THE_ENGINES})
    assert bad == [], "backends/ imports a service or front end:\n" + "\n".join(bad)


def test_no_import_into_an_engine_module_from_outside_backends() -> None:
    bad = [d for d in layering.deep_imports()
           if not any(d.source == p or d.source.startswith(p + ".") for p in DEEP_ALLOWED)]
    assert bad == [], "imports into backends.<engine>.<module>; ask the engine instead:\n" + \
        "\n".join(f"{d.path}:{d.line}: {d.source} -> {d.target}" for d in bad)


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert layering.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [
        ["a", "b", "c"]]
    assert layering.cycles({"a": {"b"}, "b": set()}) == []
