"""The statistics role, proven as that role on a real server.

* it reads no ILS relation (every relation of the catalog is tried) and may call the
  report functions only;
* every released entry of every standard report is checked against the raw data, counted
  here by brute force as the ILS owner: the count is right and it covers at least k
  distinct patrons;
* no suppressed entry can be recomputed from the released ones: the linear system of each
  page (rows and columns add up to their totals) is solved with exact fractions;
* the fixture's tiny branch (at most five patrons) gets suppressed cells, not counts;
* two runs over overlapping periods release identical pages (no differencing);
* custom reports: a patron key in the grouping, or a patron column that is not one, is
  refused at install with the rules file's line; a valid one runs with the same
  suppression;
* ``suppress_page`` on random tables: the same two properties.
"""

# ruff: noqa: S608 - the brute-force SQL is built from constant fragments only

from __future__ import annotations

import datetime as dt
import json
import random
import re
from collections import defaultdict
from pathlib import Path

import psycopg
import pytest
from psycopg import errors, sql

from ils_redact.adapters.evergreen.fixture import TINY_BRANCH
from ils_redact.backends import postgresql as pg
from ils_redact.backends.postgresql import stats_publish as publish_pg
from ils_redact.backends.postgresql.introspect import read_catalog
from ils_redact.backends.postgresql.stats_run import run_report
from ils_redact.rules import load_rules
from ils_redact.sdc.publish import month_range
from ils_redact.stats import all_reports
from support import EgDb, create_role, run_cli, write_rules
from support.stats_oracle import Key, age_band, determined, equations, released

K = 11
MONTH = "date_trunc('month', {} AT TIME ZONE 'UTC')::date"
ORG = "coalesce(o.shortname, {}::text, '(none)')"

#: report -> [(measure, SQL returning (month, row label, column label, patron key) per
#: record)], written by hand from the Evergreen schema, independently of the generator
RAW: dict[str, list[tuple[str, str]]] = {
    "circ_by_library_modifier": [("circulations", f"""
        SELECT {MONTH.format('c.xact_start')}, {ORG.format('c.circ_lib')},
               coalesce(cp.circ_modifier, '(none)'), c.usr::text
        FROM action.circulation c LEFT JOIN asset.copy cp ON cp.id = c.target_copy
        LEFT JOIN actor.org_unit o ON o.id = c.circ_lib""")],
    "circ_by_profile": [("circulations", f"""
        SELECT {MONTH.format('c.xact_start')}, coalesce(g.name, u.profile::text, '(none)'),
               NULL, c.usr::text
        FROM action.circulation c LEFT JOIN actor.usr u ON u.id = c.usr
        LEFT JOIN permission.grp_tree g ON g.id = u.profile""")],
    "holds_by_pickup_library": [
        ("holds placed", f"""
        SELECT {MONTH.format('h.request_time')}, {ORG.format('h.pickup_lib')}, NULL, h.usr::text
        FROM action.hold_request h LEFT JOIN actor.org_unit o ON o.id = h.pickup_lib"""),
        ("holds filled", f"""
        SELECT {MONTH.format('h.fulfillment_time')}, {ORG.format('h.pickup_lib')}, NULL,
               h.usr::text
        FROM action.hold_request h LEFT JOIN actor.org_unit o ON o.id = h.pickup_lib
        WHERE h.fulfillment_time IS NOT NULL""")],
    "registrations_by_library": [("registrations", f"""
        SELECT {MONTH.format('u.create_date')}, {ORG.format('u.home_ou')}, NULL, u.id::text
        FROM actor.usr u LEFT JOIN actor.org_unit o ON o.id = u.home_ou""")],
    # the age band is computed in Python below, from the date of birth
    "circ_by_age_band": [("circulations", f"""
        SELECT {MONTH.format('c.xact_start')}, (c.xact_start AT TIME ZONE 'UTC')::date,
               u.dob, c.usr::text
        FROM action.circulation c LEFT JOIN actor.usr u ON u.id = c.usr""")],
    # no patron id on aged circulations: the combination is the (lower-bound) patron key
    "aged_circ_by_library": [("aged circulations", f"""
        SELECT {MONTH.format('a.xact_start')}, {ORG.format('a.circ_lib')},
               coalesce(g.name, a.usr_profile::text, '(none)'),
               concat_ws('|', a.usr_post_code, a.usr_home_ou, a.usr_profile, a.usr_birth_year)
        FROM action.aged_circulation a LEFT JOIN actor.org_unit o ON o.id = a.circ_lib
        LEFT JOIN permission.grp_tree g ON g.id = a.usr_profile""")],
}


