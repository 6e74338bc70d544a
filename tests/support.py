"""Helpers shared by the PostgreSQL tests: Evergreen databases, logins, snapshots."""

from __future__ import annotations

import dataclasses
import itertools
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from ils_redact.rules import Rules, load_rules
from ils_redact.servers import Server, pg_tool

ROOT = Path(__file__).resolve().parent.parent
RULES_FILE = ROOT / "redaction_rules.yaml"
_counter = itertools.count(1)


def default_rules(prefix: str) -> Rules:
    return dataclasses.replace(load_rules(RULES_FILE), role_prefix=prefix)


def write_rules(tmp: Path, prefix: str, edit=None) -> Path:
    """A copy of the default rules file with our prefix, optionally edited as text."""
    text = RULES_FILE.read_text(encoding="utf-8").replace(
        "role_prefix: ils_redact_", f"role_prefix: {prefix}", 1)
    if edit:
        text = edit(text)
    path = tmp / f"rules_{next(_counter)}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def create_role(srv: Server, name: str, *, login: bool = True,
                member_of: tuple[str, ...] = ()) -> str:
    with psycopg.connect(srv.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} {}").format(
            sql.Identifier(name), sql.SQL("LOGIN" if login else "NOLOGIN")))
        for group in member_of:
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group),
                                                         sql.Identifier(name)))
    return name


@dataclass
class EgDb:
    """A database shaped like Evergreen, owned by a non-superuser ILS owner."""

    server: Server
    name: str
    owner: str
    app: str
    prefix: str  # role prefix for ils-redact in this database

    @property
    def dsn(self) -> str:
        """Superuser DSN (what a sysadmin runs ils-redact with)."""
        return self.server.dsn_for(self.name)

    def dsn_as(self, user: str) -> str:
        return self.server.dsn_for(self.name, user=user)

    @property
    def rules(self) -> Rules:
        return default_rules(self.prefix)

    def role(self, kind: str) -> str:
        return f"{self.prefix}{kind}"

    @contextmanager
    def connect(self, user: str | None = None, autocommit: bool = True
                ) -> Iterator[psycopg.Connection]:
        dsn = self.dsn_as(user) if user else self.dsn
        with psycopg.connect(dsn, autocommit=autocommit) as conn:
            yield conn

    def scalar(self, query: str, params: tuple = (), user: str | None = None):
        with self.connect(user) as conn:
            row = conn.execute(query, params).fetchone()
            return row[0] if row else None


def dump_schema(db: EgDb, user: str | None = None) -> str:
    """pg_dump --schema-only with a fixed \\restrict key, so two dumps compare byte for byte."""
    out = subprocess.run(
        [pg_tool("pg_dump"), "--schema-only", "--restrict-key=ilsredacttest",
         "-d", db.dsn_as(user) if user else db.dsn],
        check=True, capture_output=True, text=True)
    return out.stdout


def snapshot(db: EgDb) -> dict[str, object]:
    """What must not change when nothing should: schema dump, roles, policies, ACLs."""
    with db.connect() as conn:
        roles = conn.execute(
            "SELECT rolname, rolsuper, rolcanlogin, rolbypassrls FROM pg_roles "
            "WHERE rolname LIKE %s ORDER BY 1", (db.prefix + "%",)).fetchall()
        policies = conn.execute(
            "SELECT schemaname, tablename, policyname, permissive, roles::text, cmd, qual "
            "FROM pg_policies ORDER BY 1, 2, 3").fetchall()
        rls = conn.execute(
            "SELECT c.oid::regclass::text FROM pg_class c WHERE c.relrowsecurity "
            "ORDER BY 1").fetchall()
        members = conn.execute(
            "SELECT g.rolname, m.rolname FROM pg_auth_members a JOIN pg_roles g "
            "ON g.oid = a.roleid JOIN pg_roles m ON m.oid = a.member "
            "WHERE g.rolname LIKE %s OR m.rolname LIKE %s ORDER BY 1, 2",
            (db.prefix + "%", db.prefix + "%")).fetchall()
    return {"dump": dump_schema(db), "roles": roles, "policies": policies, "rls": rls,
            "members": members}


def run_cli(*args: str, env: dict | None = None, input: str | None = None
            ) -> subprocess.CompletedProcess:
    """The real console script, in a subprocess: exit codes and stderr as a user sees them."""
    import os
    import sys

    full_env = dict(os.environ)
    full_env.pop("ILS_REDACT_DSN", None)
    full_env.update(env or {})
    exe = Path(sys.executable).parent / "ils-redact"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=full_env,
                          input=input, timeout=600)
