"""A MariaDB replica (GTID replication, ``read_only``): writes are refused in one line, a
revoke reaches the replica when it is applied, ``status`` shows the replica's lag.
Against a primary and a replica the tests start themselves (two more ``mariadbd``, never
the server on 3306)."""

# ruff: noqa: S608 - test SQL with quoted names

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.koha import KohaDb, MariaServer, run_cli, write_koha_rules
from support.koha_workflow import Staff
from support.replication import MariaPair

pytestmark = pytest.mark.mariadb


@dataclass
class KohaPair:
    pair: MariaPair
    primary: KohaDb
    replica: KohaDb
    rules: Path
    staff: Staff

    def cli(self, *args: str, node: str = "primary", user: str | None = None,
            env: dict | None = None):
        db = self.primary if node == "primary" else self.replica
        dsn = db.dsn_as(user) if user else db.dsn
        return run_cli("--dsn", dsn, "--rules", str(self.rules), *args, env=env)

    def ok(self, *args: str, **kw) -> str:
        res = self.cli(*args, **kw)
        assert res.returncode == 0, (args, res.stdout, res.stderr)
        return res.stdout


@pytest.fixture(scope="module")
def kpair(mpair: MariaPair, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KohaPair]:
    prefix = f"irm{secrets.token_hex(3)}_"
    primary_srv = MariaServer(mpair.primary.dsn(), "harness primary", prefix)
    replica_srv = MariaServer(mpair.replica.dsn(), "harness replica", prefix)
    db = primary_srv.koha_db(patrons=300)
    try:
        db.install()
        staff = Staff.create(db)
        mpair.wait_replayed()
        replica = KohaDb(server=replica_srv, name=db.name, prefix=db.prefix)
        rules = write_koha_rules(tmp_path_factory.mktemp("kpair"), db.prefix)
        yield KohaPair(mpair, db, replica, rules, staff)
    finally:
        db.drop()
        mpair.wait_replayed()


@pytest.fixture(scope="module")
def approved(kpair: KohaPair) -> int:
    s = kpair.staff
    rid = s.request(s.alice, [11, 12], approve_as=s.bob)
    kpair.pair.wait_replayed()
    return rid


WRITES = {
    "request create": (("request", "create", "--basis", "emergency", "--agency", "Metro",
                        "--officer", "Jane Roe", "--badge", "1", "--case", "2",
                        "--reason", "threat", "--patron", "11", "--yes"), "alice"),
    "request approve": (("request", "approve", "{rid}"), "bob"),
    "request revoke": (("request", "revoke", "{rid}", "--reason", "withdrawn"), "bob"),
    "request close": (("request", "close", "{rid}"), "bob"),
    "export": (("export", "--request", "{rid}", "-o", "{tmp}/out.csv"), "alice"),
    "staff grant": (("staff", "grant", "{prefix}newbie", "--role", "disclosure",
                     "--create"), None),
    "staff revoke": (("staff", "revoke", "{prefix}alice", "--role", "disclosure"), None),
    "install": (("install",), None),
    "uninstall": (("uninstall", "--yes", "--discard-audit"), None),
    "query --profile disclosure": (("query", "--profile", "disclosure", "--request", "{rid}",
                                    "SELECT surname FROM borrowers"), "dora"),
}


