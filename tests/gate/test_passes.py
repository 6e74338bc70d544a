"""Focused tests of the gate's passes: profiles, classification, scope injection, row
cap, cache, positions.  The YAML corpus covers the threat classes end to end."""

from __future__ import annotations

import dataclasses
import json

import pytest
from pglast.parser import parse_sql_json
from sqlglot import exp, parse_one

from ils_redact.catalog import Column, Relation
from ils_redact.errors import IlsRedactError
from ils_redact.gate import CODES, Gate, build_profile
from ils_redact.gate.findings import dedupe, offset_to_line_col
from ils_redact.gate.profiles import Classifier, patron_identifiers
from ils_redact.gate.rewrite import cap_limit, scope_predicate
from ils_redact.gate.statement import parse_statements
from support.gate import evergreen_catalog, evergreen_rules, gate_for, stats_catalog


def codes(result) -> set[str]:  # type: ignore[no-untyped-def]
    return {f.code for f in result.findings}


# -- profiles --------------------------------------------------------------------------

def test_disclosure_profile_is_the_identity_allow_list(rules, catalog) -> None:
    p = build_profile(rules, catalog, "disclosure", 9)
    assert set(p.permitted) == {"actor.usr", "actor.card", "actor.usr_address"}
    assert p.permitted["actor.card"] == {"id", "usr", "barcode", "active"}
    assert "passwd" not in p.permitted["actor.usr"]
    assert p.scope == {"actor.usr": "id", "actor.card": "usr", "actor.usr_address": "usr"}
    assert p.request_id == 9 and p.row_cap == rules.gate.row_cap


def test_stats_profile_reads_only_its_schema(rules) -> None:
    p = build_profile(rules, stats_catalog(), "stats")
    assert set(p.permitted) == {"ils_redact_stats.circ_by_month",
                                "ils_redact_stats.holds_by_branch",
                                "ils_redact_stats.patrons_by_profile"}


def test_report_profile_excludes_credentials_and_personal(rules, catalog) -> None:
    p = build_profile(rules, catalog, "report")
    assert "actor.passwd" not in p.permitted
    assert "actor.usr_setting" not in p.permitted
    assert "passwd" not in p.permitted["actor.usr"]
    assert "usr" in p.permitted["action.circulation"]
    assert p.aggregate_only


@pytest.mark.parametrize("kwargs", [
    {"name": "everything"},
    {"name": "disclosure", "request_id": 0},
    {"name": "disclosure", "request_id": True},
    {"name": "stats", "request_id": 3},
])
def test_bad_profile_arguments_are_user_errors(rules, catalog, kwargs) -> None:
    with pytest.raises(IlsRedactError):
        build_profile(rules, catalog, **kwargs)


def test_patron_identifiers(rules, catalog) -> None:
    ids = patron_identifiers(rules, catalog)
    assert {"usr", "id"} <= ids["action.circulation"]
    assert "target_copy" not in ids["action.circulation"]
    assert {"family_name", "dob", "id"} <= ids["actor.usr"]
    assert "home_ou" not in ids["actor.usr"]
    assert "creator" not in ids.get("asset.copy", frozenset())  # staff links
    assert "owner" in ids["container.biblio_record_entry_bucket"]


def test_classification_escalates_through_inheritance_and_views(rules, catalog) -> None:
    rels = dict(catalog.relations)
    rels["local.parent"] = Relation("local", "parent", "table",
                                    columns=(Column("id", "int"), Column("usr", "int")))
    rels["local.child_loans"] = Relation("local", "child_loans", "table",
                                         columns=(Column("id", "int"), Column("usr", "int")),
                                         inherits=("local.parent",))
    rels["local.loans_view"] = Relation("local", "loans_view", "view",
                                        columns=(Column("usr", "int"),),
                                        depends_on=("action.circulation",))
    rels["local.patron_view"] = Relation("local", "patron_view", "view",
                                         columns=(Column("family_name", "text"),),
                                         depends_on=("actor.usr",))
    cat = dataclasses.replace(catalog, relations=rels)
    r = dataclasses.replace(rules, confidential={**rules.confidential,
                                                 "local.child_loans": "local loans"},
                            other=(*rules.other, "local.parent", "local.loans_view",
                                   "local.patron_view"))
    cl = Classifier(r, cat)
    assert cl.classify("local.parent").cls == "confidential"
    assert "inheritance" in cl.classify("local.parent").reason
    assert cl.classify("local.loans_view").cls == "confidential"
    assert cl.classify("local.patron_view").cls == "personal"
    assert cl.classify("asset.copy").cls == "other"
    gate = Gate(r, cat, "report")
    assert "R-CONFIDENTIAL-RELATION" not in codes(gate.check(
        "SELECT count(*) FROM local.parent"))
    d = Gate(r, cat, "disclosure")
    assert "R-CONFIDENTIAL-RELATION" in codes(d.check("SELECT usr FROM local.parent"))
    assert "R-NOT-PERMITTED" in codes(d.check("SELECT family_name FROM local.patron_view"))


def test_every_code_has_a_description() -> None:
    for code in CODES:
        assert code.startswith("R-") and CODES[code]


