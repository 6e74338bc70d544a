"""The whole gate corpus against a real, installed Evergreen database: defence in depth,
measured.

Setting: a full install; a login ``reader`` in the disclosure role (role access) with one
emergency request approved for it by another login, naming patrons 11, 12 and 13; a
login ``statsman`` in the statistics role; the statistics relations of the ``stats``
cases (``ils_redact_stats.*``) as tables the statistics role may read.

Refused cases: the ORIGINAL text runs directly as the restricted login (``reader`` for
the disclosure profile, ``statsman`` for ``stats`` and ``report``), the gate switched
off, in a fresh autocommit session with the case's search_path, by the simple query
protocol (as psql sends it: several statements run, COPY TO STDOUT is read).  The
outcome is one of

``denied``
    the server refuses with insufficient_privilege (SQLSTATE 42501);
``error``
    the server refuses with another SQLSTATE;
``allowed``
    it runs.  Then it must return nothing confidential, checked as non-interference:
    the same text, as the same login, in a copy of the database where everything the
    login may not see is different (every row of every table that is not classified
    ``other`` deleted; every patron outside the request deleted from the identity
    tables; every non-identity column of the scoped patrons changed; then VACUUM
    ANALYZE so statistics follow the data) must return exactly the same result sets.
    A result that changes depends on data the login may not see: a leak.

and must match the case's ``db:`` value (default ``denied``).  The database alone leaks
through EXPLAIN (docs/threat-model.md, fact 7: estimates and "Rows Removed by Filter" count rows
that row-level security hides); those cases are listed in :data:`KNOWN_DB_LEAKS` with
the reason, and the test fails if any other case leaks (or if one of them stops).

Allowed cases: the gate (built on the live catalog) must allow them here too; the SQL
it regenerates runs as the restricted login in the ``query`` command's own READ ONLY
transaction, and its rows must equal, as a multiset, what the ILS owner gets from the
same SQL with the scope predicate's patron list written out.  ``report`` is the lint
mode for saved reports over base tables; no restricted role may read base tables, so
there the database refuses (measured) and only the owner's run shows the SQL is valid.

``test_defence_in_depth_summary`` prints the numbers (run with ``-s`` to see them).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql

from ils_redact.backends import postgresql as pg
from ils_redact.catalog import Catalog
from ils_redact.disclosure import requests as req_mod
from ils_redact.gate import Gate
from ils_redact.gate.profiles import Classifier
from ils_redact.query import run_read_only
from ils_redact.stats import all_reports
from support import EgDb, create_role
from support.gate import ALL, STATS_VIEWS

PATRONS = (11, 12, 13)
REFUSED = [(n, c) for n, c in ALL if c["expect"] == "refuse"]
ALLOWED = [(n, c) for n, c in ALL if c["expect"] == "allow"]

#: refused cases the database alone does NOT stop from disclosing something: the gate
#: is the only layer for them (and docs/threat-model.md says so)
KNOWN_DB_LEAKS = {
    "statements:explain": "fact 7: EXPLAIN estimates count the rows RLS hides",
    "statements:explain-analyze": "fact 7: 'Rows Removed by Filter' counts hidden rows",
}

#: the statistics relations the ``stats`` cases read, as suppressed aggregates
STATS_SQL = {
    "circ_by_month": "SELECT date_trunc('month', xact_start)::date AS month, circ_lib, "
                     "count(*) AS circulations, count(DISTINCT usr) AS patrons "
                     "FROM action.circulation GROUP BY 1, 2 HAVING count(DISTINCT usr) >= 11",
    "holds_by_branch": "SELECT date_trunc('month', request_time)::date AS month, pickup_lib, "
                       "count(*) AS holds, count(DISTINCT usr) AS patrons "
                       "FROM action.hold_request GROUP BY 1, 2 "
                       "HAVING count(DISTINCT usr) >= 11",
    "patrons_by_profile": "SELECT home_ou, profile, count(*) AS patrons FROM actor.usr "
                          "GROUP BY 1, 2 HAVING count(*) >= 11",
}

_TIMING = re.compile(r"(actual time=[\d.]+\.\.[\d.]+|(Planning|Execution) Time: [\d.]+ ms)")


@dataclass
class World:
    db: EgDb
    copy_dsn_for: Any  # (user) -> DSN of the perturbed copy
    reader: str
    statsman: str
    request_id: int
    catalog: Catalog
    perturbed: dict[str, int] = field(default_factory=dict)

    def login(self, profile: str) -> str:
        return self.reader if profile == "disclosure" else self.statsman


def _perturbation(rel, col) -> sql.Composable | None:  # type: ignore[no-untyped-def]
    """A value of ``col`` that differs from the current one, or None to leave it."""
    c = sql.Identifier(col.name)
    t = col.type.lower()
    if t.startswith(("text", "character varying", "varchar", "citext", "name", "character")):
        m = re.search(r"\((\d+)\)", t)
        n = int(m.group(1)) if m else 32
        return sql.SQL("left(md5(coalesce({}::text, '') || 'x'), {})").format(
            c, sql.Literal(n))
    if t in ("integer", "bigint", "smallint") or t.startswith("numeric"):
        return sql.SQL("coalesce({}, 0) + 1").format(c)
    if t == "boolean":
        return sql.SQL("NOT coalesce({}, false)").format(c)
    if t == "date":
        return sql.SQL("coalesce({}, DATE '2000-01-01') + 1").format(c)
    if t.startswith("timestamp"):
        return sql.SQL("coalesce({}, TIMESTAMP '2000-01-01') + interval '1 day'").format(c)
    if col.nullable:
        return sql.SQL("NULL")
    return None


def perturb(dsn: str, rules, catalog: Catalog) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Change everything the restricted logins may not see (see the module docstring)."""
    classifier = Classifier(rules, catalog)
    identity = {catalog.qualify(t.relation): t for t in rules.identity}
    counts = Counter()
    with psycopg.connect(dsn) as conn:
        conn.execute("SET session_replication_role = replica")  # no FK triggers, no rules
        for rel in sorted(catalog.relations.values(), key=lambda r: r.qualified):
            if rel.kind not in ("table", "partitioned") or rel.schema.startswith("ils_redact"):
                continue
            name = sql.Identifier(rel.schema, rel.name)
            ident = identity.get(rel.qualified)
            if ident is not None:
                key = sql.Identifier(ident.patron_key)
                cur = conn.execute(sql.SQL("DELETE FROM {} WHERE NOT ({} = ANY(%s))")
                                   .format(name, key), (list(PATRONS),))
                counts["identity rows deleted"] += cur.rowcount
                for col in rel.columns:
                    if col.name in ident.columns:
                        continue
                    expr = _perturbation(rel, col)
                    if expr is None:
                        counts["columns left"] += 1
                        continue
                    try:
                        with conn.transaction():
                            conn.execute(sql.SQL("UPDATE {} SET {} = {}").format(
                                name, sql.Identifier(col.name), expr))
                        counts["scoped columns changed"] += 1
                    except psycopg.Error:
                        counts["columns left"] += 1
                continue
            if classifier.classify(rel.qualified).cls == "other":
                continue
            cur = conn.execute(sql.SQL("DELETE FROM ONLY {}").format(name))
            counts["tables emptied"] += 1
            counts["rows deleted"] += cur.rowcount
        conn.commit()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return dict(counts)


