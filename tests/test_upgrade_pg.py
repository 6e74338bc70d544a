"""An ILS upgrade is a routine: Evergreen 3.12.0 with the layer installed is upgraded to
3.17.4 with upstream's own version-upgrade scripts, beside a control copy that never had
the layer.

Upstream's SQL is read from a fetched Evergreen repository (nothing of it is in this
repository): ``ILS_REDACT_EVERGREEN_GIT`` names its git directory.  The databases are built
once per run and server (about a minute on PostgreSQL 15); the embedded PostgreSQL 18 has
no plperl, pgcrypto or xml2, so there the build stubs them (adapters/evergreen/upstream.py)
and whatever fails for want of them fails the same way in both copies.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from ils_redact.adapters.evergreen import upstream
from ils_redact.adapters.releases import release_catalogs
from ils_redact.backends import postgresql as pg
from ils_redact.backends.postgresql.introspect import read_catalog
from ils_redact.rules import for_catalog, load_rules
from ils_redact.servers import Server, pg_tool
from ils_redact.stats import all_reports
from ils_redact.verify import verify
from support import EgDb, dump_schema, run_cli, write_rules
from support.parallel import exclusive

FROM, TO = "3.12.0", "3.17.4"


def evergreen_git() -> Path:
    """The fetched Evergreen git directory (``ILS_REDACT_EVERGREEN_GIT``).  Missing, the
    tests fail with how to provide it: a skipped upgrade test would read as a passed one.
    A run that cannot have the repository deselects them by name: ``-m "not upstream"``."""
    env = os.environ.get("ILS_REDACT_EVERGREEN_GIT")
    if not env or not (Path(env) / "HEAD").exists():
        pytest.fail("the upgrade routine needs upstream Evergreen's git history: set "
                    "ILS_REDACT_EVERGREEN_GIT to the git directory of a clone of "
                    "evergreen-library-system/Evergreen (or deselect: -m 'not upstream')")
    return Path(env)


pytestmark = pytest.mark.upstream


def _copy(server: Server, template: str, name: str) -> None:
    """CREATE DATABASE ... TEMPLATE, and then what it does not copy: the template's
    per-database settings (Evergreen's ALTER DATABASE ... SET search_path)."""
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template)))
        settings = conn.execute(
            "SELECT unnest(s.setconfig) FROM pg_db_role_setting s "
            "JOIN pg_database d ON d.oid = s.setdatabase "
            "WHERE d.datname = %s AND s.setrole = 0", (template,)).fetchall()
        for (setting,) in settings:
            key, _, value = setting.partition("=")
            conn.execute(sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                sql.Identifier(name), sql.Identifier(key), sql.SQL(value)))


def _patron(conn: psycopg.Connection) -> str:
    """One patron with a card (triggers off: the stubbed server has no pgcrypto)."""
    conn.execute("SET session_replication_role = replica")
    uid = conn.execute(
        "INSERT INTO actor.usr (profile, usrname, passwd, ident_type, first_given_name, "
        "family_name, home_ou, dob, email) VALUES (2, 'h_patron', 'x', 1, 'Ada', 'Quill', "
        "1, '1990-02-03', 'ada@example.org') RETURNING id").fetchone()[0]
    cid = conn.execute("INSERT INTO actor.card (usr, barcode, active) "
                       "VALUES (%s, '29990000000042', true) RETURNING id", (uid,)).fetchone()[0]
    conn.execute("UPDATE actor.usr SET card = %s WHERE id = %s", (cid, uid))
    conn.execute("SET session_replication_role = DEFAULT")
    return "29990000000042"


@dataclasses.dataclass
class Upgraded:
    layer: EgDb
    control: EgDb
    rules_file: Path
    errors_layer: dict[str, list[str]]
    errors_control: dict[str, list[str]]
    build_errors: list[str]
    stubbed: list[str]
    report_before: object
    findings_after: list
    seconds: dict[str, float]
    exported: list[str]


