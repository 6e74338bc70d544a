"""Helpers for the Koha/MariaDB tests: the server, Koha-shaped databases, logins,
snapshots of what uninstall must restore, and the console script."""

# ruff: noqa: S608 - test SQL with quoted names

from __future__ import annotations

import dataclasses
import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ils_redact.adapters import get_adapter
from ils_redact.backends import mariadb as m
from ils_redact.backends.mariadb.connection import Connection, parse_dsn
from ils_redact.backends.mariadb.sqltext import account, ident, string
from ils_redact.catalog import Catalog, catalog_from_json
from ils_redact.rules import Rules, load_rules
from ils_redact.stats import all_reports
from support import run_cli  # noqa: F401 - the one helper; Koha tests import it from here

PRESET = get_adapter("koha").preset_path
PASSWORD = "Sekr1t-pw"
_counter = itertools.count(1)

#: the grant tables uninstall must leave as they were
GRANT_TABLES = ("global_priv", "db", "tables_priv", "columns_priv", "procs_priv",
                "roles_mapping")


def koha_rules(prefix: str, edit: Any = None) -> Rules:
    """The Koha preset with a role prefix of our own (optionally edited as text)."""
    text = PRESET.read_text(encoding="utf-8").replace(
        "role_prefix: ils_redact_", f"role_prefix: {prefix}", 1)
    if edit:
        text = edit(text)
    from ils_redact.rules.load import parse_rules

    return parse_rules(text, PRESET)


def write_koha_rules(tmp: Path, prefix: str, edit: Any = None) -> Path:
    text = PRESET.read_text(encoding="utf-8").replace(
        "role_prefix: ils_redact_", f"role_prefix: {prefix}", 1)
    if edit:
        text = edit(text)
    path = tmp / f"koha_rules_{next(_counter)}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@dataclass
class MariaServer:
    """A MariaDB server we may create databases, accounts and roles on."""

    dsn: str  # mysql://root[:pw]@host:port/
    kind: str
    prefix: str
    _n: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    #: (patrons, database name, pristine fingerprint) of databases free for reuse
    _pool: list[tuple[int, str, Any]] = field(default_factory=list)
    _built: dict[str, tuple[int, Any]] = field(default_factory=dict)
    #: whether mysql.global_priv had a PUBLIC row when the run began (see cleanup)
    _had_public: bool | None = None

    def __post_init__(self) -> None:
        with self.connect() as c:
            self._had_public = _public_row(c)

    def dsn_for(self, db: str = "", user: str | None = None,
                password: str | None = None) -> str:
        p = parse_dsn(self.dsn)
        u = user if user is not None else p["user"]
        pw = password if user is not None else p["password"]
        cred = quote(u or "", safe="") + (":" + quote(pw, safe="") if pw else "")
        return f"mysql://{cred}@{p['host']}:{p['port']}/{quote(db, safe='')}"

    def connect(self, db: str = "", **kw: Any) -> Connection:
        return m.connect(self.dsn_for(db), autocommit=True, **kw)

    def koha_db(self, patrons: int = 2_000, fresh: bool = False) -> KohaDb:
        """A Koha-shaped database with a role prefix no other test used: from the pool,
        else built."""
        from ils_redact.adapters.koha import fixture

        n = next(self._n)
        for i, (size, name, _) in enumerate(self._pool):
            if size == patrons and not fresh:
                del self._pool[i]
                return KohaDb(server=self, name=name, prefix=f"{self.prefix}{n}_")
        name = f"{self.prefix}koha{n}"
        with self.connect() as c:
            # as Koha's installation guide creates it (the server default may differ)
            c.execute(f"CREATE DATABASE {ident(name)} CHARACTER SET utf8mb4 "
                      "COLLATE utf8mb4_unicode_ci")
        with self.connect(name) as c:
            fixture.build_schema(c)
            c.autocommit(False)
            fixture.fill(c, patrons=patrons)
            c.commit()
            c.execute("ANALYZE TABLE borrowers, issues, items").fetchall()
        self._built[name] = (patrons, pristine(self, name))
        return KohaDb(server=self, name=name, prefix=f"{self.prefix}{n}_")

    def release(self, db: KohaDb) -> None:
        """Drop what the test added (layer database, accounts, roles); keep the Koha
        database for the next test only if it is exactly as built."""
        with self.connect() as c:
            c.execute(f"DROP DATABASE IF EXISTS {ident(db.layer)}")
            drop_accounts(c, db.prefix)
        size, want = self._built.get(db.name, (0, None))
        if want is not None and pristine(self, db.name) == want:
            self._pool.append((size, db.name, want))
        else:
            db.drop()

    def cleanup(self) -> None:
        """Drop this run's databases (and their layer databases), accounts and roles."""
        with self.connect() as c:
            dbs = [r[0] for r in c.execute(
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s "
                "OR SCHEMA_NAME LIKE %s", (self.prefix + "%", "ils_redact_" + self.prefix + "%"))]
            for db in dbs:
                c.execute(f"DROP DATABASE IF EXISTS {ident(db)}")
            drop_accounts(c, self.prefix)
            # the first GRANT ... TO PUBLIC writes a row for PUBLIC that its REVOKE leaves:
            # remove it if this run made it and nothing on the server is granted to PUBLIC
            if self._had_public is False and _public_row(c) and not _public_grants(c):
                c.execute("DELETE FROM mysql.global_priv WHERE User = 'PUBLIC' AND Host = '' "
                          "AND JSON_VALUE(Priv, '$.access') = 0")
                c.execute("FLUSH PRIVILEGES")