# -- the truth, by brute force ------------------------------------------------------------

def truth(db: EgDb, report: str, lo: dt.date | None = None, hi: dt.date | None = None
          ) -> dict[tuple, dict[Key, tuple[int, set[str]]]]:
    """(period, measure) -> entry -> (count, patron keys), for every nonzero entry a page
    has (cells, and the totals the page shows)."""
    this_month = dt.date.today().replace(day=1)
    hi = min(hi or this_month, this_month)
    pages: dict[tuple, dict[tuple[str, str | None], list]] = defaultdict(dict)
    with db.connect(db.owner) as conn:
        for measure, q in RAW[report]:
            for month, r, c, patron in conn.execute(q):
                if month is None or month >= hi or (lo and month < lo):
                    continue
                if report == "circ_by_age_band":
                    r, c = age_band(r, c), None
                cell = pages[(month, measure)].setdefault((r, c), [0, set()])
                cell[0] += 1
                cell[1].add(patron)
    out: dict[tuple, dict[Key, tuple[int, set[str]]]] = {}
    for page, cells in pages.items():
        rows = {r for r, _ in cells}
        cols = {c for _, c in cells}
        entries: dict[Key, tuple[int, set[str]]] = {
            ("cell", r, c): (v, p) for (r, c), (v, p) in cells.items()}

        def add(key: Key, members: list[tuple[int, set[str]]],
                entries: dict[Key, tuple[int, set[str]]] = entries) -> None:
            entries[key] = (sum(v for v, _ in members), set().union(*(p for _, p in members)))

        if len(rows) > 1 and len(cols) > 1:
            for r in rows:
                add(("row_total", r, None), [x for (rr, _), x in cells.items() if rr == r])
            for c in cols:
                add(("col_total", None, c), [x for (_, cc), x in cells.items() if cc == c])
        if len(rows) > 1 or len(cols) > 1:
            add(("total", None, None), list(cells.values()))
        out[page] = entries
    return out


FIRST = dt.date(2019, 1, 1)  # before the fixture's first month of records


def publish(db: EgDb, report: str, lo: dt.date | None = None, hi: dt.date | None = None,
            rules=None) -> list:
    """Publish the months [lo, hi) of a report as the administrator (idempotent)."""
    this_month = dt.date.today().replace(day=1)
    lo, hi = lo or FIRST, min(hi or this_month, this_month)
    months = month_range(lo, hi - dt.timedelta(days=1))
    with db.connect(autocommit=False) as conn:
        return publish_pg.publish(conn, rules or db.rules, read_catalog(conn), report, months,
                                  reports=all_reports)


def check_report(db: EgDb, login: str, report: str, lo=None, hi=None, rules=None) -> dict:
    publish(db, report, lo, hi, rules)
    with db.connect(login) as conn:
        result = run_report(conn, report, lo, hi)
    got = released(result.entries)
    want = truth(db, report, lo, hi)
    assert set(got) == set(want), f"{report}: pages differ"
    for page, entries in got.items():
        true = want[page]
        assert set(entries) == set(true), f"{report} {page}: entries differ"
        for key, value in entries.items():
            count, patrons = true[key]
            if key[0] == "cell" and len(patrons) < K:
                assert value is None, f"{report} {page} {key}: {len(patrons)} patrons, released"
            if value is not None:
                assert value == count, f"{report} {page} {key}: {value} != {count}"
                assert len(patrons) >= K, f"{report} {page} {key}: only {len(patrons)} patrons"
        assert determined(entries) == [], f"{report} {page}: recomputable {determined(entries)}"
    return got