# -- parsing ----------------------------------------------------------------------------

def test_parse_all_statements_not_only_the_first() -> None:
    trees, err = parse_statements("SELECT 1; SELECT 2", "postgres")
    assert err is None and len(trees) == 2
    trees, err = parse_statements("SELECT 1;;", "postgres")
    assert err is None and len(trees) == 1


def test_parse_error_has_a_position() -> None:
    result = gate_for("disclosure").check("SELECT id\nFROM actor.usr WHERE (")
    (f,) = result.findings
    assert f.code == "R-PARSE" and f.line == 2


def test_finding_positions_point_at_the_start_of_the_name() -> None:
    result = gate_for("disclosure").check("SELECT id,\n  passwd FROM actor.usr")
    (f,) = result.findings
    assert (f.code, f.object, f.line, f.col) == ("R-SECRET-COLUMN", "actor.usr.passwd", 2, 3)


def test_offset_to_line_col() -> None:
    assert offset_to_line_col("ab\ncd", 4) == (2, 2)


def test_dedupe_keeps_first() -> None:
    from ils_redact.gate import Finding
    a, b = Finding("R-PARSE", "m", "o", 1, 1), Finding("R-PARSE", "m", "o", 2, 2)
    assert dedupe([a, b]) == (a,)


# -- scope injection --------------------------------------------------------------------

def _any_arguments(sql: str) -> list[dict]:  # type: ignore[type-arg]
    """The right-hand side of every ``= ANY (...)`` in the server's parse tree."""
    out = []

    def walk(x):  # type: ignore[no-untyped-def]
        if isinstance(x, dict):
            if x.get("kind") == "AEXPR_OP_ANY":
                out.append(x["rexpr"])
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
    walk(json.loads(parse_sql_json(sql)))
    return out


def test_scope_predicate_is_an_array_any_over_a_scalar_subquery() -> None:
    sql = scope_predicate("u", "id", 42, "postgres").sql("postgres")
    assert sql == ('"u"."id" = ANY(CAST((SELECT "ils_redact"."request_patron_ids"(42)) '
                   'AS BIGINT[]))')
    (arg,) = _any_arguments(f"SELECT 1 FROM t AS u WHERE {sql}")  # noqa: S608 - test text
    sub = arg["TypeCast"]["arg"]["SubLink"]
    assert sub["subLinkType"] == "EXPR_SUBLINK"  # evaluated once: an InitPlan


def test_any_of_a_parenthesised_select_is_a_row_subquery_in_postgres() -> None:
    """Why the predicate carries a CAST: the obvious form means something else."""
    tree = json.loads(parse_sql_json("SELECT 1 WHERE 1 = ANY ((SELECT f()))"))
    where = tree["stmts"][0]["stmt"]["SelectStmt"]["whereClause"]
    assert where["SubLink"]["subLinkType"] == "ANY_SUBLINK"


def test_without_request_the_callers_scope_is_used() -> None:
    sql = scope_predicate("c", "usr", None, "postgres").sql("postgres")
    assert '"ils_redact"."scope_patron_ids"()' in sql


def test_hostile_alias_is_quoted_not_formatted() -> None:
    result = gate_for("disclosure").check(
        'SELECT "x"" OR 1=1 --".barcode FROM actor.card AS "x"" OR 1=1 --"')
    assert result.ok, result.findings
    assert '"x"" OR 1=1 --"."usr" = ANY(' in result.sql


@pytest.mark.parametrize("sql, expected", [
    ("SELECT family_name FROM actor.usr", 1),
    ("SELECT u.family_name FROM actor.usr u JOIN actor.card c ON c.usr = u.id", 2),
    ("SELECT a.family_name FROM actor.usr a JOIN actor.usr b ON a.id = b.id", 2),
    ("WITH x AS (SELECT id FROM actor.usr) SELECT c.barcode FROM x JOIN actor.card c "
     "ON c.usr = x.id", 2),
    ("SELECT family_name FROM actor.usr WHERE id IN (SELECT usr FROM actor.card)", 2),
    ("SELECT u.family_name, a.city FROM actor.usr u, LATERAL (SELECT city FROM "
     "actor.usr_address WHERE usr = u.id) a", 2),
    ("SELECT usr FROM actor.card UNION ALL SELECT usr FROM actor.usr_address "
     "UNION ALL SELECT id FROM actor.usr", 3),
    ("SELECT (SELECT count(*) FROM actor.card c WHERE c.usr = u.id) FROM actor.usr u", 2),
    ("SELECT 1 FROM actor.usr u WHERE EXISTS (SELECT 1 FROM actor.card c WHERE "
     "c.usr = u.id)", 2),
])
def test_every_identity_reference_is_scoped(sql: str, expected: int) -> None:
    result = gate_for("disclosure", 5).check(sql)
    assert result.ok, result.findings
    assert result.sql.count('"ils_redact"."request_patron_ids"(5)') == expected
    assert len(_any_arguments(result.sql)) == expected


