"""Koha on MariaDB: real servers only.

The server and the Koha-shaped databases come from tests/conftest.py (fixtures
``mariadb``, ``koha``, ``installed_module``: the parity tests at the top level use them
too); this adds ``installed`` and the ``mariadb`` marker.

Every test here carries the ``mariadb`` marker, so a CI run that already ran them can
deselect them (``-m "not mariadb"``) in its second pass over another PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from support.koha import KohaDb

HERE = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "mariadb: runs against a MariaDB server (Koha)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.mariadb)


@pytest.fixture
def installed(koha: KohaDb) -> KohaDb:
    koha.install()
    return koha
