"""Where this MariaDB server stands in replication, for ``status``.

A replica answers with what it has applied: a revoke or a close made on the primary takes
effect here only when the replica's SQL thread applies it (``Seconds_Behind_Master``; a
delayed replica, ``MASTER_DELAY``, keeps the patrons of a revoked request visible for the
whole delay).  Expiry is compared with ``UTC_TIMESTAMP(6)`` on this server, so it ends
on time everywhere.  Reading replica status needs REPLICA MONITOR (or SUPER): without it
only ``read_only`` is shown.
"""

from __future__ import annotations

from typing import Any

import pymysql
import pymysql.cursors

from .connection import Connection, scalar


def _dict_rows(conn: Connection, query: str) -> list[dict[str, Any]] | None:
    try:
        cur = conn.cursor(pymysql.cursors.DictCursor)
        try:
            cur.execute(query)
            return list(cur.fetchall())
        finally:
            cur.close()
    except pymysql.err.MySQLError:
        return None


def replication_status(conn: Connection) -> dict[str, Any]:
    read_only = bool(scalar(conn, "SELECT @@read_only"))
    sources = _dict_rows(conn, "SHOW ALL REPLICAS STATUS")
    if sources:
        return {
            "role": "replica", "read_only": read_only,
            "sources": [{
                "source": f"{r.get('Master_Host')}:{r.get('Master_Port')}",
                "connection_name": r.get("Connection_name") or "",
                "io_running": r.get("Slave_IO_Running"),
                "sql_running": r.get("Slave_SQL_Running"),
                "seconds_behind_master": r.get("Seconds_Behind_Master"),
                "sql_delay": r.get("SQL_Delay") or 0,
                "sql_remaining_delay": r.get("SQL_Remaining_Delay"),
                "gtid_io_pos": r.get("Gtid_IO_Pos"),
                "last_error": r.get("Last_SQL_Error") or r.get("Last_IO_Error") or None,
            } for r in sources]}
    hosts = _dict_rows(conn, "SHOW REPLICA HOSTS") or []
    semi = _dict_rows(conn, "SHOW GLOBAL VARIABLES WHERE Variable_name IN "
                            "('rpl_semi_sync_master_enabled', 'rpl_semi_sync_master_timeout', "
                            "'rpl_semi_sync_master_wait_point')") or []
    settings = {r["Variable_name"]: r["Value"] for r in semi}
    return {
        "role": "replica" if read_only and sources is None else "primary",
        "read_only": read_only,
        "monitor_privilege": sources is not None,
        "replicas": [f"{h.get('Host') or '?'}:{h.get('Port')} (server_id "
                     f"{h.get('Server_id')})" for h in hosts],
        "semi_sync": settings.get("rpl_semi_sync_master_enabled") == "ON",
        "semi_sync_timeout_ms": int(settings.get("rpl_semi_sync_master_timeout") or 0)
        if settings.get("rpl_semi_sync_master_enabled") == "ON" else None,
        "semi_sync_wait_point": settings.get("rpl_semi_sync_master_wait_point")
        if settings.get("rpl_semi_sync_master_enabled") == "ON" else None,
    }


def replication_text(r: dict[str, Any]) -> list[str]:
    if r["role"] == "replica" and r.get("sources"):
        out: list[str] = []
        for s in r["sources"]:
            running = "running" if s["io_running"] == "Yes" and s["sql_running"] == "Yes" \
                else f"IO {s['io_running']}, SQL {s['sql_running']}"
            behind = s["seconds_behind_master"]
            out.append(("replication     " if not out else "                ")
                       + f"replica of {s['source']} ({running}), read_only "
                       + ("ON" if r["read_only"] else "OFF"))
            out.append("replay lag      " + (f"Seconds_Behind_Master {behind}"
                                             if behind is not None else
                                             "Seconds_Behind_Master unknown (not applying)"))
            if s["sql_delay"]:
                out.append(f"                delayed replica: MASTER_DELAY {s['sql_delay']} s"
                           + (f" ({s['sql_remaining_delay']} s before the next event)"
                              if s["sql_remaining_delay"] is not None else ""))
            if s["last_error"]:
                out.append(f"                last error: {s['last_error'][:200]}")
        out.append("                revokes and closes made on the primary apply here once "
                   "replicated; writes go to the primary")
        return out
    if r["role"] == "replica":
        return ["replication     read-only server (read_only ON; replica status needs "
                "REPLICA MONITOR); writes go to the primary"]
    if not r["replicas"] and not r["semi_sync"]:
        return []
    out = [f"replication     primary, {len(r['replicas'])} replica(s) registered"
           + (f"; semi-synchronous (waits {r['semi_sync_timeout_ms']} ms for an ACK, "
              f"{r['semi_sync_wait_point']}, then falls back to asynchronous)"
              if r["semi_sync"] else "")]
    out += [f"                {h}" for h in r["replicas"]]
    return out
