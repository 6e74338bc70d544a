"""Database backends: one :class:`~ils_redact.engine.Engine` per server kind.

Rules and classification are backend-neutral; each backend turns them into its own
statements (PostgreSQL: column GRANTs + row-level security; MariaDB: column GRANTs +
``SQL SECURITY DEFINER`` views), reads its own catalog and applies plans.  Code outside
this package asks the engine object (:func:`get_backend`, :func:`engine_for`,
:func:`engine_for_dsn`) and does not import a backend's modules.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from ..engine import Engine
from ..errors import IlsRedactError

#: engine name -> the module whose ``ENGINE`` is its :class:`Engine` (imported on first use:
#: a PostgreSQL user need not have the MariaDB driver loaded, and the reverse)
BACKENDS = {"postgresql": "ils_redact.backends.postgresql.engine",
            "mariadb": "ils_redact.backends.mariadb.engine"}
#: how people call each server (for messages before an engine is loaded)
LABELS = {"postgresql": "PostgreSQL", "mariadb": "MariaDB"}


def get_backend(engine: str) -> Engine:
    """The engine object of ``engine`` (``postgresql`` or ``mariadb``)."""
    try:
        module = BACKENDS[engine]
    except KeyError:
        raise IlsRedactError(f"no backend for engine {engine!r}",
                             hint=f"known: {', '.join(BACKENDS)}") from None
    found: Engine = import_module(module).ENGINE
    return found


def engines() -> list[Engine]:
    return [get_backend(name) for name in BACKENDS]


def engine_for(conn: Any) -> Engine:
    """The engine a connection belongs to."""
    for engine in engines():
        if engine.owns(conn):
            return engine
    raise IlsRedactError(f"not a connection of a known server: {type(conn).__name__}")


def dsn_engine(dsn: str) -> str:
    """``mariadb`` for a mysql:// or mariadb:// URI, else ``postgresql`` (URI or libpq
    key=value conninfo)."""
    scheme = dsn.split("://", 1)[0].lower() if "://" in dsn else ""
    return "mariadb" if scheme in ("mysql", "mariadb") else "postgresql"


def engine_for_dsn(dsn: str) -> Engine:
    return get_backend(dsn_engine(dsn))


__all__ = ["BACKENDS", "LABELS", "Engine", "dsn_engine", "engine_for", "engine_for_dsn",
           "engines", "get_backend"]
