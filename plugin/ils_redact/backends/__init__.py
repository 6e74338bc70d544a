"""Database backends: one :class:`~ils_redact.engine.Engine` per server kind.

Rules and classification are backend-neutral; each backend turns them into its own
statements (PostgreSQL: column GRANTs + row-level security; MariaDB: column GRANTs +
``SQL SECURITY DEFINER`` views), reads its own catalog and applies plans.  Code outside
this package asks the engine object (:func:`get_backend`, :func:`engine_for`,
:func:`engine_for_dsn`) and does not import a backend's modules.
"""

from __future__ import annotations

from ..engine import (
    BACKENDS,
    LABELS,
    Engine,
    dsn_engine,
    engine_for,
    engine_for_dsn,
    engines,
    get_backend,
)

__all__ = ["BACKENDS", "LABELS", "Engine", "dsn_engine", "engine_for", "engine_for_dsn",
           "engines", "get_backend"]