@pytest.fixture(scope="module")
def world(server, eg_template, eg_roles, run_prefix):  # type: ignore[no-untyped-def]
    name = f"{run_prefix}gcorpus"
    copy = f"{run_prefix}gcorpus_copy"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(eg_template)))
    db = EgDb(server=server, name=name, owner=eg_roles[0], app=eg_roles[1],
              prefix=f"{run_prefix}gc_")
    try:
        rules = db.rules
        with db.connect(autocommit=False) as conn:
            pg.install(conn, rules, reports=all_reports)
        clerk = create_role(server, f"{db.prefix}clerk", member_of=(db.role("admin"),))
        director = create_role(server, f"{db.prefix}director", member_of=(db.role("admin"),))
        reader = create_role(server, f"{db.prefix}reader", member_of=(db.role("disclosure"),))
        statsman = create_role(server, f"{db.prefix}statsman", member_of=(db.role("stats"),))
        new = req_mod.NewRequest(
            basis="emergency", agency="Metro Police", officer_name="Jane Roe",
            officer_badge="4471", case_number="26-1182",
            emergency_reason="credible threat of violence", patrons=list(PATRONS),
            expires_at=req_mod.default_expiry(rules, "emergency"), grantee=reader)
        new.columns = req_mod.resolve_columns(rules, [], "emergency")
        with db.connect(clerk, autocommit=False) as conn:
            found, unknown = req_mod.resolve_patrons(conn, new.patrons, [])
            assert not unknown
            rid = req_mod.create(conn, new, found)
            conn.commit()
        with db.connect(director, autocommit=False) as conn:
            req_mod.approve(conn, rid)
            conn.commit()
        with db.connect() as conn:
            # the layer (0003) owns the schema and installs report functions, not
            # relations; the corpus's stats cases read these fixed aggregates instead
            conn.execute("CREATE SCHEMA IF NOT EXISTS ils_redact_stats")
            for view, query in STATS_SQL.items():
                conn.execute(sql.SQL("CREATE TABLE ils_redact_stats.{} AS {}").format(
                    sql.Identifier(view), sql.SQL(query)))
                conn.execute(sql.SQL("GRANT SELECT ON ils_redact_stats.{} TO {}, {}").format(
                    sql.Identifier(view), sql.Identifier(db.role("stats")),
                    sql.Identifier(db.owner)))
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA ils_redact_stats TO {}, {}").format(
                sql.Identifier(db.role("stats")), sql.Identifier(db.owner)))
            catalog = pg.read_catalog(conn)
        for view, cols in STATS_VIEWS.items():  # the shape the offline corpus assumes
            assert catalog.relations[f"ils_redact_stats.{view}"].column_names == \
                tuple(c for c, _ in cols)
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(copy), sql.Identifier(name)))
        counts = perturb(server.dsn_for(copy), rules, catalog)
        yield World(db=db, copy_dsn_for=lambda user: server.dsn_for(copy, user=user),
                    reader=reader, statsman=statsman, request_id=rid, catalog=catalog,
                    perturbed=counts)
    finally:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            for d in (copy, name):
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                             .format(sql.Identifier(d)))
            for (role,) in conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s "
                                        "ORDER BY rolname DESC", (db.prefix + "%",)).fetchall():
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


