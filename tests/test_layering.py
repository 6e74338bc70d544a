"""The package's layering, as the import graph shows it (``tools/layering.py``).

cli and console -> services (plan, verify, disclosure, stats, gate) -> the engine
(``engine.py``, ``backends/``) -> rules, catalog, errors.  Two properties are checked:

- no import cycle between ils_redact's subpackages (every import counts, lazy ones too;
  ``if TYPE_CHECKING:`` imports do not run and are left out);
- code outside ``backends/`` asks the engine object (``backends.get_backend``,
  ``engine_for``) and does not import ``backends.<engine>.<module>``, except the modules
  of :data:`DEEP_ALLOWED`, each with its reason.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

import layering  # noqa: E402

#: edges left out of the cycle check: the statistics code (``stats/`` and
#: ``backends/*/stats*.py``) still closes the one cycle left (adapters -> stats.model,
#: backends -> stats.publish/run, stats -> adapters/gate/backends; `python
#: tools/layering.py` prints it): its imports neither make nor hide a cycle here until the
#: report model moves below the engines and the engines' statistics parts stop importing
#: the service (the open part of the engine-seam work)
STATS_MODULES = ("ils_redact.stats", "ils_redact.backends.postgresql.stats",
                 "ils_redact.backends.mariadb.stats")

#: importing module (prefix) -> why it still imports an engine's modules directly
DEEP_ALLOWED = {
    # the old names of verify's engine parts (now backends/<engine>/verify/), kept as the
    # same module objects for the tests that import them
    "ils_redact.verify.expect": "old name of backends.postgresql.verify.expect",
    "ils_redact.verify.hazards": "old name of backends.postgresql.verify.hazards",
    "ils_redact.verify.stats_layer": "old name of backends.postgresql.verify.stats_layer",
    "ils_redact.verify.mariadb": "old names of backends.mariadb.verify and its modules",
    # the adapters read their ILS's own tables (release, saved reports) with the
    # engine's quoting helpers
    "ils_redact.adapters.koha": "Koha's release and saved-report readers quote with "
                                "the MariaDB backend's helpers",
    # the statistics code, which still closes the cycle (see STATS_MODULES)
    "ils_redact.stats": "the statistics code: its PostgreSQL parts are still under stats/",
    # the demo builds an Evergreen database and its staff on PostgreSQL only
    "ils_redact.demo": "the demo is PostgreSQL only (embedded PostgreSQL, Evergreen)",
    "ils_redact.console.demo": "the console demo is PostgreSQL only",
}


def _is_stats(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") or module.startswith(m + "_")
               for m in STATS_MODULES)


def test_no_import_cycle_between_subpackages() -> None:
    found = [i for i in layering.imports()
             if not _is_stats(i.source) and not _is_stats(i.target)]
    cycles = layering.cycles(layering.package_graph(found))
    assert cycles == [], "import cycles between subpackages: " + "; ".join(
        " <-> ".join(c) for c in cycles)


def test_no_import_into_an_engine_module_from_outside_backends() -> None:
    bad = [d for d in layering.deep_imports()
           if not any(d.source == p or d.source.startswith(p + ".") for p in DEEP_ALLOWED)]
    assert bad == [], "imports into backends.<engine>.<module>; ask the engine instead:\n" + \
        "\n".join(f"{d.path}:{d.line}: {d.source} -> {d.target}" for d in bad)


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert layering.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [
        ["a", "b", "c"]]
    assert layering.cycles({"a": {"b"}, "b": set()}) == []
