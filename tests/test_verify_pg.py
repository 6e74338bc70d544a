"""ils-redact verify on a clean install: exit 0, every check present, nothing changed.

Real servers only: an Evergreen-shaped database (510 tables, 137 views, 2,000 patrons) with
the layer installed, verified by the real console script in a subprocess.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg import sql

from ils_redact.backends import postgresql as pg
from ils_redact.backends.postgresql.state import read_state
from ils_redact.backends.postgresql.verify.expect import expectations
from ils_redact.backends.postgresql.verify.hazards import CLASSES
from ils_redact.backends.postgresql.verify.stats_layer import layer_roles, read_stats_layer
from support import EgDb, create_role, run_cli, snapshot, write_rules
from support.verify import install, verify_cli

RELATIONS = """
SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
"""


@pytest.fixture
def installed(eg_db: EgDb) -> EgDb:
    """A copy of its own, installed, for a test that changes it (the tests that only
    read share ``eg_installed_module``)."""
    return install(eg_db)


def test_clean_install_verifies_and_changes_nothing(eg_installed_module: EgDb,
                                                    tmp_path: Path) -> None:
    db = eg_installed_module
    before = snapshot(db)
    run = verify_cli(db, tmp_path)
    assert run.returncode == 0, run.explain()
    assert snapshot(db) == before  # schema dump, roles, policies, RLS flags, memberships
    data = run.data
    assert data is not None and data["ok"] and data["exit_code"] == 0
    assert data["roles"] == {k: db.role(k) for k in ("disclosure", "stats", "exporter", "admin")}

    # one check per role, per role and relation, per role's functions, per hazard, drift
    ids = [c["id"] for c in data["checks"]]
    relations = db.scalar(RELATIONS)
    assert relations > 640
    for kind in ("disclosure", "stats", "exporter", "admin"):
        assert f"catalog/{kind}" in ids and f"empirical/{kind}/functions" in ids
        assert sum(1 for i in ids if i.startswith(f"empirical/{kind}/")) == relations + 1
    assert [i for i in ids if i.startswith("hazard/")] == [f"hazard/{c}" for c in CLASSES]
    assert ids[-1] == "drift"
    assert len(ids) == len(set(ids)) == 4 + 4 * (relations + 1) + len(CLASSES) + 1

    # a default install is clean: TEMP and the row counters no longer come from PUBLIC
    assert run.findings() == []
    assert run.check("hazard/reporter")["status"] == "skipped"
    # as the disclosure role: exactly the identity columns, and nothing of circulation
    usr = db.rules.identity_table("actor.usr")
    assert run.check("empirical/disclosure/actor.usr")["detail"] == \
        f"{len(usr.columns)} of 50 columns readable"
    assert run.check("empirical/disclosure/action.circulation")["detail"] == "closed"
    assert run.check("empirical/stats/actor.usr")["detail"] == "closed"
    assert "callable" in run.check("empirical/exporter/functions")["detail"]


def test_strict_fails_on_temp_until_public_loses_it(eg_db: EgDb, tmp_path: Path) -> None:
    """With the TEMP hardening turned off, TEMP through PUBLIC is a warning (a violation
    under --strict) for every restricted role; the printed fix clears it."""
    db = eg_db
    rules = write_rules(tmp_path, db.prefix, lambda t: t.replace(
        "revoke_public_temp: true", "revoke_public_temp: false"))
    res = run_cli("--dsn", db.dsn, "--rules", str(rules), "install", "-q")
    assert res.returncode == 0, res.stderr
    run = verify_cli(db, tmp_path, "--strict", rules=rules)
    assert run.returncode == 1  # strict: the warning fails
    assert run.codes("warning") == {"H-TEMP"} and run.codes() == set()
    assert run.data["summary"]["violations"] == 4  # one per restricted role
    assert run.check("hazard/temp")["status"] == "fail"
    fix = run.findings("H-TEMP")[0]["fix"]
    assert fix.startswith(f'REVOKE TEMPORARY ON DATABASE "{db.name}" FROM PUBLIC;')
    with db.connect() as conn:  # the fix, as printed
        conn.execute(sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(
            sql.Identifier(db.name)))
    run = verify_cli(db, tmp_path, "--strict", rules=rules)
    assert run.returncode == 0, run.explain()
    assert run.findings() == []


def test_the_vetted_layer_grants_are_what_install_grants(eg_installed_module: EgDb) -> None:
    """expect.LAYER_EXECUTE lists the layer's grants to restricted roles by hand: this
    keeps the list and the SQL files honest in both directions."""
    db = eg_installed_module
    with db.connect(autocommit=False) as conn:
        catalog = pg.read_catalog(conn)
        state = read_state(conn, db.rules)
        stats = read_stats_layer(conn, layer_roles(conn, set(db.rules.roles(db.name).values()),
                                                   db.name))
        exp = expectations(db.rules, catalog, state, stats)
        for kind in ("disclosure", "stats", "exporter", "admin"):
            held = {r[0] for r in conn.execute(
                "SELECT n.nspname || '.' || p.proname || '(' || oidvectortypes(p.proargtypes) "
                "|| ')' FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname LIKE 'ils\\_redact%%' "
                "AND has_function_privilege(%s, p.oid, 'EXECUTE')", (db.role(kind),))}
            e = exp[kind]
            assert e.functions | e.owns <= held, kind  # every vetted grant is made
            assert held <= e.functions | e.owns | e.may_call, kind  # and nothing else
        conn.rollback()
    assert exp["exporter"].functions == {"ils_redact.export(bigint, text)",
                                         "ils_redact.log_refusal(text, bigint, text)"}
    assert exp["admin"].functions >= {"ils_redact.patron_lookup(bigint[], text[])",
                                      "ils_redact.request_approve(bigint)"}
    # no restricted role owns anything: the export belongs to export_owner (row 21)
    assert all(e.owns == frozenset() for e in exp.values())
    assert db.scalar("SELECT proowner::regrole::text FROM pg_proc "
                     "WHERE oid = 'ils_redact.export(bigint, text)'::regprocedure") \
        == db.role("export_owner")
    assert all(e.columns == frozenset() for k, e in exp.items() if k != "disclosure")


def test_needs_a_superuser(eg_installed_module: EgDb, tmp_path: Path) -> None:
    db = eg_installed_module
    run = verify_cli(db, tmp_path, user=db.owner)
    assert run.returncode == 2
    assert f"verify must run as a superuser; {db.owner} is not" in run.stderr


def test_logins_in_the_restricted_roles_are_judged(installed: EgDb, tmp_path: Path) -> None:
    """A staff login in the exporter role is fine; one that is also a member of the ILS
    owner is not (owners are not bound by row-level security)."""
    db = installed
    clerk = create_role(db.server, f"{db.prefix}clerk", member_of=(db.role("exporter"),))
    run = verify_cli(db, tmp_path)
    assert run.returncode == 0, run.explain()
    assert "1 logins" in run.check("catalog/exporter")["detail"]
    # a grant of its own to the login: judged too
    with db.connect() as conn:
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA action TO {0}; "
                             "GRANT SELECT (usr) ON action.circulation TO {0}").format(
            sql.Identifier(clerk)))
    run = verify_cli(db, tmp_path)
    assert run.returncode == 1
    (f,) = run.findings("C-LOGIN", f"login {clerk}")
    assert "also holds privileges on 1 relations the restricted role is closed to " \
        "(action.circulation)" in f["why"]
    with db.connect() as conn:
        conn.execute(sql.SQL("REVOKE SELECT (usr) ON action.circulation FROM {0}; "
                             "REVOKE USAGE ON SCHEMA action FROM {0}").format(
            sql.Identifier(clerk)))
    with db.connect() as conn:
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(db.owner),
                                                      sql.Identifier(clerk)))
    run = verify_cli(db, tmp_path)
    assert run.returncode == 1
    (f, *more) = run.findings("C-LOGIN", f"login {clerk}")
    assert f"through {clerk} -> {db.owner} owns" in f["why"] and f["role"] == "exporter"
    assert f["fix"].startswith(f'REVOKE "{db.role("exporter")}" FROM "{clerk}";')
