"""Prepared transactions (a server with ``max_prepared_transactions`` above 0, PostgreSQL
15 and 18): a prepared transaction outlives its session and has no backend the layer
could end, so one that had appended to the audit log held the chain's lock until a
superuser rolled it back, stopping every approval, export and revoke (the third
adversarial review).  Every audit entry notifies, and PostgreSQL refuses to prepare a
transaction that has: the attack ends at PREPARE TRANSACTION and the log stays free."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors

from support.replication import ReplDb


def test_a_transaction_that_wrote_an_audit_entry_cannot_be_prepared(repl_db: ReplDb
                                                                     ) -> None:
    r = repl_db
    with psycopg.connect(r.dsn(), autocommit=True) as su:  # prepared transactions work here
        su.execute("BEGIN")
        su.execute("SELECT 1")
        su.execute("PREPARE TRANSACTION 'irr_plain'")
        assert su.execute("SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'irr_plain'"
                          ).fetchone()[0] == 1
        su.execute("ROLLBACK PREPARED 'irr_plain'")
    with psycopg.connect(r.dsn("primary", r.clerk), autocommit=True) as clerk:
        clerk.execute("BEGIN")
        clerk.execute("SELECT ils_redact.log_refusal('query', NULL, 'hold')")
        with pytest.raises(errors.FeatureNotSupported, match="NOTIFY"):
            clerk.execute("PREPARE TRANSACTION 'irr_hold'")
        clerk.execute("ROLLBACK")
    assert r.scalar("SELECT count(*) FROM pg_prepared_xacts") == 0
    # the log is free: the director's next entry is written at once
    with psycopg.connect(r.dsn("primary", r.director), autocommit=True) as director:
        director.execute("SET lock_timeout = '2s'")
        director.execute("SELECT ils_redact.log_refusal('query', NULL, 'next')")
    assert r.scalar("SELECT action FROM ils_redact.audit_log ORDER BY seq DESC LIMIT 1") \
        == "query.refused"
