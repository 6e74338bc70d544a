"""Every database access of the console, in one module.

The console holds no credential of its own: each session has one connection, opened as
the staff member's own login with the password typed at the login page, and every
function here takes that connection (:class:`StaffConn`).  The functions call the same
library functions the CLI calls (``disclosure.requests``, ``disclosure.export``,
``disclosure.audit``, ``disclosure.forms``, ``stats``), so the database makes the same
checks and writes the same audit entries whichever tool a person uses.  The two small
catalog reads (which ils-redact roles a login holds, and ``staff grant``'s refusal) are
the engine's (``staff.console_login``): this module asks the engine object and never
looks at which driver a connection is.

Errors leave here in three shapes only: :class:`~ils_redact.errors.Refused` (the
database's or the workflow's own reason, shown to the person), another
:class:`~ils_redact.errors.IlsRedactError` (ils-redact's own message), and
:class:`DatabaseError`, whose message is fixed text chosen from the SQLSTATE (MariaDB:
the error number) and never the server's text, which can carry values.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import re
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..adapters import get_adapter
from ..backends import LABELS, dsn_engine, get_backend
from ..disclosure import audit as audit_mod
from ..disclosure import export as export_mod
from ..disclosure import forms
from ..disclosure import requests as req_mod
from ..disclosure.db import commit_audited
from ..disclosure.refusals import refuse
from ..engine import Engine
from ..errors import ConnectionFailed, IlsRedactError, Refused
from ..rules import Rules
from ..sdc.results import ReportInfo, ReportResult

log = logging.getLogger("ils_redact.console")

#: the role kinds a staff login may hold, as the console shows them
KINDS = ("admin", "disclosure", "exporter", "stats")


class LoginFailed(IlsRedactError):
    """Wrong login or password, or the server refused the connection (one message for
    all, so the page does not tell which logins exist)."""


class LoginRefused(Refused):
    """The login exists and authenticated, but the console does not accept it."""


#: why a login the server let in without checking its password is refused
NOT_CHECKED = ("the database server did not ask for a password for this login (pg_hba "
               "trust/peer/ident/cert, or an account authenticated without a password): "
               "the console cannot tell who you are; configure password authentication "
               "(scram-sha-256) for staff logins")


class DatabaseError(IlsRedactError):
    """A database error, described by its SQLSTATE or error number only."""


class ConnectionLost(Exception):  # noqa: N818 - not an IlsRedactError: pages do not catch it
    """The session's connection is gone (server restart, network): the session ends."""


@dataclass
class StaffConn:
    """One staff member's connection and what the console knows about the login."""

    conn: Any
    engine: str  # postgresql | mariadb
    login: str
    database: str
    kinds: frozenset[str]
    #: seconds spent in the database since :meth:`reset_timer` (for Server-Timing)
    db_seconds: float = 0.0
    #: one page at a time per session (a connection is not shared between threads)
    lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def server(self) -> Engine:
        """The engine object of this session's server."""
        return get_backend(self.engine)

    def has(self, *kinds: str) -> bool:
        return bool(self.kinds & set(kinds))

    def reset_timer(self) -> None:
        self.db_seconds = 0.0


def engine_of(rules: Rules) -> str:
    return get_adapter(rules.adapter).engine


def check_dsn(dsn: str, rules: Rules) -> None:
    """The server's DSN names a server and a database, never a credential."""
    engine = get_backend(engine_of(rules))
    if dsn_engine(dsn) != engine.name:
        raise IlsRedactError(
            f"the rules are for {rules.adapter} on {engine.label}, but --dsn names a "
            f"{LABELS[dsn_engine(dsn)]} server")
    if engine.dsn_has_password(dsn):
        raise IlsRedactError("the console holds no credential: give --dsn without a "
                             "password (staff log in with their own login and password)")
    problem = engine.console_dsn_problem(dsn)
    if problem:
        raise IlsRedactError(problem)


# -- sessions ------------------------------------------------------------------------------