@pytest.mark.parametrize("command", sorted(WRITES))
def test_a_write_on_the_replica_is_refused_in_one_line(kpair: KohaPair, approved: int,
                                                       command: str, tmp_path: Path) -> None:
    args, who = WRITES[command]
    db = kpair.primary
    user = getattr(kpair.staff, who) if who else None
    args = tuple(a.format(rid=approved, tmp=tmp_path, prefix=db.prefix) for a in args)
    audit = f"SELECT COUNT(*) FROM `{db.layer}`.audit_log"
    before = db.scalar(audit)
    gtid = kpair.pair.replica.rows("SELECT @@gtid_binlog_pos")[0][0]
    res = kpair.cli(*args, node="replica", user=user)
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    # an administrator sees the replica's source; a staff login sees read_only
    port = kpair.pair.primary.port
    why = (f"a replica of 127.0.0.1:{port} (read-only for ils-redact)" if who is None else
           "a read-only server (read_only is ON: a replica)")
    assert lines[0] == (f"ils-redact: error: {command} writes, but 127.0.0.1:"
                        f"{kpair.pair.replica.port} is {why} (run it against the primary)")
    assert res.stdout == ""
    assert not (tmp_path / "out.csv").exists()
    assert db.scalar(audit) == before
    # nothing was written on the replica either: no transaction of its own in its binlog
    assert kpair.pair.replica.rows("SELECT @@gtid_binlog_pos")[0][0] == gtid


READS = {
    "request list": (("request", "list"), "bob"),
    "request show": (("request", "show", "{rid}"), "bob"),
    "request form": (("request", "form", "{rid}", "-o", "{tmp}/form.html"), "bob"),
    "request packet": (("request", "packet", "{rid}", "-o", "{tmp}/packet"), "bob"),
    "audit log": (("audit", "log"), "bob"),
    "audit verify": (("audit", "verify"), "bob"),
    "staff list": (("staff", "list"), None),
    "status": (("status",), None),
    "plan": (("plan",), None),
    "staff grant --dry-run": (("staff", "grant", "{prefix}alice", "--role", "stats",
                               "--dry-run"), None),
}


@pytest.mark.parametrize("command", sorted(READS))
def test_a_read_works_on_the_replica(kpair: KohaPair, approved: int, command: str,
                                     tmp_path: Path) -> None:
    args, who = READS[command]
    user = getattr(kpair.staff, who) if who else None
    args = tuple(a.format(rid=approved, tmp=tmp_path, prefix=kpair.primary.prefix)
                 for a in args)
    gtid = kpair.pair.replica.rows("SELECT @@gtid_binlog_pos")[0][0]
    res = kpair.cli(*args, node="replica", user=user)
    assert res.returncode == 0, (res.stdout, res.stderr)
    assert kpair.pair.replica.rows("SELECT @@gtid_binlog_pos")[0][0] == gtid


def _visible(db: KohaDb, login: str) -> set[int]:
    with db.connect(login) as c:
        c.execute(f"SET ROLE {db.role('disclosure')}")
        return {int(r[0]) for r in c.execute(
            f"SELECT borrowernumber FROM `{db.layer}`.borrowers").fetchall()}


def test_a_revoke_reaches_the_replica_only_when_applied(kpair: KohaPair) -> None:
    s = kpair.staff
    rid = s.request(s.alice, [21, 22], grantee=s.dora, approve_as=s.bob)
    kpair.pair.wait_replayed()
    assert _visible(kpair.replica, s.dora) == {21, 22}
    rep = kpair.pair.replica
    rep.rows("STOP REPLICA SQL_THREAD")
    try:
        kpair.ok("request", "revoke", str(rid), "--reason", "withdrawn", user=s.bob)
        assert _visible(kpair.primary, s.dora) == set()
        assert _visible(kpair.replica, s.dora) == {21, 22}  # not applied yet
        data = json.loads(kpair.ok("--format", "json", "status", node="replica"))
        src = data["replication"]["sources"][0]
        assert data["replication"]["role"] == "replica" and src["sql_running"] == "No"
        text = kpair.ok("status", node="replica")
        assert f"replica of 127.0.0.1:{kpair.pair.primary.port} (IO Yes, SQL No)" in text
        assert "Seconds_Behind_Master unknown (not applying)" in text
    finally:
        rep.rows("START REPLICA SQL_THREAD")
    kpair.pair.wait_replayed()
    assert _visible(kpair.replica, s.dora) == set()
    text = kpair.ok("status", node="replica")
    assert "replay lag      Seconds_Behind_Master 0" in text, text


