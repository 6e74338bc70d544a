"""Every allowed corpus case, rewritten by the gate, runs on a real PostgreSQL.

The tables each case reads are created empty from the reference catalog (columns and
types as in Evergreen), and the scope functions are stubs returning ``bigint[]``: this
checks that the regenerated SQL parses, type-checks (``integer = ANY (bigint[])``) and
plans on the server, not what it returns.  Running the cases as the restricted role on
a full install is the job of the end-to-end suite.
"""

from __future__ import annotations

import re

import psycopg
import pytest
from psycopg import sql

from support.gate import ALL, case_gate, gate_for, stats_catalog

ALLOWED = [(n, c) for n, c in ALL if c["expect"] == "allow"]


@pytest.fixture(scope="module")
def gate_db(server, run_prefix):  # type: ignore[no-untyped-def]
    """A database with empty copies of every relation an allowed case reads."""
    catalog = stats_catalog()
    needed: set[str] = set()
    for _, case in ALLOWED:
        result = case_gate(case).check(case["sql"])
        needed |= result.relations
    name = f"{run_prefix}gate"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = server.dsn_for(name)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for schema in sorted({r.split(".", 1)[0] for r in needed} | {"ils_redact"}):
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}")
                             .format(sql.Identifier(schema)))
            for rel in sorted(needed):
                r = catalog.relations[rel]
                cols = sql.SQL(", ").join(
                    sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.type))
                    for c in r.columns)
                conn.execute(sql.SQL("CREATE TABLE {}.{} ({})").format(
                    sql.Identifier(r.schema), sql.Identifier(r.name), cols))
            conn.execute("CREATE FUNCTION ils_redact.scope_patron_ids() RETURNS bigint[] "
                         "LANGUAGE sql STABLE AS 'SELECT ARRAY[1, 2]::bigint[]'")
            conn.execute("CREATE FUNCTION ils_redact.request_patron_ids(bigint) RETURNS "
                         "bigint[] LANGUAGE sql STABLE AS 'SELECT ARRAY[$1]::bigint[]'")
        yield dsn
    finally:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                         .format(sql.Identifier(name)))


@pytest.mark.parametrize("case", [c for _, c in ALLOWED], ids=[n for n, _ in ALLOWED])
def test_allowed_rewrite_runs_on_postgres(gate_db: str, case: dict) -> None:  # type: ignore[type-arg]
    result = case_gate(case).check(case["sql"])
    assert result.ok
    with psycopg.connect(gate_db) as conn:
        conn.execute("SET search_path = pg_catalog")  # the output needs no search path
        conn.execute(result.sql.encode()).fetchall()


def test_scope_predicate_is_an_initplan(gate_db: str) -> None:
    result = gate_for("disclosure", 7).check("SELECT family_name FROM actor.usr")
    with psycopg.connect(gate_db) as conn:
        plan = "\n".join(r[0] for r in conn.execute(b"EXPLAIN " + result.sql.encode()))
    assert "InitPlan" in plan  # the patron array is computed once per query
    assert "SubPlan" not in plan  # not once per row


def test_scope_predicate_drives_an_index(gate_db: str) -> None:
    result = gate_for("disclosure", 7).check("SELECT barcode FROM actor.card")
    with psycopg.connect(gate_db) as conn:
        conn.execute("CREATE INDEX IF NOT EXISTS card_usr ON actor.card (usr)")
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.execute(b"EXPLAIN " + result.sql.encode()))
        conn.rollback()
    # PostgreSQL 17 and later print the InitPlan's output as (InitPlan 1).col1, not $0
    assert re.search(r"Index Cond: \(usr = ANY \((\$0|\(InitPlan 1\)\.col1)\)\)", plan), plan