def open_session(dsn: str, rules: Rules, login: str, password: str, *,
                 connect_timeout: int = 10) -> StaffConn:
    """Connect as ``login`` and check that the console may act for it.

    Refused like ``staff grant`` refuses: a superuser, a BYPASSRLS role or (a member of)
    the ILS owner on PostgreSQL; on MariaDB an account with global privileges or any
    privilege on the Koha database.  A login with no ils-redact role is refused too.
    """
    engine = get_backend(engine_of(rules))
    kwargs: dict[str, Any] = {"connect_timeout": connect_timeout,
                              "application_name": "ils-redact console"}
    try:
        conn = engine.connect_as(dsn, login, password, **kwargs)
    except ConnectionFailed:
        raise LoginFailed("login failed: wrong login or password, or the database "
                          "refused the connection") from None
    try:
        # an open connection proves the password only if the server asked for it
        try:
            checked = engine.password_was_checked(conn)
        except engine.driver_error as exc:
            raise _db_error(engine, exc) from None
        if not checked:
            log.warning("login refused: the server did not check the password of %s",
                        "a login")
            raise LoginRefused(NOT_CHECKED)
        try:
            found = engine.staff.console_login(conn, rules, KINDS)
        except Refused as exc:
            raise LoginRefused(exc.message) from None
        except engine.driver_error as exc:
            raise _db_error(engine, exc) from None
        if found is None:
            raise LoginFailed("login failed")
        database, kinds = found
        if not kinds:
            raise LoginRefused(f"{login} holds no ils-redact role (admin, disclosure or "
                               "stats); ask the sysadmin: ils-redact staff grant")
    except BaseException:
        _close(conn)
        raise
    return StaffConn(conn=conn, engine=engine.name, login=login, database=database,
                     kinds=frozenset(kinds))


def close(s: StaffConn) -> None:
    _close(s.conn)


def _close(conn: Any) -> None:
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - closing a broken connection: nothing left to do
        pass


# -- errors and timing ---------------------------------------------------------------------

def _db_error(engine: Engine, exc: Exception) -> IlsRedactError | ConnectionLost:
    if engine.is_connection_lost(exc):
        return ConnectionLost("the database connection was lost: log in again")
    code, described = engine.describe_error(exc)
    log.warning("database error %s (%s)", code, type(exc).__name__)
    return DatabaseError(f"the database refused: {described}")


def _rollback(s: StaffConn) -> None:
    try:
        s.conn.rollback()
    except Exception:  # noqa: BLE001 - the connection is gone; the next call says so
        pass


def _commit_or_rollback(s: StaffConn) -> None:
    try:
        commit_audited(s.conn, what="the refusal's audit entry")
    except Exception:  # noqa: BLE001 - an aborted transaction cannot commit
        _rollback(s)


#: a server's own wording of a privilege denial (PostgreSQL 42501; MariaDB 1044, 1142,
#: 1143, 1227, 1370): it names the objects and the account, so no page shows it
_SERVER_DENIAL = re.compile(r"permission denied for|command denied to user|"
                            r"access denied\b", re.IGNORECASE)
_DENIAL_CODE = {"postgresql": "SQLSTATE 42501", "mariadb": "MariaDB error 1142"}


def _scrubbed(s: StaffConn, exc: IlsRedactError) -> IlsRedactError:
    """``exc``, or a refusal in fixed words when its text is the server's privilege
    denial (the layer's procedures pass some through as refusals: they are refusals, but
    their text is the server's)."""
    if not _SERVER_DENIAL.search(exc.message):
        return exc
    log.warning("privilege denial for %s (%s)", s.login, _DENIAL_CODE.get(s.engine, ""))
    text = (f"the database refused: this login holds no privilege for that "
            f"({_DENIAL_CODE.get(s.engine, 'privilege denied')}); ask the sysadmin if it "
            "should")
    if isinstance(exc, Refused):
        out = Refused(text, audit_seq=exc.audit_seq)
        out.logged = exc.logged
        return out
    return IlsRedactError(text, hint=exc.hint)


@contextmanager
def _work(s: StaffConn, *, keep_refusal: bool = False) -> Iterator[None]:
    """Time the database work; commit on success; on a refusal commit (``keep_refusal``:
    its audit entry stays) or roll back; turn driver errors into fixed messages."""
    t = time.perf_counter()
    engine = s.server
    try:
        yield
        # what the page did may have written the audit log: a commit that waits for a
        # synchronous standby that is down must end, with a clear message
        commit_audited(s.conn)
    except Refused as exc:
        if keep_refusal:
            _commit_or_rollback(s)
        else:
            _rollback(s)
        scrubbed = _scrubbed(s, exc)
        if scrubbed is exc:
            raise
        raise scrubbed from None
    except IlsRedactError as exc:
        _rollback(s)
        scrubbed = _scrubbed(s, exc)
        if scrubbed is exc:
            raise
        raise scrubbed from None
    except engine.driver_error as exc:
        _rollback(s)
        if engine.broken(s.conn):
            raise ConnectionLost("the database connection was lost: log in again") from None
        raise _db_error(engine, exc) from None
    finally:
        s.db_seconds += time.perf_counter() - t


# -- requests ------------------------------------------------------------------------------

def list_requests(s: StaffConn, status: str | None = None, *, page: int = 1,
                  page_size: int = 50) -> tuple[list[dict[str, Any]], int]:
    """One page of requests, newest first, and how many there are in all."""
    with _work(s):
        total = req_mod.count_requests(s.conn, status)
        rows = req_mod.list_requests(s.conn, status, limit=page_size,
                                     offset=(max(page, 1) - 1) * page_size, newest_first=True)
    return rows, total