# -- running SQL as a person with psql would --------------------------------------------
@dataclass(frozen=True)
class Outcome:
    kind: str  # denied | error | allowed
    sqlstate: str | None = None
    results: tuple = ()


def _norm(value: Any) -> Any:
    """Make two runs comparable: the clock (``now()``, ``clock_timestamp()``) and EXPLAIN
    ANALYZE timings differ between any two runs; nothing else may."""
    if isinstance(value, dt.datetime):
        now = dt.datetime.now(value.tzinfo)
        return "<now>" if abs(now - value) < dt.timedelta(hours=1) else value
    if isinstance(value, str):
        return _TIMING.sub("", value)
    if isinstance(value, float):
        return round(value, 9)
    if isinstance(value, Decimal):
        return value.normalize()
    return value


def _result(rows: list) -> tuple:
    return tuple(sorted((tuple(_norm(v) for v in r) for r in rows), key=repr))


def run_direct(dsn: str, text: str, search_path: list[str] | None) -> Outcome:
    """The text as psql would send it: one simple-protocol round trip, autocommit."""
    options = "-c statement_timeout=20000"
    if search_path:
        options += " -c search_path=" + "\\,".join(search_path)
    try:
        with psycopg.connect(dsn, autocommit=True, options=options) as conn:
            cur = psycopg.ClientCursor(conn)
            results = []
            if text.lstrip().upper().startswith("COPY"):
                with cur.copy(text) as copy:
                    data = b"".join(bytes(b) for b in copy)
                results.append(((hashlib.sha256(data).hexdigest(),),))
            else:
                cur.execute(text)
                while True:
                    if cur.description is not None:
                        results.append(_result(cur.fetchall()))
                    if not cur.nextset():
                        break
            return Outcome("allowed", None, tuple(results))
    except errors.InsufficientPrivilege as exc:
        return Outcome("denied", exc.sqlstate)
    except psycopg.Error as exc:
        if exc.sqlstate is None:
            raise
        return Outcome("error", exc.sqlstate)


