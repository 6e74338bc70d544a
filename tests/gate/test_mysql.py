"""The gate in the MySQL dialect (Koha on MariaDB), against Koha's reference schema.

The rules here are a small hand-made set (the Koha preset is tested in tests/koha); the
point is that nothing in the gate outside ``pgparse`` assumes PostgreSQL.  On MariaDB the
disclosure role reads the identity tables through the layer's definer views of the same
names in ``ils_redact_<koha db>``, so the rewrite targets those and the scope view there.
MariaDB-specific parser differences are not checked yet (no cross-check parser).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

import ils_redact.adapters
from ils_redact.catalog import Catalog, catalog_from_json
from ils_redact.gate import Gate
from ils_redact.rules.model import BarcodeLookup, IdentityTable, PatronModel, Rules

KOHA = Path(ils_redact.adapters.__file__).parent / "koha" / "catalog.json.gz"


@pytest.fixture(scope="module")
def koha() -> Catalog:
    with gzip.open(KOHA, "rt", encoding="utf-8") as fh:
        return catalog_from_json(json.load(fh), source=str(KOHA))


@pytest.fixture(scope="module")
def rules() -> Rules:
    return Rules(
        version=1, adapter="koha", role_prefix="ils_redact_",
        patron=PatronModel("borrowers", "borrowernumber",
                           BarcodeLookup("borrowers", "cardnumber", "borrowernumber")),
        identity=(IdentityTable("borrowers", "borrowernumber", (
            "borrowernumber", "cardnumber", "surname", "firstname", "email", "phone",
            "address", "city", "zipcode", "dateofbirth"),
            {"userid": "login name"}),),
        secret={"borrowers": ("password",)},
        confidential={"issues": "loans", "old_issues": "loan history", "reserves": "holds"},
        personal={}, other=("items", "biblio", "branches"),
    )


@pytest.fixture(scope="module")
def gate(rules: Rules, koha: Catalog) -> Gate:
    return Gate(rules, koha, "disclosure", request_id=4, dialect="mariadb")


def test_allowed_query_is_scoped_and_backtick_quoted(gate: Gate) -> None:
    r = gate.check("SELECT surname, cardnumber FROM borrowers WHERE surname LIKE 'Sm%' LIMIT 5")
    assert r.ok, r.findings
    assert r.sql == (
        "SELECT `borrowers`.`surname` AS `surname`, `borrowers`.`cardnumber` AS "
        "`cardnumber` FROM `ils_redact_koha_schema`.`borrowers` AS `borrowers` WHERE "
        "`borrowers`.`surname` LIKE 'Sm%' AND `borrowers`.`borrowernumber` IN (SELECT "
        "`patron_id` FROM `ils_redact_koha_schema`.`scope_patrons` WHERE `request_id` = 4) "
        "LIMIT 5")


def test_star_expands_to_permitted_columns(gate: Gate) -> None:
    r = gate.check("SELECT * FROM `borrowers` b")
    assert r.ok
    assert "`password`" not in r.sql and "`userid`" not in r.sql
    assert r.sql.endswith("LIMIT 1000")


@pytest.mark.parametrize("sql, code", [
    ("SELECT password FROM borrowers", "R-SECRET-COLUMN"),
    ("SELECT userid FROM borrowers", "R-WITHHELD-COLUMN"),
    ("SELECT b.surname FROM borrowers b JOIN issues i ON i.borrowernumber = b.borrowernumber",
     "R-CONFIDENTIAL-RELATION"),
    ("SELECT surname FROM borrowers; SELECT 1", "R-MULTI-STATEMENT"),
    ("SELECT surname FROM borrowers FOR UPDATE", "R-LOCKING"),
    ("SELECT LOAD_FILE('/etc/passwd')", "R-FUNCTION"),
    ("SELECT SLEEP(1)", "R-FUNCTION"),
    # sqlglot 30 cannot parse INTO OUTFILE in the MySQL dialect: refused as R-PARSE
    ("SELECT surname FROM borrowers INTO OUTFILE '/tmp/x'", "R-PARSE"),
    ("SELECT nosuch FROM borrowers", "R-UNKNOWN-COLUMN"),
])
def test_refusals(gate: Gate, sql: str, code: str) -> None:
    r = gate.check(sql)
    assert not r.ok
    assert code in {f.code for f in r.findings}, r.findings