# -- fixtures -----------------------------------------------------------------------------

@pytest.fixture
def installed(eg_db: EgDb):
    with eg_db.connect(autocommit=False) as conn:
        pg.install(conn, eg_db.rules, reports=all_reports)
    login = create_role(eg_db.server, f"{eg_db.prefix}analyst",
                        member_of=(eg_db.role("stats"),))
    return eg_db, login


REPORTS = sorted(RAW)


# -- what the role can read ---------------------------------------------------------------

def test_every_relation_is_closed_to_the_stats_role(installed) -> None:
    db, login = installed
    with db.connect() as conn:
        catalog = read_catalog(conn)
        helpers = [(r[0], r[1]) for r in conn.execute(
            "SELECT p.oid::regprocedure::text, p.oid FROM pg_proc p JOIN pg_namespace n "
            "ON n.oid = p.pronamespace WHERE n.nspname IN ('ils_redact', 'ils_redact_stats') "
            "AND p.proname NOT IN (SELECT name FROM ils_redact_stats.reports()) "
            "AND p.proname NOT IN ('reports', 'publications')")]
    rels = sorted(catalog.relations)
    assert len(rels) > 600 and "action.circulation" in rels and "ils_redact.scope" in rels
    # the publication tables: the released values, and the record of what was published
    assert {"ils_redact_stats.published", "ils_redact_stats.publication"} <= set(rels)
    readable = []
    with db.connect(login) as conn:
        for rel in rels:
            try:
                conn.execute(sql.SQL("SELECT 1 FROM {} LIMIT 0").format(
                    sql.Identifier(*rel.split(".", 1))))
                readable.append(rel)
            except errors.InsufficientPrivilege:
                pass
        assert readable == []
        assert "ils_redact_stats.suppress_page(integer,date,text,text[],text[],bigint[],bigint[])" \
            in {h.replace(" ", "") for h, _ in helpers}
        # suppression helpers, request workflow, audit ...: none callable
        assert [f for f, oid in helpers if conn.execute(
            "SELECT has_function_privilege(%s, %s::oid, 'EXECUTE')",
            (login, oid)).fetchone()[0]] == []
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM ils_redact_stats.suppress_page(3, NULL, 'm', "
                         "ARRAY['a'], ARRAY[NULL::text], ARRAY[5::bigint], ARRAY[1::bigint])")
        # and the reports are there
        names = {r[0] for r in conn.execute("SELECT name FROM ils_redact_stats.reports()")}
        assert names == set(REPORTS)


def test_report_owner_holds_only_the_columns_it_counts(installed) -> None:
    db, _ = installed
    with db.connect() as conn:
        grants = conn.execute(
            "SELECT table_schema || '.' || table_name, column_name "
            "FROM information_schema.column_privileges WHERE grantee = %s "
            "AND table_schema <> 'ils_redact_stats'",  # its own publication tables
            (db.role("stats_owner"),)).fetchall()
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.table_privileges WHERE grantee = %s "
            "AND table_schema <> 'ils_redact_stats'",
            (db.role("stats_owner"),)).fetchone()[0]
        member = conn.execute(
            "SELECT count(*) FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid "
            "WHERE g.rolname = %s", (db.role("stats_owner"),)).fetchone()[0]
    cols = {f"{r}.{c}" for r, c in grants}
    assert "action.circulation.usr" in cols and "actor.usr.dob" in cols
    for secret in ("actor.usr.family_name", "actor.usr.passwd", "actor.card.barcode",
                   "actor.usr_address.post_code", "actor.usr.email"):
        assert secret not in cols
    assert len(cols) < 30
    assert tables == 0 and member == 0


# -- what the reports release -------------------------------------------------------------

