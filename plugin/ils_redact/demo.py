"""The demo: a database shaped like Evergreen, the layer installed, a request answered.

With no ``--dsn`` it starts an embedded PostgreSQL (no setup, no root, no network), so a
sysadmin can see on a laptop what ils-redact does before pointing it at a real ILS.  It
prints what the disclosure role reads for one scoped patron, shows the database itself
refusing circulation, billing, audit-history and password reads, and shows an unscoped
patron invisible.  Everything it creates is removed unless ``--keep``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import errors, sql

from .adapters import get_adapter
from .backends import postgresql as pg
from .backends.postgresql.connection import one_row
from .disclosure import export as export_mod
from .disclosure import requests as req_mod
from .rules import Rules, load_rules
from .servers import Server, embedded_server
from .stats import all_reports

Say = Callable[[str], None]
DEMO_DB = "ils_redact_demo"
PREFIX = "ils_redact_demo_"


@dataclass
class DemoResult:
    server: str
    database: str
    patrons: int
    circulations: int
    timings: dict[str, float] = field(default_factory=dict)
    scoped_patron: int = 0
    disclosed_rows: int = 0
    refused: dict[str, str] = field(default_factory=dict)
    unscoped_rows: int = -1
    kept: bool = False

    @property
    def ok(self) -> bool:
        return (self.disclosed_rows > 0 and self.unscoped_rows == 0
                and all(v.startswith("permission denied") for v in self.refused.values()))


@contextmanager
def _server(dsn: str | None, keep: bool) -> Iterator[Server]:
    if dsn:
        yield Server(dsn=dsn, kind="dsn")
    else:
        with embedded_server(keep=keep) as srv:
            yield srv


def _exec(srv: Server, q: sql.Composed, dbname: str | None = None) -> None:
    dsn = srv.dsn_for(dbname) if dbname else srv.dsn
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(q)


def run(*, dsn: str | None = None, patrons: int = 10_000, circulations: int = 100_000,
        keep: bool = False, say: Say = print,
        progress: Callable[[str, int, int], None] | None = None,
        then: Callable[[Server, Rules], None] | None = None) -> DemoResult:
    """The demo; ``then(server, rules)`` runs after it, before anything is removed
    (``demo --serve`` serves the console there)."""
    from .adapters.evergreen import fixture

    rules: Rules = dataclasses.replace(load_rules(get_adapter("evergreen").preset_path),
                                       role_prefix=PREFIX)
    owner, clerk, director, member = (f"{PREFIX}ils_owner", f"{PREFIX}clerk",
                                      f"{PREFIX}director", f"{PREFIX}reader")
    with _server(dsn, keep) as srv:
        res = DemoResult(server=srv.kind, database=DEMO_DB, patrons=patrons,
                         circulations=circulations, kept=keep)
        where = "embedded" if srv.kind == "embedded" else "from --dsn"
        say(f"1. PostgreSQL {srv.version // 10000} ({where})")
        _cleanup(srv, rules)
        for role in (owner, clerk, director, member):
            _exec(srv, sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        _exec(srv, sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(DEMO_DB), sql.Identifier(owner)))
        try:
            t = time.perf_counter()
            with psycopg.connect(srv.dsn_for(DEMO_DB)) as conn:
                conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(owner)))
                fixture.build_schema(conn, progress=progress)
                counts = fixture.fill(conn, patrons=patrons, circulations=circulations,
                                      progress=progress)
                conn.commit()
            res.timings["build"] = time.perf_counter() - t
            say(f"2. Built database {DEMO_DB} from the real Evergreen schema facts: 510 tables, "
                f"137 views; {counts.get('actor.usr', patrons):,} patrons, "
                f"{counts.get('action.circulation', circulations):,} circulations "
                f"({res.timings['build']:.1f} s), owned by {owner} (not a superuser)")
            _demo(srv, rules, res, say, clerk=clerk, director=director, member=member)
            if then is not None:
                then(srv, rules)
        finally:
            if not keep:
                _cleanup(srv, rules)
                say("7. Removed the demo database and roles (pass --keep to look around)")
            else:
                say(f"7. Kept: database {DEMO_DB} at {srv.dsn_for(DEMO_DB)}")
    return res


def _demo(srv: Server, rules: Rules, res: DemoResult, say: Say, *, clerk: str, director: str,
          member: str) -> None:
    from .backends.postgresql import staff

    dsn = srv.dsn_for(DEMO_DB)
    t = time.perf_counter()
    with pg.connect(dsn) as conn:
        plan = pg.install(conn, rules, reports=all_reports)
    res.timings["install"] = time.perf_counter() - t
    say(f"3. Installed ils-redact in one transaction: {len(plan.changes())} changes "
        f"({res.timings['install']:.2f} s); `ils-redact plan` prints them as SQL")
    with pg.connect(dsn) as conn:
        for login, kind in ((clerk, "admin"), (clerk, "disclosure"), (director, "admin")):
            staff.apply(conn, staff.plan_grant(conn, rules, login, kind))
        conn.execute(sql.SQL("GRANT {} TO {}").format(
            sql.Identifier(rules.role("disclosure")), sql.Identifier(member)))
        conn.commit()
        patron, other = one_row(conn.execute(
            "SELECT min(id), max(id) FROM actor.usr WHERE NOT deleted").fetchone(),
            "the lowest and highest patron id")
        barcode = one_row(conn.execute("SELECT barcode FROM actor.card WHERE usr = %s AND active",
                                       (patron,)).fetchone(),
                          f"the active card of patron {patron}")[0]
    res.scoped_patron = patron

    expires = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(hours=4)
    new = req_mod.NewRequest(
        basis="emergency", agency="Metro Police Department", officer_name="Officer Dana Reyes",
        officer_badge="4471", case_number="26-1182",
        emergency_reason="caller reported a credible threat of violence at the branch",
        barcodes=[barcode], expires_at=expires)
    new.validate(rules)
    new.columns = req_mod.resolve_columns(rules, [], "emergency")
    with psycopg.connect(srv.dsn_for(DEMO_DB, user=clerk)) as conn:
        found, _ = req_mod.resolve_patrons(conn, [], [barcode])
        rid = req_mod.create(conn, new, found)
        conn.commit()
    with psycopg.connect(srv.dsn_for(DEMO_DB, user=clerk)) as conn:
        try:
            req_mod.approve(conn, rid)
        except Exception as exc:  # noqa: BLE001 - shown, not raised
            say(f"4. Request {rid} recorded by {clerk}; {clerk} may not approve it: {exc}")
        conn.commit()
    with psycopg.connect(srv.dsn_for(DEMO_DB, user=director)) as conn:
        req_mod.approve(conn, rid)
        conn.commit()
    say(f"   {director} approved it (two-person rule); access ends {expires.isoformat()}")
    with psycopg.connect(srv.dsn_for(DEMO_DB, user=clerk)) as conn:
        exported = export_mod.export(conn, rid, "csv")
    m = exported.manifest
    res.disclosed_rows = m["rows"]
    say(f"5. {clerk} exported request {rid} through the logged export function: "
        f"{m['rows']} rows for patron {patron}, sha256 {m['sha256'][:16]}, audit entry "
        f"{m['audit_seq']}")
    lines = exported.document.decode().splitlines()
    header = lines[0].split(",")
    for line in lines[1:]:
        cells = line.split(",")
        shown = [f"{h.strip(chr(34)).rsplit('.', 1)[-1]}={c.strip(chr(34))}"
                 for h, c in zip(header, cells, strict=False) if c and h not in (
                     "patron_id", "relation")]
        say(f"     {cells[1].strip(chr(34)):18} " + ", ".join(shown[:8])
            + (" ..." if len(shown) > 8 else ""))

    # a second request, approved for a login that is a member of the disclosure role
    # (the `role` access mode a sysadmin may choose for ad-hoc queries through the gate)
    new.grantee = member
    with psycopg.connect(srv.dsn_for(DEMO_DB, user=clerk)) as conn:
        rid2 = req_mod.create(conn, new, found)
        conn.commit()
    with psycopg.connect(srv.dsn_for(DEMO_DB, user=director)) as conn:
        req_mod.approve(conn, rid2)
        conn.commit()
    say(f"6. Request {rid2}, approved for {member}, a member of the disclosure role who "
        "queries directly (psql, no gate). The database itself refuses the rest:")
    with psycopg.connect(srv.dsn_for(DEMO_DB, user=member), autocommit=True) as conn:
        for label, q in (
                ("action.circulation", "SELECT target_copy FROM action.circulation "
                                       "WHERE usr = %s"),
                ("money.billable_xact", "SELECT id FROM money.billable_xact WHERE usr = %s"),
                ("auditor.actor_usr_history", "SELECT family_name FROM "
                                              "auditor.actor_usr_history WHERE id = %s"),
                ("actor.usr.passwd", "SELECT passwd FROM actor.usr WHERE id = %s")):
            try:
                conn.execute(q, (patron,))
                res.refused[label] = "READ (this must not happen)"
            except errors.InsufficientPrivilege as exc:
                res.refused[label] = exc.diag.message_primary or "permission denied"
            say(f"     {label:28} -> {res.refused[label]}")
        own = conn.execute("SELECT family_name FROM actor.usr WHERE id = %s",
                           (patron,)).fetchall()
        rows = conn.execute("SELECT family_name FROM actor.usr WHERE id = %s",
                            (other,)).fetchall()
        res.unscoped_rows = len(rows)
        total = one_row(conn.execute("SELECT count(*) FROM actor.usr").fetchone(),
                        "count(*) of actor.usr")[0]
    say(f"     actor.usr for patron {patron} (in scope)   -> {len(own)} row")
    say(f"     actor.usr for patron {other} (not in scope) -> {len(rows)} rows; the whole table "
        f"shows {total} of {res.patrons:,}")


def _cleanup(srv: Server, rules: Rules) -> None:
    with psycopg.connect(srv.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(DEMO_DB)))
        for (role,) in conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s "
                                    "ORDER BY rolname", (PREFIX.replace("_", r"\_") + "%",)
                                    ).fetchall():
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def summary(res: DemoResult) -> dict[str, Any]:
    return dataclasses.asdict(res) | {"ok": res.ok}
