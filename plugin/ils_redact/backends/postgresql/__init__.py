"""PostgreSQL backend: column GRANTs, row-level security, and the layer's own schema.

Public API (mirrored by the CLI, usable from Python and tests):
``connect``, ``read_catalog``, ``compute_install_plan``, ``offline_install_plan``,
``install``, ``compute_uninstall_plan``, ``uninstall``, ``status``.
"""

from .apply import (
    compute_install_plan,
    compute_uninstall_plan,
    install,
    offline_install_plan,
    status,
    uninstall,
)
from .connection import connect, read_only_reason, require_primary
from .introspect import read_catalog
from .query import describe_sqlstate
from .replication import replication_status, replication_text

ENGINE = "postgresql"

__all__ = [
    "ENGINE",
    "compute_install_plan",
    "compute_uninstall_plan",
    "connect",
    "describe_sqlstate",
    "install",
    "offline_install_plan",
    "read_catalog",
    "read_only_reason",
    "replication_status",
    "replication_text",
    "require_primary",
    "status",
    "uninstall",
]
