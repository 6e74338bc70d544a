"""Connecting to MariaDB, and the facts about the connection that decide what may run.

The driver is PyMySQL: pure Python (no MariaDB/MySQL client library to install next to
Koha's own), DB-API 2, maintained, and it speaks the protocol MariaDB 10.6-11.x serve.
Its connection is extended with the two methods the engine-neutral CLI calls on a
psycopg connection (``execute`` and ``transaction``), so ``plan`` and ``status`` run the
same code on both engines.

DSN: ``mysql://user[:password]@host[:port]/koha`` or ``mariadb://...``; the query string
may carry ``unix_socket=/path``.  The database in the path is the Koha database.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pymysql
import pymysql.cursors

from ...errors import ConnectionFailed, ReadOnlyServer, StateError
from .sqltext import ident, string

log = logging.getLogger("ils_redact.sql")

SCHEMES = ("mysql", "mariadb")
_DB_ACCESS_DENIED = 1044
#: layer objects need JSON_TABLE (10.6) and CREATE OR REPLACE TRIGGER
MIN_VERSION = (10, 6)


class Connection(pymysql.connections.Connection):
    """A PyMySQL connection with ``execute`` and ``transaction`` as psycopg has them.

    ``ils_database`` is the Koha database the DSN named.  A restricted login holds no
    privilege on it, and MariaDB refuses to make a database the default for a login that
    has none there, so such a login connects without a default database and the name is
    kept here."""

    ils_database: str | None = None

    def execute(self, query: str, params: Any = None) -> pymysql.cursors.Cursor:
        cur = self.cursor()
        log.debug("%s", query)
        cur.execute(query, params)
        return cur

    def rows(self, query: str, params: Any = None) -> list[tuple]:
        """The rows of one statement's first result set.  What follows it (the status
        packet a CALL ends with) is read and dropped, so the connection is ready for the
        next statement."""
        cur = self.execute(query, params)
        try:
            rows = list(cur.fetchall())
            while cur.nextset():
                pass
            return rows
        finally:
            cur.close()

    @contextmanager
    def transaction(self, force_rollback: bool = False) -> Iterator[Connection]:
        """Commit on success (rollback with ``force_rollback``), rollback on error."""
        try:
            yield self
        except BaseException:
            self.rollback()
            raise
        if force_rollback:
            self.rollback()
        else:
            self.commit()


def parse_dsn(dsn: str) -> dict[str, Any]:
    try:
        u = urlsplit(dsn)
        port = u.port
    except ValueError as exc:
        raise ConnectionFailed(f"invalid DSN: {exc}") from None
    if u.scheme not in SCHEMES:
        raise ConnectionFailed(
            f"not a MariaDB DSN: {describe_dsn(dsn)}",
            hint="mysql://user[:password]@host:port/koha or mariadb://...")
    query = parse_qs(u.query)
    out: dict[str, Any] = {
        "host": u.hostname or "localhost",
        "port": port or 3306,
        "user": unquote(u.username) if u.username else None,
        "password": unquote(u.password) if u.password else "",
        "database": unquote(u.path.lstrip("/")) or None,
    }
    if "unix_socket" in query:
        out["unix_socket"] = query["unix_socket"][0]
    return out


def describe_dsn(dsn: str) -> str:
    """user@host:port/db for messages, never the password."""
    try:
        u = urlsplit(dsn)
        where = f"{u.hostname or 'localhost'}:{u.port or 3306}"
    except ValueError:
        return "<unparseable DSN>"
    user = unquote(u.username) if u.username else ""
    return f"{user + '@' if user else ''}{where}/{u.path.lstrip('/')}"


def connect(dsn: str, *, debug: bool = False, autocommit: bool = False,
            database: str | None = None, **kwargs: Any) -> Connection:
    """Open a connection; failures become one clean line (exit 2)."""
    params = parse_dsn(dsn)
    if database is not None:
        params["database"] = database or None
    params.update(kwargs)
    try:
        try:
            conn = Connection(charset="utf8mb4", autocommit=autocommit, **params)
        except pymysql.err.OperationalError as exc:
            if not (exc.args and exc.args[0] == _DB_ACCESS_DENIED and params["database"]):
                raise
            conn = Connection(charset="utf8mb4", autocommit=autocommit,
                              **dict(params, database=None))
    except pymysql.err.OperationalError as exc:
        msg = exc.args[1] if len(exc.args) > 1 else str(exc)
        raise ConnectionFailed(f"cannot connect to {describe_dsn(dsn)}: {msg}") from None
    except pymysql.err.MySQLError as exc:
        raise ConnectionFailed(f"cannot connect to {describe_dsn(dsn)}: {exc}") from None
    conn.ils_database = params["database"]
    if debug:
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
        log.setLevel(logging.DEBUG)
    return conn


#: authentication plugins that check a password the client sends
PASSWORD_PLUGINS = frozenset({"mysql_native_password", "mysql_old_password", "ed25519",
                              "parsec", "caching_sha2_password", "sha256_password", "pam"})


def password_was_checked(conn: Connection) -> bool:
    """Whether MariaDB authenticated this connection by a password: the account's own
    ``SHOW CREATE USER`` (an account may always see its own) names only password
    plugins, with a password set; an alternative that ignores the password
    (``unix_socket``, ``gssapi``, ``named_pipe``) is accepted only over TCP, where it
    cannot have let the connection in.  An account with no authentication at all (no
    password) is refused, whatever MariaDB did with the password typed."""
    rows = conn.rows("SHOW CREATE USER CURRENT_USER()")
    text = str(rows[0][0]) if rows else ""
    _, _, auth = text.partition(" IDENTIFIED ")
    if not auth:
        return False
    alternatives = re.split(r"\s+OR\s+", auth.split(" REQUIRE ")[0].split(" WITH ")[0])
    password = False
    for alt in alternatives:
        # "VIA a OR b USING '...'": the alternatives after the first name no VIA
        m = re.match(r"(?:BY PASSWORD\s+'([^']*)')|(?:(?:VIA\s+)?`?(\w+)`?(?:\s+USING\s+"
                     r"'([^']*)')?)", alt.strip())
        if not m:
            return False
        if m[1] is not None:
            plugin, value = "mysql_native_password", m[1]
        else:
            plugin, value = m[2].lower(), m[3]
        if plugin in PASSWORD_PLUGINS:
            if value or plugin == "pam":
                password = True
        elif getattr(conn, "unix_socket", None):
            return False
    return password


def scalar(conn: Connection, query: str, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    return row[0] if row else None


def current_database(conn: Connection) -> str:
    """The Koha database: the DSN's, else the session's default database."""
    db = getattr(conn, "ils_database", None) or scalar(conn, "SELECT DATABASE()")
    if not db:
        raise StateError("no Koha database given",
                         hint="name it in the DSN: mysql://user@host:3306/koha")
    return str(db)


def server_version(conn: Connection) -> str:
    return str(scalar(conn, "SELECT VERSION()"))


def version_tuple(version: str) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", version)
    return (int(m[1]), int(m[2])) if m else (0, 0)


def require_mariadb(conn: Connection) -> str:
    """MariaDB 10.6 or later (JSON_TABLE, roles, CREATE OR REPLACE TRIGGER); MySQL is a
    different server (no CREATE OR REPLACE, other role semantics) and is refused."""
    version = server_version(conn)
    if "mariadb" not in version.lower():
        raise StateError(f"the server is not MariaDB ({version}); the Koha backend needs "
                         "MariaDB 10.6 or later")
    if version_tuple(version) < MIN_VERSION:
        raise StateError(f"MariaDB {version} is too old; the Koha backend needs 10.6 or later "
                         "(JSON_TABLE)")
    return version


def replica_source(conn: Connection) -> str | None:
    """``host:port`` this server replicates from, when it is a replica and the account may
    see its replica status (REPLICA MONITOR, SUPER or an administrator); else None."""
    try:
        cur = conn.cursor(pymysql.cursors.DictCursor)
        try:
            cur.execute("SHOW ALL REPLICAS STATUS")
            rows = list(cur.fetchall())
        finally:
            cur.close()
    except pymysql.err.MySQLError:  # no privilege to look: read_only still tells
        return None
    for r in rows:
        if r.get("Slave_SQL_Running") == "Yes" or r.get("Slave_IO_Running") in ("Yes",
                                                                                "Connecting"):
            return f"{r.get('Master_Host')}:{r.get('Master_Port')}"
    return None


def read_only_reason(conn: Connection) -> str | None:
    """Why this server must not take ils-redact's writes, or None.

    ``read_only`` stops every account without READ ONLY ADMIN (root keeps writing, so an
    install as root on a replica would succeed and then break replication); a running
    replica with ``read_only`` off is refused too: the audit log's hash chain and the
    request numbers must have one writer, or the replica's copy diverges and replication
    stops at the first duplicate key."""
    source = replica_source(conn)
    if source:
        return f"a replica of {source} (read-only for ils-redact)"
    if scalar(conn, "SELECT @@read_only"):
        return "a read-only server (read_only is ON: a replica)"
    return None


def require_primary(conn: Connection, action: str) -> None:
    """Refuse, in one line and before anything is printed or written, a command that
    writes (``action`` names it) on a replica."""
    why = read_only_reason(conn)
    if why:
        where = f"{conn.host}:{conn.port}"
        raise ReadOnlyServer(f"{action} writes, but {where} is {why}",
                             hint="run it against the primary")


def sysdate_is_now(conn: Connection) -> bool:
    """Whether the server runs with ``--sysdate-is-now``: SYSDATE() is then NOW(), which
    any session moves with ``SET timestamp``.  Asked by moving this statement's clock
    to 1970: the real SYSDATE() does not follow."""
    year = scalar(conn, "SET STATEMENT timestamp = 86400 FOR SELECT YEAR(SYSDATE())")
    return int(year) < 2000


def require_real_clock(conn: Connection, action: str) -> None:
    """The layer decides expiry, scope, audit times and statistics periods by SYSDATE():
    refuse a server on which it follows a clock the caller sets."""
    if sysdate_is_now(conn):
        raise StateError(f"{action} refused: the server runs with --sysdate-is-now, so "
                         "SYSDATE() follows SET timestamp and any session could move the "
                         "clock that decides expiry, scope and audit times",
                         hint="remove sysdate-is-now from the server's configuration and "
                              "restart it")


def current_account(conn: Connection) -> tuple[str, str]:
    """The authenticated account (CURRENT_USER()), as (user, host)."""
    user, _, host = str(scalar(conn, "SELECT CURRENT_USER()")).rpartition("@")
    return user, host


def session_user(conn: Connection) -> str:
    """The login name the layer records for this session (the user part of USER())."""
    return str(scalar(conn, "SELECT SUBSTRING_INDEX(USER(), '@', 1)"))


_NEEDED = ("CREATE USER", "SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP",
           "CREATE VIEW", "CREATE ROUTINE", "ALTER ROUTINE", "TRIGGER", "EXECUTE")


def require_admin(conn: Connection, action: str) -> None:
    """Install and uninstall create accounts, roles, views and routines with another
    definer and hand out privileges: they need CREATE USER, SET USER (or SUPER), GRANT
    OPTION and the object privileges on every database, as root has them."""
    user, host = current_account(conn)
    rows = conn.execute(
        "SELECT PRIVILEGE_TYPE, IS_GRANTABLE FROM information_schema.USER_PRIVILEGES "
        "WHERE GRANTEE = %s", (f"{string(user)}@{string(host)}",)).fetchall()
    have = {r[0] for r in rows}
    grantable = any(r[1] == "YES" for r in rows)
    missing = [p for p in _NEEDED if p not in have]
    if not ({"SET USER", "SUPER"} & have):
        missing.append("SET USER")
    if missing or not grantable:
        what = ", ".join(missing) + (", GRANT OPTION" if not grantable else "")
        raise StateError(f"{action} must run as an administrator account; {user}@{host} "
                         f"lacks global {what.lstrip(', ')}",
                         hint="connect as root (or an account with ALL PRIVILEGES ON *.* "
                              "WITH GRANT OPTION) for this step")


def lock_name(database: str) -> str:
    """GET_LOCK name shared by install, uninstall and staff changes of one database."""
    return f"ils_redact:{database}"[:64]


def get_lock(conn: Connection, database: str, timeout: float) -> None:
    got = scalar(conn, "SELECT GET_LOCK(%s, %s)", (lock_name(database), timeout))
    if got != 1:
        raise StateError(f"another ils-redact install or uninstall holds the lock on "
                         f"database {database}", hint="wait for it, or raise --lock-timeout")


def release_lock(conn: Connection, database: str) -> None:
    try:
        conn.execute("SELECT RELEASE_LOCK(%s)", (lock_name(database),)).fetchall()
    except pymysql.err.MySQLError:  # the connection is gone: the server released it
        pass


def parse_timeout(value: str) -> float:
    """``10s``, ``500ms``, ``2min`` or plain seconds -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|min)?\s*", value or "")
    if not m:
        raise StateError(f"not a duration: {value!r} (e.g. 10s, 500ms, 2min)")
    n = float(m[1])
    return n / 1000 if m[2] == "ms" else n * 60 if m[2] == "min" else n


def use_database_sql(database: str) -> str:
    return f"USE {ident(database)}"
