"""Query-gate latency: p50/p99 of Gate.check over a corpus of report-style queries.

Targets (with sqlglot's compiled extra, sqlglotc): p50 <= 2 ms, p99 <= 10 ms per check,
and a repeated query text answered from the cache in <= 50 us.  The gate's cost is
reported as a ratio to sqlglot's bare ``parse_one`` of the same corpus, measured in the
same run, so numbers from different machines can be compared.

The corpus is generated (seeded, so every run measures the same texts): joins, filters,
aggregates, subqueries, CTEs and set operations over the identity tables for the
disclosure profile, aggregate reports over circulation and holds for the report
profile, and queries each profile refuses.

    python bench/gate_latency.py [--repeat N] [--seed S]

Prints a small table and exits 0; it asserts nothing (timings belong here, not in tests).
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import sqlglot
from sqlglot.dialects.dialect import Dialect

from ils_redact.adapters import get_adapter
from ils_redact.gate import Gate
from ils_redact.rules import load_rules

REPO = Path(__file__).resolve().parents[1]

USR_COLS = ["id", "family_name", "first_given_name", "second_given_name", "pref_family_name",
            "email", "day_phone", "evening_phone", "dob", "alias", "prefix", "suffix"]
ADDR_COLS = ["street1", "street2", "city", "county", "state", "post_code", "country",
             "address_type"]
CARD_COLS = ["barcode", "active", "id"]
FILTERS_U = ["u.family_name ILIKE '{s}%'", "u.dob < DATE '{y}-01-01'",
             "lower(u.email) LIKE '%@{d}.org'", "u.id BETWEEN {a} AND {b}",
             "u.day_phone IS NOT NULL", "coalesce(u.alias, '') <> ''",
             "u.first_given_name IN ('Ann', 'Bo', 'Cy')",
             "extract(year FROM age(now(), u.dob)) >= 18"]
FILTERS_A = ["a.city = '{c}'", "a.post_code LIKE '6{n}%'", "a.state IN ('IL', 'WI')",
             "a.address_type = 'MAILING'"]
NAMES = ["Smi", "Jo", "Gar", "Mil", "Dav", "Rod", "Mar", "Her", "Lop", "Gon"]
CITIES = ["Springfield", "Peoria", "Joliet", "Aurora", "Rockford", "Naperville"]


def _pick(rng: random.Random, items: list[str], k: int) -> list[str]:
    return rng.sample(items, k)


def _fill(rng: random.Random, template: str) -> str:
    return template.format(s=rng.choice(NAMES), y=rng.randint(1950, 2010),
                           d=rng.choice(["example", "library", "mail"]),
                           a=rng.randint(1, 500), b=rng.randint(501, 5000),
                           c=rng.choice(CITIES), n=rng.randint(0, 9))


def disclosure_queries(rng: random.Random, n: int) -> list[str]:
    out = []
    shapes = ["single", "card", "address", "three", "in", "exists", "cte", "union",
              "group", "lateral", "star"]
    for i in range(n):
        shape = shapes[i % len(shapes)]
        ucols = ", ".join(f"u.{c}" for c in _pick(rng, USR_COLS, rng.randint(2, 6)))
        fu = " AND ".join(_fill(rng, f) for f in _pick(rng, FILTERS_U, rng.randint(1, 3)))
        fa = _fill(rng, rng.choice(FILTERS_A))
        limit = f" LIMIT {rng.choice([10, 50, 100, 5000])}" if rng.random() < 0.5 else ""
        if shape == "single":
            q = f"SELECT {ucols} FROM actor.usr u WHERE {fu} ORDER BY u.family_name{limit}"
        elif shape == "card":
            q = (f"SELECT {ucols}, c.barcode FROM actor.usr u JOIN actor.card c "
                 f"ON c.id = u.card WHERE {fu} AND c.active{limit}")
        elif shape == "address":
            acols = ", ".join(f"a.{c}" for c in _pick(rng, ADDR_COLS, 3))
            q = (f"SELECT {ucols}, {acols} FROM actor.usr u LEFT JOIN actor.usr_address a "
                 f"ON a.id = u.mailing_address WHERE {fu}{limit}")
        elif shape == "three":
            q = (f"SELECT {ucols}, c.barcode, a.city, a.post_code FROM actor.usr u "
                 f"JOIN actor.card c ON c.usr = u.id JOIN actor.usr_address a "
                 f"ON a.usr = u.id WHERE {fu} AND {fa} ORDER BY 1{limit}")
        elif shape == "in":
            q = (f"SELECT {ucols} FROM actor.usr u WHERE u.id IN (SELECT usr FROM "
                 f"actor.card WHERE barcode LIKE '2{rng.randint(1000, 9999)}%') AND {fu}")
        elif shape == "exists":
            q = (f"SELECT {ucols} FROM actor.usr u WHERE EXISTS (SELECT 1 FROM "
                 f"actor.usr_address a WHERE a.usr = u.id AND {fa})")
        elif shape == "cte":
            q = (f"WITH p AS (SELECT id, family_name, dob FROM actor.usr u WHERE {fu}) "
                 f"SELECT p.family_name, p.dob, c.barcode FROM p JOIN actor.card c "
                 f"ON c.usr = p.id{limit}")
        elif shape == "union":
            q = (f"SELECT usr, 'card' AS src FROM actor.card WHERE active UNION ALL "
                 f"SELECT a.usr, 'address' FROM actor.usr_address a WHERE {fa}")
        elif shape == "group":
            q = (f"SELECT a.city, a.state, count(*) AS n FROM actor.usr_address a "
                 f"WHERE {fa} GROUP BY a.city, a.state HAVING count(*) > 1 ORDER BY n DESC")
        elif shape == "lateral":
            q = (f"SELECT {ucols}, x.city FROM actor.usr u, LATERAL (SELECT city FROM "
                 f"actor.usr_address WHERE usr = u.id ORDER BY id LIMIT 1) x WHERE {fu}")
        else:
            q = f"SELECT * FROM actor.usr u WHERE {fu}{limit}"
        out.append(q)
    return out


def report_queries(rng: random.Random, n: int) -> list[str]:
    out = []
    for i in range(n):
        unit = rng.choice(["month", "week", "year"])
        if i % 4 == 0:
            q = (f"SELECT circ_lib, date_trunc('{unit}', xact_start) AS p, count(*) AS loans, "
                 f"count(DISTINCT usr) AS patrons FROM action.circulation WHERE xact_start "
                 f">= now() - interval '{rng.randint(1, 5)} years' GROUP BY circ_lib, "
                 f"date_trunc('{unit}', xact_start)")
        elif i % 4 == 1:
            q = (f"SELECT u.home_ou, count(DISTINCT c.usr) FROM action.circulation c JOIN "
                 f"actor.usr u ON u.id = c.usr WHERE c.circ_lib = {rng.randint(1, 40)} "
                 f"GROUP BY u.home_ou")
        elif i % 4 == 2:
            q = (f"SELECT pickup_lib, count(*), avg(CASE WHEN fulfillment_time IS NOT NULL "
                 f"THEN 1 ELSE 0 END) FROM action.hold_request WHERE request_time > now() - "
                 f"interval '{rng.randint(1, 24)} months' GROUP BY pickup_lib")
        else:
            q = (f"SELECT n, count(*) FROM (SELECT usr, count(*) AS n FROM "
                 f"action.circulation WHERE circ_lib = {rng.randint(1, 40)} GROUP BY usr) x "
                 f"GROUP BY n ORDER BY n")
        out.append(q)
    return out


def refused_queries(rng: random.Random, n: int) -> list[str]:
    texts = [
        "SELECT u.family_name, c.xact_start FROM actor.usr u JOIN action.circulation c "
        "ON c.usr = u.id WHERE c.target_copy = {a}",
        "SELECT id FROM actor.usr WHERE id IN (SELECT usr FROM action.circulation WHERE "
        "target_copy = {a})",
        "SELECT passwd FROM actor.usr WHERE id = {a}",
        "SELECT family_name FROM actor.usr WHERE home_ou = {a}",
        "SELECT query_to_xml('SELECT * FROM action.circulation', true, true, '')",
        "SELECT family_name FROM actor.usr; SELECT {a}",
        "EXPLAIN SELECT family_name FROM actor.usr WHERE id = {a}",
        "SELECT usr, target FROM action.hold_request WHERE pickup_lib = {a}",
        'SELECT U&"p\\0061sswd" FROM actor.usr WHERE id = {a}',
        "WITH d AS (DELETE FROM actor.card WHERE id = {a} RETURNING id) SELECT * FROM d",
    ]
    return [texts[i % len(texts)].format(a=rng.randint(1, 99999)) for i in range(n)]


def _time(fn: Callable[[], object]) -> float:
    t = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - t) / 1000.0  # microseconds


def _pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="timed passes over the corpus")
    ap.add_argument("--seed", type=int, default=70)
    args = ap.parse_args(argv)

    rng = random.Random(args.seed)
    rules = load_rules(REPO / "redaction_rules.yaml")
    catalog = get_adapter("evergreen").reference_catalog()
    corpus = ([("disclosure", q) for q in disclosure_queries(rng, 160)]
              + [("report", q) for q in report_queries(rng, 40)]
              + [("disclosure", q) for q in refused_queries(rng, 40)])
    gates = {p: Gate(rules, catalog, p, search_path=("public",), cache_size=0)
             for p in ("disclosure", "report")}
    cached = Gate(rules, catalog, "disclosure", cache_size=1024)
    dialect = Dialect.get_or_raise("postgres")

    # warm up: imports, first-use caches, the schema mapping
    for profile, q in corpus:
        gates[profile].check(q)
        sqlglot.parse_one(q, read=dialect) if not q.startswith("SELECT family_name FROM "
                                                               "actor.usr;") else None
    allowed = sum(1 for p, q in corpus if gates[p].check(q).ok)

    gc.disable()
    try:
        gate_us: list[float] = []
        parse_us: list[float] = []
        for _ in range(args.repeat):
            for profile, q in corpus:
                gate_us.append(_time(lambda g=gates[profile], q=q: g.check(q)))
                parse_us.append(_time(lambda q=q: sqlglot.parse(q, read=dialect)))
        text = corpus[0][1]
        cached.check(text)
        hit_us = [_time(lambda: cached.check(text)) for _ in range(2000)]
    finally:
        gc.enable()

    compiled = Path(sqlglot.parser.__file__).suffix == ".so"
    p50, p99 = _pct(gate_us, 0.5), _pct(gate_us, 0.99)
    b50, b99 = _pct(parse_us, 0.5), _pct(parse_us, 0.99)
    h50, h99 = _pct(hit_us, 0.5), _pct(hit_us, 0.99)
    rows = [
        ("sqlglot parse (baseline)", b50, b99, statistics.mean(parse_us), "-"),
        ("Gate.check (no cache)", p50, p99, statistics.mean(gate_us), "p50 <= 2000, p99 <= 10000"),
        ("Gate.check (cache hit)", h50, h99, statistics.mean(hit_us), "<= 50"),
    ]
    print(f"query gate latency: {len(corpus)} queries ({allowed} allowed, "
          f"{len(corpus) - allowed} refused) x {args.repeat} passes; sqlglot "
          f"{sqlglot.__version__}{' (compiled)' if compiled else ' (pure Python)'}")
    print(f"{'':28} {'p50 us':>9} {'p99 us':>9} {'mean us':>9}  target")
    for name, a, b, m, target in rows:
        print(f"{name:28} {a:9.1f} {b:9.1f} {m:9.1f}  {target}")
    print(f"gate / parse ratio: p50 {p50 / b50:.1f}x, p99 {p99 / b99:.1f}x")
    met = p50 <= 2000 and p99 <= 10000 and h50 <= 50
    print(f"targets {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