def _public_row(c: Connection) -> bool:
    return bool(c.execute("SELECT COUNT(*) FROM mysql.global_priv WHERE User = 'PUBLIC' AND "
                          "Host = ''").fetchone()[0])


def _public_grants(c: Connection) -> int:
    return sum(int(c.execute(f"SELECT COUNT(*) FROM mysql.{t} WHERE User = 'PUBLIC' AND "
                             "Host = ''").fetchone()[0])
               for t in ("db", "tables_priv", "columns_priv", "procs_priv", "roles_mapping"))


def pristine(srv: MariaServer, name: str) -> Any:
    """SHOW CREATE and CHECKSUM of every table."""
    with srv.connect(name) as c:
        tables = c.execute("SELECT TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES "
                           "WHERE TABLE_SCHEMA = %s ORDER BY 1", (name,)).fetchall()
        creates = tuple(c.execute(f"SHOW CREATE TABLE {ident(t)}").fetchone()[1]
                        for t, _ in tables)
        full = [t for t, _ in tables]
        sums = tuple(c.execute("CHECKSUM TABLE " + ", ".join(map(ident, full))).fetchall())
    return creates, sums


def drop_accounts(c: Connection, prefix: str) -> None:
    for user, host, is_role in c.execute(
            "SELECT User, Host, is_role FROM mysql.user WHERE User LIKE %s",
            (prefix.replace("_", "\\_") + "%",)).fetchall():
        if is_role == "Y":
            c.execute(f"DROP ROLE IF EXISTS {ident(user)}")
        else:
            c.execute(f"DROP USER IF EXISTS {account(user, host)}")


@dataclass
class KohaDb:
    """A Koha-shaped database and the ils-redact names that go with it."""

    server: MariaServer
    name: str
    prefix: str  # role prefix

    @property
    def layer(self) -> str:
        return f"ils_redact_{self.name}"

    @property
    def dsn(self) -> str:
        return self.server.dsn_for(self.name)

    def dsn_as(self, user: str, password: str = PASSWORD) -> str:
        return self.server.dsn_for(self.name, user=user, password=password)

    @property
    def rules(self) -> Rules:
        return dataclasses.replace(load_rules(PRESET), role_prefix=self.prefix)

    def role(self, kind: str) -> str:
        return f"{self.prefix}{kind}"

    @property
    def owner(self) -> str:
        return f"{self.prefix}owner"

    @contextmanager
    def connect(self, user: str | None = None, password: str = PASSWORD,
                autocommit: bool = True) -> Iterator[Connection]:
        dsn = self.dsn_as(user, password) if user else self.dsn
        conn = m.connect(dsn, autocommit=autocommit)
        try:
            yield conn
        finally:
            conn.close()

    def scalar(self, query: str, params: Any = None, user: str | None = None) -> Any:
        with self.connect(user) as c:
            row = c.execute(query, params).fetchone()
            return row[0] if row else None

    def rows(self, query: str, params: Any = None, user: str | None = None) -> list[tuple]:
        with self.connect(user) as c:
            return list(c.execute(query, params).fetchall())

    def install(self, rules: Rules | None = None) -> Any:
        with self.connect(autocommit=False) as c:
            return m.install(c, rules or self.rules, reports=all_reports)

    def uninstall(self, discard_audit: bool = True) -> Any:
        with self.connect(autocommit=False) as c:
            return m.uninstall(c, discard_audit=discard_audit)

    def login(self, name: str, *kinds: str, existing: bool = False) -> str:
        """A staff login ``<prefix>name``@% in the given roles, through the staff API:
        created by ils-redact, or (``existing``) one that already exists."""
        from ils_redact.backends.mariadb import staff

        user = f"{self.prefix}{name}"
        with self.connect(autocommit=False) as c:
            if not kinds and not existing:
                c.execute(f"CREATE USER {account(user, '%')} IDENTIFIED BY {string(PASSWORD)}")
            for i, kind in enumerate(kinds):
                plan = staff.plan_grant(c, self.rules, user, kind,
                                        create=(i == 0 and not existing), password=PASSWORD)
                c.rollback()
                staff.apply(c, plan)
        return user

    def drop(self) -> None:
        with self.server.connect() as c:
            c.execute(f"DROP DATABASE IF EXISTS {ident(self.name)}")
            c.execute(f"DROP DATABASE IF EXISTS {ident(self.layer)}")
            drop_accounts(c, self.prefix)


