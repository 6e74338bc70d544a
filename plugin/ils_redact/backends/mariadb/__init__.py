"""MariaDB backend (Koha): column GRANTs to a locked definer account, SQL SECURITY
DEFINER views and procedures in a layer database of their own, and roles.

MariaDB has no row-level security.  The disclosure role holds no privilege on the Koha
tables at all; it reads the identity columns through views in ``ils_redact_<koha db>``
that join them to the scope of approved, unexpired requests for the calling login.
See ``generated.py`` for why those views are TEMPTABLE with a LIMIT, and ``planner.py``
for how an install that cannot be one transaction is still safe to interrupt.

Public API (the same names as the PostgreSQL backend, used by the CLI and tests):
``connect``, ``read_catalog``, ``recorded_catalog`` (the catalog install recorded, for
the query gate of staff logins), ``compute_install_plan``, ``offline_install_plan``,
``install``, ``compute_uninstall_plan``, ``uninstall``, ``status``.
"""

from . import procedures, staff
from .apply import (
    compute_install_plan,
    compute_uninstall_plan,
    install,
    offline_install_plan,
    status,
    uninstall,
)
from .connection import connect, read_only_reason, require_primary
from .introspect import read_catalog, recorded_catalog
from .replication import replication_status, replication_text
from .state import layer_database

ENGINE = "mariadb"

__all__ = [
    "ENGINE",
    "compute_install_plan",
    "compute_uninstall_plan",
    "connect",
    "install",
    "layer_database",
    "offline_install_plan",
    "procedures",
    "read_catalog",
    "read_only_reason",
    "replication_status",
    "replication_text",
    "require_primary",
    "recorded_catalog",
    "staff",
    "status",
    "uninstall",
]
