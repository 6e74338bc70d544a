"""What the tests need to run in parallel (pytest-xdist) on shared servers.

Every process of one ``pytest`` run shares a run id (``RUN``): the controller puts it at
the head of xdist's ``--testrunuid``, which xdist hands to each worker in
``PYTEST_XDIST_TESTRUNUID``.  A worker names what it creates with its own prefix
(``worker_prefix``) and drops it at the end; what is built once for the whole run (the
Evergreen template database and its owner roles, the embedded PostgreSQL) carries the
run-wide prefix (``shared_prefix``) and is built by whichever worker comes first, under
a file lock in a directory of the run (``shared_dir``).  Without xdist the one process
is both, and the names are what they always were (``irt<run>_...``).

Why share: on a 2-core machine building the template takes several seconds and each
build holds locks on ~2,000 relations in one transaction; four workers building at once
exhaust PostgreSQL's shared lock table (``max_locks_per_transaction`` x connections:
"out of shared memory").  ``exclusive("schema-build")`` serialises such builds.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

#: the xdist worker id ("gw0", "gw1", ...) or None when not under xdist
WORKER: str | None = os.environ.get("PYTEST_XDIST_WORKER")
#: the run id, the same in every process of one run
RUN: str = (os.environ.get("PYTEST_XDIST_TESTRUNUID", "")[:6] if WORKER else "") \
    or secrets.token_hex(3)


def testrunuid() -> str:
    """What the controller passes as xdist's ``--testrunuid``: starts with ``RUN``."""
    return RUN + secrets.token_hex(13)


def shared_prefix(letters: str) -> str:
    """The run-wide prefix of names built once for every worker: ``<letters><run>_``."""
    return f"{letters}{RUN}_"


def worker_prefix(letters: str) -> str:
    """This process's prefix, no longer than the run-wide one (tests build names of
    bounded length from it): ``<letters><first 5 of run><g..z>_`` under xdist (a letter
    that is not hex, one per worker), else the run-wide one.  ``run_like`` matches both."""
    if WORKER is None:
        return shared_prefix(letters)
    n = int(WORKER.removeprefix("gw"))
    tag = chr(ord("g") + n) if n < 20 else f"z{n}"
    return f"{letters}{RUN[:5]}{tag}_"


def run_like(letters: str) -> str:
    """The head every name of this run starts with, workers' and shared (for LIKE)."""
    return f"{letters}{RUN[:5]}"


def like_prefix(prefix: str) -> str:
    """A LIKE pattern matching names that start with ``prefix`` (``_`` is a wildcard in
    LIKE: unescaped, the prefix of worker 1 would match the names of worker 10)."""
    return prefix.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "%"


def shared_dir() -> Path:
    """A directory of this run, the same for every worker (lock files, shared servers)."""
    path = Path(tempfile.gettempdir()) / f"ils-redact-tests-{RUN}"
    path.mkdir(mode=0o755, exist_ok=True)
    return path


@contextlib.contextmanager
def exclusive(name: str) -> Iterator[None]:
    """Hold the run-wide lock ``name`` (one process of the run at a time)."""
    with open(shared_dir() / f"{name}.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