@pytest.mark.parametrize("report", REPORTS)
def test_released_entries_count_k_patrons_and_hidden_ones_stay_hidden(installed,
                                                                      report) -> None:
    db, login = installed
    got = check_report(db, login, report)
    assert got, f"{report}: no pages"
    suppressed = sum(v is None for page in got.values() for v in page.values())
    total = sum(len(page) for page in got.values())
    assert 0 < suppressed, f"{report}: nothing suppressed in a database with a tiny branch"
    if report != "aged_circ_by_library":  # one aged loan in a hundred: all small
        assert suppressed < total


def test_tiny_branch_gets_suppressed_cells_not_counts(installed) -> None:
    db, login = installed
    tiny = db.scalar("SELECT shortname FROM actor.org_unit WHERE id = %s", (TINY_BRANCH,))
    patrons = db.scalar("SELECT count(*) FROM actor.usr WHERE home_ou = %s", (TINY_BRANCH,))
    assert 0 < patrons < K
    for report in ("circ_by_library_modifier", "registrations_by_library"):
        publish(db, report)
        with db.connect(login) as conn:
            entries = run_report(conn, report).entries
        mine = [e for e in entries if e.row_value == tiny]
        assert mine, f"{report}: the tiny branch has records"
        assert all(e.suppressed and e.value is None for e in mine), report


def test_overlapping_periods_release_identical_pages(installed) -> None:
    db, login = installed
    year = check_report(db, login, "circ_by_library_modifier", dt.date(2023, 1, 1),
                        dt.date(2023, 7, 1))
    spring = check_report(db, login, "circ_by_library_modifier", dt.date(2023, 3, 1),
                          dt.date(2023, 5, 1))
    assert {p[0] for p in year} == {dt.date(2023, m, 1) for m in range(1, 7)}
    assert {p[0] for p in spring} == {dt.date(2023, 3, 1), dt.date(2023, 4, 1)}
    for page, entries in spring.items():
        assert year[page] == entries
    everything = released(_run(db, login, "circ_by_library_modifier").entries)
    for page, entries in year.items():
        assert everything[page] == entries


def _run(db: EgDb, login: str, report: str, lo=None, hi=None):
    with db.connect(login) as conn:
        return run_report(conn, report, lo, hi)


@pytest.mark.parametrize("lo, hi, message", [
    (dt.date(2023, 1, 2), None, "not the first day of a month"),
    (None, dt.date(2023, 5, 15), "not the first day of a month"),
    (None, dt.date.today().replace(day=1) + dt.timedelta(days=40), "complete months only"),
    (dt.date(2023, 5, 1), dt.date(2023, 5, 1), "not before"),
])
def test_periods_are_whole_complete_months(installed, lo, hi, message) -> None:
    db, login = installed
    hi = hi.replace(day=1) if hi and message == "complete months only" else hi
    from ils_redact.errors import Refused

    with pytest.raises(Refused, match=message):
        _run(db, login, "circ_by_profile", lo, hi)
    # the database refuses it too, whatever the client does
    with db.connect(login) as conn, pytest.raises(errors.InvalidParameterValue):
        conn.execute("SELECT * FROM ils_redact_stats.circ_by_profile(%s, %s)", (lo, hi))


def test_month_boundaries_do_not_follow_the_session_time_zone(installed) -> None:
    db, login = installed
    publish(db, "circ_by_library_modifier", dt.date(2023, 2, 1), dt.date(2023, 4, 1))
    runs = []
    for tz in ("UTC", "Pacific/Kiritimati", "America/Adak"):
        with db.connect(login) as conn:
            conn.execute(sql.SQL("SET TimeZone = {}").format(sql.Literal(tz)))
            runs.append(conn.execute(
                "SELECT * FROM ils_redact_stats.circ_by_library_modifier('2023-02-01', "
                "'2023-04-01')").fetchall())
    assert runs[0] and runs[0] == runs[1] == runs[2]


# -- custom reports -----------------------------------------------------------------------