def show_request(s: StaffConn, request_id: int) -> tuple[dict[str, Any], list[audit_mod.Entry]]:
    with _work(s):
        req = req_mod.show(s.conn, request_id)
        entries = audit_mod.entries(s.conn, request_id=request_id)
    return req, entries


def preview_request(s: StaffConn, new: req_mod.NewRequest
                    ) -> list[req_mod.Resolved]:
    """Who the barcodes (and ids) name, as the database resolves them; nothing is
    created.  Unknown patrons refuse (logged), as ``request create`` does."""
    with _work(s, keep_refusal=True):
        found, unknown = req_mod.resolve_patrons(s.conn, new.patrons, new.barcodes)
        req_mod.require_known(s.conn, unknown)
    return found


def create_request(s: StaffConn, new: req_mod.NewRequest,
                   confirmed: list[tuple[str, int]]) -> int:
    """Resolve again and create in one transaction, as the CLI does; refused when the
    database now resolves the patrons differently from what the person confirmed."""
    with _work(s, keep_refusal=True):
        found, unknown = req_mod.resolve_patrons(s.conn, new.patrons, new.barcodes)
        now = sorted((f.named_as, f.patron_id) for f in found)
        if unknown or now != sorted(confirmed):
            reason = "the patrons resolve differently from what was confirmed"
            raise refuse(s.conn, "request.create", None, reason,
                         f"{reason}; nothing was created: check them again")
        return req_mod.create(s.conn, new, found)


def approve(s: StaffConn, request_id: int) -> None:
    with _work(s, keep_refusal=True):
        req_mod.approve(s.conn, request_id)


def end(s: StaffConn, request_id: int, status: str, reason: str | None) -> None:
    with _work(s, keep_refusal=True):
        req_mod.end(s.conn, request_id, status, reason)


def export(s: StaffConn, request_id: int, fmt: str) -> export_mod.Exported:
    """The logged export (the database renders, hashes and logs it)."""
    with _work(s, keep_refusal=True):
        return export_mod.export(s.conn, request_id, fmt)


def export_zip(exported: export_mod.Exported, name: str) -> bytes:
    """The document and its manifest in one zip, named and written as ``export -o NAME``
    writes them (``export.write``), in memory: patron data never touches the disk."""
    manifest = dict(exported.manifest, file=name)
    text = json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n"
    return _zip([(name, exported.document), (f"{name}.manifest.json", text.encode("utf-8"))])


def form(s: StaffConn, rules: Rules, request_id: int, library: str | None) -> str:
    with _work(s):
        return forms.render_form(s.conn, rules, request_id, library)


def packet(s: StaffConn, rules: Rules, request_id: int, library: str | None) -> bytes:
    """``request packet``'s folder as one zip (``packet-N/...``).  ``write_packet`` writes
    files, so they go to a private temporary directory (mode 0700) that is removed before
    the zip is sent; the packet holds the request and hashes, never identity values."""
    with tempfile.TemporaryDirectory(prefix="ils-redact-console-") as tmp:
        folder = Path(tmp) / f"packet-{request_id}"
        with _work(s):
            files = forms.write_packet(s.conn, rules, request_id, folder, library)
        return _zip([(f"{folder.name}/{f.name}", f.read_bytes()) for f in files])


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=dt.datetime.now().timetuple()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    return buf.getvalue()


# -- audit ---------------------------------------------------------------------------------

def audit_log(s: StaffConn, request_id: int | None = None
              ) -> tuple[list[audit_mod.Entry], audit_mod.VerifyResult]:
    """The entries (oldest first) and ``audit verify``'s result over the whole chain."""
    with _work(s):
        entries = audit_mod.entries(s.conn, request_id=request_id)
        check = audit_mod.verify(s.conn)
    return entries, check


# -- statistics ----------------------------------------------------------------------------

@contextmanager
def _stats_conn(s: StaffConn) -> Iterator[Any]:
    """The runner for this engine; on MariaDB each statement of a report commits its
    work rows (as ``stats run`` connects with autocommit), so autocommit is on for it."""
    engine = s.server
    if engine.stats_autocommit:
        s.conn.autocommit(True)
        try:
            yield engine.stats_runner
        finally:
            s.conn.autocommit(False)
    else:
        yield engine.stats_runner


def stats_reports(s: StaffConn) -> list[ReportInfo]:
    with _work(s), _stats_conn(s) as runner:
        return list(runner.list_reports(s.conn))


def stats_run(s: StaffConn, name: str, period_from: dt.date | None,
              period_to: dt.date | None) -> ReportResult:
    with _work(s), _stats_conn(s) as runner:
        return runner.run_report(s.conn, name, period_from, period_to)


def manifest_json(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=2, sort_keys=True, default=str)
