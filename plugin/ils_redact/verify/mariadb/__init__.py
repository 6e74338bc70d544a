"""``ils-redact verify`` for Koha on MariaDB, under the name it had before it moved under
``backends/mariadb/verify/``: its ``verify`` and ``context``; its modules under their old
names are the same module objects."""

from ...backends.mariadb.verify import context, verify

__all__ = ["context", "verify"]
