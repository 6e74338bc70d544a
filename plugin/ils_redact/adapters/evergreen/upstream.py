"""Evergreen's own SQL, read from a fetched repository: build a release's database and apply
upstream's version-upgrade scripts.  Nothing of Evergreen is shipped with ils-redact; this
reads the repository given to it (``git --git-dir``), for ``tools/build_release_catalogs.py``
and the ILS-upgrade test.

A release point X.Y.Z is the commit, on the release branch ``rel_X_Y``, that adds
``Open-ILS/src/sql/Pg/version-upgrade/*-X.Y.Z-upgrade-db.sql``.  A database is built as
Evergreen's ``create_database_extensions.sql`` and ``build-db.sh`` do: ``LC_COLLATE 'C'``,
plperlu and the contrib extensions, then every file of ``sql_file_manifest`` in order with
``-v eg_version=NULL`` and ``check_function_bodies=off``.

Where the server lacks an extension (the embedded PostgreSQL 18 has no plperl, pgcrypto or
xml2), ``stubs=True`` creates a stand-in so the schema loads: a language named plperlu whose
handler is PL/pgSQL's (a plperlu function is created, and fails if it is ever called; the
one that index expressions call on every insert, ``evergreen.lowercase``, gets an SQL body
with the same result) and nothing for a missing contrib extension (what needs it fails
where it is created, the same way in every copy).  Such a database is for comparing
copies with each other, never for running Evergreen.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

SQL_DIR = "Open-ILS/src/sql/Pg"
UPGRADE_DIR = f"{SQL_DIR}/version-upgrade"
STUB_HANDLER = "ils_redact_stub_plperlu_handler"


def git(git_dir: str | Path, *args: str) -> str:
    return subprocess.run(["git", f"--git-dir={git_dir}", *args], check=True,
                          capture_output=True, text=True).stdout


def release_point(git_dir: str | Path, version: str) -> tuple[str, str, str]:
    """(commit, date, script): the oldest commit on rel_X_Y that adds the release's
    version-upgrade script."""
    branch = "rel_" + version.rsplit(".", 1)[0].replace(".", "_")
    names = git(git_dir, "ls-tree", "--name-only", branch, f"{UPGRADE_DIR}/")
    script = [n for n in names.splitlines() if n.endswith(f"-{version}-upgrade-db.sql")]
    if len(script) != 1:
        raise ValueError(f"no single version-upgrade script for {version} on {branch}")
    log = git(git_dir, "log", branch, "--diff-filter=A", "--format=%H %cs", "--",
              script[0]).split()
    if not log:
        raise ValueError(f"no commit on {branch} adds {script[0]}")
    return log[-2], log[-1], script[0]


def dsn_for(dsn: str, database: str) -> str:
    return make_conninfo(dsn, dbname=database)


def _extract(git_dir: str | Path, commit: str, path: str, into: str) -> Path:
    archive = subprocess.run(["git", f"--git-dir={git_dir}", "archive", commit, path],
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return Path(into, path)


@dataclass
class Loaded:
    files: int = 0
    fts_config: str = ""
    stubbed: list[str] = field(default_factory=list)
    #: "file: ERROR ..." lines psql printed
    errors: list[str] = field(default_factory=list)


def _psql_errors(psql: str, target: str, path: Path, *, cwd: Path,
                 env: dict[str, str]) -> list[str]:
    run = subprocess.run([psql, "-X", "-q", "-v", "eg_version=NULL", "-d", target, "-f",
                          str(path)], cwd=cwd, capture_output=True, text=True, env=env)
    return [f"{path.name}: {e.split('ERROR:', 1)[1].strip()}"
            for e in run.stderr.splitlines() if "ERROR:" in e]


def _env() -> dict[str, str]:
    return dict(os.environ,
                PGOPTIONS="-c check_function_bodies=off -c client_min_messages=warning")


def build_database(git_dir: str | Path, commit: str, dsn: str, database: str, *,
                   psql: str, stubs: bool = False) -> Loaded:
    """Create ``database`` (dropped first) from the release's SQL."""
    out = Loaded()
    with tempfile.TemporaryDirectory(prefix="ils_redact_eg_") as tmp:
        pgdir = _extract(git_dir, commit, SQL_DIR, tmp)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(database)))
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UNICODE' "
                                 "LC_COLLATE 'C' LC_CTYPE 'C'").format(
                sql.Identifier(database)))
            major = conn.info.server_version // 10000
        target = dsn_for(dsn, database)
        text = (pgdir / "create_database_extensions.sql").read_text()
        wanted = re.findall(r"^\s*CREATE (LANGUAGE|EXTENSION) (\w+)", text, re.M)
        with psycopg.connect(target, autocommit=True) as conn:
            available = {r[0] for r in conn.execute("SELECT name FROM pg_available_extensions")}
            for kind, name in wanted:
                if name in available or not stubs:
                    conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {} CASCADE").format(
                        sql.Identifier(name)))
                elif kind == "LANGUAGE":
                    conn.execute(sql.SQL(
                        "CREATE FUNCTION public.{} () RETURNS language_handler "
                        "AS '$libdir/plpgsql', 'plpgsql_call_handler' LANGUAGE C").format(
                        sql.Identifier(STUB_HANDLER)))
                    conn.execute(sql.SQL("CREATE LANGUAGE {} HANDLER public.{}").format(
                        sql.Identifier(name), sql.Identifier(STUB_HANDLER)))
                    out.stubbed.append(f"language {name}")
                else:
                    out.stubbed.append(f"extension {name} (missing)")
        fts = pgdir / f"000.english.pg{major}.fts-config.sql"
        if not fts.exists():
            fts = pgdir / "000.english.pg.fts-config.sql"
        if not fts.exists():
            fts = sorted(pgdir.glob("000.english.pg*.fts-config.sql"),
                         key=lambda p: int(re.sub(r"\D", "", p.name) or 0))[-1]
        out.fts_config = fts.name
        env = _env()
        for line in (pgdir / "sql_file_manifest").read_text().splitlines():
            name = line.strip()
            if not name or name.startswith("#"):
                continue
            name = fts.name if name == "FTS_CONFIG_FILE" else name
            out.files += 1
            out.errors += _psql_errors(psql, target, pgdir / name, cwd=pgdir, env=env)
    if "language plperlu" in out.stubbed:
        with psycopg.connect(target, autocommit=True) as conn:
            _sql_stand_ins(conn)
    return out


