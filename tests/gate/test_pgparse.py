"""The cross-check with the server's own parser (libpg_query via pglast)."""

from __future__ import annotations

import pytest
import sqlglot
from sqlglot import exp

from ils_redact.gate import pgparse
from ils_redact.gate.functions import ALLOWED_CLASSES
from support.gate import evergreen_catalog, gate_for


def facts(sql: str) -> pgparse.PgFacts:
    f, err = pgparse.pg_facts(sql)
    assert err is None and f is not None
    return f


def test_facts_of_a_query() -> None:
    f = facts('WITH x AS (SELECT 1) SELECT U&"\\0069d", u.*, t.a, lower(b) '
              'FROM actor.usr u, x JOIN public.t ON true')
    assert f.statements == ["SelectStmt"]
    assert f.relations == {(None, "actor", "usr"), (None, "public", "t")}
    assert f.cte_names == {"x"} and f.cte_refs == {"x"}
    assert f.columns == {"id", "a", "b"}
    assert ("lower",) in f.functions


@pytest.mark.parametrize("sql, tables", [
    # a non-recursive WITH item sees only the items before it: here b is a table
    ("WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a", {"b"}),
    ("WITH RECURSIVE a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a", set()),
    ("WITH b AS (SELECT * FROM b) SELECT * FROM b", {"b"}),  # self-reference: the table
    ("SELECT * FROM (WITH b AS (SELECT 1) SELECT * FROM b) s, b", {"b"}),
    ("WITH b AS (SELECT 1) SELECT * FROM (SELECT * FROM b) s", set()),
])
def test_cte_visibility_follows_postgres(sql: str, tables: set[str]) -> None:
    assert {name for _, _, name in facts(sql).relations} == tables


@pytest.mark.parametrize("sql, code", [
    ("SELECT 1; SELECT 2", "R-MULTI-STATEMENT"),
    ("LISTEN x", "R-COMMAND"),
    ("EXPLAIN SELECT 1", "R-COMMAND"),
    ("DELETE FROM t", "R-DML"),
    ("TRUNCATE t", "R-DML"),
    ("CREATE TABLE t (a int)", "R-NOT-SELECT"),
])
def test_statement_kinds(sql: str, code: str) -> None:
    head, _ = pgparse.check_original(facts(sql))
    assert [f.code for f in head] == [code]


def test_hidden_statements() -> None:
    _, inner = pgparse.check_original(facts(
        "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d FOR UPDATE"))
    assert {f.code for f in inner} == {"R-DML", "R-LOCKING"}
    _, inner = pgparse.check_original(facts("SELECT 1 INTO t"))
    assert {f.code for f in inner} == {"R-SELECT-INTO"}


def test_syntax_error_has_a_position() -> None:
    f, err = pgparse.pg_facts("SELECT 1 FROM\nWHERE")
    assert f is None and err is not None and err.code == "R-PARSE" and err.line == 2


def test_compare_finds_a_differential() -> None:
    cat = evergreen_catalog()
    f = facts('SELECT U&"\\0069d" FROM actor.usr')
    out = list(pgparse.compare(f, {"actor.usr"}, {"u", "\\0069d"}, cat, ("public",)))
    assert [x.code for x in out] == ["R-PARSER-DIFFERENTIAL"]
    assert not list(pgparse.compare(f, {"actor.usr"}, {"id"}, cat, ("public",)))


def test_compare_resolves_through_the_search_path() -> None:
    cat = evergreen_catalog()
    f = facts("WITH usr AS (SELECT 1 AS id) SELECT c.id FROM card c, usr")
    assert not list(pgparse.compare(f, {"actor.card"}, {"id"}, cat, ("actor",)))
    out = list(pgparse.compare(f, {"actor.usr"}, {"id"}, cat, ("actor",)))
    assert out and out[0].code == "R-PARSER-DIFFERENTIAL"


@pytest.mark.parametrize("sql, code", [
    ("SELECT id FROM usr", "R-PARSER-DIFFERENTIAL"),  # unqualified output
    ("SELECT id FROM actor.card", "R-PARSER-DIFFERENTIAL"),  # not what was checked
    ("SELECT pg_sleep(1) FROM actor.usr", "R-FUNCTION"),
    ("SELECT 'x'::regclass FROM actor.usr", "R-CAST"),
    ("SELECT 1 FROM actor.usr; SELECT 2", "R-PARSER-DIFFERENTIAL"),
    ("SELECT 1 FROM actor.usr u WHERE u.id = ANY ((SELECT ils_redact.scope_patron_ids()))",
     "R-SCOPE"),
])
def test_verify_output(sql: str, code: str) -> None:
    out = list(pgparse.verify_output(sql, {"actor.usr"}, frozenset()))
    assert code in {f.code for f in out}


def test_verify_output_refuses_columns_the_gate_did_not_check() -> None:
    """A word the generator writes out that the checked tree holds as no column (a
    keyword's argument, say) but the server reads as one, and a schema's operator."""
    sql = 'SELECT "u"."family_name", passwd FROM "actor"."usr" AS "u"'
    out = list(pgparse.verify_output(sql, {"actor.usr"}, frozenset(), {"family_name"}))
    assert [(f.code, f.object) for f in out] == [("R-PARSER-DIFFERENTIAL", "passwd")]
    assert not list(pgparse.verify_output(sql, {"actor.usr"}, frozenset(),
                                          {"family_name", "passwd"}))
    op = 'SELECT 1 FROM "actor"."usr" AS "u" WHERE "u"."id" OPERATOR(public.=) 1'
    assert {f.code for f in pgparse.verify_output(op, {"actor.usr"}, frozenset())} == \
        {"R-FUNCTION"}


