"""Database backends: SQL generation and execution per engine.

Rules and classification are backend-neutral; each backend turns them into its own
statements (PostgreSQL: column GRANTs + row-level security; MariaDB: column GRANTs +
``SQL SECURITY DEFINER`` views), reads its own catalog and applies plans.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

from ..errors import IlsRedactError

BACKENDS = {"postgresql": "ils_redact.backends.postgresql",
            "mariadb": "ils_redact.backends.mariadb"}


def get_backend(engine: str) -> ModuleType:
    try:
        return import_module(BACKENDS[engine])
    except KeyError:
        raise IlsRedactError(f"no backend for engine {engine!r}",
                             hint=f"known: {', '.join(BACKENDS)}") from None
