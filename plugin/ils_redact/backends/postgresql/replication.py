"""Where this server stands in replication, for ``status``.

On a hot standby what matters to confidentiality is lag: the standby answers with the
state it has replayed, so a revoke or a close made on the primary takes effect here only
once it is replayed (a delayed standby, ``recovery_min_apply_delay``, keeps showing the
patrons of a revoked request for the whole delay).  Expiry is different: the row policy
compares the request's expiry with this server's clock, so it ends on time everywhere.

On a primary: the standbys connected, whether commits wait for them
(``synchronous_standby_names``) and how far behind each is.
"""

from __future__ import annotations

from typing import Any

import psycopg

_STANDBY = """
SELECT pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text,
       pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()),
       pg_last_xact_replay_timestamp(),
       extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()),
       pg_is_wal_replay_paused(),
       current_setting('recovery_min_apply_delay'),
       (SELECT status FROM pg_stat_wal_receiver),
       (SELECT sender_host || ':' || sender_port FROM pg_stat_wal_receiver)
"""

_STANDBYS = """
SELECT application_name, coalesce(host(client_addr), 'local socket'), state, sync_state,
       extract(epoch FROM replay_lag),
       pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)
FROM pg_stat_replication ORDER BY 1
"""


def replication_status(conn: psycopg.Connection) -> dict[str, Any]:
    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    if row and row[0]:
        (receive, replay, behind, last_at, age, paused, delay, receiver,
         upstream) = conn.execute(_STANDBY).fetchone() or (None,) * 9
        return {
            "role": "standby",
            "upstream": upstream,
            "wal_receiver": receiver,
            "receive_lsn": receive,
            "replay_lsn": replay,
            "replay_behind_bytes": int(behind) if behind is not None else None,
            "last_replayed_commit_at": last_at.isoformat() if last_at else None,
            "seconds_since_last_replayed_commit": float(age) if age is not None else None,
            "replay_paused": bool(paused),
            "min_apply_delay": delay if delay not in ("0", "0ms") else None,
        }
    standbys = [
        {"name": name, "address": addr, "state": state, "sync_state": sync,
         "replay_lag_seconds": float(lag) if lag is not None else None,
         "replay_behind_bytes": int(behind) if behind is not None else None}
        for name, addr, state, sync, lag, behind in conn.execute(_STANDBYS).fetchall()]
    names = conn.execute("SELECT current_setting('synchronous_standby_names')").fetchone()
    return {"role": "primary", "synchronous_standby_names": (names[0] if names else "") or None,
            "standbys": standbys}


def replication_text(r: dict[str, Any]) -> list[str]:
    """The ``replication`` lines of ``status``."""
    if r["role"] == "standby":
        behind = r["replay_behind_bytes"]
        line = (f"replication     hot standby (read-only) of {r['upstream'] or '?'}, "
                f"WAL receiver {r['wal_receiver'] or 'not running'}")
        out = [line,
               f"replay lag      replayed up to {r['replay_lsn']}, received "
               f"{r['receive_lsn']}"
               + (f" ({behind} bytes not yet replayed)" if behind else " (all replayed)")]
        if r["last_replayed_commit_at"]:
            out.append(f"                last replayed commit {r['last_replayed_commit_at']} "
                       f"({r['seconds_since_last_replayed_commit']:.1f} s ago; the lag is at "
                       "most this, if the primary committed since)")
        if r["min_apply_delay"]:
            out.append(f"                delayed standby: recovery_min_apply_delay "
                       f"{r['min_apply_delay']}")
        if r["replay_paused"]:
            out.append("                replay is PAUSED (pg_wal_replay_resume())")
        out.append("                revokes and closes made on the primary apply here once "
                   "replayed; writes go to the primary")
        return out
    if not r["standbys"] and not r["synchronous_standby_names"]:
        return []
    out = [f"replication     primary, {len(r['standbys'])} standby(s) connected"
           + (f"; commits wait for {r['synchronous_standby_names']!r} "
              "(synchronous_standby_names)" if r["synchronous_standby_names"] else "")]
    for s in r["standbys"]:
        lag = s["replay_lag_seconds"]
        out.append(f"                {s['name'] or '?'} at {s['address']}: {s['state']}, "
                   f"{s['sync_state']}, replay lag "
                   + (f"{lag:.3f} s" if lag is not None else "none measured")
                   + f", {s['replay_behind_bytes'] or 0} bytes behind")
    if r["synchronous_standby_names"] and not any(
            s["sync_state"] in ("sync", "quorum") for s in r["standbys"]):
        out.append("                WARNING: no synchronous standby is connected: every "
                   "commit (exports, audit entries) waits until one is")
    return out