@dataclass(frozen=True)
class RefusedMeasure:
    outcome: Outcome
    leaks: bool
    copy_outcome: Outcome | None = None


_MEASURED: dict[str, RefusedMeasure] = {}


def measure_refused(world: World, name: str, case: dict) -> RefusedMeasure:
    if name in _MEASURED:
        return _MEASURED[name]
    login = world.login(case["profile"])
    path = case.get("search_path")
    got = run_direct(world.db.dsn_as(login), case["sql"], path)
    m = RefusedMeasure(got, False)
    if got.kind == "allowed":
        other = run_direct(world.copy_dsn_for(login), case["sql"], path)
        m = RefusedMeasure(got, other != got, other)
    _MEASURED[name] = m
    return m


def live_gate(world: World, case: dict) -> Gate:
    request = world.request_id if case.get("request") else None
    return Gate(world.db.rules, world.catalog, case["profile"], request_id=request,
                search_path=tuple(case.get("search_path") or ("public",)), cache_size=0,
                columns=case.get("columns"))


# -- the cases ---------------------------------------------------------------------------
@pytest.mark.parametrize("case", [c for _, c in REFUSED], ids=[n for n, _ in REFUSED])
def test_refused_case_is_refused_by_the_database_too(world: World, case: dict,
                                                    request: pytest.FixtureRequest) -> None:
    name = request.node.callspec.id
    result = live_gate(world, case).check(case["sql"])
    assert not result.ok, f"the gate allows this on the live catalog:\n{result.sql}"
    m = measure_refused(world, name, case)
    assert m.outcome.kind == case.get("db", "denied"), (
        f"the database says {m.outcome.kind} ({m.outcome.sqlstate}); the case says "
        f"{case.get('db', 'denied')}")
    if name in KNOWN_DB_LEAKS:
        assert m.leaks, f"{name} no longer leaks without the gate: update KNOWN_DB_LEAKS"
    else:
        assert not m.leaks, (
            f"as {world.login(case['profile'])} without the gate, the result depends on "
            f"data the login may not see:\n{m.outcome.results}\nvs\n{m.copy_outcome}")


def _scope_written_out(world: World, text: str) -> str:
    array = "(SELECT CAST(ARRAY[" + ", ".join(map(str, PATRONS)) + "] AS BIGINT[]))"
    calls = [f'(SELECT "ils_redact"."request_patron_ids"({world.request_id}))',
             '(SELECT "ils_redact"."scope_patron_ids"())']
    n = 0
    for call in calls:
        n += text.count(call)
        text = text.replace(call, array)
    assert '"ils_redact".' not in text, text
    return text


def _owner_rows(world: World, text: str) -> tuple:
    with psycopg.connect(world.db.dsn_as(world.db.owner)) as conn:
        cols, rows, _ = run_read_only(conn, text, row_cap=100_000, timeout_ms=20_000)
    return cols, _result(rows)


_ALLOWED_MEASURED: Counter = Counter()


