"""Which Evergreen release a database is at: ``config.upgrade_log``.

Every Evergreen database upgrade inserts a row into ``config.upgrade_log``: the numbered
patches (``1444``) and, from each release's ``version-upgrade`` script and a release's own
schema, the release itself (``3.14.0``).  The release is the highest release-like row;
without one (a database built from a branch between releases) the highest patch number
is shown, and it names a release only when it is exactly a supported release's number.
"""

from __future__ import annotations

import re
from typing import Any

from ...releases import Release, release_catalogs, version_key

_RELEASE = re.compile(r"^\d+\.\d+(\.\d+)?$")

# from pg_class, not to_regclass(): a role without USAGE on schema config (any restricted
# role) gets an error from to_regclass('config.upgrade_log'), which aborts its transaction
_PROBE = """
SELECT c.relkind, c.relrowsecurity
       AND NOT (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user),
       EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'version'
               AND a.atttypid IN ('text'::regtype, 'varchar'::regtype) AND NOT a.attisdropped)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'config' AND c.relname = 'upgrade_log'
  AND has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT')
"""

#: a plain or partitioned table: reading it runs nothing of its owner's (no SELECT
#: triggers; a superuser bypasses row security)
TABLE_KINDS = ("r", "p")


def detect_release(conn: Any) -> Release | None:
    """The release, read from ``config.upgrade_log`` only when it is a table.

    The administrator who runs ils-redact is usually a superuser; the ILS owner role owns
    schema ``config`` and could replace the table by a view (or, on PostgreSQL 15 and
    older, turn it into one with an ON SELECT rule) that calls its own function, which
    would then run as the superuser.  The relation is locked (ACCESS SHARE: no DROP,
    RENAME, ALTER or CREATE RULE until the transaction ends) before its kind is checked,
    so the relation read is the one checked; a row policy that would apply to this role,
    or a ``version`` column of another type (whose cast its owner may define), is not
    read either."""
    row = conn.execute(_PROBE).fetchone()
    if not row:
        return None
    with conn.transaction():
        conn.execute("LOCK TABLE config.upgrade_log IN ACCESS SHARE MODE")
        row = conn.execute(_PROBE).fetchone()
        if not row:
            return None
        kind, policed, text_column = row
        if kind not in TABLE_KINDS:
            what = {"v": "a view", "m": "a materialized view",
                    "f": "a foreign table"}.get(kind, f"a relation of kind {kind!r}")
            return Release("evergreen", None, "config.upgrade_log",
                           f"not read: config.upgrade_log is {what}, not Evergreen's table "
                           "(planted?)")
        if policed:
            return Release("evergreen", None, "config.upgrade_log",
                           "not read: config.upgrade_log has row security that applies to "
                           "this role (its policies would run as this role)")
        if not text_column:
            return Release("evergreen", None, "config.upgrade_log",
                           "not read: config.upgrade_log.version is not text")
        # ONLY: an inheritance child (a foreign table, say) is not read
        only = "ONLY " if kind == "r" else ""
        versions = [r[0] for r in conn.execute(
            f"SELECT version FROM {only}config.upgrade_log")]  # noqa: S608 - constant text
    return release_from_log(versions)


def release_from_log(versions: list[str]) -> Release:
    releases = sorted((v for v in versions if v and _RELEASE.match(v)), key=version_key)
    patches = [int(v) for v in versions if v and v.isdigit()]
    patch = max(patches) if patches else None
    detail = f"database patch {patch}" if patch is not None else ""
    if releases:
        return Release("evergreen", releases[-1], "config.upgrade_log", detail)
    same = [rc.version for rc in release_catalogs("evergreen")
            if patch is not None and rc.facts.get("database_patch") == patch]
    if len(same) == 1:  # a fresh install of a release point records only its patch
        return Release("evergreen", same[0], "config.upgrade_log",
                       f"database patch {patch}, the schema of release {same[0]}")
    return Release("evergreen", None, "config.upgrade_log", detail)
