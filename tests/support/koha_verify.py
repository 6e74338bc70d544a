"""Helpers for the Koha verify tests: the real console script, what it found, and a snapshot
of everything verify must leave as it was."""

# ruff: noqa: S608 - test SQL with quoted names

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ils_redact.backends.mariadb.sqltext import ident
from ils_redact.backends.mariadb.verify.probe import PROBE_PREFIX
from support.koha import GRANT_TABLES, KohaDb, run_cli, snapshot, write_koha_rules

#: Koha's etc/koha-conf.xml, trimmed to what verify reads (``<config>``) and a neighbour
KOHA_CONF = """<yazgfs>
<!-- trimmed from Koha's etc/koha-conf.xml -->
<listen id="biblioserver">unix:/var/run/koha/library/bibliosocket</listen>
<config>
 <db_scheme>mysql</db_scheme>
 <database>{database}</database>
 <hostname>localhost</hostname>
 <port>3306</port>
 <user>{user}</user>
 <pass>not-read</pass>
 <tls>no</tls>
 <biblioserver>biblios</biblioserver>
 <enable_plugins>0</enable_plugins>
</config>
</yazgfs>
"""


@dataclass
class Run:
    """One ``ils-redact --format json verify`` in a subprocess."""

    returncode: int
    stdout: str
    stderr: str
    data: dict[str, Any] | None
    junit: Path

    def findings(self, code: str | None = None, obj: str | None = None,
                 role: str | None = None) -> list[dict]:
        assert self.data is not None, self.stderr
        return [f for c in self.data["checks"] for f in c["findings"]
                if (code is None or f["code"] == code) and (obj is None or f["object"] == obj)
                and (role is None or f["role"] == role)]

    def codes(self, severity: str = "violation") -> set[str]:
        return {f["code"] for f in self.findings() if f["severity"] == severity}

    def check(self, check_id: str) -> dict:
        assert self.data is not None, self.stderr
        return next(c for c in self.data["checks"] if c["id"] == check_id)

    def only(self, code: str, obj: str, role: str | None = None) -> dict:
        found = self.findings(code, obj, role)
        assert len(found) == 1, f"{len(found)} x {code} {obj}:\n{self.explain()}"
        return found[0]

    def junit_root(self) -> ET.Element:
        return ET.parse(self.junit).getroot()

    def explain(self) -> str:
        if self.data is None:
            return self.stderr
        return "\n".join(f"{f['code']} {f['object']} [{f['role']}]: {f['why']}"
                         for f in self.findings())[:6000] or self.stderr


def verify_cli(db: KohaDb, tmp: Path, *args: str, fmt: str = "json", rules: Path | None = None,
               user: str | None = None) -> Run:
    rules = rules or write_koha_rules(tmp, db.prefix)
    junit = tmp / f"verify-{len(list(tmp.glob('verify-*.xml')))}.xml"
    res = run_cli("--dsn", db.dsn_as(user) if user else db.dsn, "--rules", str(rules),
                  "--format", fmt, "verify", "--junit", str(junit), *args)
    data = json.loads(res.stdout) if fmt == "json" and res.stdout.lstrip().startswith("{") \
        else None
    return Run(res.returncode, res.stdout, res.stderr, data, junit)


def execute(db: KohaDb, *statements: str) -> None:
    with db.connect() as c:
        for s in statements:
            c.execute(s)


def forget_public(db: KohaDb) -> None:
    """Remove PUBLIC's grants on this run's databases.  MariaDB keeps a grant when its
    object is dropped (it applies again to one created under the name), and PUBLIC's are
    every session's on the server: a test that grants to PUBLIC cleans up after itself."""
    like = db.server.prefix.replace("_", "\\_") + "%"
    with db.connect() as c:
        n = 0
        for t in ("db", "tables_priv", "columns_priv", "procs_priv"):
            n += c.execute(f"DELETE FROM mysql.{t} WHERE User = 'PUBLIC' AND Host = '' "
                           "AND (Db LIKE %s OR Db LIKE %s)", (like, "ils\\_redact\\_" + like)
                           ).rowcount
        if n:
            c.execute("FLUSH PRIVILEGES")


def dirty(db: KohaDb) -> None:
    """This database was changed in a way the pool's check does not see (a routine): drop it
    after the test instead of handing it to the next."""
    db.server._built.pop(db.name, None)


def full_snapshot(db: KohaDb, logins: tuple[str, ...] = ()) -> dict[str, Any]:
    """support.koha.snapshot (the Koha database's objects, the grant-table rows of this
    database, prefix and logins) plus the layer database's objects and table checksums,
    and every grant-table row of a probe login, PUBLIC or an anonymous account."""
    out = snapshot(db, logins)
    with db.connect() as c:
        layer = ident(db.layer)
        tables = [r[0] for r in c.execute(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
            "AND TABLE_TYPE = 'BASE TABLE' ORDER BY 1", (db.layer,)).fetchall()]
        out["layer checksums"] = c.execute(
            "CHECKSUM TABLE " + ", ".join(f"{layer}.{ident(t)}" for t in tables)).fetchall()
        for name, ttype in c.execute(
                "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = %s ORDER BY 1", (db.layer,)).fetchall():
            kw = "VIEW" if ttype == "VIEW" else "TABLE"
            out[f"layer {kw} {name}"] = c.execute(
                f"SHOW CREATE {kw} {layer}.{ident(name)}").fetchone()[1]
        for (name, rtype) in c.execute(
                "SELECT ROUTINE_NAME, ROUTINE_TYPE FROM information_schema.ROUTINES "
                "WHERE ROUTINE_SCHEMA = %s ORDER BY 1, 2", (db.layer,)).fetchall():
            out[f"layer {rtype} {name}"] = c.execute(
                f"SHOW CREATE {rtype} {layer}.{ident(name)}").fetchone()[2]
        for t in GRANT_TABLES:
            has_db = t in ("db", "tables_priv", "columns_priv", "procs_priv")
            others = "(Db = %s OR Db = %s)" if has_db else "TRUE"
            out[f"probe/PUBLIC/anonymous rows of mysql.{t}"] = sorted(
                tuple(str(v) for v in r) for r in c.execute(
                    f"SELECT * FROM mysql.{t} WHERE (User, Host) IN ({_OUR_PROBES}) "
                    f"OR User IN ('', 'PUBLIC') AND {others}",
                    (*_probe_params(db), *((db.name, db.layer) if has_db else ()))
                ).fetchall())
    return out


#: probe logins of this database, and any probe that holds no role: the server is shared
#: with parallel test workers, whose verify runs have probe logins of their own meanwhile
#: (a probe holds only the roles of the database it verifies, which carry that database's
#: role prefix; it holds none only in the moment between its CREATE USER and its GRANT)
_OUR_PROBES = ("SELECT g.User, g.Host FROM mysql.global_priv g WHERE g.User LIKE %s AND "
               "NOT EXISTS (SELECT 1 FROM mysql.roles_mapping o WHERE o.User = g.User AND "
               "o.Host = g.Host AND o.Role NOT LIKE %s)")


def _probe_params(db: KohaDb) -> tuple[str, str]:
    return (PROBE_PREFIX.replace("_", "\\_") + "%", db.prefix.replace("_", "\\_") + "%")


def probe_logins(db: KohaDb) -> list[tuple[str, str]]:
    """Probe logins left of this database's verify runs (see ``_OUR_PROBES``)."""
    return [tuple(r) for r in db.rows(
        f"SELECT User, Host FROM mysql.global_priv WHERE (User, Host) IN ({_OUR_PROBES})",
        _probe_params(db))]
