"""Each hazard seeded into an installed Evergreen-shaped database: verify exits 1 and names
it precisely (code, object, why, fix).  Then, where it proves something, the fix is
applied as printed and verify passes again.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from ils_redact.servers import pg_tool
from support import EgDb, create_role
from support.verify import Run, install, verify_cli

DATA = Path(__file__).parent / "data"


@pytest.fixture
def db(eg_db: EgDb) -> EgDb:
    return install(eg_db)


def execute(db: EgDb, q: sql.Composable | str) -> None:
    with db.connect() as conn:
        conn.execute(q)  # type: ignore[arg-type]


def ident(name: str) -> sql.Identifier:
    return sql.Identifier(*name.split("."))


def only(run: Run, code: str, obj: str) -> dict:
    found = run.findings(code, obj)
    assert found, f"no {code} {obj}:\n{run.explain()}"
    return found[0]


# -- seeded hazards: (name, seed, assertions) ----------------------------------------------

def seed_public_grant(db: EgDb) -> None:
    execute(db, "GRANT SELECT ON action.circulation TO PUBLIC")


def check_public_grant(db: EgDb, run: Run) -> None:
    f = only(run, "H-PUBLIC-GRANT", "action.circulation")
    assert "PUBLIC holds SELECT on action.circulation (confidential)" in f["why"]
    assert f["fix"] == 'REVOKE ALL ON "action"."circulation" FROM PUBLIC;'
    # and each restricted role holds it, through PUBLIC
    roles = {x["role"] for x in run.findings("C-TABLE-SELECT", "action.circulation")}
    assert roles == {"disclosure", "stats", "exporter", "admin"}
    assert "through PUBLIC" in run.findings("C-TABLE-SELECT", "action.circulation")[0]["why"]


def seed_owner_rights_view(db: EgDb) -> None:
    execute(db, sql.SQL(
        "CREATE VIEW actor.usr_circ_summary AS SELECT usr, count(*) AS loans "
        "FROM action.circulation GROUP BY usr; "
        "ALTER VIEW actor.usr_circ_summary OWNER TO {owner}; "
        "GRANT SELECT ON actor.usr_circ_summary TO {dis}").format(
        owner=sql.Identifier(db.owner), dis=sql.Identifier(db.role("disclosure"))))


def check_owner_rights_view(db: EgDb, run: Run) -> None:
    f = only(run, "H-OWNER-RIGHTS-VIEW", "actor.usr_circ_summary")
    assert f"runs with the rights of its owner {db.owner} and reads action.circulation" \
        in f["why"]
    assert db.role("disclosure") in f["why"]
    assert "security_invoker = true" in f["fix"]
    # as the role, the view really returns circulation data
    e = only(run, "E-READABLE", "actor.usr_circ_summary")
    assert "usr, loans" in e["why"] and e["role"] == "disclosure"


def seed_membership(db: EgDb) -> None:
    execute(db, sql.SQL("GRANT {} TO {}").format(sql.Identifier(db.app),
                                                 sql.Identifier(db.role("disclosure"))))


def check_membership(db: EgDb, run: Run) -> None:
    dis = db.role("disclosure")
    f = only(run, "C-MEMBERSHIP", f"{dis} -> {db.app}")
    assert f"{dis} can act as {db.app}" in f["why"]
    assert "action.circulation" in f["why"] or "relations" in f["why"]
    assert f["fix"] == f'REVOKE "{db.app}" FROM "{dis}";'
    # and as that role, circulation is read
    e = only(run, "E-READABLE", "action.circulation")
    assert f"after SET ROLE {db.app}" in e["why"]


def seed_security_definer(db: EgDb) -> None:
    execute(db, sql.SQL(
        "CREATE FUNCTION public.loans_of(p_usr bigint) RETURNS bigint LANGUAGE sql "
        "SECURITY DEFINER AS $$ SELECT count(*) FROM action.circulation WHERE usr = p_usr $$; "
        "ALTER FUNCTION public.loans_of(bigint) OWNER TO {}").format(
        sql.Identifier(db.owner)))  # EXECUTE goes to PUBLIC by default


def check_security_definer(db: EgDb, run: Run) -> None:
    f = only(run, "H-SECURITY-DEFINER", "public.loans_of(bigint)")
    assert f"runs as {db.owner} and PUBLIC may execute it" in f["why"]
    assert "its text reads action.circulation" in f["why"]
    # named by its parts, read by OID: never the signature the catalog printed (row 16)
    assert f["fix"].startswith('REVOKE EXECUTE ON ROUTINE "public"."loans_of"'
                               '("pg_catalog"."int8") FROM PUBLIC')
    # each restricted role can really call it (the executor's EXECUTE check, by EXPLAIN)
    callers = {x["role"] for x in run.findings("E-FUNCTION", "public.loans_of(bigint)")}
    assert callers == {"disclosure", "stats", "exporter", "admin"}


def seed_unclassified(db: EgDb) -> None:
    execute(db, sql.SQL("CREATE TABLE actor.usr_loyalty (usr bigint, points integer); "
                        "ALTER TABLE actor.usr_loyalty OWNER TO {0}; "
                        "ALTER TABLE actor.usr ADD COLUMN pronouns text").format(
        sql.Identifier(db.owner)))


def check_unclassified(db: EgDb, run: Run) -> None:
    t = only(run, "H-UNCLASSIFIED-RELATION", "actor.usr_loyalty")
    assert "table actor.usr_loyalty is not in the rules" in t["why"]
    c = only(run, "H-UNCLASSIFIED-COLUMN", "actor.usr.pronouns")
    assert "list pronouns under identity.actor.usr.columns or .withheld" in c["fix"]
    # both stay closed to the restricted roles meanwhile
    assert run.check("empirical/disclosure/actor.usr_loyalty")["status"] == "pass"
    assert run.check("empirical/disclosure/actor.usr")["status"] == "pass"


def seed_rls_off(db: EgDb) -> None:
    execute(db, "ALTER TABLE actor.usr DISABLE ROW LEVEL SECURITY")


def check_rls_off(db: EgDb, run: Run) -> None:
    f = only(run, "C-RLS-DISABLED", "actor.usr")
    assert "row-level security is off" in f["why"] and f["role"] == "disclosure"
    rows = only(run, "E-ROWS", "actor.usr")
    assert "returned 2,000 rows of patrons outside the scope" in rows["why"]
    only(run, "D-DRIFT", "enable-rls actor.usr")


def seed_table_select(db: EgDb) -> None:
    execute(db, sql.SQL("GRANT SELECT ON actor.usr TO {}").format(
        sql.Identifier(db.role("disclosure"))))


def check_table_select(db: EgDb, run: Run) -> None:
    f = only(run, "C-TABLE-SELECT", "actor.usr")
    assert "covers every column, the withheld and secret ones too" in f["why"]
    assert f["fix"].startswith(f'REVOKE SELECT ON "actor"."usr" FROM "{db.role("disclosure")}";')  # noqa: S608 - expected output
    e = only(run, "E-READABLE", "actor.usr")
    assert "passwd" in e["why"] and "(30 of 50)" in e["why"]
    only(run, "D-DRIFT", "revoke actor.usr")


def seed_temp(db: EgDb) -> None:
    execute(db, sql.SQL("GRANT TEMPORARY ON DATABASE {} TO {}").format(
        sql.Identifier(db.name), sql.Identifier(db.role("disclosure"))))


def check_temp(db: EgDb, run: Run) -> None:
    bad = [f for f in run.findings("H-TEMP", f"database {db.name}")
           if f["severity"] == "violation"]
    assert [f["role"] for f in bad] == ["disclosure"]
    assert "holds TEMP on database" in bad[0]["why"] and "granted to it" in bad[0]["why"]
    assert bad[0]["fix"] == \
        f'REVOKE TEMPORARY ON DATABASE "{db.name}" FROM "{db.role("disclosure")}";'


def seed_inheritance_parent(db: EgDb) -> None:
    execute(db, sql.SQL("GRANT USAGE ON SCHEMA money TO {0}; "
                        "GRANT SELECT (id, usr) ON money.billable_xact TO {0}").format(
        sql.Identifier(db.role("stats"))))


def check_inheritance_parent(db: EgDb, run: Run) -> None:
    f = only(run, "H-INHERITANCE-PARENT", "money.billable_xact")
    assert "returns the rows of action.circulation" in f["why"]
    assert db.role("stats") in f["why"]


def seed_counters(db: EgDb) -> None:
    execute(db, "GRANT SELECT ON pg_catalog.pg_stat_xact_user_tables TO PUBLIC; "
                "GRANT EXECUTE ON FUNCTION pg_catalog.pg_stat_get_xact_tuples_fetched(oid) "
                "TO PUBLIC")


def check_counters(db: EgDb, run: Run) -> None:
    f = only(run, "H-ROW-COUNTERS", f"role {db.role('disclosure')}")
    assert "may read 2 row counters" in f["why"] and "through PUBLIC" in f["why"]
    assert "pg_stat_xact_user_tables" in f["why"]
    assert 'REVOKE SELECT ON TABLE "pg_catalog"."pg_stat_xact_user_tables" FROM PUBLIC;' \
        in f["fix"]
    assert {x["role"] for x in run.findings("H-ROW-COUNTERS")} == {
        "disclosure", "stats", "exporter", "admin"}
    only(run, "D-DRIFT", "revoke-counters view")


def seed_layer_owner(db: EgDb) -> None:
    execute(db, sql.SQL("ALTER FUNCTION ils_redact.export(bigint, text) OWNER TO {}").format(
        sql.Identifier(db.role("disclosure"))))


def check_layer_owner(db: EgDb, run: Run) -> None:
    f = only(run, "H-LAYER-OWNER", "ils_redact.export(bigint, text)")
    assert f"is owned by {db.role('disclosure')}, not by a layer owner role" in f["why"]
    assert f["fix"].startswith('ALTER ROUTINE "ils_redact"."export"("pg_catalog"."int8", '
                               f'"pg_catalog"."text") OWNER TO "{db.role("export_owner")}";')
    only(run, "C-OWNER", f"role {db.role('disclosure')}")
    only(run, "D-DRIFT", "alter-owner ils_redact.export(bigint, text)")


def seed_owner_reachable(db: EgDb) -> None:
    create_role(db.server, f"{db.prefix}dba", member_of=(db.role("owner"),))


def check_owner_reachable(db: EgDb, run: Run) -> None:
    f = only(run, "H-LAYER-OWNER", f"role {db.role('owner')}")
    assert f"{db.prefix}dba can act as it" in f["why"]
    assert f["fix"].startswith(f'REVOKE "{db.role("owner")}" FROM "{db.prefix}dba";')
    only(run, "D-DRIFT", f"revoke-role role {db.role('owner')}")


def seed_access_mode(db: EgDb) -> None:
    create_role(db.server, f"{db.prefix}clerk", member_of=(db.role("disclosure"),))


def check_access_mode(db: EgDb, run: Run) -> None:
    f = only(run, "C-ACCESS-MODE", f"login {db.prefix}clerk")
    assert "disclosure.access is function" in f["why"]
    assert f["fix"].startswith(f'REVOKE "{db.role("disclosure")}" FROM "{db.prefix}clerk"; '
                               f'GRANT "{db.role("exporter")}" TO "{db.prefix}clerk";')
    only(run, "D-DRIFT", f"revoke-role role {db.role('disclosure')}")


def seed_admin_reads(db: EgDb) -> None:
    execute(db, sql.SQL("GRANT USAGE ON SCHEMA actor TO {0}; "
                        "GRANT SELECT (family_name, dob) ON actor.usr TO {0}").format(
        sql.Identifier(db.role("admin"))))


def check_admin_reads(db: EgDb, run: Run) -> None:
    f = only(run, "C-PRIVILEGE", "actor.usr")
    assert f["role"] == "admin" and "family_name" in f["why"]
    e = only(run, "E-READABLE", "actor.usr")
    assert e["role"] == "admin" and "family_name" in e["why"]


SEEDS: dict[str, tuple[Callable[[EgDb], None], Callable[[EgDb, Run], None], str]] = {
    "admin-reads-an-identity-column": (seed_admin_reads, check_admin_reads, "catalog/admin"),
    "row-counters-back-to-public": (seed_counters, check_counters, "hazard/row-counters"),
    "export-owned-by-the-disclosure-role": (seed_layer_owner, check_layer_owner,
                                            "hazard/layer-owner"),
    "owner-role-granted-to-a-login": (seed_owner_reachable, check_owner_reachable,
                                      "hazard/layer-owner"),
    "login-in-disclosure-under-function-mode": (seed_access_mode, check_access_mode,
                                                "catalog/disclosure"),
    "public-grant-on-circulation": (seed_public_grant, check_public_grant, "hazard/public-grant"),
    "owner-rights-view-to-disclosure": (seed_owner_rights_view, check_owner_rights_view,
                                        "hazard/owner-rights-view"),
    "disclosure-member-of-app-role": (seed_membership, check_membership, "catalog/disclosure"),
    "security-definer-reading-circulation": (seed_security_definer, check_security_definer,
                                             "hazard/security-definer"),
    "new-table-and-column": (seed_unclassified, check_unclassified, "hazard/unclassified"),
    "rls-disabled-by-hand": (seed_rls_off, check_rls_off, "catalog/disclosure"),
    "table-level-select-on-actor-usr": (seed_table_select, check_table_select,
                                        "catalog/disclosure"),
    "temp-granted-to-disclosure": (seed_temp, check_temp, "hazard/temp"),
    "inheritance-parent-readable": (seed_inheritance_parent, check_inheritance_parent,
                                    "hazard/inheritance-parent"),
}


@pytest.mark.parametrize("name", list(SEEDS))
def test_seeded_hazard_fails_verify(db: EgDb, tmp_path: Path, name: str) -> None:
    seed, check, check_id = SEEDS[name]
    seed(db)
    run = verify_cli(db, tmp_path)
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr
    assert run.data is not None and not run.data["ok"]
    check(db, run)
    assert run.check(check_id)["status"] == "fail"
    # the JUnit test case of that check fails and carries the findings
    classname, _, case = ("ils_redact.verify." + check_id).rpartition("/")
    classname = classname.replace("/", ".")
    node = next(c for c in run.junit_root().iter("testcase")
                if c.get("classname") == classname and c.get("name") == case)
    failure = node.find("failure")
    assert failure is not None and failure.text
    assert all(f["code"] in failure.text for f in run.check(check_id)["findings"]
               if f["severity"] == "violation")


def test_text_report_names_the_hazard(db: EgDb, tmp_path: Path) -> None:
    seed_table_select(db)
    run = verify_cli(db, tmp_path, fmt="text")
    assert run.returncode == 1
    out = run.stdout
    assert "catalog/disclosure" in out and "FAIL" in out
    assert "VIOLATION  C-TABLE-SELECT  actor.usr  [disclosure]" in out
    assert f'fix: REVOKE SELECT ON "actor"."usr" FROM "{db.role("disclosure")}";' in out  # noqa: S608 - expected output
    assert "verify: the rules do NOT hold" in out and "(exit 1)" in out


def test_fixes_as_printed_restore_a_clean_verify(db: EgDb, tmp_path: Path) -> None:
    """The printed fixes are runnable SQL: apply them, verify passes."""
    seed_public_grant(db)
    seed_security_definer(db)
    seed_temp(db)
    run = verify_cli(db, tmp_path)
    assert run.returncode == 1
    fixes = {run.findings("H-PUBLIC-GRANT")[0]["fix"],
             run.findings("H-SECURITY-DEFINER")[0]["fix"],
             next(f["fix"] for f in run.findings("H-TEMP") if f["severity"] == "violation")}
    for fix in fixes:
        execute(db, fix)
    run = verify_cli(db, tmp_path)
    assert run.returncode == 0, run.explain()


def test_backup_role_through_pg_read_all_data(db: EgDb, tmp_path: Path) -> None:
    backup = create_role(db.server, f"{db.prefix}backup")
    execute(db, sql.SQL("GRANT pg_read_all_data TO {}").format(sql.Identifier(backup)))
    run = verify_cli(db, tmp_path)
    assert run.returncode == 1
    f = only(run, "H-BACKUP-ROLE", f"role {backup}")
    assert "a member of pg_read_all_data" in f["why"]
    assert "actor.card, actor.usr, actor.usr_address" in f["why"]
    assert f"ALTER ROLE \"{backup}\" BYPASSRLS;" in f["fix"]
    assert "--enable-row-security" in f["fix"]

    # what the finding says is true: the backup's pg_dump fails, and both fixes work
    def dump(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([pg_tool("pg_dump"), "--data-only", "-t", "actor.usr",
                               "-d", db.dsn_as(backup), *extra], capture_output=True, text=True)

    failed = dump()
    assert failed.returncode != 0
    assert "query would be affected by row-level security policy" in failed.stderr
    rls = dump("--enable-row-security")
    assert rls.returncode == 0, rls.stderr
    assert rls.stdout.count("\n") > 2000  # every patron: the passthrough policy shows them
    execute(db, sql.SQL("ALTER ROLE {} BYPASSRLS").format(sql.Identifier(backup)))
    assert dump().returncode == 0
    run = verify_cli(db, tmp_path)
    assert run.returncode == 0, run.explain()


def test_named_backup_role_that_does_not_exist(db: EgDb, tmp_path: Path) -> None:
    run = verify_cli(db, tmp_path, "--backup-role", f"{db.prefix}nobody")
    assert run.returncode == 2
    assert f"--backup-role {db.prefix}nobody: no such role on this server" in run.stderr


def test_reporter_connecting_as_a_superuser(db: EgDb, tmp_path: Path) -> None:
    with psycopg.connect(db.dsn) as conn:
        superuser = conn.info.user
    text = (DATA / "opensrf.xml.example").read_text(encoding="utf-8")
    config = tmp_path / "opensrf.xml"
    config.write_text(text.replace("<user>postgres</user>", f"<user>{superuser}</user>"),
                      encoding="utf-8")
    run = verify_cli(db, tmp_path, "--ils-config", str(config))
    assert run.returncode == 1
    found = run.findings("H-REPORTER-SUPERUSER")
    assert [f["object"] for f in found] == [
        f"{config}: default/reporter/setup/database",
        f"{config}: default/reporter/setup/state_store",
        f"{config}: default/apps/open-ils.reporter-store/app_settings/database"]
    assert f"connects as {superuser}@localhost:5432/evergreen, a superuser" in found[0]["why"]
    assert "bypasses row-level security" in found[0]["why"]
    # a reporter login without SUPERUSER or BYPASSRLS passes
    config.write_text(text.replace("<user>postgres</user>", f"<user>{db.app}</user>"),
                      encoding="utf-8")
    run = verify_cli(db, tmp_path, "--ils-config", str(config))
    assert run.returncode == 0, run.explain()
    assert run.check("hazard/reporter")["status"] == "pass"
    # a login this server does not know: a warning, not a pass in silence
    config.write_text(text.replace("<user>postgres</user>", f"<user>{db.prefix}elsewhere</user>"),
                      encoding="utf-8")
    run = verify_cli(db, tmp_path, "--ils-config", str(config))
    assert run.returncode == 0 and run.codes("warning") >= {"H-REPORTER-UNKNOWN-ROLE"}
