"""Fixtures for the gate tests: the Evergreen rules and reference catalog, offline."""

from __future__ import annotations

import pytest

from ils_redact.catalog import Catalog
from ils_redact.rules import Rules
from support.gate import evergreen_catalog, evergreen_rules, stats_catalog


@pytest.fixture(scope="session")
def rules() -> Rules:
    return evergreen_rules()


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return evergreen_catalog()


@pytest.fixture(scope="session")
def catalog_with_stats() -> Catalog:
    return stats_catalog()
