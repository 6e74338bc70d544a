"""``staff grant --create --password-stdin`` on PostgreSQL: the password comes from one
line of standard input, never from the command line, and is stored as a SCRAM verifier
that checks out against it."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

from ils_redact.backends import postgresql as pg
from ils_redact.stats import all_reports
from support import EgDb, run_cli, write_rules

PASSWORD = "Sekr1t pw with spaces"


def scram_verifies(stored: str, password: str) -> bool:
    """Whether a ``SCRAM-SHA-256$iterations:salt$StoredKey:ServerKey`` verifier is the
    password's (RFC 5802/7677, as PostgreSQL computes it)."""
    method, _, rest = stored.partition("$")
    params, _, keys = rest.partition("$")
    iterations, _, salt = params.partition(":")
    stored_key, _, server_key = keys.partition(":")
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt),
                                 int(iterations))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    return (method == "SCRAM-SHA-256"
            and hashlib.sha256(client_key).digest() == base64.b64decode(stored_key)
            and hmac.new(salted, b"Server Key", "sha256").digest()
            == base64.b64decode(server_key))


def test_password_stdin_creates_the_login_with_that_password(eg_db: EgDb,
                                                             tmp_path: Path) -> None:
    with eg_db.connect(autocommit=False) as conn:
        pg.install(conn, eg_db.rules, reports=all_reports)
    rules = str(write_rules(tmp_path, eg_db.prefix))
    login = f"{eg_db.prefix}scripted"

    def grant(*extra: str, stdin: str | None = None):
        return run_cli("--dsn", eg_db.dsn, "--rules", rules, "staff", "grant", login,
                       "--role", "admin", *extra, input=stdin)

    # refused, creating nothing: no --create, both options, nothing on stdin
    for extra, stdin, message in (
            (("--password-stdin",), f"{PASSWORD}\n", "only for a login that --create makes"),
            (("--create", "--password-stdin", "--password-prompt"), f"{PASSWORD}\n",
             "give one of them"),
            (("--create", "--password-stdin"), "", "standard input holds no password")):
        res = grant(*extra, stdin=stdin)
        assert res.returncode == 2 and message in res.stderr, (extra, res.stderr)
        assert eg_db.scalar("SELECT count(*) FROM pg_roles WHERE rolname = %s",
                            (login,)) == 0
    res = grant("--create", "--password-stdin", stdin=f"{PASSWORD}\nignored second line\n")
    assert res.returncode == 0, res.stderr
    # neither the password nor its verifier is printed (a hash in a log can be attacked
    # offline): the statement shows PASSWORD '***'
    assert PASSWORD not in res.stdout + res.stderr and "SCRAM-SHA-256$" not in res.stdout
    assert "PASSWORD '***'" in res.stdout, res.stdout
    stored = eg_db.scalar("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (login,))
    assert scram_verifies(stored, PASSWORD)
    assert not scram_verifies(stored, PASSWORD + "\n")
    assert eg_db.scalar("SELECT pg_has_role(%s, %s, 'MEMBER')",
                        (login, eg_db.role("admin")))