@pytest.mark.parametrize("case", [c for _, c in ALLOWED], ids=[n for n, _ in ALLOWED])
def test_allowed_case_returns_what_the_owner_sees_for_the_scoped_patrons(
        world: World, case: dict) -> None:
    result = live_gate(world, case).check(case["sql"])
    assert result.ok, "\n".join(str(f) for f in result.findings)
    assert result.sql is not None
    login = world.login(case["profile"])
    owner_sql = _scope_written_out(world, result.sql)
    sampled = "TABLESAMPLE SYSTEM (10)" in owner_sql
    if sampled:  # a random sample: the owner reads every block, the reader a subset
        owner_sql = owner_sql.replace("TABLESAMPLE SYSTEM (10)", "TABLESAMPLE SYSTEM (100)")
    owner_cols, owner = _owner_rows(world, owner_sql)
    with psycopg.connect(world.db.dsn_as(login)) as conn:
        if case["profile"] == "report":
            # lint mode: no restricted role reads base tables; the database refuses
            with pytest.raises(errors.InsufficientPrivilege):
                run_read_only(conn, result.sql, row_cap=1000, timeout_ms=20_000)
            _ALLOWED_MEASURED["report: refused by the database, valid as the owner"] += 1
            return
        cols, rows, _ = run_read_only(conn, result.sql, row_cap=1000, timeout_ms=20_000)
    assert cols == owner_cols
    if sampled:
        assert not Counter(_result(rows)) - Counter(owner)
    else:
        assert _result(rows) == owner
    _ALLOWED_MEASURED[f"{case['profile']}: rows equal the owner's"] += 1
    if rows:
        _ALLOWED_MEASURED[f"{case['profile']}: with rows"] += 1


def test_identity_rows_outside_the_request_are_gone_in_the_copy(world: World) -> None:
    """The copy really is different where it must be (else non-interference is empty)."""
    with psycopg.connect(world.copy_dsn_for(None)) as conn:
        assert {r[0] for r in conn.execute("SELECT id FROM actor.usr")} == set(PATRONS)
        assert conn.execute("SELECT count(*) FROM action.circulation").fetchone()[0] == 0
    with psycopg.connect(world.db.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM action.circulation").fetchone()[0] > 0
    assert world.perturbed["tables emptied"] > 50
    assert world.perturbed["scoped columns changed"] > 20


def test_defence_in_depth_summary(world: World) -> None:
    """Every refused case measured; the numbers a reviewer asks for."""
    by_kind: Counter = Counter()
    states: Counter = Counter()
    leaks = []
    for name, case in REFUSED:
        m = measure_refused(world, name, case)
        by_kind[(case["profile"], m.outcome.kind)] += 1
        if m.outcome.sqlstate:
            states[m.outcome.sqlstate] += 1
        if m.leaks:
            leaks.append(name)
    total = len(REFUSED)
    print(f"\nrefused cases: {total}")
    for (profile, kind), n in sorted(by_kind.items()):
        print(f"  {profile:10} {kind:8} {n}")
    ran = sum(n for (_, k), n in by_kind.items() if k == "allowed")
    print(f"  database alone refuses: {total - ran} "
          f"(42501: {states['42501']}, other SQLSTATEs: {total - ran - states['42501']})")
    print(f"  runs, result independent of hidden data: {ran - len(leaks)}")
    print(f"  runs and leaks without the gate: {len(leaks)} {sorted(leaks)}")
    print(f"  SQLSTATEs: {dict(states.most_common())}")
    print(f"allowed cases: {len(ALLOWED)} {dict(_ALLOWED_MEASURED)}")
    print(f"copy perturbed: {world.perturbed}")
    assert sorted(leaks) == sorted(KNOWN_DB_LEAKS)
    assert sum(by_kind.values()) == total >= 150


def test_non_interference_check_has_teeth(world: World) -> None:
    """The same comparison flags a login that can see hidden data (the ILS's own
    application role, which reads every row): the check can fail."""
    app = world.db.app
    text = "SELECT id, family_name FROM actor.usr WHERE id BETWEEN 10 AND 20"
    a = run_direct(world.db.dsn_as(app), text, None)
    b = run_direct(world.copy_dsn_for(app), text, None)
    assert a.kind == b.kind == "allowed" and a != b
    # and the restricted login gets the same rows from both
    a = run_direct(world.db.dsn_as(world.reader), text, None)
    b = run_direct(world.copy_dsn_for(world.reader), text, None)
    assert a.kind == "allowed" and a == b and len(a.results[0]) == len(PATRONS)
