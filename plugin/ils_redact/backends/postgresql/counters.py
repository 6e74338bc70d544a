"""PostgreSQL's row and block counters: an oracle over rows that row-level security hides.

The cumulative statistics count what the executor did before a row policy dropped a row:
``pg_stat_xact_user_tables.idx_tup_fetch`` grows by one for every heap tuple an index scan
fetched, whether or not the policy then let the caller see it, so a login that may run
ad-hoc SQL recovers hidden values by binary search (``WHERE barcode < '2000...'`` and
read the counter; about 1,600 queries for a 14-digit barcode).  The same counters show
any login live activity (``n_tup_ins`` on ``action.circulation``), and the block and
I/O counters leak the same facts a page at a time (threat model row 20).  ``pg_locks``
(and ``pg_lock_status()`` under it) shows the same live activity lock by lock, so it is
treated as a counter.

PostgreSQL grants them all to PUBLIC.  These are the views and functions that count
tuples, scans or buffer accesses per relation, per index, per database or per backend:
``hardening.revoke_public_counters`` revokes them from PUBLIC and grants them back to the
ILS owner, ``pg_read_all_stats`` (monitoring) and ``hardening.counter_roles``.  A view
runs the functions it calls with its owner's rights, so the views and the functions are
revoked alike.  Names here are constants, rendered through ``sql.Identifier``.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

PG16 = 160000
PG18 = 180000


@dataclass(frozen=True)
class Counter:
    kind: str  # view | function
    name: str
    args: tuple[str, ...] = ()
    #: first server version (server_version_num) that has it
    since: int = 0

    @property
    def key(self) -> str:
        """``pg_catalog.name`` or ``pg_catalog.name(oid)``: bookkeeping and lookups."""
        tail = f"({', '.join(self.args)})" if self.kind == "function" else ""
        return f"pg_catalog.{self.name}{tail}"

    @property
    def privilege(self) -> str:
        return "SELECT" if self.kind == "view" else "EXECUTE"

    def ident(self) -> sql.Composable:
        if self.kind == "view":
            return sql.Identifier("pg_catalog", self.name)
        return sql.SQL("{}({})").format(sql.Identifier("pg_catalog", self.name), sql.SQL(
            ", ").join(sql.Identifier("pg_catalog", a) for a in self.args))


_VIEWS = (
    "pg_stat_all_tables", "pg_stat_sys_tables", "pg_stat_user_tables",
    "pg_stat_xact_all_tables", "pg_stat_xact_sys_tables", "pg_stat_xact_user_tables",
    "pg_stat_all_indexes", "pg_stat_sys_indexes", "pg_stat_user_indexes",
    "pg_statio_all_tables", "pg_statio_sys_tables", "pg_statio_user_tables",
    "pg_statio_all_indexes", "pg_statio_sys_indexes", "pg_statio_user_indexes",
    "pg_stat_database",
)
#: per relation (an oid): the cumulative counters and their current-transaction twins
_PER_RELATION = (
    "numscans", "tuples_returned", "tuples_fetched", "tuples_inserted", "tuples_updated",
    "tuples_deleted", "tuples_hot_updated", "blocks_fetched", "blocks_hit",
)
_CUMULATIVE_ONLY = ("live_tuples", "dead_tuples", "mod_since_analyze", "ins_since_vacuum")
_PER_DATABASE = (
    "db_tuples_returned", "db_tuples_fetched", "db_tuples_inserted", "db_tuples_updated",
    "db_tuples_deleted", "db_blocks_fetched", "db_blocks_hit",
)

COUNTERS: tuple[Counter, ...] = (
    *(Counter("view", v) for v in _VIEWS),
    # not a counter but the same oracle over live activity: polling pg_locks joined to
    # pg_class shows a RowExclusiveLock on action.circulation (a checkout), hold_request,
    # billing or payment the moment it happens, with the ILS backend's pid
    Counter("view", "pg_locks"),
    Counter("function", "pg_lock_status"),
    Counter("view", "pg_stat_io", since=PG16),
    *(Counter("function", f"pg_stat_get_{f}", ("oid",))
      for f in _PER_RELATION + _CUMULATIVE_ONLY + _PER_DATABASE),
    *(Counter("function", f"pg_stat_get_xact_{f}", ("oid",)) for f in _PER_RELATION),
    Counter("function", "pg_stat_get_lastscan", ("oid",), since=PG16),
    Counter("function", "pg_stat_get_tuples_newpage_updated", ("oid",), since=PG16),
    Counter("function", "pg_stat_get_xact_tuples_newpage_updated", ("oid",), since=PG16),
    Counter("function", "pg_stat_get_io", since=PG16),
    Counter("function", "pg_stat_get_backend_io", ("int4",), since=PG18),
)


def counters_for(version_num: int) -> list[Counter]:
    """The counters a server of this version has (all of them when it is unknown)."""
    return [c for c in COUNTERS if not version_num or c.since <= version_num]


def version_num(version: str) -> int:
    """``15.20 (Debian ...)`` -> 150000: enough to tell which counters exist."""
    try:
        return int(version.split()[0].split(".")[0]) * 10000
    except (ValueError, IndexError):
        return 0


# Who holds each counter: PUBLIC, and the roles named in its ACL other than its owner
# (the built-in default where the ACL is NULL).  Looked up by the constant keys above.
ACL_SQL = """
WITH k AS (SELECT * FROM unnest(%(keys)s::text[], %(kinds)s::text[]) k(key, kind)),
o AS (
    SELECT k.key, c.relacl AS acl, c.relowner AS owner, 'r'::"char" AS t, 'SELECT' AS priv
    FROM k JOIN pg_class c
      ON c.oid = CASE WHEN k.kind = 'view' THEN to_regclass(k.key) END
    UNION ALL
    SELECT k.key, p.proacl, p.proowner, 'f', 'EXECUTE'
    FROM k JOIN pg_proc p
      ON p.oid = CASE WHEN k.kind = 'function' THEN to_regprocedure(k.key) END)
SELECT o.key,
       EXISTS (SELECT 1 FROM aclexplode(coalesce(o.acl, acldefault(o.t, o.owner))) x
               WHERE x.grantee = 0 AND x.privilege_type = o.priv),
       ARRAY(SELECT DISTINCT pg_get_userbyid(x.grantee)::text
             FROM aclexplode(coalesce(o.acl, acldefault(o.t, o.owner))) x
             WHERE x.grantee NOT IN (0, o.owner) AND x.privilege_type = o.priv)
FROM o
"""
