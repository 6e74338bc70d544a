"""The Koha preset against the real schema facts, and the fixture built from them."""

# ruff: noqa: S608 - test SQL: names quoted with sqltext.ident

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ils_redact.adapters import get_adapter
from ils_redact.adapters.koha import fixture
from ils_redact.rules import check_against_catalog, load_rules
from support.koha import PRESET, KohaDb

ROOT = Path(__file__).resolve().parents[2]
#: the schema facts the preset was built from, as kept in this repository
FACTS = ROOT / "tests" / "data"
KOHA_CATALOG = ROOT / "plugin/ils_redact/adapters/koha/catalog.json.gz"

#: confidential by name in the issue, including the tables linked to the patron by name
#: only (statistics.borrowernumber, search_history.userid, action_logs.object)
MUST_BE_CONFIDENTIAL = (
    "issues", "old_issues", "reserves", "old_reserves", "statistics", "accountlines",
    "action_logs", "message_queue", "items_last_borrower", "virtualshelves",
    "virtualshelfcontents", "search_history", "suggestions", "illrequests",
    "tmp_holdsqueue", "pseudonymized_transactions")
NEVER_IDENTITY = ("password", "secret", "overdrive_auth_token", "lastseen", "login_attempts",
                  "borrowernotes", "opacnote", "debarred", "debarredcomment", "userid")


@pytest.fixture(scope="module")
def rules():
    return load_rules(PRESET)


def test_every_table_and_borrowers_column_is_classified(rules) -> None:
    catalog = get_adapter("koha").reference_catalog()
    assert len(catalog.relations) == 293
    assert check_against_catalog(rules, catalog) == []
    assert rules.adapter == "koha" and get_adapter("koha").engine == "mariadb"


def test_identity_is_who_the_person_is(rules) -> None:
    (t,) = rules.identity
    assert t.relation == "borrowers" and t.patron_key == "borrowernumber"
    cols = set(t.columns)
    assert {"cardnumber", "surname", "firstname", "address", "city", "zipcode", "email",
            "phone", "mobile", "dateofbirth", "B_address", "B_phone"} <= cols
    assert not cols & set(NEVER_IDENTITY)
    assert set(rules.secret["borrowers"]) == {"password", "secret", "overdrive_auth_token"}
    assert rules.patron.barcode.relation == "borrowers"
    assert rules.patron.barcode.column == "cardnumber"


def test_confidential_tables_include_the_name_only_links(rules) -> None:
    for rel in MUST_BE_CONFIDENTIAL:
        assert rules.classify(rel) == "confidential", rel
    # every patron-linked (b) table of the classification is confidential
    rows = json.loads((FACTS / "classification.json").read_text())["koha"]
    for r in rows:
        if r["class"] == "b":
            assert rules.classify(r["relation"]) == "confidential", r["relation"]
    for rel in ("api_keys", "borrower_password_history", "borrower_password_recovery",
                "oauth_access_tokens"):
        assert rules.classify(rel) == "secret"


def test_the_generator_reproduces_the_preset(tmp_path) -> None:
    copy = tmp_path / "preset.yaml"
    copy.write_text(PRESET.read_text(encoding="utf-8"), encoding="utf-8")
    catalog = tmp_path / "koha_catalog.json"
    with gzip.open(KOHA_CATALOG, "rb") as fh:
        catalog.write_bytes(fh.read())
    subprocess.run([sys.executable, str(ROOT / "tools/build_koha_preset.py"),
                    str(FACTS / "classification.json"), str(catalog),
                    str(copy)], check=True, capture_output=True)
    assert copy.read_text(encoding="utf-8") == PRESET.read_text(encoding="utf-8")


def test_fixture_builds_the_real_schema(koha: KohaDb) -> None:
    facts = fixture.facts()
    with koha.connect() as c:
        tables = c.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE "
                           "TABLE_SCHEMA = %s", (koha.name,)).fetchone()[0]
        cols = c.execute("SELECT COUNT(*) FROM information_schema.COLUMNS WHERE "
                         "TABLE_SCHEMA = %s", (koha.name,)).fetchone()[0]
        fks = c.execute("SELECT COUNT(*) FROM information_schema.REFERENTIAL_CONSTRAINTS "
                        "WHERE CONSTRAINT_SCHEMA = %s", (koha.name,)).fetchone()[0]
        live = {(t, n, ty, nl == "YES") for t, n, ty, nl in c.execute(
            "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE FROM "
            "information_schema.COLUMNS WHERE TABLE_SCHEMA = %s", (koha.name,)).fetchall()}
        counts = dict(c.execute(
            "SELECT 'borrowers', COUNT(*) FROM borrowers UNION ALL SELECT 'issues', COUNT(*) "
            "FROM issues UNION ALL SELECT 'saved_sql', COUNT(*) FROM saved_sql").fetchall())
        # consistent data: every checkout's patron and item exist
        orphans = c.execute("SELECT COUNT(*) FROM issues i LEFT JOIN borrowers b USING "
                            "(borrowernumber) WHERE b.borrowernumber IS NULL").fetchone()[0]
    assert tables == 293 and cols == facts["counts"]["columns"] == 2692
    assert fks == facts["counts"]["foreign_keys"] == 403
    want = {(r["name"], c["name"], c["type"], c["nullable"])
            for r in facts["relations"] for c in r["columns"]}
    assert live == want
    assert counts["borrowers"] == 2000 and counts["issues"] > 0 and counts["saved_sql"] > 0
    assert orphans == 0
