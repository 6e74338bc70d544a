"""The fourth adversarial review of the PostgreSQL layer, played as the attacker played it:
the ILS owner (a login that owns Evergreen's schemas, not a superuser) plants code where
the sysadmin's superuser session would run it.

* ``public.unnest(smallint[])`` is a closer match than ``pg_catalog.unnest(anyarray)``:
  every catalog read of status, plan, install, verify and uninstall ran it as the
  superuser;
* verify's probe switched to each restricted role with ``SET LOCAL ROLE`` in the
  superuser's session, where code the planner folds (an IMMUTABLE function in a view)
  reset the role to the superuser;
* ``stats publish`` counted under ``SET LOCAL ROLE`` too: a row policy the table owner
  wrote for the statistics owner reset the role the same way;
* an export called late in one long statement (``pg_sleep`` first) compared the expiry
  with the statement's start, and disclosed after the request had expired.

Each planted function raises ``PLANTED`` (with the role it ran as) when it runs: a
command that succeeds and never says PLANTED did not run it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg import errors, sql

from ils_redact.backends import postgresql as pg
from ils_redact.stats import all_reports
from support import EgDb, run_cli, write_rules
from test_layer_hardening_pg import Staff

PAYLOAD = """
CREATE FUNCTION public.planted(ctx text) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN
  PERFORM pg_catalog.set_config('role', 'none', true);   -- back to the session user
  RAISE EXCEPTION 'PLANTED % ran as % (superuser: %)', ctx, current_user,
      (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user);
