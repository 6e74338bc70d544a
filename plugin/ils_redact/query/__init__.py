"""Gated queries: the service that runs what the query gate allowed (``ils-redact query``,
the console's exports).

The gate (:mod:`ils_redact.gate`) only reads SQL and says what may run; this package runs
it: request check, audit entries before and after, a read-only bounded transaction, quiet
errors.  It sits above the engines (it asks :func:`ils_redact.engine.engine_for` for the
connection's server part) and the disclosure service (audit commits), so the gate itself
imports neither.
"""

from .run import (
    FORMATS,
    QueryFailed,
    QueryRefused,
    run_query,
    run_read_only,
    session_gate,
)

__all__ = ["FORMATS", "QueryFailed", "QueryRefused", "run_query", "run_read_only",
           "session_gate"]
