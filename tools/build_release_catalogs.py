"""Build the per-release catalog facts shipped with the adapters, from upstream.

Usage::

    python tools/build_release_catalogs.py evergreen --git-dir PATH/Evergreen.git \\
        --dsn postgresql://postgres@127.0.0.1:5432/postgres [--release 3.12.0 ...] [--keep]
    python tools/build_release_catalogs.py koha --sql FILE --release 23.05 \\
        --source OWNER/REPO@COMMIT --date YYYY-MM-DD --release-from TEXT \\
        [--how TEXT] --dsn mysql://root@127.0.0.1:3306/

Evergreen: a release point X.Y.Z is the commit, on the release branch ``rel_X_Y``, that
adds ``Open-ILS/src/sql/Pg/version-upgrade/*-X.Y.Z-upgrade-db.sql``.  For each release
this reads ``Open-ILS/src/sql/Pg`` of that commit out of the fetched repository given on
the command line (``git archive``; nothing upstream is copied into this repository),
creates a database ``h_releases_eg_X_Y_Z`` as Evergreen's own
``create_database_extensions.sql`` does (``LC_COLLATE 'C'``, plperlu and the contrib
extensions), loads every file of ``sql_file_manifest`` in order with
``check_function_bodies=off``, the release's ``000.english.pg*.fts-config.sql`` and
``-v eg_version=NULL`` (as ``build-db.sh``), reads the catalog with ils-redact's own reader
(``ils-redact catalog dump``) and writes it as compact gzipped JSON beside the adapter,
with its source, commit and date in ``manifest.json``.

Koha: ``installer/data/mysql/kohastructure.sql`` as stored for a Koha repository (the
file is given on the command line and never copied here), loaded into a throwaway
MariaDB database ``h_koharel_YYMM`` with the ``Version`` system preference Koha's
installer writes, and read the same way; the manifest records the repository, commit,
date, the dump's own completion date and how the release was determined.

The databases are dropped afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "plugin"))

from ils_redact.adapters.evergreen.upstream import (  # noqa: E402
    build_database,
    dsn_for,
    release_point,
)
from ils_redact.adapters.releases import STORE, store_catalog  # noqa: E402

EG_DIR = ROOT / "plugin/ils_redact/adapters/evergreen/releases"
KOHA_DIR = ROOT / "plugin/ils_redact/adapters/koha/releases"
EG_SQL = "Open-ILS/src/sql/Pg"
EG_RELEASES = ("3.12.0", "3.12.10", "3.13.0", "3.13.11", "3.14.0", "3.14.12", "3.15.0",
               "3.15.14", "3.16.0", "3.16.10", "3.17.0", "3.17.4")
EG_REPOSITORY = "evergreen-library-system/Evergreen"


def _psql() -> str:
    for d in (os.environ.get("PG_BIN"), "/usr/lib/postgresql/15/bin"):
        if d and Path(d, "psql").exists():
            return str(Path(d, "psql"))
    return "psql"


def read_pg_catalog(dsn: str) -> Any:
    import psycopg

    from ils_redact.backends.postgresql.introspect import read_catalog

    with psycopg.connect(dsn) as conn:
        return read_catalog(conn)


def evergreen(args: argparse.Namespace) -> None:
    import psycopg

    from ils_redact.adapters.evergreen.release import detect_release

    manifest_path = EG_DIR / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest.setdefault("system", "evergreen")
    entries = manifest.setdefault("releases", {})
    for version in args.release or EG_RELEASES:
        commit, date, script = release_point(args.git_dir, version)
        database = "h_releases_eg_" + version.replace(".", "_")
        t0 = time.perf_counter()
        info = build_database(args.git_dir, commit, args.dsn, database, psql=_psql())
        target = dsn_for(args.dsn, database)
        catalog = read_pg_catalog(target)
        with psycopg.connect(target) as conn:
            detected = detect_release(conn)
            patch = conn.execute("SELECT max(version::int) FROM config.upgrade_log "
                                 "WHERE version ~ '^[0-9]+$'").fetchone()[0]
        catalog.database = "evergreen"
        catalog.release = version
        out = store_catalog(catalog, EG_DIR / STORE, version)
        entries[version] = {
            "repository": EG_REPOSITORY,
            "commit": commit,
            "date": date,
            "release_point": f"{script} added on rel_{version.rsplit('.', 1)[0].replace('.', '_')}",
            "loaded": f"{info.files} files of sql_file_manifest (FTS config "
                      f"{info.fts_config}) into PostgreSQL {catalog.server_version}",
            "statement_errors": len(info.errors),
            "database_patch": patch,
            "detected_from_database": detected.describe() if detected else None,
            # (detection from the patch number alone needs the other release points in
            # this manifest: rerun a release to refresh it)
            "relations": len(catalog.relations),
            "tables": sum(1 for _ in catalog.tables()),
            "views": sum(1 for _ in catalog.views()),
        }
        for e in info.errors[:20]:
            print(f"  {version}: {e}", file=sys.stderr)
        print(f"{version}: {commit[:10]} {date}: {len(catalog.relations)} relations, "
              f"{len(info.errors)} statement errors, "
              f"{time.perf_counter() - t0:.0f} s -> {out}", file=sys.stderr)
        if not args.keep:
            with psycopg.connect(args.dsn, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def _mariadb_cli(dsn: str, database: str) -> list[str]:
    """The ``mariadb`` client command line for a DSN (the password goes in the
    environment, never on the command line)."""
    from ils_redact.backends.mariadb.connection import parse_dsn

    p = parse_dsn(dsn)
    cmd = ["mariadb", "--batch", "-h", str(p.get("host") or "127.0.0.1"),
           "-P", str(p.get("port") or 3306), "-u", str(p.get("user") or "root")]
    return [*cmd, database]


def kohastructure_facts(text: str) -> dict[str, Any]:
    """What a kohastructure.sql says about itself: the dump's completion date and the
    server it was dumped from (mysqldump's header and trailer), and its tables."""
    done = re.search(r"^-- Dump completed on (\d{4}-\d\d-\d\d)", text, re.M)
    server = re.search(r"^-- Server version\s+(.+)$", text, re.M)
    tables = re.findall(r"^CREATE TABLE `([^`]+)`", text, re.M)
    return {"dump_completed": done.group(1) if done else None,
            "dumped_from": server.group(1).strip() if server else None,
            "create_tables": len(tables)}


def koha(args: argparse.Namespace) -> None:
    """Build one Koha release's catalog from a local kohastructure.sql: load it into a
    throwaway MariaDB database ``h_koharel_<release>``, write the ``Version`` system
    preference as Koha's installer does, read the catalog with ils-redact's own reader
    and store it beside the adapter.  The SQL file is read from the command line; it is
    never copied into this repository."""
    from ils_redact.backends.mariadb.connection import connect
    from ils_redact.backends.mariadb.introspect import read_catalog

    if not re.fullmatch(r"\d\d\.\d\d", args.release):
        raise SystemExit(f"--release {args.release!r}: expected YY.MM (a Koha release line)")
    repo, _, commit = args.source.partition("@")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo) or not re.fullmatch(r"[0-9a-f]{40}", commit):
        raise SystemExit(f"--source {args.source!r}: expected OWNER/REPO@<40-hex commit>")
    database = "h_koharel_" + args.release.replace(".", "")
    path = Path(args.sql)
    text = path.read_text(encoding="utf-8")
    facts = kohastructure_facts(text)
    if not facts["create_tables"]:
        raise SystemExit(f"{path}: no CREATE TABLE statement (not a kohastructure.sql)")
    server = args.dsn.rstrip("/")
    t0 = time.perf_counter()
    with connect(server + "/", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS `{database}`")
        conn.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4 "
                     "COLLATE utf8mb4_unicode_ci")
    try:
        mysql = subprocess.run(_mariadb_cli(server, database), input=text,
                               capture_output=True, text=True)
        if mysql.returncode:
            raise SystemExit(f"{path}: did not load: {mysql.stderr.strip()}")
        with connect(f"{server}/{database}") as conn:
            # what Koha's web installer writes after loading the structure
            version = args.koha_version or f"{args.release}.00.000"
            conn.execute("INSERT INTO systempreferences (variable, value) VALUES "
                         "('Version', %s)", (version.replace(".", "")[:2] + "."
                                             + version.replace(".", "")[2:],))
            conn.commit()
            catalog = read_catalog(conn)
    finally:
        if not args.keep:
            with connect(server + "/", autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS `{database}`")
    tables = sum(1 for _ in catalog.tables())
    if tables != facts["create_tables"]:
        raise SystemExit(f"{path}: {facts['create_tables']} CREATE TABLE statements but "
                         f"{tables} tables loaded")
    catalog.database = "koha"
    catalog.default_schema = "koha"
    catalog.schemas = ("koha",)  # not the throwaway database's name
    catalog.relations = {f"koha.{r.name}": _rename(r) for r in catalog.relations.values()}
    catalog.release = args.release
    out = store_catalog(catalog, KOHA_DIR / STORE, args.release)
    manifest_path = KOHA_DIR / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest.setdefault("system", "koha")
    entry = {
        "repository": repo,
        "commit": commit,
        "date": args.date,
        "release_from": args.release_from,
        "loaded": f"installer/data/mysql/kohastructure.sql into MariaDB "
                  f"{catalog.server_version}" + (f"; {args.how}" if args.how else ""),
        "dump_completed": facts["dump_completed"],
        "relations": len(catalog.relations),
        "tables": tables,
        "views": sum(1 for _ in catalog.views()),
    }
    if args.koha_version:
        entry["version"] = args.koha_version
    manifest.setdefault("releases", {})[args.release] = {k: v for k, v in entry.items()
                                                         if v is not None}
    manifest["releases"] = dict(sorted(manifest["releases"].items()))
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    print(f"koha {args.release}: {tables} tables, {len(catalog.relations)} relations, "
          f"{time.perf_counter() - t0:.0f} s -> {out}", file=sys.stderr)


def koha_from_facts(args: argparse.Namespace) -> None:
    """Build a Koha database from table facts (a catalog JSON: what was read from a
    release's kohastructure.sql when the file itself cannot be loaded here), read it back
    with ils-redact's own reader, and write the release catalog with where the facts came
    from (repository, path, commit, the dump's date and how the release was told)."""
    from ils_redact.adapters.koha import fixture
    from ils_redact.backends.mariadb.connection import connect
    from ils_redact.backends.mariadb.introspect import read_catalog
    from ils_redact.backends.mariadb.sqltext import ident

    repo, _, commit = args.source.partition("@")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo) or not re.fullmatch(r"[0-9a-f]{40}", commit):
        raise SystemExit(f"--source {args.source!r}: expected OWNER/REPO@<40-hex commit>")
    newest = json.loads(Path(args.facts).read_text(encoding="utf-8"))
    rels = newest["relations"]
    name = "h_koharel_facts_" + re.sub(r"\W", "_", args.release)
    database = ident(name)
    server = args.dsn.rstrip("/")
    t0 = time.perf_counter()
    with connect(server + "/") as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {database}")
        conn.execute(f"CREATE DATABASE {database} CHARACTER SET utf8mb4 "
                     "COLLATE utf8mb4_unicode_ci")
    try:
        with connect(f"{server}/{name}") as conn:
            cur = conn.cursor()
            cur.execute("SET SESSION foreign_key_checks = 0")
            for r in rels:
                cur.execute(fixture.create_table_statement(r))
            for stmt in fixture._referenced_indexes(rels):
                cur.execute(stmt)
            for r in rels:
                fks = fixture.foreign_keys_statement(r)
                if fks:
                    cur.execute(fks)
            cur.execute("SET SESSION foreign_key_checks = 1")
            major, minor = args.release.split(".")[:2]
            conn.execute("INSERT INTO systempreferences (variable, value) VALUES "
                         "('Version', %s)", (f"{major}.{minor}00000",))
            conn.commit()
            catalog = read_catalog(conn)
    finally:
        if not args.keep:
            with connect(server + "/") as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {database}")
    catalog.database = "koha"
    catalog.default_schema = "koha"
    catalog.schemas = ("koha",)
    catalog.relations = {f"koha.{r.name}": _rename(r) for r in catalog.relations.values()}
    catalog.release = args.release
    out = store_catalog(catalog, KOHA_DIR / STORE, args.release)
    manifest_path = KOHA_DIR / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest.setdefault("system", "koha")
    entry = {
        "repository": repo, "commit": commit, "path": args.path, "date": args.date,
        "dump_completed": args.dump_completed, "release_from": args.release_from,
        "loaded": args.how, "relations": len(catalog.relations),
        "tables": sum(1 for _ in catalog.tables()),
        "server": f"MariaDB {catalog.server_version}",
    }
    manifest.setdefault("releases", {})[args.release] = {k: v for k, v in entry.items()
                                                         if v is not None}
    manifest["releases"] = dict(sorted(manifest["releases"].items()))
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    print(f"koha {args.release}: {len(catalog.relations)} relations, "
          f"{time.perf_counter() - t0:.0f} s -> {out}", file=sys.stderr)


