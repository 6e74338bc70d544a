"""A MariaDB server started with ``--sysdate-is-now``: SYSDATE(), the layer's clock, is then
NOW(), which any session moves with ``SET timestamp``.  Install refuses such a server,
and verify reports one that was restarted with the option after install (``H-CLOCK``).

The shared test server cannot be restarted, so these tests start a private ``mariadbd``
of the same installation in a temporary directory (Unix socket only, no network) and
stop it by its process id.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from ils_redact.adapters.koha import fixture
from ils_redact.backends import mariadb as m
from ils_redact.backends.mariadb.connection import Connection, sysdate_is_now
from ils_redact.errors import StateError
from ils_redact.stats import all_reports
from support.koha import koha_rules


@dataclass
class PrivateServer:
    datadir: Path
    socket: Path
    proc: subprocess.Popen | None = None

    def start(self, *options: str) -> None:
        binary = shutil.which("mariadbd") or shutil.which("mysqld")
        assert binary, "mariadbd is not installed here: it is needed to start a private server"
        self.proc = subprocess.Popen(
            [binary, "--no-defaults", f"--datadir={self.datadir}", f"--socket={self.socket}",
             # its own tmpdir: mariadbd deletes the #sql* files of its tmpdir at start,
             # which in /tmp are the temporary tables of the shared server in use
             f"--tmpdir={self.datadir.parent}",
             "--skip-networking", "--user=root", "--innodb-buffer-pool-size=32M",
             f"--log-error={self.datadir.parent / 'error.log'}", *options],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                self.connect().close()
                return
            except Exception:  # noqa: BLE001 - not up yet
                assert self.proc.poll() is None, (self.datadir.parent / "error.log").read_text()
                time.sleep(0.2)
        raise AssertionError("the private server did not start in 60 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)
        self.proc = None

    def dsn(self, db: str = "") -> str:
        return f"mysql://root@localhost/{quote(db)}?unix_socket={quote(str(self.socket))}"

    def connect(self, db: str = "", autocommit: bool = True) -> Connection:
        return m.connect(self.dsn(db), autocommit=autocommit)


@pytest.fixture(scope="module")
def private(tmp_path_factory) -> Iterator[PrivateServer]:
    base = tmp_path_factory.mktemp("mariadb")
    tool = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    assert tool, "mariadb-install-db is not installed here: it is needed for a private server"
    subprocess.run([tool, "--no-defaults", f"--datadir={base / 'data'}", "--user=root",
                    "--auth-root-authentication-method=normal", "--skip-test-db",
                    f"--tmpdir={base}"],
                   check=True, capture_output=True)
    srv = PrivateServer(base / "data", base / "sock")
    try:
        yield srv
    finally:
        srv.stop()


def test_install_refuses_and_verify_reports_sysdate_is_now(private: PrivateServer) -> None:
    rules = koha_rules("ikt_private_")
    private.start()
    with private.connect() as c:
        assert not sysdate_is_now(c)
        c.execute("CREATE DATABASE koha")
    with private.connect("koha") as c:
        fixture.build_schema(c)
        c.autocommit(False)
        fixture.fill(c, patrons=50)
        c.commit()
    with private.connect("koha", autocommit=False) as c:
        m.install(c, rules, reports=all_reports)
    private.stop()

    private.start("--sysdate-is-now")
    try:
        with private.connect("koha", autocommit=False) as c:
            assert sysdate_is_now(c)
            # a session that sets the clock now sets the layer's
            c.execute("SET timestamp = 86400")
            assert c.execute("SELECT YEAR(`ils_redact_koha`.clock_utc())").fetchone()[0] == 1970
            c.execute("SET timestamp = DEFAULT")
            with pytest.raises(StateError, match="--sysdate-is-now"):
                m.install(c, rules, reports=all_reports)
            from ils_redact.verify import verify

            report = verify(c, rules)
        found = [f for ch in report.checks for f in ch.findings if f.code == "H-CLOCK"]
        assert len(found) == 1 and "SET timestamp" in found[0].why
        assert not report.ok
    finally:
        private.stop()