def _with_reports(yaml_reports: str):
    def edit(text: str) -> str:
        assert "  reports: []\n" in text
        return text.replace("  reports: []\n", "  reports:\n" + yaml_reports, 1)
    return edit


def test_custom_report_is_installed_suppressed_and_dropped(eg_db: EgDb, tmp_path: Path) -> None:
    rules = write_rules(tmp_path, eg_db.prefix, _with_reports(
        "    - name: checkins_by_library\n"
        "      description: Loans by where they were checked out and checked in\n"
        "      source: action.circulation\n"
        "      group_by: [circ_lib, checkin_lib]\n"
        "      patron_column: usr\n"
        "      time_column: xact_start\n"))
    res = run_cli("--dsn", eg_db.dsn, "--rules", str(rules), "install")
    assert res.returncode == 0, res.stderr
    login = create_role(eg_db.server, f"{eg_db.prefix}analyst",
                        member_of=(eg_db.role("stats"),))
    publish(eg_db, "checkins_by_library", rules=load_rules(rules))
    entries = _run(eg_db, login, "checkins_by_library").entries
    got = released(entries)
    # brute force, as the owner
    RAW["checkins_by_library"] = [("count", f"""
        SELECT {MONTH.format('c.xact_start')}, coalesce(c.circ_lib::text, '(none)'),
               coalesce(c.checkin_lib::text, '(none)'), c.usr::text
        FROM action.circulation c""")]
    try:
        assert got == check_report(eg_db, login, "checkins_by_library", rules=load_rules(rules))
    finally:
        del RAW["checkins_by_library"]
    assert any(e.suppressed for e in entries) and any(not e.suppressed for e in entries)
    # removed from the rules: the next install drops it
    res = run_cli("--dsn", eg_db.dsn, "--rules", str(write_rules(tmp_path, eg_db.prefix)),
                  "install")
    assert res.returncode == 0, res.stderr
    assert eg_db.scalar("SELECT to_regprocedure("
                        "'ils_redact_stats.checkins_by_library(date, date)') IS NULL")


# -- the command line ---------------------------------------------------------------------

def test_cli_list_and_run(installed, tmp_path: Path) -> None:
    db, login = installed
    dsn = db.dsn_as(login)
    res = run_cli("--dsn", dsn, "--format", "json", "stats", "list")
    assert res.returncode == 0, res.stderr
    assert {r["name"] for r in json.loads(res.stdout)} == set(REPORTS)
    # nothing published yet: the run says so and returns no entries
    res = run_cli("--dsn", dsn, "stats", "run", "circ_by_library_modifier", "--month",
                  "2023-01")
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("\n") == 1 and "stats publish" in res.stderr
    # the administrator publishes (inclusive months), the run covers what was published
    admin = ("--dsn", db.dsn, "--rules", str(write_rules(tmp_path, db.prefix)))
    res = run_cli(*admin, "stats", "publish", "circ_by_library_modifier", "--from", "2023-01",
                  "--to", "2023-02")
    assert res.returncode == 0, res.stderr
    assert "2023-01: published" in res.stdout and "2023-02: published" in res.stdout
    assert "suppressed as complements" in res.stdout and "exact" in res.stdout
    res = run_cli(*admin, "stats", "publish", "circ_by_library_modifier", "--month", "2023-02")
    assert res.returncode == 0 and "already published" in res.stdout, res.stdout
    publish(db, "holds_by_pickup_library")
    publish(db, "circ_by_age_band", dt.date(2024, 1, 1), dt.date(2024, 2, 1))
    res = run_cli("--dsn", dsn, "stats", "run", "circ_by_library_modifier", "--from",
                  "2023-01", "--to", "2023-02")
    assert res.returncode == 0, res.stderr
    assert "covers 2 published months: 2023-01..2023-02 (k = 11)" in res.stderr
    assert "suppressed below k" in res.stderr and "as complements" in res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "period,measure,kind,row_value,col_value,value,suppressed"
    assert {line[:10] for line in lines[1:]} == {"2023-01-01", "2023-02-01"}
    assert any(line.endswith(",,true") for line in lines)
    out = tmp_path / "r.html"
    res = run_cli("--dsn", dsn, "stats", "run", "holds_by_pickup_library", "--format", "html",
                  "-o", str(out))
    assert res.returncode == 0, res.stderr
    page = out.read_text(encoding="utf-8")
    assert "<svg" in page and 'class="sup"' in page and "holds filled" in page
    res = run_cli("--dsn", dsn, "--format", "json", "stats", "run", "circ_by_age_band",
                  "--format", "json", "--month", "2024-01")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["report"]["name"] == "circ_by_age_band" and doc["entries"]
    assert not any(re.match(r"\d{4}-\d\d-\d\d", e["row_value"] or "") for e in doc["entries"])
    # refusals: misaligned period (exit 2 before the database), unknown report, and a
    # login outside the stats role
    res = run_cli("--dsn", dsn, "stats", "run", "circ_by_profile", "--from", "2023-01-15")
    assert res.returncode == 2 and "first day of a month" in res.stderr
    res = run_cli("--dsn", dsn, "stats", "run", "circ_by_profil")
    assert res.returncode == 2 and "did you mean circ_by_profile" in res.stderr
    outsider = create_role(db.server, f"{db.prefix}outsider")
    res = run_cli("--dsn", db.dsn_as(outsider), "stats", "list")
    assert res.returncode == 2 and "stats role" in res.stderr