def test_verify_output_accepts_the_scope_functions() -> None:
    sql = ('SELECT 1 FROM "actor"."usr" AS "u" WHERE "u"."id" = '
           'ANY(CAST((SELECT "ils_redact"."request_patron_ids"(3)) AS BIGINT[]))')
    assert not list(pgparse.verify_output(sql, {"actor.usr"}, frozenset()))


# Functions as a user writes them; each is allowed by the sqlglot-side allow-list, and the
# SQL sqlglot regenerates must only call functions on the PostgreSQL-side list.
ALLOWED_SAMPLES = [
    "lower(a)", "upper(a)", "initcap(a)", "trim(a)", "ltrim(a)", "rtrim(a)",
    "trim(both 'x' from a)", "coalesce(a, b)", "nullif(a, b)", "greatest(a, b)",
    "least(a, b)", "concat(a, b)", "concat_ws(',', a)", "substring(a, 1, 2)",
    "substr(a, 1, 2)", "length(a)", "char_length(a)", "octet_length(a)",
    "position('a' in b)", "strpos(a, 'b')", "replace(a, 'b', 'c')", "split_part(a, ',', 1)",
    "left(a, 2)", "right(a, 2)", "lpad(a, 2)", "rpad(a, 2, 'x')", "reverse(a)",
    "repeat(a, 2)", "translate(a, 'b', 'c')", "regexp_replace(a, 'b', 'c')",
    "regexp_match(a, 'b')", "md5(a)", "to_char(a, 'YYYY')", "to_date(a, 'YYYY-MM-DD')",
    "to_timestamp(a)", "to_number(a, '9')", "format('%s', a)", "date_trunc('month', a)",
    "extract(year from a)", "date_part('year', a)", "age(a)", "now()", "current_date",
    "localtimestamp", "clock_timestamp()", "make_date(1, 2, 3)", "justify_days(a)",
    "a::date", "date(a)", "round(a, 2)", "abs(a)", "ceil(a)", "floor(a)", "trunc(a)",
    "mod(a, 2)", "power(a, 2)", "sqrt(a)", "sign(a)", "ln(a)", "log(a)", "exp(a)",
    "random()", "div(a, 2)", "width_bucket(a, 1, 2, 3)", "count(*)", "count(DISTINCT a)",
    "min(a)", "max(a)", "sum(a)", "avg(a)", "stddev(a)", "variance(a)", "var_pop(a)",
    "string_agg(a, ',')", "array_agg(a)", "bool_and(a)", "bool_or(a)", "every(a)",
    "percentile_cont(0.5) within group (order by a)", "json_agg(a)", "jsonb_agg(a)",
    "row_number() over ()", "rank() over ()", "lag(a) over ()", "ntile(2) over ()",
    "case when a then 1 else 2 end", "a ~ 'x'", "array[1, 2]", "array_length(a, 1)",
    "unnest(a)", "cardinality(a)", "array_to_string(a, ',')", "string_to_array(a, ',')",
    "generate_series(1, 2)", "array_position(a, 1)", "array_remove(a, 1)",
    "array_append(a, 1)", "array_cat(a, b)", "a @> b", "a && b", "a @@ b",
    "to_tsvector(a)", "plainto_tsquery(a)", "current_user", "chr(65)", "ascii(a)",
    "starts_with(a, 'b')", "upper(a) collate \"C\"", "exists(select 1)", "a->>'b'",
    "a #>> '{a}'", "encode(a, 'hex')", "a = ALL(b)", "to_json(a)",
    "json_build_object('a', a)", "make_interval(days => 1)", "a similar to 'x'",
    "a at time zone 'UTC'", "a is distinct from b", "pg_catalog.lower(a)",
]


@pytest.mark.parametrize("expr", ALLOWED_SAMPLES)
def test_regenerated_functions_are_on_the_postgres_list(expr: str) -> None:
    from ils_redact.gate.functions import is_allowed

    tree = sqlglot.parse_one(f"SELECT {expr} FROM t", read="postgres")  # noqa: S608
    for fn in tree.find_all(exp.Func):
        assert isinstance(fn, (exp.Cast,)) or is_allowed(fn, "postgres", frozenset()), fn
    out = tree.sql("postgres")
    f = facts(out)
    for name in f.functions:
        assert name[-1] in pgparse.PG_FUNCTIONS and len(name) <= 2, (expr, out, name)


def test_allow_list_classes_are_functions() -> None:
    for cls in ALLOWED_CLASSES:
        assert issubclass(cls, exp.Func), cls


def test_gate_refuses_what_only_the_server_can_read() -> None:
    result = gate_for("disclosure").check(
        "SELECT U&\"p!0061sswd\" UESCAPE '!' FROM actor.usr")
    assert {f.code for f in result.findings} == {"R-PARSER-DIFFERENTIAL"}


def test_mysql_dialect_skips_the_postgres_cross_check() -> None:
    assert pgparse.PG_FUNCTIONS  # the module is importable without a server
