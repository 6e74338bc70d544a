"""Shared by the Koha (MariaDB) benchmarks: the server, one benchmark's database and
accounts, and the fixture built at a given size.

The server: ``ILS_REDACT_BENCH_MARIADB_DSN`` (an administrator DSN) if set, else
``mysql://root@127.0.0.1:3306/``.  Each benchmark names its own prefix and database, so
two can run on one server; everything it creates starts with the prefix (accounts,
roles) or is its database and that database's layer (``ils_redact_<db>``).
"""

# ruff: noqa: S608 - benchmark SQL: names quoted with sqltext.ident/account

from __future__ import annotations

import dataclasses
import os
import time
from urllib.parse import quote

from ils_redact.adapters import get_adapter
from ils_redact.adapters.koha import fixture
from ils_redact.backends import mariadb as m
from ils_redact.backends.mariadb.connection import parse_dsn
from ils_redact.backends.mariadb.sqltext import account, ident
from ils_redact.rules import Rules, load_rules

PASSWORD = "bench-pw"


def server_dsn() -> str:
    return os.environ.get("ILS_REDACT_BENCH_MARIADB_DSN", "mysql://root@127.0.0.1:3306/")


@dataclasses.dataclass(frozen=True)
class KohaBench:
    """One benchmark's Koha database (``db``) and the accounts it makes (``prefix``)."""

    prefix: str
    db: str

    @property
    def layer(self) -> str:
        return m.layer_database(self.db)

    def dsn_for(self, db: str, user: str | None = None) -> str:
        """The server's DSN for ``db``, as the administrator or as ``user`` (made by the
        benchmark with :data:`PASSWORD`)."""
        pdsn = parse_dsn(server_dsn())
        cred = (f"{quote(user)}:{quote(PASSWORD)}" if user else
                quote(pdsn["user"] or "") + (":" + quote(pdsn["password"]) if pdsn["password"]
                                             else ""))
        return f"mysql://{cred}@{pdsn['host']}:{pdsn['port']}/{db}"

    def rules(self, access: str | None = None) -> Rules:
        """The Koha preset with this benchmark's prefix (and disclosure access, if given)."""
        r = dataclasses.replace(load_rules(get_adapter("koha").preset_path),
                                role_prefix=self.prefix)
        if access is not None:
            r = dataclasses.replace(r, disclosure=dataclasses.replace(r.disclosure,
                                                                      access=access))
        return r

    def drop_accounts(self, root: m.connection.Connection) -> None:
        for user, host, is_role in root.execute(
                "SELECT User, Host, is_role FROM mysql.user WHERE User LIKE %s",
                (self.prefix.replace("_", "\\_") + "%",)).fetchall():
            root.execute(f"DROP ROLE {ident(user)}" if is_role == "Y"
                         else f"DROP USER {account(user, host)}")

    def drop_layer(self, root: m.connection.Connection) -> None:
        """What an install left (the layer database, the roles, the logins), keeping the
        Koha database the benchmark built."""
        root.execute(f"DROP DATABASE IF EXISTS {ident(self.layer)}")
        self.drop_accounts(root)

    def drop_everything(self, root: m.connection.Connection) -> None:
        root.execute(f"DROP DATABASE IF EXISTS {ident(self.db)}")
        self.drop_layer(root)

    def rows(self, root: m.connection.Connection, table: str) -> int:
        """Rows of ``table`` in the benchmark's database; 0 when it was never built."""
        have = root.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE "
                            "TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                            (self.db, table)).fetchone()[0]
        if not have:
            return 0
        return int(root.execute(
            f"SELECT COUNT(*) FROM {ident(self.db)}.{ident(table)}").fetchone()[0])

    def build(self, patrons: int, circulations: int, analyze: tuple[str, ...]) -> float:
        """The full Koha fixture at this size, then ANALYZE of ``analyze``; seconds."""
        t = time.perf_counter()
        with m.connect(self.dsn_for(""), autocommit=True) as root:
            root.execute(f"CREATE DATABASE {ident(self.db)}")
        with m.connect(self.dsn_for(self.db), autocommit=True) as c:
            fixture.build_schema(c)
            c.autocommit(False)
            fixture.fill(c, patrons=patrons, circulations=circulations)
            c.commit()
            c.execute("ANALYZE TABLE " + ", ".join(map(ident, analyze))).fetchall()
        return time.perf_counter() - t