# -- the suppression itself, on random tables ---------------------------------------------

def test_suppress_page_on_random_tables(installed) -> None:
    db, _ = installed
    rng = random.Random(20240601)
    pages = 0
    with db.connect() as conn:
        for _ in range(150):
            nr, nc = rng.randint(1, 7), rng.choice([1, 1, 2, 3, 5, 8])
            rows, cols, vals, pats = [], [], [], []
            for r in range(nr):
                for c in range(nc):
                    if rng.random() < 0.25:
                        continue  # an empty cell
                    small = rng.random() < 0.35
                    p = rng.randint(1, K - 1) if small else rng.randint(K, 80)
                    rows.append(f"r{r}")
                    cols.append(f"c{c}" if nc > 1 else None)
                    vals.append(p + rng.randint(0, 3 * p))
                    pats.append(p)
            if not vals:
                continue
            out = conn.execute(
                "SELECT kind, row_value, col_value, value, suppressed FROM "
                "ils_redact_stats.suppress_page(%s, '2023-01-01', 'm', %s, %s, %s, %s)",
                (K, rows, cols, vals, pats)).fetchall()
            page = {(k, r, c): v for k, r, c, v, _ in out}
            cells = {(r, c): (v, p) for r, c, v, p in zip(rows, cols, vals, pats, strict=True)}
            for (kind, r, c), v in page.items():
                if kind == "cell":
                    assert cells[(r, c)][0] == v or v is None
                    if cells[(r, c)][1] < K:
                        assert v is None
                else:  # a total: released only with a cell of k patrons in it
                    members = [x for (rr, cc), x in cells.items()
                               if (kind == "total") or (kind == "row_total" and rr == r)
                               or (kind == "col_total" and cc == c)]
                    if v is not None:
                        assert v == sum(x[0] for x in members)
                        assert max(x[1] for x in members) >= K
            assert determined(page) == [], (rows, cols, vals, pats, page)
            pages += 1
    assert pages > 100


def test_k_below_three_is_refused_by_the_database(installed) -> None:
    db, _ = installed
    with db.connect() as conn, pytest.raises(errors.InvalidParameterValue):
        conn.execute("SELECT * FROM ils_redact_stats.suppress_page(2, NULL, 'm', "
                     "ARRAY['a'], ARRAY[NULL::text], ARRAY[5::bigint], ARRAY[5::bigint])")


