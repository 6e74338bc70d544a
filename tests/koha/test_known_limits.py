"""Known limits of the MariaDB layer, proven so the threat model states them truly.

A Koha administrator can create, after approval, a second account with the grantee's user
name on a host the grantee's host pattern also matches, and give it a layer role by hand
(``staff grant`` refuses this). The identity views' fast path tells accounts apart by user
name and host pattern only, so that account reads the grantee's scope; ``verify`` reports
it (``H-NAMESAKE``) with the fix.
"""

# ruff: noqa: S608 - test SQL: names quoted with sqltext.account

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_hardening import create_account, socket_connect

from ils_redact.backends.mariadb.sqltext import account
from support.koha import KohaDb, MariaServer
from support.koha_verify import execute, verify_cli
from support.koha_workflow import Staff, identity_select


@pytest.fixture(scope="module")
def koha(mariadb: MariaServer) -> Iterator[tuple[KohaDb, Staff]]:
    db = mariadb.koha_db()
    db.install()
    try:
        yield db, Staff.create(db)
    finally:
        mariadb.release(db)


def test_a_namesake_the_grantees_host_pattern_matches_reads_its_scope_and_verify_reports_it(
        koha: tuple[KohaDb, Staff], tmp_path: Path) -> None:
    db, staff = koha
    clerk = f"{db.prefix}nsclerk"
    create_account(db, clerk, "%", "disclosure")  # in the disclosure role, any host
    rid = staff.request(staff.alice, [93], grantee=f"{clerk}@%", approve_as=staff.bob)
    assert rid
    with db.connect(clerk) as c:
        assert [r[0] for r in c.execute(identity_select(db))] == [93]
    create_account(db, clerk, "localhost", "disclosure")  # the administrator, by hand
    try:
        with socket_connect(db, clerk) as c:
            assert c.execute("SELECT CURRENT_USER()").fetchone()[0] == f"{clerk}@localhost"
            seen = [r[0] for r in c.execute(identity_select(db))]
        run = verify_cli(db, tmp_path)
        assert run.returncode == 1, run.explain()
        finding = run.only("H-NAMESAKE", f"login name {clerk}")
        assert "RENAME USER" in finding["fix"]  # both hold a layer role: neither is dropped
        assert seen == [93], seen  # the limit: the grantee's patron, to another account
    finally:
        execute(db, f"DROP USER IF EXISTS {account(clerk, 'localhost')}",
                f"DROP USER IF EXISTS {account(clerk, '%')}")