def snapshot(db: KohaDb, logins: tuple[str, ...] = ()) -> dict[str, Any]:
    """What uninstall must restore: SHOW CREATE of every object of the Koha database, and
    every row of the grant tables that concerns this database, its layer, its prefix or
    the given logins (the server is shared, so other rows may change meanwhile)."""
    out: dict[str, Any] = {}
    with db.connect() as c:
        for name, ttype in c.execute(
                "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = %s ORDER BY 1", (db.name,)).fetchall():
            kw = "VIEW" if ttype == "VIEW" else "TABLE"
            row = c.execute(f"SHOW CREATE {kw} {ident(db.name)}.{ident(name)}").fetchone()
            out[f"{kw} {name}"] = row[1]
        for kw, rtype in (("PROCEDURE", "PROCEDURE"), ("FUNCTION", "FUNCTION")):
            for (name,) in c.execute(
                    "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE "
                    "ROUTINE_SCHEMA = %s AND ROUTINE_TYPE = %s", (db.name, rtype)).fetchall():
                out[f"{kw} {name}"] = c.execute(
                    f"SHOW CREATE {kw} {ident(db.name)}.{ident(name)}").fetchone()[2]
        for (name,) in c.execute("SELECT TRIGGER_NAME FROM information_schema.TRIGGERS "
                                 "WHERE EVENT_OBJECT_SCHEMA = %s", (db.name,)).fetchall():
            out[f"TRIGGER {name}"] = c.execute(
                f"SHOW CREATE TRIGGER {ident(db.name)}.{ident(name)}").fetchone()[2]
        like = db.prefix.replace("_", "\\_") + "%"
        users = list(logins) or [""]
        ph = ", ".join(["%s"] * len(users))
        for t in GRANT_TABLES:
            cols = [r[0] for r in c.execute(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'mysql' "
                "AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION", (t,)).fetchall()]
            cond = ["User LIKE %s", f"User IN ({ph})"]
            params: list[Any] = [like, *users]
            if "Db" in cols:
                cond.append("Db IN (%s, %s)")
                params += [db.name, db.layer]
            if "Role" in cols:
                cond.append("Role LIKE %s")
                params.append(like)
            out[f"mysql.{t}"] = sorted(
                tuple(str(v) for v in r) for r in c.execute(
                    f"SELECT * FROM mysql.{t} WHERE " + " OR ".join(cond), params).fetchall())
        out["layer database"] = c.execute(
            "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
            (db.layer,)).fetchone()[0]
    return out


def popen_cli(*args: str) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("ILS_REDACT_DSN", None)
    exe = Path(sys.executable).parent / "ils-redact"
    return subprocess.Popen([str(exe), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def catalog_for(adapter: Any, database: str) -> Catalog:
    """The adapter's schema facts as the connected Koha database: its relations named
    ``<database>.<table>`` (the facts were read from a database of another name)."""
    ref = adapter.reference_catalog()
    data = ref.to_json()
    old = ref.database
    data["database"] = database
    for r in data["relations"]:
        if r.get("schema") == old:
            r["schema"] = database
        for fk in r.get("foreign_keys", ()):
            if fk.get("references", {}).get("schema") == old:
                fk["references"]["schema"] = database
    data["schemas"] = [database]
    return catalog_from_json(data, source=f"{ref.source} (as {database})")
