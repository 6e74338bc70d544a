"""Evergreen (PostgreSQL): the built-in adapter, registered through the same entry point
group as any third-party adapter."""

from pathlib import Path

from ...resources import package_file
from .. import Adapter

_HERE = Path(__file__).resolve().parent

ADAPTER = Adapter(
    name="evergreen",
    engine="postgresql",
    description="Evergreen ILS on PostgreSQL",
    preset_path=package_file("presets/evergreen.yaml", source_fallback="redaction_rules.yaml"),
    reference_catalog_path=_HERE / "catalog.json.gz",
    fixture_module="ils_redact.adapters.evergreen.fixture",
    reports_module="ils_redact.adapters.evergreen.reports",
)
