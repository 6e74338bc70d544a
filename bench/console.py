"""Benchmark of the staff console: the request list with 1,000 requests, and a request page.

    python bench/console.py [--requests 1000] [--rounds 300]

An Evergreen-shaped database with the layer installed and ``--requests`` requests (a
third approved, some revoked), the console serving it on a loopback port (cheroot, as
``ils-redact serve`` runs it), and one logged-in clerk whose browser is played by a
keep-alive HTTP client.  Per page, interleaved with its baseline (page, bare, page, ...):

- the page as the client sees it (wall time, one HTTP round trip on loopback);
- the server's time for it (``Server-Timing: app``: from the session check to the rendered
  page), and the database time inside it (``Server-Timing: db``: the library calls);
- the bare database time: the same library calls (``count_requests`` and one page of
  ``list_requests``; ``show`` and the
  request's audit entries) on a connection of the same login, with no HTTP and no page.

Target: server p95 under 50 ms on this machine.  Server: ``ILS_REDACT_BENCH_DSN`` (a
superuser DSN) or an embedded PostgreSQL 18.  Prints numbers; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import re
import time
from urllib.parse import urlencode, urlsplit

import psycopg
from _common import bench_server, evergreen_db, log, p, rules
from _common import table as render_table
from psycopg import sql

from ils_redact.backends import postgresql as pg
from ils_redact.backends.postgresql import staff
from ils_redact.console import services
from ils_redact.console.app import ConsoleConfig
from ils_redact.console.server import start
from ils_redact.disclosure import audit as audit_mod
from ils_redact.disclosure import requests as req_mod
from ils_redact.stats import all_reports

PREFIX = "ilsbench_console_"
PASSWORD = "bench-console-pw"


def cleanup(srv) -> None:  # type: ignore[no-untyped-def]
    with psycopg.connect(srv.dsn, autocommit=True) as conn:
        for (db,) in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                                  (PREFIX + "%",)).fetchall():
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(db)))
        for (role,) in conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s "
                                    "ORDER BY 1 DESC", (PREFIX + "%",)).fetchall():
            conn.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


class Browser:
    """One keep-alive connection, a cookie, the session's CSRF token."""

    def __init__(self, url: str) -> None:
        u = urlsplit(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        self.cookies: dict[str, str] = {}

    def call(self, method: str, path: str, data: dict[str, str] | None = None
             ) -> tuple[int, dict[str, float], str]:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        body = None
        if data is not None:
            body = urlencode(data)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self.conn.request(method, path, body=body, headers=headers)
        r = self.conn.getresponse()
        text = r.read().decode()
        for raw in r.headers.get_all("Set-Cookie") or []:
            name, _, rest = raw.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        timing = {m[0]: float(m[1]) / 1000 for m in re.findall(
            r"(\w+);dur=([\d.]+)", r.headers.get("Server-Timing", ""))}
        return r.status, timing, text

    def login(self, login: str, password: str) -> None:
        _, _, page = self.call("GET", "/login")
        token = re.search(r'name="login_token" value="([^"]+)"', page)
        assert token
        status, _, _ = self.call("POST", "/login", {"login_token": token[1], "login": login,
                                                     "password": password, "next": ""})
        assert status == 302, status


def fill(dsn: str, rules_, clerk: str, director: str, n: int) -> list[int]:  # type: ignore[no-untyped-def]
    """``n`` requests by the clerk (one patron each); every third approved by the director,
    every seventh of those revoked."""
    with psycopg.connect(dsn) as conn:  # the superuser picks barcodes; the clerk names them
        barcodes = [r[0] for r in conn.execute(
            "SELECT barcode FROM actor.card WHERE active ORDER BY id LIMIT 50").fetchall()]
    ids: list[int] = []
    with psycopg.connect(dsn, user=clerk) as conn:
        for i in range(n):
            new = req_mod.NewRequest(
                basis="emergency", agency=f"Agency {i % 17}", officer_name=f"Officer {i}",
                officer_badge=str(1000 + i), case_number=f"26-{i:05d}",
                emergency_reason="imminent danger of physical harm",
                barcodes=[barcodes[i % len(barcodes)]],
                expires_at=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=20))
            new.validate(rules_)
            new.columns = req_mod.resolve_columns(rules_, [], "emergency")
            found, _ = req_mod.resolve_patrons(conn, [], new.barcodes)
            ids.append(req_mod.create(conn, new, found))
            conn.commit()  # a transaction looks up at most max_patrons patrons
    with psycopg.connect(dsn, user=director) as conn:
        for k, rid in enumerate(ids[::3]):
            req_mod.approve(conn, rid)
            if k % 7 == 0:
                req_mod.end(conn, rid, "revoked", "benchmark")
        conn.commit()
    return ids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--keep", action="store_true", help="Keep the database (to look at it).")
    args = ap.parse_args()
    with bench_server() as srv:
        cleanup(srv)
        try:
            run(srv, args.requests, args.rounds)
        finally:
            if not args.keep:
                cleanup(srv)


