"""Who owns the layer, who may act in its roles, and the lock that keeps installs apart.

Owning an object gives ALTER, DROP, GRANT and COMMENT on it (threat model row 21): the
export function belongs to ``export_owner``, granted to nobody.  Under ``disclosure.access:
function`` no login acts in the disclosure role.  Any login can take any advisory lock key
(row 22): install serialises on something a stranger cannot lock.  Each is played as the
attacker (or the careless configuration) would, on a real server.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from psycopg import errors, sql

from ils_redact.backends import postgresql as pg
from ils_redact.backends.postgresql import staff
from ils_redact.rules import load_rules
from ils_redact.stats import all_reports
from support import EgDb, create_role, run_cli, write_rules
from support.verify import verify_cli

EXPORT = "ils_redact.export(bigint, text)"
EXPORT_RECORD = "ils_redact.export_record(bigint, text, text[], text, integer, integer)"


def install(db: EgDb, rules=None):
    with db.connect(autocommit=False) as conn:
        return pg.install(conn, rules or db.rules, reports=all_reports)


def role_mode(tmp: Path, db: EgDb) -> Path:
    return write_rules(tmp, db.prefix, lambda t: t.replace("  access: function ",
                                                           "  access: role     "))


def export_state(db: EgDb) -> tuple:
    return db.scalar("SELECT row(proowner::regrole::text, prosecdef, proconfig::text, "
                     "proacl::text)::text FROM pg_proc WHERE oid = %s::regprocedure", (EXPORT,))


def test_a_disclosure_member_cannot_alter_grant_or_drop_the_export(
        eg_db: EgDb, tmp_path: Path) -> None:
    rules = load_rules(role_mode(tmp_path, eg_db))
    install(eg_db, rules)
    clerk = f"{eg_db.prefix}clerk"
    with eg_db.connect(autocommit=False) as conn:
        staff.apply(conn, staff.plan_grant(conn, rules, clerk, "disclosure", create=True))
    before = export_state(eg_db)
    attempts = [
        f"ALTER FUNCTION {EXPORT} SECURITY INVOKER",
        f"ALTER FUNCTION {EXPORT} RESET ALL",
        f"ALTER FUNCTION {EXPORT} SET search_path = public, pg_catalog",
        f"COMMENT ON FUNCTION {EXPORT} IS 'mine'",
        f"DROP FUNCTION {EXPORT}",
    ]
    with eg_db.connect(clerk) as conn:
        for attempt in attempts:  # as the login, and after SET ROLE to the disclosure role
            for role in (None, eg_db.role("disclosure")):
                with conn.transaction(force_rollback=True):
                    if role:
                        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
                    with pytest.raises(errors.InsufficientPrivilege, match="must be owner"):
                        conn.execute(attempt)  # type: ignore[arg-type]
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(f"GRANT EXECUTE ON FUNCTION {EXPORT} TO PUBLIC")
    assert export_state(eg_db) == before
    assert not eg_db.scalar("SELECT has_function_privilege('public', %s, 'EXECUTE')",
                            (EXPORT,))
    # the owner is a role nobody can act as, and it reads as the disclosure role
    owner = eg_db.role("export_owner")
    assert eg_db.scalar("SELECT proowner::regrole::text FROM pg_proc "
                        "WHERE oid = %s::regprocedure", (EXPORT,)) == owner
    assert eg_db.scalar("SELECT count(*) FROM pg_auth_members WHERE roleid = %s::regrole",
                        (owner,)) == 0
    assert eg_db.scalar("SELECT NOT rolcanlogin AND rolinherit FROM pg_roles "
                        "WHERE rolname = %s", (owner,))
    assert eg_db.scalar("SELECT pg_has_role(%s, %s, 'USAGE')",
                        (owner, eg_db.role("disclosure")))


def test_an_export_owned_by_the_disclosure_role_is_moved(eg_db: EgDb, tmp_path: Path) -> None:
    """What the previous release left: the export owned by the disclosure role, no
    export_owner.  The next install creates the role and gives it the export; exports
    keep working (the export's own reads bind to the disclosure role's grants)."""
    install(eg_db)
    owner, dis = eg_db.role("export_owner"), eg_db.role("disclosure")
    with eg_db.connect() as conn:
        conn.execute(sql.SQL("ALTER FUNCTION ils_redact.export(bigint, text) OWNER TO {}")
                     .format(sql.Identifier(dis)))
        conn.execute(sql.SQL("REVOKE ALL ON FUNCTION ils_redact.export_record(bigint, text, "
                             "text[], text, integer, integer) FROM {}")
                     .format(sql.Identifier(owner)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(owner)))
        conn.execute("DELETE FROM ils_redact.installed_object WHERE object = %s",
                     (f"role {owner}",))
    plan = install(eg_db)
    assert [(s.kind, s.target) for s in plan.changes()] == [
        ("create-role", f"role {owner}"), ("comment-role", f"role {owner}"),
        ("function-acl", EXPORT_RECORD), ("grant-role", f"role {owner}"),
        ("alter-owner", EXPORT)], plan.render()
    assert install(eg_db).empty
    run = verify_cli(eg_db, tmp_path)
    assert run.returncode == 0, run.explain()
    # an export still reads the patrons of an approved request, and only those
    rules = write_rules(tmp_path, eg_db.prefix)
    clerk, director = f"{eg_db.prefix}clerk", f"{eg_db.prefix}director"
    for login, kind in ((clerk, "admin"), (clerk, "disclosure"), (director, "admin")):
        res = run_cli("--dsn", eg_db.dsn, "--rules", str(rules), "staff", "grant", login,
                      "--role", kind, "--create")
        assert res.returncode == 0, res.stderr
    res = run_cli("--dsn", eg_db.dsn_as(clerk), "--rules", str(rules), "--format", "json",
                  "request", "create", "--basis", "emergency", "--agency", "Metro Police",
                  "--officer", "Jane Roe", "--badge", "4471", "--case", "26-1182",
                  "--patron", "11", "--reason", "credible threat of violence", "--yes")
    assert res.returncode == 0, res.stderr
    request = str(json.loads(res.stdout)["request"])
    res = run_cli("--dsn", eg_db.dsn_as(director), "--rules", str(rules), "request",
                  "approve", request)
    assert res.returncode == 0, res.stderr
    out = tmp_path / "export.csv"
    res = run_cli("--dsn", eg_db.dsn_as(clerk), "--rules", str(rules), "export",
                  "--request", request, "--format", "csv", "-o", str(out))
    assert res.returncode == 0, res.stderr
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) > 1 and all(line.startswith("11,") for line in lines[1:])


def test_function_mode_moves_disclosure_logins_to_the_exporter_role(
        eg_db: EgDb, tmp_path: Path) -> None:
    """``access: role`` then back to ``function``: the staff login would keep direct SQL
    in the disclosure role while verify said all rules hold."""
    role_rules = role_mode(tmp_path, eg_db)
    rules = load_rules(role_rules)
    install(eg_db, rules)
    clerk = f"{eg_db.prefix}clerk"
    with eg_db.connect(autocommit=False) as conn:
        staff.apply(conn, staff.plan_grant(conn, rules, clerk, "disclosure", create=True))
    assert verify_cli(eg_db, tmp_path, rules=role_rules).returncode == 0

    function_rules = write_rules(tmp_path, eg_db.prefix)  # the default: access: function
    run = verify_cli(eg_db, tmp_path, rules=function_rules)
    assert run.returncode == 1
    (f,) = run.findings("C-ACCESS-MODE", f"login {clerk}")
    assert f["severity"] == "violation" and "direct SQL" in f["why"]

    plan = install(eg_db)
    assert {(s.kind, s.target) for s in plan.changes()} == {
        ("revoke-role", f"role {eg_db.role('disclosure')}"),
        ("grant-role", f"role {eg_db.role('exporter')}"),
        ("settings", "ils_redact.setting")}, plan.render()  # the access setting itself
    member = "SELECT pg_has_role(%s, %s, 'MEMBER')"
    assert not eg_db.scalar(member, (clerk, eg_db.role("disclosure")))
    assert eg_db.scalar(member, (clerk, eg_db.role("exporter")))
    with eg_db.connect(clerk) as conn:
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT family_name FROM actor.usr")
    run = verify_cli(eg_db, tmp_path, rules=function_rules)
    assert run.returncode == 0, run.explain()
    assert install(eg_db).empty
    # staff list shows the login where it now is, and no layer role as a login
    res = run_cli("--dsn", eg_db.dsn, "--rules", str(function_rules), "--format", "json",
                  "staff", "list")
    assert res.returncode == 0, res.stderr
    assert eg_db.role("export_owner") not in res.stdout and clerk in res.stdout


# -- the lock (threat model row 22) --------------------------------------------------------

#: the advisory lock key install used to take ("ilsredc" in ASCII)
OLD_KEY = 0x696C7372656463


@pytest.mark.parametrize("fresh", [True, False])
def test_a_stranger_cannot_hold_up_install(eg_db: EgDb, tmp_path: Path, fresh: bool) -> None:
    """A login with no role takes the advisory key install used, and every lock it is
    allowed to try on what install now locks; install goes through regardless."""
    if not fresh:
        install(eg_db)
    stranger = create_role(eg_db.server, f"{eg_db.prefix}stranger")
    rules = write_rules(tmp_path, eg_db.prefix)
    with eg_db.connect(stranger, autocommit=False) as s:
        s.execute("SELECT pg_advisory_lock(%s)", (OLD_KEY,))
        for attempt in ("LOCK TABLE actor.usr IN ACCESS SHARE MODE",
                        "SELECT FROM ils_redact.meta FOR UPDATE",
                        "LOCK TABLE ils_redact.meta IN ROW SHARE MODE"):
            try:
                with s.transaction():  # a savepoint: what it may lock, it keeps
                    s.execute(attempt)  # type: ignore[arg-type]
            except (errors.InsufficientPrivilege, errors.UndefinedTable,
                    errors.InvalidSchemaName):  # fresh: no layer yet
                pass
        start = time.monotonic()
        res = run_cli("--dsn", eg_db.dsn, "--rules", str(rules), "install", "-q",
                      "--lock-timeout", "3s")
        assert res.returncode == 0, res.stderr
        assert time.monotonic() - start < 60
        s.rollback()


def test_two_installs_wait_for_each_other_with_a_clear_message(
        eg_db: EgDb, tmp_path: Path) -> None:
    install(eg_db)
    rules = write_rules(tmp_path, eg_db.prefix)
    with eg_db.connect(autocommit=False) as other:  # another sysadmin's install, under way
        other.execute("SELECT FROM ils_redact.meta WHERE key = 'layer_version' FOR UPDATE")
        res = run_cli("--dsn", eg_db.dsn, "--rules", str(rules), "install",
                      "--lock-timeout", "1s")
        other.rollback()
    assert res.returncode == 2
    assert "install timed out waiting for the layer's lock (a lock on ils_redact.meta)" \
        in res.stderr
    assert "nothing was changed" in res.stderr


def test_a_fresh_install_waits_for_another_and_then_stops_cleanly(
        eg_db: EgDb, tmp_path: Path) -> None:
    """Two fresh installs at once: the second waits on the patron table, then sees the
    first's layer and says to run it again (which then plans nothing)."""
    rules = write_rules(tmp_path, eg_db.prefix)
    with eg_db.connect(autocommit=False) as first:
        with first.transaction():
            # not committed until this block ends ...
            pg.install(first, eg_db.rules, reports=all_reports)
            exe = Path(sys.executable).parent / "ils-redact"
            second = subprocess.Popen([str(exe), "--dsn", eg_db.dsn, "--rules", str(rules),
                                       "install", "--lock-timeout", "60s"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True)
            for _ in range(300):
                if eg_db.scalar("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a "
                                "USING (pid) WHERE NOT l.granted "
                                "AND a.datname = current_database()"):
                    break
                time.sleep(0.1)
        out, err = second.communicate(timeout=120)
    assert second.returncode == 2, out + err
    assert "finished while this one waited; nothing was changed" in err
    res = run_cli("--dsn", eg_db.dsn, "--rules", str(rules), "install")
    assert res.returncode == 0 and "nothing to install" in res.stdout, res.stderr