def _rename(rel: Any) -> Any:
    import dataclasses

    from ils_redact.catalog import ForeignKey

    fks = tuple(ForeignKey(fk.name, fk.columns, "koha." + fk.ref_relation.split(".", 1)[1],
                           fk.ref_columns) for fk in rel.foreign_keys)
    return dataclasses.replace(rel, schema="koha", foreign_keys=fks,
                               depends_on=tuple("koha." + d.split(".", 1)[1]
                                                for d in rel.depends_on))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="ils", required=True)
    e = sub.add_parser("evergreen")
    e.add_argument("--git-dir", required=True, help="a fetched Evergreen repository")
    e.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    e.add_argument("--release", action="append", help="X.Y.Z (default: all supported)")
    e.add_argument("--keep", action="store_true", help="keep the databases")
    k = sub.add_parser("koha")
    k.add_argument("--sql", required=True, help="a kohastructure.sql")
    k.add_argument("--release", required=True, help="YY.MM")
    k.add_argument("--koha-version", help="Koha.pm's $VERSION of that commit, if known")
    k.add_argument("--source", required=True, help="OWNER/REPO@COMMIT")
    k.add_argument("--date", required=True, help="the commit's (or the dump's) date")
    k.add_argument("--release-from", required=True,
                   help="how the release was determined, for the manifest")
    k.add_argument("--how", help="how the file was obtained, for the manifest")
    k.add_argument("--dsn", default="mysql://root@127.0.0.1:3306/")
    k.add_argument("--keep", action="store_true")
    f = sub.add_parser("koha-facts", help="build from table facts (see koha_from_facts)")
    f.add_argument("--facts", required=True, help="the newest Koha catalog facts (JSON)")
    f.add_argument("--release", required=True)
    f.add_argument("--source", required=True, help="OWNER/REPO@COMMIT")
    f.add_argument("--date", required=True)
    f.add_argument("--how", required=True, help="how the facts were obtained, for the manifest")
    f.add_argument("--path", default="installer/data/mysql/kohastructure.sql",
                   help="the file the facts were read from, in that repository")
    f.add_argument("--dump-completed", help="the dump's own trailer date (YYYY-MM-DD)")
    f.add_argument("--release-from", help="how the release was determined, for the manifest")
    f.add_argument("--dsn", default="mysql://root@127.0.0.1:3306/")
    f.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)
    {"evergreen": evergreen, "koha": koha, "koha-facts": koha_from_facts}[args.ils](args)


if __name__ == "__main__":
    main()