def test_uninstall_removes_the_statistics_schema(installed) -> None:
    db, _ = installed
    with db.connect(autocommit=False) as conn:
        pg.uninstall(conn)
    assert db.scalar("SELECT to_regnamespace('ils_redact_stats') IS NULL")
    assert db.scalar("SELECT count(*) FROM pg_roles WHERE rolname LIKE %s",
                     (db.prefix + "%",)) == 1  # the analyst login we created
    with psycopg.connect(db.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM pg_proc WHERE proname = 'suppress_page'"
                            ).fetchone()[0] == 0


# -- publication: protection intervals, shared totals, no differencing over time ----------

LEVEL = 6  # ceil(0.5 * k): the default protection level


def _lp_bounds(pages: list[dict[Key, object]], truths: list[dict], target: tuple[int, Key],
               shared: list[dict[Key, str]]) -> tuple[float, float]:
    """The attacker's interval for one suppressed entry, from the released entries of
    ``pages`` (several reports of one month: entries with the same shared name are one
    unknown), their equations and non-negativity: SciPy's linprog."""
    import numpy as np
    from scipy.optimize import linprog

    names: dict[tuple[int, Key], object] = {}
    for i, page in enumerate(pages):
        for key, value in page.items():
            if value is None:
                names[(i, key)] = shared[i].get(key, (i, key))
    unknown = sorted(set(names.values()), key=repr)
    col = {u: j for j, u in enumerate(unknown)}
    a_rows, b = [], []
    for i, page in enumerate(pages):
        for eq in equations(set(page)):
            row = np.zeros(len(unknown))
            rhs = 0.0
            for key, coef in eq.items():
                if (i, key) in names:
                    row[col[names[(i, key)]]] += coef
                elif key in page:
                    rhs -= coef * page[key]
            a_rows.append(row)
            b.append(rhs)
    out = []
    for sign in (1, -1):
        c = np.zeros(len(unknown))
        c[col[names[target]]] = sign
        res = linprog(c, A_eq=np.array(a_rows) if a_rows else None,
                      b_eq=np.array(b) if b else None,
                      bounds=[(0, None)] * len(unknown), method="highs")
        out.append(sign * res.fun if res.status == 0 else -sign * float("inf"))
    return out[0], out[1]


@pytest.mark.parametrize("report", REPORTS)
def test_every_small_cell_keeps_its_protection_interval(installed, report) -> None:
    """For every suppressed entry with fewer than k patrons, the attacker's linear
    programs (released entries, equations, counts >= 0) leave it uncertain by at least
    the protection level either way."""
    db, login = installed
    got = check_report(db, login, report)
    want = truth(db, report)
    checked = 0
    for page, entries in got.items():
        for key, value in entries.items():
            count, patrons = want[page][key]
            if value is None and len(patrons) < K:
                lo, hi = _lp_bounds([entries], [want[page]], (0, key), [{}])
                assert hi >= count + LEVEL - 1e-6, (report, page, key, count, lo, hi)
                assert lo <= max(0, count - LEVEL) + 1e-6, (report, page, key, count, lo, hi)
                checked += 1
    assert checked > 10


def test_the_statistics_role_cannot_read_or_write_the_publication(installed) -> None:
    db, login = installed
    publish(db, "circ_by_profile", dt.date(2023, 1, 1), dt.date(2023, 2, 1))
    with db.connect(login) as conn:
        for table in ("published", "publication"):
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(sql.SQL("SELECT * FROM ils_redact_stats.{}").format(
                    sql.Identifier(table)))
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(sql.SQL("DELETE FROM ils_redact_stats.{}").format(
                    sql.Identifier(table)))
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("INSERT INTO ils_redact_stats.publication (report, period, k, "
                         "protection, cost, method, released, primary_suppressed, "
                         "complement_suppressed, shared_suppressed) VALUES "
                         "('circ_by_profile', '2023-02-01', 3, 1, 'x', 'x', 0, 0, 0, 0)")
        months = conn.execute("SELECT report, period, k FROM "
                              "ils_redact_stats.publications()").fetchall()
    assert ("circ_by_profile", dt.date(2023, 1, 1), K) in months
    # suppressed values are not stored at all
    assert db.scalar("SELECT count(*) FROM ils_redact_stats.published "
                     "WHERE suppressed AND value IS NOT NULL") == 0