def run(srv, n: int, rounds: int) -> None:  # type: ignore[no-untyped-def]
    r = rules(PREFIX)
    name = f"{PREFIX}db"
    evergreen_db(srv, name, patrons=2_000, circulations=2_000, owner=f"{PREFIX}ils_owner")
    dsn = srv.dsn_for(name)
    with pg.connect(dsn) as conn:
        pg.install(conn, r, reports=all_reports)
    clerk, director = f"{PREFIX}clerk", f"{PREFIX}director"
    with pg.connect(dsn) as conn:
        for login, kind, create in ((clerk, "admin", True), (clerk, "disclosure", False),
                                    (director, "admin", True)):
            plan = staff.plan_grant(conn, r, login, kind, create=create, password=PASSWORD)
            conn.rollback()
            staff.apply(conn, plan)
            conn.commit()
    t = time.perf_counter()
    ids = fill(dsn, r, clerk, director, n)
    log(f"{n} requests in {time.perf_counter() - t:.1f} s")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ANALYZE")
    target = ids[len(ids) // 2]

    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    d = conninfo_to_dict(dsn)
    d.pop("user", None)
    d.pop("password", None)
    running = start(ConsoleConfig(dsn=make_conninfo(**d), rules=r, server_timing=True))  # type: ignore[arg-type]
    try:
        b = Browser(running.url)
        b.login(clerk, PASSWORD)
        bare = services.open_session(make_conninfo(**d), r, clerk, PASSWORD)  # type: ignore[arg-type]

        def bare_list() -> None:  # what the page asks: the count and the newest 50
            req_mod.count_requests(bare.conn)
            req_mod.list_requests(bare.conn, limit=50, newest_first=True)
            bare.conn.commit()

        def bare_page() -> None:
            req_mod.show(bare.conn, target)
            audit_mod.entries(bare.conn, request_id=target)
            bare.conn.commit()

        rows = [("page", "client p50", "client p95", "server p50", "server p95",
                 "db in server p95", "bare db p50", "bare db p95", "server/bare p95")]
        for label, path, baseline in (("request list (1,000 requests)", "/requests", bare_list),
                                      (f"request page (#{target})", f"/requests/{target}",
                                       bare_page)):
            client: list[float] = []
            server: list[float] = []
            db: list[float] = []
            base: list[float] = []
            for i in range(rounds + 20):
                order = ("page", "bare") if i % 2 == 0 else ("bare", "page")
                for what in order:
                    t0 = time.perf_counter()
                    if what == "page":
                        status, timing, _ = b.call("GET", path)
                        assert status == 200, status
                        dt_ = time.perf_counter() - t0
                        if i >= 20:
                            client.append(dt_)
                            server.append(timing["app"])
                            db.append(timing["db"])
                    else:
                        baseline()
                        if i >= 20:
                            base.append(time.perf_counter() - t0)
            rows.append((label, f"{p(client, .5):.1f} ms", f"{p(client, .95):.1f} ms",
                         f"{p(server, .5):.1f} ms", f"{p(server, .95):.1f} ms",
                         f"{p(db, .95):.1f} ms", f"{p(base, .5):.1f} ms",
                         f"{p(base, .95):.1f} ms", f"{p(server, .95) / p(base, .95):.2f}x"))
        services.close(bare)
        print(f"console benchmark: {n} requests, {rounds} rounds per page, PostgreSQL "
              f"{srv.version // 10000}; target: server p95 < 50 ms")
        print(render_table(rows))
    finally:
        running.stop()


if __name__ == "__main__":
    main()