def test_status_on_the_primary_shows_its_replica(kpair: KohaPair) -> None:
    data = json.loads(kpair.ok("--format", "json", "status"))
    rep = data["replication"]
    assert rep["role"] == "primary" and not rep["read_only"]


def test_verify_on_the_primary_and_the_replica_finds_no_replication_hazard(
        kpair: KohaPair) -> None:
    """Plain GTID replication carries the layer: nothing to report on either side, and
    verify on the replica writes nothing there."""
    for node in ("primary", "replica"):
        gtid = kpair.pair.replica.rows("SELECT @@gtid_binlog_pos")[0][0]
        res = kpair.cli("--format", "json", "verify", node=node)
        assert res.returncode == 0, res.stdout[-2000:]
        check = next(c for c in json.loads(res.stdout)["checks"]
                     if c["id"] == "hazard/replication")
        assert check["status"] == "pass" and not check["findings"], check
        kpair.pair.wait_replayed()
        # its probe login is not in the replica's binary log: no transaction of its own
        assert kpair.pair.replica.rows("SELECT @@gtid_binlog_pos")[0][0] == gtid


def test_a_filter_that_skips_the_layer_keeps_revoked_patrons_visible(kpair: KohaPair) -> None:
    """Last in the module: the replica's copy of the layer stays behind the primary's.

    A replica that applies the Koha tables but not the layer database never sees a revoke:
    the patrons of a revoked request stay visible there for good.  verify on the replica
    says so (H-REPLICA-FILTER), and a delayed replica is a warning (H-DELAYED-REPLICA)."""
    s, db = kpair.staff, kpair.primary
    rep = kpair.pair.replica
    rid = s.request(s.alice, [31, 32], grantee=s.dora, approve_as=s.bob)
    kpair.pair.wait_replayed()
    assert _visible(kpair.replica, s.dora) == {31, 32}
    rep.rows("STOP REPLICA")
    rep.rows("SET GLOBAL replicate_ignore_db = %s", (db.layer,))
    rep.rows("CHANGE MASTER TO MASTER_DELAY = 600")
    rep.rows("START REPLICA")
    try:
        res = kpair.cli("--format", "json", "verify", node="replica")
        assert res.returncode == 1, res.stderr
        found = {f["code"]: f for c in json.loads(res.stdout)["checks"]
                 for f in c["findings"] if c["id"] == "hazard/replication"}
        assert set(found) == {"H-REPLICA-FILTER", "H-DELAYED-REPLICA"}
        f = found["H-REPLICA-FILTER"]
        src = f"127.0.0.1:{kpair.pair.primary.port}"
        assert f["object"] == f"replication from {src}" and f["severity"] == "violation"
        assert f["why"].startswith(
            f"this server replicates Koha database {db.name} from {src} but "
            f"Replicate_Ignore_DB = {db.layer} skips {db.layer}.scope, {db.layer}.audit_log")
        d = found["H-DELAYED-REPLICA"]
        assert d["severity"] == "warning" and "600 s late (MASTER_DELAY)" in d["why"]
        text = kpair.ok("status", node="replica")
        assert "delayed replica: MASTER_DELAY 600 s" in text
        # what the finding says is true (without the delay, so that it is not the delay)
        rep.rows("STOP REPLICA")
        rep.rows("CHANGE MASTER TO MASTER_DELAY = 0")
        rep.rows("START REPLICA")
        kpair.ok("request", "revoke", str(rid), "--reason", "withdrawn", user=s.bob)
        kpair.pair.wait_replayed()
        assert _visible(kpair.primary, s.dora) == set()
        assert _visible(kpair.replica, s.dora) == {31, 32}
    finally:
        rep.rows("STOP REPLICA")
        rep.rows("SET GLOBAL replicate_ignore_db = ''")
        rep.rows("CHANGE MASTER TO MASTER_DELAY = 0")
        rep.rows("START REPLICA")
