"""Server-side sessions and the login rate limit.

The cookie carries only a random session id (256 bits); everything else (the login's
database connection, the CSRF token, requests waiting for confirmation) stays in this
process's memory and is looked up by the id's sha256.  No client-side signed session is
used: Flask's cookie session is never written (the app has no secret key).  A session
ends on logout, after ``idle_timeout`` seconds without a request, or when the server
stops; each end closes its database connection.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import services


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "replace")).hexdigest()


@dataclass
class Session:
    staff: services.StaffConn
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    created: float = field(default_factory=time.monotonic)
    last_seen: float = field(default_factory=time.monotonic)
    #: requests the person is about to create: token -> what was previewed
    pending: dict[str, Any] = field(default_factory=dict)

    def csrf_ok(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(
            self.csrf.encode(), str(token).encode("utf-8", "replace"))


class SessionStore:
    """Sessions by id; expired ones are closed lazily on access and by :meth:`sweep`."""

    def __init__(self, idle_timeout: float, clock: Callable[[], float] = time.monotonic,
                 ) -> None:
        self.idle_timeout = idle_timeout
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, staff: services.StaffConn) -> tuple[str, Session]:
        session_id = secrets.token_urlsafe(32)
        now = self._clock()
        s = Session(staff=staff, created=now, last_seen=now)
        with self._lock:
            self._sessions[_key(session_id)] = s
        return session_id, s

    def get(self, session_id: str | None) -> tuple[Session | None, bool]:
        """(the live session, False), or (None, True) if it existed and timed out."""
        if not session_id:
            return None, False
        key = _key(session_id)
        now = self._clock()
        with self._lock:
            s = self._sessions.get(key)
            if s is None:
                return None, False
            if now - s.last_seen > self.idle_timeout:
                del self._sessions[key]
                expired = s
            else:
                s.last_seen = now
                return s, False
        _close(expired)
        return None, True

    def end(self, session_id: str | None) -> None:
        if not session_id:
            return
        with self._lock:
            s = self._sessions.pop(_key(session_id), None)
        if s is not None:
            _close(s)

    def sweep(self) -> int:
        """Close every session idle for longer than the timeout; how many."""
        now = self._clock()
        with self._lock:
            gone = [k for k, s in self._sessions.items()
                    if now - s.last_seen > self.idle_timeout]
            closed = [self._sessions.pop(k) for k in gone]
        for s in closed:
            _close(s)
        return len(closed)

    def close_all(self) -> None:
        with self._lock:
            closed = list(self._sessions.values())
            self._sessions.clear()
        for s in closed:
            _close(s)

    def __len__(self) -> int:
        return len(self._sessions)


def _close(s: Session) -> None:
    with s.staff.lock:
        services.close(s.staff)


class RateLimiter:
    """At most ``limit`` failures per key within ``window`` seconds."""

    def __init__(self, limit: int, window: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures.setdefault(key, deque())
        while q and now - q[0] > self.window:
            q.popleft()
        return q

    def wait(self, key: str) -> float:
        """Seconds until ``key`` may try again (0: now)."""
        now = self._clock()
        with self._lock:
            q = self._recent(key, now)
            if len(q) < self.limit:
                if not q:
                    self._failures.pop(key, None)
                return 0.0
            return max(1.0, self.window - (now - q[0]))

    def fail(self, key: str) -> None:
        now = self._clock()
        with self._lock:
            self._recent(key, now).append(now)
            if len(self._failures) > 100_000:  # many distinct keys: drop the expired ones
                for k in [k for k, q in self._failures.items() if now - q[-1] > self.window]:
                    del self._failures[k]

    def clear(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)
