"""Run SQL as a restricted role: a temporary probe login, and the probe block.

MariaDB lets a session ``SET ROLE`` only to a role its login was granted, and verify's
own login (an administrator) must not be changed.  So verify makes a login for the proof
and drops it afterwards:

1. ``CREATE USER 'ils_redact_probe_<time>_<random>'@'<verify's own client host>'
   IDENTIFIED BY PASSWORD '<hash of a random password>' ACCOUNT LOCK``: the host is the
   one the server saw verify connect from, so the same route reaches it, and a login
   with a name is preferred over an anonymous ``''@host`` there; the password never
   travels in clear;
2. the restricted roles are granted to it, while it is still locked;
3. ``ACCOUNT UNLOCK``, connect, ``ACCOUNT LOCK`` again at once: a session outlives the
   lock, nobody can log in after it;
4. for each role: ``SET ROLE``, then the probe block (one round trip), then the next;
5. ``DROP USER`` (in ``finally``), which removes its role grants with it.

It holds nothing of its own, so a session with one role active has exactly what that
role has and PUBLIC has.  The administrator session that creates and drops it turns off
the binary log and the general log for those statements (``sql_log_bin``,
``sql_log_off``), so the login is recorded nowhere and never replicated; a test compares
the grant tables before and after.  A probe login left by a verify that was killed is
locked, has a random password, and is reported (``H-STALE-PROBE``).

The probe block is a ``BEGIN NOT ATOMIC`` compound statement: it reads the probes (SQL
texts) from a JSON array in a user variable, runs each with ``PREPARE``/``EXECUTE`` under
an exception handler, and returns ``[errno, value, message]`` for each: the whole
database in one round trip.  Each probe is written so that it cannot change anything:
``SELECT COUNT(*) INTO @v FROM (SELECT <columns> FROM t WHERE 0) d`` reads no row but
is checked column by column; a routine is called with one argument too many, which the
server refuses after the EXECUTE check and before the body runs (1318 when it may be
called, 1370 when not).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pymysql

from ....errors import StateError
from ..connection import Connection
from ..sqltext import account, ident, string

PROBE_PREFIX = "ils_redact_probe_"
#: a probe login older than this was left by a verify that did not finish
STALE_SECONDS = 600

DENIED = {1142, 1143, 1044, 1370}  # table, column, database, routine access denied
WRONG_ARGS = 1318

BLOCK = """BEGIN NOT ATOMIC
  DECLARE done INT DEFAULT 0;
  DECLARE e INT DEFAULT 0;
  DECLARE m VARCHAR(512) DEFAULT NULL;
  DECLARE q LONGTEXT;
  DECLARE res LONGTEXT DEFAULT '';
  DECLARE cur CURSOR FOR
    SELECT j.q FROM JSON_TABLE(@ils_redact_probes, '$[*]' COLUMNS (q LONGTEXT PATH '$')) j;
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET done = 1;
  DECLARE CONTINUE HANDLER FOR SQLEXCEPTION
    GET DIAGNOSTICS CONDITION 1 e = MYSQL_ERRNO, m = MESSAGE_TEXT;
  OPEN cur;
  probes: LOOP
    SET done = 0;
    FETCH cur INTO q;
    IF done THEN
      LEAVE probes;
    END IF;
    SET e = 0, m = NULL, @ils_redact_v = NULL, @ils_redact_q = q;
    PREPARE ils_redact_probe FROM @ils_redact_q;
    IF e = 0 THEN
      EXECUTE ils_redact_probe;
      DEALLOCATE PREPARE ils_redact_probe;
    END IF;
    SET res = CONCAT(res, IF(res = '', '', ','), JSON_ARRAY(e + 0, @ils_redact_v,
        IF(e IN (0, 1142, 1143, 1044, 1370, 1318), NULL, m)));
  END LOOP;
  CLOSE cur;
  SELECT CONCAT('[', res, ']');
END"""


def native_hash(password: str) -> str:
    inner = hashlib.sha1(password.encode()).digest()  # noqa: S324 - mysql_native_password's format
    return "*" + hashlib.sha1(inner).hexdigest().upper()  # noqa: S324


def probe_name(now: float | None = None) -> str:
    stamp = format(int(now if now is not None else time.time()), "x")
    return f"{PROBE_PREFIX}{stamp}_{secrets.token_hex(4)}"


def stale_probes(rows: list[tuple[str, str]], now: float | None = None) -> list[str]:
    """``user@host`` of probe logins older than STALE_SECONDS (from their names)."""
    now = now if now is not None else time.time()
    out = []
    for user, host in rows:
        stamp = user[len(PROBE_PREFIX):].split("_", 1)[0]
        try:
            born = int(stamp, 16)
        except ValueError:
            continue
        if now - born > STALE_SECONDS:
            out.append(f"{user}@{host}")
    return out


class _Quiet:
    """The administrator session with the binary and general logs off, restored after."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.saved: dict[str, Any] = {}

    def __enter__(self) -> _Quiet:
        for var in ("sql_log_bin", "sql_log_off"):
            row = self.conn.execute(f"SELECT @@SESSION.{var}").fetchone()
            self.saved[var] = row[0] if row else None
        self.conn.execute("SET SESSION sql_log_bin = 0, sql_log_off = 1")
        return self

    def __exit__(self, *exc: object) -> None:
        for var, value in self.saved.items():
            if value is not None:
                self.conn.execute(f"SET SESSION {var} = %s", (int(value),))


