"""Koha (MariaDB): the second built-in adapter, registered through the same entry-point
group as Evergreen and any third-party adapter.

The preset (``preset.yaml``) is built from the real schema facts shipped beside it
(``catalog.json.gz``) by
``tools/build_koha_preset.py``; ``fixture.py`` builds a Koha-shaped database from the
same facts for tests, the demo and the benchmark.
"""

from pathlib import Path

from .. import Adapter

_HERE = Path(__file__).resolve().parent

ADAPTER = Adapter(
    name="koha",
    engine="mariadb",
    description="Koha ILS on MariaDB",
    preset_path=_HERE / "preset.yaml",
    reference_catalog_path=_HERE / "catalog.json.gz",
    fixture_module="ils_redact.adapters.koha.fixture",
    reports_module="ils_redact.adapters.koha.reports",
)
