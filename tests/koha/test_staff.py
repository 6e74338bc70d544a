"""Staff logins on MariaDB: roles as default roles, refusals for logins that would bypass
the restriction, exact undo of a grant, accounts rather than names, and passwords that
stay out of the command line."""

# ruff: noqa: S608 - test SQL: names quoted with sqltext.ident/account

from __future__ import annotations

import pytest

from ils_redact.backends.mariadb import staff
from ils_redact.backends.mariadb.sqltext import account, ident, string
from ils_redact.errors import Refused
from support.koha import PASSWORD, KohaDb, run_cli, write_koha_rules


def _priv(db: KohaDb, user: str) -> str:
    return db.scalar("SELECT Priv FROM mysql.global_priv WHERE User = %s AND Host = '%%'",
                     (user,))


def test_restricted_roles_are_refused_to_logins_that_read_koha(installed: KohaDb) -> None:
    app = f"{installed.prefix}kohaapp"
    dba = f"{installed.prefix}dba"
    with installed.connect() as c:
        c.execute(f"CREATE USER {account(app, '%')}")
        c.execute(f"GRANT ALL ON {ident(installed.name)}.* TO {account(app, '%')}")
        c.execute(f"CREATE USER {account(dba, '%')}")
        c.execute(f"GRANT SELECT ON *.* TO {account(dba, '%')}")
        with pytest.raises(Refused, match="privileges on the Koha database"):
            staff.plan_grant(c, installed.rules, app, "disclosure")
        with pytest.raises(Refused, match="global privileges"):
            staff.plan_grant(c, installed.rules, dba, "stats")
        with pytest.raises(Refused, match="ils-redact role"):
            staff.plan_grant(c, installed.rules, installed.owner, "admin")
        # admin is restricted too (its patron lookup is bounded and traced): a login that
        # reads Koha directly would not be bounded by it
        with pytest.raises(Refused, match="will not grant the admin role"):
            staff.plan_grant(c, installed.rules, app, "admin")


def test_grant_sets_the_default_role_and_revoke_restores_the_row(installed: KohaDb) -> None:
    user = f"{installed.prefix}clerk"
    with installed.connect() as c:
        c.execute(f"CREATE USER {account(user, '%')} IDENTIFIED BY {string(PASSWORD)}")
    before = _priv(installed, user)
    installed.login("clerk", "admin", existing=True)
    assert f'"default_role":"{installed.role("admin")}"' in _priv(installed, user)
    with installed.connect(user) as c:
        assert c.execute("SELECT CURRENT_ROLE()").fetchone()[0] == installed.role("admin")
    with installed.connect(autocommit=False) as c:
        plan = staff.plan_revoke(c, installed.rules, user, "admin")
        c.rollback()
        staff.apply(c, plan)
    assert _priv(installed, user) == before
    assert installed.scalar("SELECT COUNT(*) FROM mysql.roles_mapping WHERE User = %s",
                            (user,)) == 0


def test_a_foreign_default_role_is_kept(installed: KohaDb) -> None:
    """MariaDB has one default role per login: a login that has one keeps it, and the
    CLI activates the ils-redact role when it needs it."""
    user = f"{installed.prefix}librarian"
    other = f"{installed.prefix}circ_desk"
    with installed.connect() as c:
        c.execute(f"CREATE ROLE {ident(other)}")
        c.execute(f"CREATE USER {account(user, '%')} IDENTIFIED BY {string(PASSWORD)}")
        c.execute(f"GRANT {ident(other)} TO {account(user, '%')}")
        c.execute(f"SET DEFAULT ROLE {ident(other)} FOR {account(user, '%')}")
    installed.login("librarian", "admin", existing=True)
    assert f'"default_role":"{other}"' in _priv(installed, user)
    from ils_redact.disclosure import requests as rq

    with installed.connect(user, autocommit=False) as c:
        assert rq.list_requests(c) == []  # SET ROLE to the admin role, then the query
        assert c.execute("SELECT CURRENT_ROLE()").fetchone()[0] == installed.role("admin")


def test_cli_staff_grant_sends_the_password_hashed(installed: KohaDb, tmp_path) -> None:
    rules = str(write_koha_rules(tmp_path, installed.prefix))
    login = f"{installed.prefix}newclerk"
    out = run_cli("--dsn", installed.dsn, "--rules", rules, "staff", "grant", login,
                  "--role", "disclosure", "--create", "--password-prompt",
                  input=f"{PASSWORD}\n{PASSWORD}\n")
    assert out.returncode == 0, out.stderr
    assert PASSWORD not in out.stdout and "IDENTIFIED BY PASSWORD '***'" in out.stdout
    assert f"GRANT `{installed.role('exporter')}`" in out.stdout  # function access mode
    with installed.connect(login) as c:
        assert c.execute("SELECT CURRENT_ROLE()").fetchone()[0] == installed.role("exporter")
    listed = run_cli("--dsn", installed.dsn, "--rules", rules, "--format", "json", "staff",
                     "list")
    assert listed.returncode == 0 and login in listed.stdout


def test_cli_staff_grant_reads_the_password_from_stdin(installed: KohaDb, tmp_path) -> None:
    """--password-stdin: one line of standard input (a script, a secrets manager), never
    the command line; refused without --create, with --password-prompt too, or empty."""
    rules = str(write_koha_rules(tmp_path, installed.prefix))
    login = f"{installed.prefix}scripted"
    password = "Sekr1t pw with spaces"

    def grant(*extra: str, stdin: str | None = None):
        return run_cli("--dsn", installed.dsn, "--rules", rules, "staff", "grant", login,
                       "--role", "admin", *extra, input=stdin)

    for extra, stdin, message in (
            (("--password-stdin",), f"{password}\n", "only for a login that --create makes"),
            (("--create", "--password-stdin", "--password-prompt"), f"{password}\n",
             "give one of them"),
            (("--create", "--password-stdin"), "", "standard input holds no password")):
        res = grant(*extra, stdin=stdin)
        assert res.returncode == 2 and message in res.stderr, (extra, res.stderr)
        assert installed.scalar("SELECT COUNT(*) FROM mysql.user WHERE User = %s",
                                (login,)) == 0
    res = grant("--create", "--password-stdin", stdin=f"{password}\nignored\n")
    assert res.returncode == 0, res.stderr
    assert password not in res.stdout + res.stderr
    assert "IDENTIFIED BY PASSWORD '***'" in res.stdout  # the hash is not printed either
    with installed.connect(login, password=password) as c:
        assert c.execute("SELECT CURRENT_ROLE()").fetchone()[0] == installed.role("admin")
