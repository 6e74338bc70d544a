"""Helpers shared by the tests (a package: ``support.verify`` runs the verify CLI; this
module holds the PostgreSQL helpers: Evergreen databases, logins, snapshots)."""

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

ROOT = Path(__file__).resolve().parents[2]
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


def run_cli(*args: str, env: dict | None = None, input: str | None = None,
            process: bool = False) -> subprocess.CompletedProcess:
    """The console script's entry point (``ils_redact.cli:main``), with its exit code,
    stdout and stderr as a user sees them.

    It runs in this process (the interpreter and the package are already loaded, which
    saves a second of start-up per call, and the suite makes well over a thousand calls),
    with stdin, stdout, stderr and the environment swapped for the call, exactly as
    click's own test runner does.  It runs as a real subprocess when asked
    (``process=True``: signals, a second process holding a lock), from a thread other
    than the main one (the swap is process-wide), with ``PYTHON*`` variables in ``env``
    (another release's package on PYTHONPATH), or for every call when
    ``ILS_REDACT_TEST_SUBPROCESS=1`` (the suite's whole-process mode, which CI can run
    too)."""
    import os
    import sys
    import threading

    if (process or os.environ.get("ILS_REDACT_TEST_SUBPROCESS") == "1"
            or threading.current_thread() is not threading.main_thread()
            # what only a new interpreter reads (another release on PYTHONPATH)
            or any(k.startswith("PYTHON") for k in env or {})):
        full_env = dict(os.environ)
        full_env.pop("ILS_REDACT_DSN", None)
        full_env.update(env or {})
        exe = Path(sys.executable).parent / "ils-redact"
        return subprocess.run([str(exe), *args], capture_output=True, text=True,
                              env=full_env, input=input, timeout=600)
    return _run_in_process(list(args), env, input)


def _run_in_process(args: list[str], env: dict | None, input: str | None
                    ) -> subprocess.CompletedProcess:
    import traceback

    from click.testing import CliRunner

    from ils_redact.cli import main

    overrides: dict[str, str | None] = {"ILS_REDACT_DSN": None}
    overrides.update(env or {})
    runner = CliRunner()
    code: int = 0
    with runner.isolation(input=input, env=overrides) as (out, err, _):
        import sys

        try:
            main(args)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if isinstance(exc.code, str):
                sys.stderr.write(exc.code + "\n")
        except BaseException:  # an unhandled error: Python prints it and exits 1
            sys.stderr.write(traceback.format_exc())
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        stdout = out.getvalue().decode(runner.charset, "replace")
        stderr = err.getvalue().decode(runner.charset, "replace")
    return subprocess.CompletedProcess(["ils-redact", *args], code, stdout, stderr)
