"""Catalog text is attacker-controlled (threat model row 16): planted objects and names.

A login with no ils-redact role may create objects in ``pg_temp`` (and in any schema it
may CREATE in) with any name, and GRANT on them to the layer's roles.  Install, verify
and uninstall read those names; none of them may ever turn a name into SQL, and none of
them may fail because of a planted object.  Every test here plays the attack as the
attacker would: a real login, the SQL they would type, a session kept open while the
superuser runs ils-redact.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from ils_redact.backends import postgresql as pg
from ils_redact.servers import pg_tool
from ils_redact.stats import all_reports
from support import EgDb, create_role, dump_schema, run_cli, write_rules
from support.verify import verify_cli


def install(db: EgDb, rules=None):
    with db.connect(autocommit=False) as conn:
        return pg.install(conn, rules or db.rules, reports=all_reports)


@contextmanager
def attacker(db: EgDb, run_prefix: str) -> Iterator[str]:
    """A login with no ils-redact role, named short enough that the crafted names below
    fit in PostgreSQL's 63 bytes.  It keeps TEMP on the database (install's hardening
    takes TEMP from PUBLIC; an ILS login that uses temporary tables keeps it)."""
    name = f"{run_prefix}m"
    create_role(db.server, name)
    with db.connect() as conn:
        conn.execute(sql.SQL("GRANT TEMPORARY ON DATABASE {} TO {}").format(
            sql.Identifier(db.name), sql.Identifier(name)))
    try:
        yield name
    finally:
        with psycopg.connect(db.server.dsn, autocommit=True) as conn:
            for (dbname,) in conn.execute(
                    "SELECT datname FROM pg_database WHERE datname = %s", (db.name,)):
                with psycopg.connect(db.server.dsn_for(dbname), autocommit=True) as c2:
                    c2.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def superuser(db: EgDb, role: str) -> bool:
    return bool(db.scalar("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (role,)))


def crafted(role: str) -> str:
    """A function name that, pasted into a REVOKE, ends it and makes ``role`` a superuser
    (short enough that ``pg_temp_N.name()`` fits in the 63 bytes of a ``name``: the
    planner read signatures through a query whose column was of type name)."""
    name = f"f()FROM public;ALTER ROLE {role} SUPERUSER;--"
    assert len(name.encode()) <= 50
    return name


def plant(conn: psycopg.Connection, schema: str, name: str, grantee: str) -> None:
    """What the attacker types: the crafted function, the plain one its REVOKE would name
    (so the first half of the pasted statement succeeds), and a GRANT of both."""
    for fn in (name, "f"):
        conn.execute(sql.SQL("CREATE FUNCTION {}.{}() RETURNS int LANGUAGE sql "
                             "AS 'select 1'").format(sql.Identifier(schema),
                                                     sql.Identifier(fn)))
        conn.execute(sql.SQL("GRANT EXECUTE ON FUNCTION {}.{}() TO {}").format(
            sql.Identifier(schema), sql.Identifier(fn), sql.Identifier(grantee)))


def test_planted_temp_function_never_runs_as_sql_at_install(
        eg_db: EgDb, run_prefix: str, tmp_path: Path) -> None:
    install(eg_db)
    stats = eg_db.role("stats")
    with attacker(eg_db, run_prefix) as mallory:
        with eg_db.connect(mallory) as m:  # the session stays open during install
            plant(m, "pg_temp", crafted(mallory), stats)
            rules = write_rules(tmp_path, eg_db.prefix)
            planned = run_cli("--dsn", eg_db.dsn, "--rules", str(rules), "plan")
            res = run_cli("--dsn", eg_db.dsn, "--rules", str(rules), "install")
            assert not superuser(eg_db, mallory), res.stdout + res.stderr
            assert res.returncode == 0, res.stderr
            assert planned.returncode == 0, planned.stderr
            # the grant is reported, not acted on: it goes when the session ends
            assert "temporary schema" in planned.stdout
            assert not [line for line in planned.stdout.splitlines()
                        if "ALTER USER" in line and not line.startswith("-- ")]
            assert m.execute("SELECT has_function_privilege(%s, 'pg_temp.f()', 'EXECUTE')",
                             (stats,)).fetchone()[0]
        assert not superuser(eg_db, mallory)


def psql(db: EgDb, script: str, stop: bool = True) -> subprocess.CompletedProcess:
    """What a DBA does with a reviewed plan (``stop``: on the first error) or a printed
    fix (pasted into psql, which goes on after an error): run it with psql."""
    return subprocess.run([pg_tool("psql"), "-X", "-q", "-v", f"ON_ERROR_STOP={int(stop)}",
                           "-d", db.dsn], input=script, capture_output=True, text=True,
                          timeout=120)


def test_a_name_with_a_newline_stays_inside_the_plan_comment(
        eg_db: EgDb, run_prefix: str, tmp_path: Path) -> None:
    """The plan reports a planted temporary object in a comment line; a newline in its
    name must not end the comment and put SQL in the script the DBA runs."""
    install(eg_db)
    with attacker(eg_db, run_prefix) as mallory:
        with eg_db.connect(mallory) as m:
            name = f"x\nALTER ROLE {mallory} SUPERUSER;\n--"
            plant(m, "pg_temp", name, eg_db.role("stats"))
            rules = write_rules(tmp_path, eg_db.prefix)
            planned = run_cli("--dsn", eg_db.dsn, "--rules", str(rules), "plan")
            assert planned.returncode == 0, planned.stderr
            assert "\\x0aALTER ROLE" in planned.stdout
            res = psql(eg_db, planned.stdout)
            assert res.returncode == 0, res.stderr
            assert not superuser(eg_db, mallory)


def test_verify_reports_the_planted_grant_and_its_fixes_are_safe_to_run(
        eg_db: EgDb, run_prefix: str, tmp_path: Path) -> None:
    """verify used to report the planted grant as drift and print the pasted REVOKE as
    the fix; a SECURITY DEFINER planted the same way was printed with its signature.
    Now: a warning naming the object, no drift, and every fix printed runs as one
    statement that names the object by its parts."""
    install(eg_db)
    stats = eg_db.role("stats")
    with attacker(eg_db, run_prefix) as mallory:
        with eg_db.connect(mallory) as m:
            plant(m, "pg_temp", crafted(mallory), stats)
            m.execute(sql.SQL("CREATE FUNCTION pg_temp.{}() RETURNS int LANGUAGE sql "
                              "SECURITY DEFINER AS 'select 1'").format(
                sql.Identifier(crafted(mallory).replace("f()", "g()"))))
            m.execute(sql.SQL("GRANT EXECUTE ON FUNCTION pg_temp.{}() TO {}").format(
                sql.Identifier(crafted(mallory).replace("f()", "g()")),
                sql.Identifier(stats)))
            run = verify_cli(eg_db, tmp_path)
            assert run.data is not None, run.stderr
            for f in run.findings():  # pasted into psql by the DBA, as printed
                psql(eg_db, f["fix"], stop=False)
                assert not superuser(eg_db, mallory), f
            assert not run.findings("D-DRIFT"), run.explain()
            planted = run.findings("D-TEMPORARY-OBJECT")
            assert {f["severity"] for f in planted} == {"warning"} and len(planted) == 3
            sd = run.findings("H-SECURITY-DEFINER")
            assert sd and all('"pg_temp_' in f["fix"] for f in sd), run.explain()


def test_planted_grants_do_not_block_uninstall(
        eg_db: EgDb, run_prefix: str, tmp_path: Path) -> None:
    """Grants planted on the attacker's own objects (a temporary function, a function, a
    column and a large object in a schema it may create in) used to make uninstall
    refuse (DROP ROLE would fail); uninstall revokes them and the schema is as before."""
    with eg_db.connect() as conn:
        conn.execute("CREATE SCHEMA h_shared")
    before = dump_schema(eg_db)
    install(eg_db)
    stats, dis = eg_db.role("stats"), eg_db.role("disclosure")
    with attacker(eg_db, run_prefix) as mallory:
        with eg_db.connect() as conn:  # a schema its users may create in (PUBLIC CREATE)
            conn.execute(sql.SQL("GRANT CREATE, USAGE ON SCHEMA h_shared TO {}").format(
                sql.Identifier(mallory)))
        with eg_db.connect(mallory) as m:
            plant(m, "pg_temp", crafted(mallory), stats)
            plant(m, "h_shared", crafted(mallory), stats)
            col = f'a") ON h_shared.t FROM x;ALTER ROLE {mallory} SUPERUSER;--'
            m.execute(sql.SQL("CREATE TABLE h_shared.t ({} int)").format(sql.Identifier(col)))
            m.execute(sql.SQL("GRANT SELECT ({}) ON h_shared.t TO {}").format(
                sql.Identifier(col), sql.Identifier(dis)))
            lo = m.execute("SELECT lo_create(0)").fetchone()[0]
            m.execute(sql.SQL("GRANT SELECT ON LARGE OBJECT {} TO {}").format(
                sql.Literal(lo), sql.Identifier(stats)))
            with eg_db.connect(autocommit=False) as conn:
                plan, blocking = pg.compute_uninstall_plan(conn)
                conn.rollback()
            assert blocking == []
            assert any("large object" in n for n in plan.notes), plan.notes
            with eg_db.connect(autocommit=False) as conn:
                pg.uninstall(conn)
            assert not superuser(eg_db, mallory)
            assert eg_db.scalar("SELECT count(*) FROM pg_roles WHERE rolname LIKE %s",
                                (eg_db.prefix + "%",)) == 0
            m.execute("SELECT lo_unlink(%s)", (lo,))
            m.execute("DROP TABLE h_shared.t")
            for fn in (crafted(mallory), "f"):
                m.execute(sql.SQL("DROP FUNCTION h_shared.{}()").format(sql.Identifier(fn)))
        with eg_db.connect() as conn:
            conn.execute(sql.SQL("REVOKE ALL ON SCHEMA h_shared FROM {}").format(
                sql.Identifier(mallory)))
    assert dump_schema(eg_db) == before


def test_hostile_names_in_a_shared_schema_are_revoked_by_their_parts(
        eg_db: EgDb, run_prefix: str) -> None:
    """Install revokes what a layer role must not hold, by names read by OID: a crafted
    function name, a crafted column name, a schema name with a dot and a quote."""
    install(eg_db)
    stats, dis = eg_db.role("stats"), eg_db.role("disclosure")
    with attacker(eg_db, run_prefix) as mallory:
        with eg_db.connect() as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(
                sql.Identifier('h."x'), sql.Identifier(mallory)))
        with eg_db.connect(mallory) as m:
            plant(m, 'h."x', crafted(mallory), stats)
            col = f'a") ON t FROM x;ALTER ROLE {mallory} SUPERUSER;--'
            m.execute(sql.SQL("CREATE TABLE {}.{} ({} int)").format(
                sql.Identifier('h."x'), sql.Identifier("t.u"), sql.Identifier(col)))
            m.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
                sql.Identifier('h."x'), sql.Identifier(dis)))
            m.execute(sql.SQL("GRANT SELECT ({}) ON {}.{} TO {}").format(
                sql.Identifier(col), sql.Identifier('h."x'), sql.Identifier("t.u"),
                sql.Identifier(dis)))
        plan = install(eg_db)
        assert not superuser(eg_db, mallory)
        assert {s.kind for s in plan.changes()} == {"revoke"}, plan.render()
        assert eg_db.scalar(
            "SELECT count(*) FROM pg_proc p, aclexplode(p.proacl) x "
            "WHERE p.pronamespace = to_regnamespace(%s) AND x.grantee = %s::regrole",
            ('"h.""x"', stats)) == 0
        assert not eg_db.scalar("SELECT has_any_column_privilege(%s, c.oid, 'SELECT') "
                                "FROM pg_class c WHERE c.relname = 't.u'", (dis,))
        assert install(eg_db).empty
        with eg_db.connect() as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier('h."x')))


def test_a_hostile_role_name_moved_out_of_the_disclosure_role(
        eg_db: EgDb, run_prefix: str, tmp_path: Path) -> None:
    """A login with CREATEROLE names a role to end a statement and put it where install
    and verify read role names: in the disclosure role under ``access: function`` (on
    PostgreSQL 15 CREATEROLE may grant any role), holding a privilege here (TEMP goes
    back to the roles that use the database)."""
    install(eg_db)
    with attacker(eg_db, run_prefix) as mallory:
        with eg_db.connect() as conn:
            conn.execute(sql.SQL("ALTER ROLE {} CREATEROLE").format(sql.Identifier(mallory)))
            conn.execute(sql.SQL("CREATE TABLE public.h_t (a int)"))
        hostile = f'h" FROM x;ALTER ROLE {mallory} SUPERUSER;--'
        with eg_db.connect(mallory) as m:
            m.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(hostile)))
            try:
                m.execute(sql.SQL("GRANT {} TO {}").format(
                    sql.Identifier(eg_db.role("disclosure")), sql.Identifier(hostile)))
                in_disclosure = True
            except psycopg.errors.InsufficientPrivilege:  # PostgreSQL 16+: ADMIN needed
                in_disclosure = False
        try:
            with eg_db.connect() as conn:
                conn.execute(sql.SQL("GRANT SELECT ON public.h_t TO {}").format(
                    sql.Identifier(hostile)))
                conn.execute(sql.SQL("GRANT TEMPORARY ON DATABASE {} TO PUBLIC").format(
                    sql.Identifier(eg_db.name)))
            run = verify_cli(eg_db, tmp_path)
            for f in run.findings():
                psql(eg_db, f["fix"], stop=False)
                assert not superuser(eg_db, mallory), f
            if in_disclosure:
                assert run.findings("C-ACCESS-MODE", f"login {hostile}"), run.explain()
            if in_disclosure:  # the DBA ran the printed fix; put it back for install
                with eg_db.connect() as conn:
                    conn.execute(sql.SQL("GRANT {} TO {}").format(
                        sql.Identifier(eg_db.role("disclosure")), sql.Identifier(hostile)))
            plan = install(eg_db)
            assert not superuser(eg_db, mallory), plan.render()
            kinds = [s.kind for s in plan.changes()]
            assert "revoke-role" in kinds if in_disclosure else True, plan.render()
            assert not eg_db.scalar("SELECT pg_has_role(%s, %s, 'MEMBER')",
                                    (hostile, eg_db.role("disclosure")))
            assert install(eg_db).empty
        finally:
            with eg_db.connect() as conn:
                conn.execute("DROP TABLE public.h_t")
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(hostile)))
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(hostile)))


def test_one_statement_per_execute(eg_db: EgDb) -> None:
    """Whatever a step holds, the executor sends it alone with the extended protocol: a
    string with two statements is refused by the server, and nothing of it runs."""
    from ils_redact.backends.postgresql.apply import _execute
    from ils_redact.plan import Plan, Step

    plan = Plan(action="install", database=eg_db.name, engine="postgresql")
    plan.steps.append(Step("revoke", "x", "SELECT 1; CREATE TABLE public.h_two (a int)"))
    with eg_db.connect(autocommit=False) as conn:
        with pytest.raises(Exception, match="cannot insert multiple commands"):
            _execute(conn, plan)
        conn.rollback()
    assert eg_db.scalar("SELECT to_regclass('public.h_two')") is None


def test_the_ils_owner_plants_a_view_over_the_upgrade_log(eg_db: EgDb, tmp_path: Path) -> None:
    """atk-koha B1 on PostgreSQL: the ILS owner (owner of schema config) replaces
    config.upgrade_log by a view whose WHERE calls its own function.  Release detection,
    run by the superuser (status), must not read it: the function would run as the
    superuser.  The same for a table turned into a view by an ON SELECT rule (PG 15)."""
    db = eg_db
    with db.connect(db.owner) as conn:
        # a sequence: nextval() is not undone by the ROLLBACK status ends with (as COPY
        # TO PROGRAM, dblink or a notice to the attacker would not be)
        conn.execute("CREATE SEQUENCE config.zz_loot")
        conn.execute("CREATE FUNCTION config.zz_pwn() RETURNS boolean LANGUAGE plpgsql "
                     "VOLATILE AS $$ BEGIN IF (SELECT rolsuper FROM pg_roles WHERE rolname = "
                     "current_user) THEN PERFORM nextval('config.zz_loot'); END IF; "
                     "RETURN true; END $$")
        conn.execute("INSERT INTO config.upgrade_log (version, install_date) "
                     "VALUES ('3.14.0', now())")
        conn.execute("ALTER TABLE config.upgrade_log RENAME TO zz_upgrade_log_real")
        conn.execute("CREATE VIEW config.upgrade_log AS SELECT * FROM "
                     "config.zz_upgrade_log_real WHERE config.zz_pwn()")
    rules = write_rules(tmp_path, db.prefix)
    res = run_cli("--dsn", db.dsn, "--rules", str(rules), "status")
    with db.connect() as conn:
        assert not conn.execute("SELECT is_called FROM config.zz_loot").fetchone()[0], \
            "status ran the ILS owner's function as the superuser"
    assert "not read: config.upgrade_log is a view, not Evergreen's table (planted?)" \
        in res.stdout + res.stderr, res.stdout + res.stderr
    # the superuser reading the view by hand does run it: the plant is real
    with db.connect() as conn:
        conn.execute("SELECT count(*) FROM config.upgrade_log").fetchone()
        assert conn.execute("SELECT is_called FROM config.zz_loot").fetchone()[0]