@contextmanager
def probe_session(conn: Connection, roles: list[str]) -> Iterator[Connection]:
    """A connection as a fresh probe login granted ``roles`` (none active yet).  ``conn``
    (the administrator's) is in autocommit mode meanwhile, and as it was afterwards."""
    conn.rollback()
    was = conn.get_autocommit()
    conn.autocommit(True)
    host = str(conn.execute("SELECT SUBSTRING_INDEX(USER(), '@', -1)").fetchone()[0])
    user = probe_name()
    who = account(user, host)
    session: Connection | None = None
    try:
        try:
            session = _open(conn, user, host, roles)
        except pymysql.err.MySQLError as exc:
            msg = exc.args[1] if len(exc.args) > 1 else str(exc)
            raise StateError(f"verify could not act as the restricted roles: {msg}",
                             hint="verify needs CREATE USER and the right to grant the "
                                  "ils-redact roles (connect as root); nothing was "
                                  "changed") from None
        current = session.execute("SELECT CURRENT_USER()").fetchone()[0]
        if current != f"{user}@{host}":
            raise StateError(f"verify's probe login authenticated as {current}, not as "
                             f"{user}@{host}", hint="nothing was changed")
        yield session
    finally:
        if session is not None:
            try:
                session.close()
            except pymysql.err.MySQLError:
                pass
        with _Quiet(conn):
            conn.execute(f"DROP USER IF EXISTS {who}")
        conn.autocommit(was)


def _open(conn: Connection, user: str, host: str, roles: list[str]) -> Connection:
    """Create the probe login locked, grant the roles, unlock, connect, lock again."""
    who = account(user, host)
    password = secrets.token_urlsafe(24)
    with _Quiet(conn):
        try:
            conn.execute(f"CREATE USER {who} IDENTIFIED BY PASSWORD "
                         f"{string(native_hash(password))} ACCOUNT LOCK")
        except pymysql.err.MySQLError as exc:
            if not exc.args or exc.args[0] != 1819:  # a password policy refuses hashes
                raise
            password += "aA1!"
            conn.execute(f"CREATE USER {who} IDENTIFIED BY {string(password)} ACCOUNT LOCK")
        for role in roles:
            conn.execute(f"GRANT {ident(role)} TO {who}")
        conn.execute(f"ALTER USER {who} ACCOUNT UNLOCK")
        # TLS as verify's own connection has it: required only if it was required there
        tls = {"ssl": conn.ctx} if getattr(conn, "_ssl_required", False) else {}
        try:
            return Connection(
                host=conn.host, port=conn.port, unix_socket=conn.unix_socket, user=user,
                password=password, charset="utf8mb4", autocommit=True, connect_timeout=10,
                **tls)
        finally:
            conn.execute(f"ALTER USER {who} ACCOUNT LOCK")


def run_block(session: Connection, probes: list[str]) -> list[tuple[int, Any, str | None]]:
    """Each probe's (errno, @ils_redact_v, message for an unexpected error), in order."""
    if not probes:
        return []
    session.execute("SET @ils_redact_probes = %s", (json.dumps(probes),))
    cur = session.cursor()
    try:
        cur.execute(BLOCK)
        rows = cur.fetchall()
        while cur.nextset():
            more = cur.fetchall()
            if more:
                rows = more
    finally:
        cur.close()
    if not rows or rows[0][0] is None:
        raise StateError("verify: the probe block returned nothing", hint="nothing was changed")
    out = [(int(e), v, m) for e, v, m in json.loads(rows[0][0])]
    if len(out) != len(probes):
        raise StateError(f"verify: {len(out)} of {len(probes)} probes ran")
    return out


def call_rows(session: Connection, call: str) -> tuple[int, int, str | None]:
    """(errno, rows, message) of a CALL whose result set a probe block cannot hold in a
    variable (a lookup procedure): its rows are counted here, one round trip."""
    cur = session.cursor()
    try:
        cur.execute(call)
        n = len(cur.fetchall())
        while cur.nextset():
            n += len(cur.fetchall() or ())
        return 0, n, None
    except pymysql.err.MySQLError as exc:
        errno = int(exc.args[0]) if exc.args else 0
        return errno, 0, str(exc.args[1]) if len(exc.args) > 1 else str(exc)
    finally:
        cur.close()


def set_role(session: Connection, role: str) -> None:
    session.execute(f"SET ROLE {ident(role)}")