def _sql_stand_ins(conn: psycopg.Connection) -> None:
    """Under the stub plperlu, give the Perl functions that index expressions evaluate on
    every insert (actor.usr, actor.card: ``evergreen.lowercase``) an SQL body with the
    same result, so rows can be written at all."""
    row = conn.execute("SELECT to_regprocedure('evergreen.lowercase(text)')").fetchone()
    if row and row[0]:
        conn.execute("CREATE OR REPLACE FUNCTION evergreen.lowercase(text) RETURNS text "
                     "LANGUAGE sql IMMUTABLE STRICT AS 'SELECT pg_catalog.lower($1)'")


def upgrade_chain(git_dir: str | Path, ref: str, start: str, end: str) -> list[str]:
    """The version-upgrade scripts (file names, in order) from ``start`` to ``end``, as a
    sysadmin runs them: the point releases of a series, then the script to the next
    series' .0 where one starts from this point."""
    from ...releases import version_key

    names = [Path(n).name for n in git(git_dir, "ls-tree", "--name-only", ref,
                                       f"{UPGRADE_DIR}/").splitlines()]
    steps: dict[str, list[str]] = {}
    for n in names:
        m = re.fullmatch(r"(\d+\.\d+\.\d+)-(\d+\.\d+\.\d+)-upgrade-db\.sql", n)
        if m:
            steps.setdefault(m[1], []).append(m[2])
    chain, here = [], start
    while here != end:
        options = [t for t in steps.get(here, ()) if version_key(t) <= version_key(end)]
        if not options:
            raise ValueError(f"no version-upgrade script from {here} towards {end}")
        nxt = max(options, key=version_key)
        chain.append(f"{here}-{nxt}-upgrade-db.sql")
        here = nxt
    return chain


def apply_upgrades(git_dir: str | Path, ref: str, scripts: list[str], dsn: str, *,
                   psql: str, progress: Callable[[str], None] | None = None
                   ) -> dict[str, list[str]]:
    """Run each script with psql as Evergreen's upgrade instructions do (errors do not stop
    the script); return script -> the errors psql printed."""
    out: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="ils_redact_eg_") as tmp:
        updir = _extract(git_dir, ref, UPGRADE_DIR, tmp)
        env = _env()
        for name in scripts:
            if progress:
                progress(name)
            out[name] = _psql_errors(psql, dsn, updir / name, cwd=updir, env=env)
    return out