def test_left_join_scopes_the_nullable_side_in_on() -> None:
    result = gate_for("disclosure").check(
        "SELECT u.family_name, c.barcode FROM actor.usr u LEFT JOIN actor.card c "
        "ON c.id = u.card")
    on = parse_one(result.sql, read="postgres").args["joins"][0].args["on"]
    assert "scope_patron_ids" in on.sql()


@pytest.mark.parametrize("join", ["RIGHT", "FULL"])
def test_nullable_side_of_right_and_full_joins_is_filtered_first(join: str) -> None:
    result = gate_for("disclosure").check(
        f"SELECT u.family_name, c.barcode FROM actor.usr u {join} JOIN actor.card c "  # noqa: S608
        f"ON c.id = u.card")
    assert result.ok, result.findings
    tree = parse_one(result.sql, read="postgres")
    derived = tree.args["from_"].this
    assert isinstance(derived, exp.Subquery) and derived.alias == "u"
    assert "scope_patron_ids" in derived.sql()


def test_require_request() -> None:
    gate = Gate(evergreen_rules(), evergreen_catalog(), "disclosure", require_request=True)
    assert codes(gate.check("SELECT family_name FROM actor.usr")) == {"R-SCOPE"}
    assert gate.check("SELECT 1").ok


def test_comments_never_reach_the_output() -> None:
    result = gate_for("disclosure").check(
        "SELECT /* a */ family_name -- b\nFROM actor.usr /* c */ WHERE id > 0 -- d")
    assert result.ok and "/*" not in result.sql and "--" not in result.sql


def test_every_table_is_schema_qualified() -> None:
    result = gate_for("disclosure", search_path=("actor", "public")).check(
        "SELECT u.family_name, c.barcode FROM usr u JOIN card c ON c.usr = u.id")
    assert '"actor"."usr"' in result.sql and '"actor"."card"' in result.sql


# -- row cap ----------------------------------------------------------------------------

@pytest.mark.parametrize("sql, limit", [
    ("SELECT 1", "LIMIT 10"),
    ("SELECT 1 LIMIT 3", "LIMIT 3"),
    ("SELECT 1 LIMIT 30", "LIMIT 10"),
    ("SELECT 1 LIMIT ALL", "LIMIT 10"),
    ("SELECT 1 LIMIT NULL", "LIMIT 10"),
    ("SELECT 1 LIMIT (SELECT 5)", "LIMIT LEAST((SELECT 5), 10)"),
    ("SELECT 1 FETCH FIRST 4 ROWS ONLY", "LIMIT 4"),
    ("SELECT 1 UNION SELECT 2", "LIMIT 10"),
    ("(SELECT 1 LIMIT 50)", "LIMIT 10"),
])
def test_row_cap(sql: str, limit: str) -> None:
    tree = cap_limit(parse_one(sql, read="postgres"), 10, "postgres")
    assert tree.sql("postgres").endswith(limit)


def test_values_alone_is_not_capped() -> None:
    tree = cap_limit(parse_one("VALUES (1)", read="postgres"), 10, "postgres")
    assert "LIMIT" not in tree.sql("postgres")


# -- cache ------------------------------------------------------------------------------

def test_cache_returns_the_same_result_and_evicts() -> None:
    gate = Gate(evergreen_rules(), evergreen_catalog(), "disclosure", cache_size=2)
    a = gate.check("SELECT 1")
    assert gate.check("SELECT 1") is a
    gate.check("SELECT 2")
    gate.check("SELECT 3")
    assert gate.check("SELECT 1") is not a  # evicted, recomputed
    assert gate.check("SELECT 1") == a


def test_cache_disabled() -> None:
    gate = Gate(evergreen_rules(), evergreen_catalog(), "disclosure", cache_size=0)
    assert gate.check("SELECT 1") is not gate.check("SELECT 1")


def test_result_lists_relations_and_columns() -> None:
    result = gate_for("disclosure").check(
        "SELECT u.family_name FROM actor.usr u JOIN actor.card c ON c.usr = u.id")
    assert result.relations == {"actor.usr", "actor.card"}
    assert result.columns == {"actor.usr.family_name", "actor.usr.id", "actor.card.usr"}
    assert result.to_dict()["ok"] is True


def test_unknown_dialect_is_a_user_error() -> None:
    with pytest.raises(IlsRedactError):
        Gate(evergreen_rules(), evergreen_catalog(), "disclosure", dialect="oracle")


def test_extra_functions_from_the_rules() -> None:
    rules = evergreen_rules()
    r = dataclasses.replace(rules, gate=dataclasses.replace(
        rules.gate, functions=("evergreen.lowercase",)))
    gate = Gate(r, evergreen_catalog(), "disclosure")
    result = gate.check("SELECT evergreen.lowercase(family_name) FROM actor.usr")
    assert result.ok, result.findings
    assert "R-FUNCTION" in codes(gate.check("SELECT evergreen.uppercase(family_name) "
                                            "FROM actor.usr"))


def test_deep_nesting_is_refused_not_raised() -> None:
    result = gate_for("disclosure").check("SELECT " + "(" * 3000 + "1" + ")" * 3000)
    assert not result.ok and {f.code for f in result.findings} == {"R-PARSE"}