END $f$;
GRANT EXECUTE ON FUNCTION public.planted(text) TO PUBLIC;
"""


def _as_owner(db: EgDb, *statements: str) -> None:
    """As the ILS owner, which (as Evergreen's, that owns its database) may create in
    schema public."""
    with db.connect() as conn:
        conn.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(
            sql.Identifier(db.owner)))
    with db.connect(db.owner) as conn:
        for s in statements:
            conn.execute(s)


def _owner_is_superuser(db: EgDb) -> bool:
    return bool(db.scalar("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (db.owner,)))


def test_a_planted_unnest_never_runs_in_the_tools_sessions(eg_db: EgDb,
                                                          tmp_path: Path) -> None:
    rules = write_rules(tmp_path, eg_db.prefix)
    eg_db_cmd = ("--dsn", eg_db.dsn, "--rules", str(rules))
    _as_owner(eg_db, PAYLOAD, """
        CREATE FUNCTION public.unnest(smallint[]) RETURNS SETOF smallint LANGUAGE plpgsql
        AS $f$ BEGIN PERFORM public.planted('unnest(int2[])');
                     RETURN QUERY SELECT x FROM pg_catalog.unnest($1) x; END $f$""", """
        CREATE FUNCTION public.unnest(oid[]) RETURNS SETOF oid LANGUAGE plpgsql
        AS $f$ BEGIN PERFORM public.planted('unnest(oid[])');
                     RETURN QUERY SELECT x FROM pg_catalog.unnest($1) x; END $f$""")
    # the planted functions do run where the default search path applies
    with pytest.raises(errors.RaiseException, match="PLANTED"):
        eg_db.scalar("SELECT count(*) FROM unnest('{1,2}'::smallint[])")
    for args in (("rules", "check"), ("plan",), ("install", "--quiet"), ("status",),
                 ("verify",), ("uninstall", "--yes")):
        res = run_cli(*eg_db_cmd, *args)
        assert "PLANTED" not in res.stdout + res.stderr, (args, res.stderr)
        assert res.returncode in (0, 1), (args, res.stderr)
    assert not _owner_is_superuser(eg_db)


def test_verify_probes_cannot_reset_the_role_to_the_superuser(eg_db: EgDb,
                                                              tmp_path: Path) -> None:
    """The planner folds an IMMUTABLE function of a view while verify probes the view as
    each restricted role: inside the probe it may run, but only as that role."""
    with eg_db.connect(autocommit=False) as conn:
        pg.install(conn, eg_db.rules, reports=all_reports)
    _as_owner(eg_db, PAYLOAD, """
        CREATE FUNCTION public.folded() RETURNS boolean LANGUAGE plpgsql IMMUTABLE
        AS $f$ BEGIN RETURN public.planted('a folded view function'); END $f$""",
        "CREATE VIEW public.planted_view AS SELECT public.folded() AS x",
        "GRANT SELECT ON public.planted_view TO PUBLIC")
    rules = write_rules(tmp_path, eg_db.prefix)
    res = run_cli("--dsn", eg_db.dsn, "--rules", str(rules), "--format", "json", "verify")
    out = res.stdout + res.stderr
    # the function ran as a restricted role and could not leave it: PostgreSQL refuses
    # SET ROLE inside a SECURITY DEFINER function
    assert "(superuser: t)" not in out and "ran as postgres" not in out
    assert res.returncode == 1, res.stderr  # the view granted to PUBLIC is a violation
    assert "planted_view" in res.stdout
    assert not _owner_is_superuser(eg_db)


def test_stats_publish_counts_where_a_row_policy_cannot_reset_the_role(
        eg_db: EgDb, tmp_path: Path) -> None:
    with eg_db.connect(autocommit=False) as conn:
        pg.install(conn, eg_db.rules, reports=all_reports)
    stats_owner = eg_db.role("stats_owner")
    _as_owner(eg_db, PAYLOAD, """
        CREATE FUNCTION action.escalate() RETURNS boolean LANGUAGE plpgsql AS $f$
        BEGIN
          PERFORM pg_catalog.set_config('role', 'none', true);
          IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
            EXECUTE format('ALTER ROLE %I SUPERUSER', session_user);
          END IF;
          RETURN true;
        END $f$""",
        "ALTER TABLE action.circulation ENABLE ROW LEVEL SECURITY",
        "CREATE POLICY planted_all ON action.circulation USING (true)",
        sql.SQL("CREATE POLICY planted_stats ON action.circulation AS RESTRICTIVE FOR SELECT "
                "TO {} USING ((SELECT action.escalate()))").format(
            sql.Identifier(stats_owner)).as_string(None))
    rules = write_rules(tmp_path, eg_db.prefix)
    res = run_cli("--dsn", eg_db.dsn, "--rules", str(rules), "stats", "publish",
                  "circ_by_library_modifier", "--month", "2024-06")
    # the policy's function ran as the statistics owner and could not reset the role:
    # the publish fails with the refusal, and nobody became a superuser
    assert not _owner_is_superuser(eg_db)
    assert res.returncode != 0
    assert "cannot set parameter" in res.stderr, res.stderr
    assert eg_db.scalar("SELECT count(*) FROM ils_redact_stats.publication") == 0


def test_an_export_late_in_a_long_statement_is_refused_after_expiry(eg_db: EgDb) -> None:
    with eg_db.connect(autocommit=False) as conn:
        pg.install(conn, eg_db.rules, reports=all_reports)
    staff = Staff(eg_db)
    with staff.connect(staff.admin) as conn:
        rid = conn.execute(
            "SELECT ils_redact.request_create('emergency', 'Metro Police', 'Jane Roe', "
            "'4471', '26-1182', 'credible threat', NULL, NULL, NULL, '{100}'::bigint[], "
            "NULL, ARRAY['actor.usr.family_name'], clock_timestamp() + interval '2 seconds', "
            "%s)", (staff.exporter,)).fetchone()[0]
    with staff.connect(staff.director) as conn:
        assert conn.execute("SELECT ils_redact.request_approve(%s)", (rid,)).fetchone()[0] \
            is None
    with staff.connect(staff.exporter) as conn:
        # the statement starts before the expiry; the export is called after it
        row = conn.execute(
            "SELECT e.document, e.manifest FROM (SELECT 1 AS one FROM pg_sleep(3)) s "
            "CROSS JOIN LATERAL ils_redact.export(%s * s.one, 'csv') e", (rid,)).fetchone()
    assert row is not None and row[0] is None, row
    assert row[1]["refused"] == "request has expired"
    assert "Metro" not in str(row)


def test_a_court_order_for_one_field_tells_nothing_of_other_tables(eg_db: EgDb) -> None:
    """An order naming actor.usr.family_name exported one row per card and per address
    of the patron too (empty): how many cards and addresses the patron has."""
    with eg_db.connect(autocommit=False) as conn:
        pg.install(conn, eg_db.rules, reports=all_reports)
    staff = Staff(eg_db)
    rid = staff.request(staff.exporter, columns="actor.usr.family_name", patrons=(10,))
    with staff.connect(staff.exporter) as conn:
        document, manifest = conn.execute(
            "SELECT document, manifest FROM ils_redact.export(%s, 'csv')", (rid,)).fetchone()
    lines = document.splitlines()
    assert lines[0] == 'patron_id,relation,"actor.usr.family_name"'
    assert [line.split(",")[:2] for line in lines[1:]] == [["10", '"actor.usr"']], document
    assert manifest["rows"] == 1


def test_lookups_in_separate_transactions_are_bounded_per_hour(eg_db: EgDb) -> None:
    """Thirty separate lookups of ten read 300 patrons: the per-transaction cap alone did
    not bound an admin paging through the patron file."""
    with eg_db.connect(autocommit=False) as conn:
        pg.install(conn, eg_db.rules, reports=all_reports)
    staff = Staff(eg_db)
    read = 0
    with staff.connect(staff.admin) as conn:  # autocommit: each call its own transaction
        with pytest.raises(errors.InvalidParameterValue, match="lookup refused: 20 patrons"):
            for i in range(30):
                ids = list(range(1000 + 10 * i, 1010 + 10 * i))
                read += len(conn.execute("SELECT * FROM ils_redact.patron_lookup(%s, NULL)",
                                         (ids,)).fetchall())
    assert read == 10
    # a request approved by another login excuses the patrons it names
    with staff.connect(staff.admin) as conn:
        rid = conn.execute(
            "SELECT ils_redact.request_create('emergency', 'Metro Police', 'Jane Roe', "
            "'4471', '26-1182', 'credible threat', NULL, NULL, NULL, %s::bigint[], NULL, "
            "ARRAY['actor.usr.family_name'], now() + interval '2 hours', %s)",
            (list(range(1000, 1010)), staff.exporter)).fetchone()[0]
    with staff.connect(staff.director) as conn:
        conn.execute("SELECT ils_redact.request_approve(%s)", (rid,))
    with staff.connect(staff.admin) as conn:
        rows = conn.execute("SELECT * FROM ils_redact.patron_lookup(%s, NULL)",
                            (list(range(1010, 1020)),)).fetchall()
    assert len(rows) == 10


def test_a_lookup_late_in_a_long_block_is_stamped_when_it_runs(eg_db: EgDb) -> None:
    """The re-check: lookups were stamped with the statement's start, so a DO block that
    waited an hour first stamped them all outside the hourly bound.  A lookup two seconds
    into one statement is stamped two seconds after the statement began."""
    with eg_db.connect(autocommit=False) as conn:
        pg.install(conn, eg_db.rules, reports=all_reports)
    staff = Staff(eg_db)
    with staff.connect(staff.admin, autocommit=False) as conn:
        started = conn.execute(
            "SELECT statement_timestamp() FROM (SELECT 1 FROM pg_sleep(2)) s, "
            "LATERAL ils_redact.patron_lookup(ARRAY[21, 22]::bigint[], NULL) x "
            "LIMIT 1").fetchone()[0]
        conn.commit()
    at = eg_db.scalar("SELECT min(at) FROM ils_redact.patron_lookup_tx")
    assert at is not None and (at - started).total_seconds() >= 1.5, (started, at)