@pytest.fixture(scope="module")
def upgraded(server: Server, eg_roles, run_prefix: str, tmp_path_factory) -> Upgraded:
    git = evergreen_git()
    assert git is not None
    point = {rc.version: rc for rc in release_catalogs("evergreen")}[FROM]
    psql = pg_tool("psql")
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    base = f"{run_prefix}egup_base"
    with exclusive("schema-build"):  # one at a time across parallel workers
        loaded = upstream.build_database(git, point.commit, server.dsn, base, psql=psql,
                                         stubs=True)
    with psycopg.connect(server.dsn_for(base)) as conn:
        barcode = _patron(conn)
        conn.commit()
    seconds["build 3.12.0"] = time.perf_counter() - t0
    names = {k: f"{run_prefix}egup_{k}" for k in ("layer", "control")}
    for name in names.values():
        _copy(server, base, name)
    owner, app = eg_roles
    layer = EgDb(server, names["layer"], owner, app, f"{run_prefix}up_")
    control = EgDb(server, names["control"], owner, app, f"{run_prefix}upc_")
    rules_file = write_rules(tmp_path_factory.mktemp("upgrade"), layer.prefix)

    def cli(*args: str, user: str | None = None):
        dsn = layer.dsn_as(user) if user else layer.dsn
        res = run_cli("--dsn", dsn, "--rules", str(rules_file), *args)
        assert res.returncode == 0, (args, res.stdout, res.stderr)
        return res.stdout

    # the library at 3.12.0: installed, two staff logins, one request exported
    t0 = time.perf_counter()
    assert f"ILS release {FROM}" in cli("plan")
    cli("install", "--quiet")
    clerk, director = f"{layer.prefix}clerk", f"{layer.prefix}director"
    cli("staff", "grant", clerk, "--role", "admin", "--create")
    cli("staff", "grant", clerk, "--role", "disclosure")
    cli("staff", "grant", director, "--role", "admin", "--create")
    rid = json.loads(cli("--format", "json", "request", "create", "--basis", "emergency",
                         "--agency", "Metro Police", "--officer", "Jane Roe", "--badge", "4471",
                         "--case", "26-1182", "--barcode", barcode, "--reason",
                         "credible threat of violence at the branch", "--yes",
                         user=clerk))["request"]
    cli("request", "approve", str(rid), user=director)
    exported = [cli("export", "--request", str(rid), "--format", "csv", user=clerk)]
    seconds["install and export"] = time.perf_counter() - t0
    # the library's rules as written for 3.12: only names 3.12 has
    rules_312 = dataclasses.replace(
        for_catalog(load_rules(rules_file), point.catalog()),
        release_relations={}, release_columns={})
    with psycopg.connect(layer.dsn, autocommit=True) as conn:
        report_before = verify(conn, rules_312)

    # upstream's upgrade, script by script, on both copies
    chain = upstream.upgrade_chain(git, "main", FROM, TO)
    t0 = time.perf_counter()
    errors_layer = upstream.apply_upgrades(git, "main", chain, layer.dsn, psql=psql)
    seconds["upgrade with the layer"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    errors_control = upstream.apply_upgrades(git, "main", chain, control.dsn, psql=psql)
    seconds["upgrade, control"] = time.perf_counter() - t0
    with psycopg.connect(layer.dsn, autocommit=True) as conn:
        findings_after = verify(conn, rules_312).findings
    exported.append(cli("export", "--request", str(rid), "--format", "csv", user=clerk))
    return Upgraded(layer, control, rules_file, errors_layer, errors_control,
                    loaded.errors, loaded.stubbed, report_before, findings_after, seconds,
                    exported)


def _norm(errors: dict[str, list[str]], db: str) -> dict[str, list[str]]:
    return {k: [re.sub(re.escape(db), "DB", e) for e in v] for k, v in errors.items()}


def test_no_upgrade_script_failed_because_of_the_layer(upgraded: Upgraded) -> None:
    assert len(upgraded.errors_layer) == 32  # 3.12.0 -> 3.12.1 ... -> 3.17.4
    assert _norm(upgraded.errors_layer, upgraded.layer.name) == \
        _norm(upgraded.errors_control, upgraded.control.name)
    if not upgraded.stubbed:  # a server with every extension Evergreen needs
        assert upgraded.build_errors == []
        assert all(v == [] for v in upgraded.errors_layer.values())
    print(f"\nupgrade timings: {upgraded.seconds}; stubbed: {upgraded.stubbed}; "
          f"build errors: {len(upgraded.build_errors)}; script errors: "
          f"{sum(map(len, upgraded.errors_layer.values()))}")


def test_verify_reports_what_the_upgrade_added(upgraded: Upgraded) -> None:
    """With the rules the library wrote for 3.12, verify names every relation and
    identity column the upgrade added (each closed to the restricted roles meanwhile):
    exactly what the control copy gained."""
    old = {rc.version: rc for rc in release_catalogs("evergreen")}[FROM].catalog()
    with psycopg.connect(upgraded.control.dsn) as conn:
        new = read_catalog(conn)
    gained = {q for q in new.relations if q not in old.relations}
    for table in ("actor.usr", "actor.card", "actor.usr_address"):
        gained |= {f"{table}.{c}" for c in new.relation(table).column_names
                   if old.relation(table).column(c) is None}
    before = {(f.code, f.object) for f in upgraded.report_before.findings}  # type: ignore[attr-defined]
    after = {(f.code, f.object) for f in upgraded.findings_after}
    added = after - before
    assert {o for c, o in added if c.startswith("H-UNCLASSIFIED")} == gained
    if not upgraded.stubbed:  # the whole upgrade ran: 47 relations and 1 column
        assert ("H-UNCLASSIFIED-RELATION", "openapi.authen_attempt_log") in added
        assert ("H-UNCLASSIFIED-COLUMN", "actor.usr.guardian_email") in added
        assert len(gained) == 48, sorted(gained)
    # and nothing else got worse
    assert {c for c, _ in added} <= {"H-UNCLASSIFIED-RELATION", "H-UNCLASSIFIED-COLUMN"}


def test_install_brings_the_layer_up_to_date_and_exports_still_work(
        upgraded: Upgraded) -> None:
    db, rules = upgraded.layer, upgraded.rules_file

    def cli(*args: str):
        return run_cli("--dsn", db.dsn, "--rules", str(rules), *args)

    status = cli("status").stdout
    assert f"ils release     Evergreen {TO} (config.upgrade_log" in status
    if upgraded.stubbed:
        # the stubbed server could not run every script: the schema says 3.17.4 but lacks
        # what the stubs stopped (the same in the control), so the packaged rules rightly
        # refuse it; install with them as they apply to the schema it has
        with psycopg.connect(db.dsn) as conn:
            catalog = read_catalog(conn)
        catalog.release = None
        applied = for_catalog(load_rules(rules), catalog)
        with psycopg.connect(db.dsn) as conn:
            pg.install(conn, applied, reports=all_reports)
    else:
        plan = cli("plan")
        assert plan.returncode == 0 and f"-- note: ILS release {TO}\n" in plan.stdout
        assert cli("install").returncode == 0
        status = cli("status")
        assert status.returncode == 0 and "(as installed)" in status.stdout, status.stdout
        applied = load_rules(rules)
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        report = verify(conn, applied)
    assert not [f for f in report.findings if f.code.startswith("H-UNCLASSIFIED")]
    # the export before and after the upgrade: the same patron, the same identity
    assert "Quill" in upgraded.exported[0] and upgraded.exported[0] == upgraded.exported[1]
    res = cli("audit", "verify")
    assert res.returncode == 0, res.stdout + res.stderr


def test_uninstall_leaves_the_schema_of_the_control(upgraded: Upgraded) -> None:
    db = upgraded.layer
    res = run_cli("--dsn", db.dsn, "--rules", str(upgraded.rules_file), "uninstall", "--yes",
                  "--discard-audit")
    assert res.returncode == 0, res.stderr
    assert _comparable(dump_schema(db)) == _comparable(dump_schema(upgraded.control))


def _comparable(dump: str) -> str:
    """Two databases' dumps: the local PostgreSQL 15 here gives every column an attribute
    option pg_attver=N (not PostgreSQL's own; new columns of a new database have it too,
    and pg_roles' columns) whose value differs from database to database."""
    return re.sub(r"pg_attver=\d+", "pg_attver=N", dump)