def test_shared_monthly_totals_agree_and_hold_jointly(installed) -> None:
    """Three reports show the month's circulations as their grand total: each month it
    is released by all with one value or suppressed by all, and the attacker's linear
    program over the three pages together (the total one unknown) still leaves every
    small cell its interval."""
    db, login = installed
    circ = ["circ_by_library_modifier", "circ_by_profile", "circ_by_age_band"]
    lo, hi = dt.date(2023, 1, 1), dt.date(2023, 7, 1)
    got = {r: check_report(db, login, r, lo, hi) for r in circ}
    want = {r: truth(db, r, lo, hi) for r in circ}
    total: Key = ("total", None, None)
    for month in month_range(lo, hi - dt.timedelta(days=1)):
        pages = [got[r][(month, "circulations")] for r in circ]
        truths = [want[r][(month, "circulations")] for r in circ]
        values = {p[total] for p in pages}
        assert len(values) == 1, (month, values)
        shared = [{total: "month total"}] * 3
        for i, (page, true) in enumerate(zip(pages, truths, strict=True)):
            for key, value in page.items():
                count, patrons = true[key]
                if value is None and len(patrons) < K:
                    low, high = _lp_bounds(pages, truths, (i, key), shared)
                    assert high >= count + LEVEL - 1e-6, (month, circ[i], key, low, high)
                    assert low <= max(0, count - LEVEL) + 1e-6, (month, circ[i], key)


def test_repeated_runs_leak_no_difference(installed, tmp_path: Path) -> None:
    """Every run over every sub-period of a half year, before and after the month's
    records change (loans deleted, as when patrons are deleted) and after k changes,
    returns one value per entry: the published one."""
    db, login = installed
    report = "circ_by_library_modifier"
    lo, hi = dt.date(2023, 1, 1), dt.date(2023, 7, 1)
    publish(db, report, lo, hi)
    months = month_range(lo, hi - dt.timedelta(days=1))

    def every_run() -> dict:
        seen: dict = {}
        for a in range(len(months)):
            for b in range(a + 1, len(months) + 1):
                end = months[b] if b < len(months) else hi
                for e in _run(db, login, report, months[a], end).entries:
                    key = (e.period, e.measure, e.kind, e.row_value, e.col_value)
                    seen.setdefault(key, set()).add(e.value)
        return seen

    before = every_run()
    assert all(len(v) == 1 for v in before.values())
    # records change after publication: a late deletion of March loans
    with db.connect() as conn:
        gone = conn.execute("DELETE FROM action.circulation WHERE id IN (SELECT id FROM "
                            "action.circulation WHERE xact_start >= '2023-03-01' AND "
                            "xact_start < '2023-04-01' ORDER BY id LIMIT 40)").rowcount
    assert gone == 40
    # and k changes
    rules = write_rules(tmp_path, db.prefix, lambda t: t.replace("  k: 11", "  k: 15", 1))
    res = run_cli("--dsn", db.dsn, "--rules", str(rules), "install")
    assert res.returncode == 0, res.stderr
    again = publish(db, report, lo, hi, load_rules(rules))
    assert {r.status for r in again} == {"already published"}
    after = every_run()
    assert after == before
    # a new month is published with the new k, and says so
    res = publish(db, report, dt.date(2023, 7, 1), dt.date(2023, 8, 1), load_rules(rules))
    assert res[0].status == "published"
    with db.connect(login) as conn:
        ks = dict(conn.execute("SELECT period, k FROM ils_redact_stats.publications() "
                               "WHERE report = %s", (report,)).fetchall())
    assert ks[dt.date(2023, 7, 1)] == 15 and ks[dt.date(2023, 3, 1)] == K
