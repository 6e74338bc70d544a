"""Shared by the benchmarks: a server, an Evergreen-shaped database, side-by-side timing.

Every benchmark prints ratios against a baseline measured in the same run, on the same
server, interleaved (A, B, A, B, ...) so that a noisy neighbour slows both sides alike.
The server: ``ILS_REDACT_BENCH_DSN`` (a superuser DSN) if set, else an embedded
PostgreSQL 18.  Nothing here asserts a time; the numbers go in docs/benchmarks.md.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

from ils_redact.rules import Rules, load_rules
from ils_redact.servers import Server, embedded_server

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "ilsbench_"


def rules(prefix: str = PREFIX) -> Rules:
    return dataclasses.replace(load_rules(ROOT / "redaction_rules.yaml"), role_prefix=prefix)


@contextmanager
def bench_server() -> Iterator[Server]:
    dsn = os.environ.get("ILS_REDACT_BENCH_DSN")
    if dsn:
        yield Server(dsn=dsn, kind="env")
        return
    with embedded_server() as srv:
        yield srv


def execute(srv: Server, q: sql.Composable | str, db: str | None = None) -> None:
    with psycopg.connect(srv.dsn_for(db) if db else srv.dsn, autocommit=True) as conn:
        conn.execute(q)  # type: ignore[arg-type]


def drop_everything(srv: Server) -> None:
    """Remove this benchmark's databases and roles (they start with PREFIX)."""
    with psycopg.connect(srv.dsn, autocommit=True) as conn:
        for (db,) in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                                  (PREFIX + "%",)).fetchall():
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(db)))
        for (role,) in conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s "
                                    "ORDER BY 1 DESC", (PREFIX + "%",)).fetchall():
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def make_login(srv: Server, name: str, *groups: str) -> str:
    execute(srv, sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
    for g in groups:
        execute(srv, sql.SQL("GRANT {} TO {}").format(sql.Identifier(g), sql.Identifier(name)))
    return name


def evergreen_db(srv: Server, name: str, *, patrons: int, circulations: int,
                 owner: str) -> str:
    """An Evergreen-shaped database owned by ``owner`` (created here)."""
    from ils_redact.adapters.evergreen import fixture

    t = time.perf_counter()
    with psycopg.connect(srv.dsn, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,)).fetchone():
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(owner)))
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(name), sql.Identifier(owner)))
    with psycopg.connect(srv.dsn_for(name)) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(owner)))
        fixture.build_schema(conn)
        fixture.fill(conn, patrons=patrons, circulations=circulations)
        conn.commit()
    log(f"built {name}: {patrons:,} patrons, {circulations:,} circulations "
        f"in {time.perf_counter() - t:.0f} s")
    return name


def clone(srv: Server, template: str, name: str) -> str:
    execute(srv, sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
        sql.Identifier(name), sql.Identifier(template)))
    return name


def interleaved(a: Callable[[], object], b: Callable[[], object], *, rounds: int,
                warmup: int = 20) -> tuple[list[float], list[float]]:
    """Run a and b alternately; per-call seconds for each."""
    for _ in range(warmup):
        a()
        b()
    ta: list[float] = []
    tb: list[float] = []
    for i in range(rounds):
        first, second, lf, ls = (a, b, ta, tb) if i % 2 == 0 else (b, a, tb, ta)
        t0 = time.perf_counter()
        first()
        t1 = time.perf_counter()
        second()
        t2 = time.perf_counter()
        lf.append(t1 - t0)
        ls.append(t2 - t1)
    return ta, tb


def median_ms(xs: list[float]) -> float:
    return statistics.median(xs) * 1000


def p(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))
                     for r in rows)


#: the header of the statistics benchmarks' table (see report_vs_baselines)
STATS_HEADER = ("report", "report ms", "GROUP BY+distinct ms", "ratio", "GROUP BY count ms",
                "ratio", "entries", "suppressed")


def report_vs_baselines(name: str, report: Callable[[], list], base: Callable[[], object],
                        count: Callable[[], object], *, rounds: int
                        ) -> tuple[tuple[str, ...], dict[str, float]]:
    """One row of a statistics benchmark (STATS_HEADER) and the medians in ms (``r``, ``b``,
    ``c``): the report against the GROUP BY with distinct patrons and the count-only
    GROUP BY, each called once to warm up, then in turn with the order rotated every
    round.  The report's last column marks a suppressed entry."""
    rows = report()  # warm-up, and the result's size
    base()
    count()
    runs = {"r": report, "b": base, "c": count}
    keys = list(runs)
    ts: dict[str, list[float]] = {k: [] for k in keys}
    for i in range(rounds):
        for k in keys[i % 3:] + keys[:i % 3]:
            t = time.perf_counter()
            runs[k]()
            ts[k].append(time.perf_counter() - t)
    med = {k: sorted(v)[len(v) // 2] * 1000 for k, v in ts.items()}
    row = (name, f"{med['r']:.0f}", f"{med['b']:.0f}", f"{med['r'] / med['b']:.2f}x",
           f"{med['c']:.0f}", f"{med['r'] / med['c']:.2f}x", str(len(rows)),
           str(sum(1 for r in rows if r[-1])))
    return row, med
