"""Match the server log's trace lines with the audit log.

An audit entry is a row: the caller's transaction can roll it back.  So every patron
lookup, export and gated query also raises a server-log line (``RAISE LOG``, written when
it is raised, whatever happens to the transaction) before it returns any data::

    ... LOG:  ils-redact audit-trace {"database": "evergreen", "seq": 17, "hash": "9f..",
              "action": "export", "login": "alice", "at": "2026-...Z", "request": 7,
              "patrons": [11, 12], "pid": 4242}

:func:`reconcile` finds, for each such line of this database, the audit entry with that
seq and checks it is the same entry (hash, action, login).  An entry that is missing, or
whose seq now holds another entry, is a disclosure whose record was rolled back (or a
row removed): each is reported.

The line is found by its marker and parsed as JSON, so any ``log_line_prefix`` works
(stderr), and so do ``csvlog`` and ``jsonlog`` files.  Anyone may write a line that looks
like a trace (``RAISE LOG`` in a ``DO`` block): a forged line can only add a false alarm,
never hide a real trace.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import IlsRedactError
from . import audit
from .db import query, traces_exports

MARKER = "ils-redact audit-trace "
FORMATS = ("auto", "stderr", "csvlog", "jsonlog")
#: the message's field in a csvlog record (PostgreSQL 15-18: the 14th column)
_CSV_MESSAGE = 13


@dataclass(frozen=True)
class Trace:
    database: str
    seq: int
    hash: str
    action: str
    login: str
    at: str
    request: int | None
    patrons: tuple[int, ...]
    source: str  # file:line

    def describe(self) -> str:
        who = f"{self.action} by {self.login} at {self.at}"
        if self.request is not None:
            who += f", request {self.request}"
        if self.patrons:
            who += f", patrons {', '.join(map(str, self.patrons))}"
        return who


@dataclass(frozen=True)
class Problem:
    seq: int
    problem: str
    trace: Trace

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "problem": self.problem, "logged": asdict(self.trace)}


@dataclass
class Result:
    database: str
    traces: int = 0
    other_databases: int = 0
    malformed: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "database": self.database, "traces": self.traces,
                "other_databases": self.other_databases, "malformed": self.malformed,
                "problems": [p.to_json() for p in self.problems]}


def _format_of(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    if path.suffix == ".csv":
        return "csvlog"
    if path.suffix == ".json":
        return "jsonlog"
    return "stderr"


def _messages(path: Path, fmt: str) -> Iterator[tuple[str, str]]:
    """(where, text holding the marker) for every candidate line of one log file."""
    fmt = _format_of(path, fmt)
    with path.open(encoding="utf-8", errors="replace", newline="") as fh:
        if fmt == "csvlog":
            for n, rec in enumerate(csv.reader(fh), start=1):
                if len(rec) > _CSV_MESSAGE and MARKER in rec[_CSV_MESSAGE]:
                    yield f"{path}:record {n}", rec[_CSV_MESSAGE]
            return
        for n, line in enumerate(fh, start=1):
            if MARKER not in line:
                continue
            if fmt == "jsonlog":
                try:
                    message = json.loads(line).get("message", "")
                except (ValueError, AttributeError):
                    continue
                yield f"{path}:{n}", str(message)
            else:
                yield f"{path}:{n}", line


def _parse(where: str, text: str) -> Trace | None:
    """The trace a line carries: the marker whose JSON object runs to the end of the line.

    The message is the end of a stderr line; what comes before it (``log_line_prefix``)
    may hold text the caller chose: ``%a`` is its ``application_name``, which can be
    ``ils-redact audit-trace {}``.  Taking the first marker would read the caller's text
    and drop the real trace as "not a trace" (a lookup rolled back and never reported).
    So each marker is tried from the last back, and only an object that ends the line
    counts."""
    text = text.rstrip("\r\n")
    pos = text.rfind(MARKER)
    while pos >= 0:
        trace = _decode(where, text[pos + len(MARKER):])
        if trace is not None:
            return trace
        pos = text.rfind(MARKER, 0, pos)
    return None


def _int(value: object) -> int:
    """A JSON integer, and nothing else: the layer writes its numbers as integers, so
    ``1e400`` (infinity to Python), ``NaN``, ``1.5``, ``true`` or ``"7"`` make a line that
    is not a trace (a forged line may add a false alarm, never stop the reading)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("not an integer")
    return value


def _str(value: object) -> str:
    """A JSON string that is text: a lone surrogate (``"\\ud800"``) cannot be printed or
    written as UTF-8, so the line is not a trace (it would stop the report)."""
    text = str(value)
    text.encode("utf-8")  # UnicodeEncodeError is a ValueError
    return text


def _decode(where: str, rest: str) -> Trace | None:
    try:
        obj, end = json.JSONDecoder().raw_decode(rest)
        if rest[end:].strip() or not isinstance(obj, dict):
            return None
        return Trace(database=_str(obj["database"]), seq=_int(obj["seq"]),
                     hash=_str(obj["hash"]), action=_str(obj["action"]),
                     login=_str(obj["login"]), at=_str(obj["at"]),
                     request=None if obj.get("request") is None else _int(obj["request"]),
                     patrons=tuple(_int(p) for p in obj.get("patrons") or ()),
                     source=where)
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError):
        return None


def read_traces(paths: Iterable[Path], fmt: str = "auto") -> tuple[list[Trace], list[str]]:
    """Every trace line of the files, and where the lines with the marker that are not
    traces are (a truncated line, a forged one)."""
    if fmt not in FORMATS:
        raise IlsRedactError(f"unknown server-log format {fmt!r}: {', '.join(FORMATS)}")
    traces: list[Trace] = []
    bad: list[str] = []
    for path in paths:
        try:
            for where, text in _messages(path, fmt):
                t = _parse(where, text)
                if t is None:
                    bad.append(where)
                else:
                    traces.append(t)
        except OSError as exc:
            raise IlsRedactError(f"{path}: cannot read the server log ({exc.strerror})") \
                from None
    return traces, bad


def reconcile(conn: Any, traces: list[Trace], malformed: list[str] | None = None) -> Result:
    if not traces_exports(conn):
        raise IlsRedactError("audit reconcile reads PostgreSQL's server log; MariaDB writes "
                             "no trace line per export")
    (database,), = query(conn, "SELECT current_database()")
    result = Result(database=database, malformed=list(malformed or []))
    mine = [t for t in traces if t.database == database]
    result.traces = len(mine)
    result.other_databases = len(traces) - len(mine)
    found = {e.seq: e for e in audit.entries_by_seq(conn, sorted({t.seq for t in mine}))}
    for t in mine:
        e = found.get(t.seq)
        if e is None:
            result.problems.append(Problem(t.seq, (
                f"audit entry {t.seq} does not exist: the {t.action} logged at {t.source} "
                "was rolled back (or the entry removed)"), t))
        elif (e.hash, e.action, e.actor) != (t.hash, t.action, t.login):
            result.problems.append(Problem(t.seq, (
                f"audit entry {t.seq} is not the one logged at {t.source} (it is {e.action} "
                f"by {e.actor}, hash {e.hash[:16]}): the logged {t.action} was rolled back "
                "and its number reused, or the entry was altered"), t))
    return result
