"""The rules file: structure (JSON Schema), names (catalog), and the errors people see."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ils_redact.adapters import get_adapter
from ils_redact.errors import RulesErrors
from ils_redact.rules import check_against_catalog, load_rules, parse_rules
from ils_redact.rules.load import rules_schema
from support import RULES_FILE, EgDb, run_cli, snapshot, write_rules

CATALOG = get_adapter("evergreen").reference_catalog()
TEXT = RULES_FILE.read_text(encoding="utf-8")


def errors_of(text: str) -> list[str]:
    with pytest.raises(RulesErrors) as exc:
        rules = parse_rules(text, "r.yaml")
        check_against_catalog(rules, CATALOG)
    return exc.value.lines()


def line_of(text: str, needle: str) -> int:
    return text.splitlines().index(next(ln for ln in text.splitlines() if needle in ln)) + 1


def test_default_rules_are_valid_and_classify_every_relation() -> None:
    rules = load_rules(RULES_FILE)
    assert check_against_catalog(rules, CATALOG) == []
    assert rules.adapter == "evergreen" and rules.role_prefix == "ils_redact_"
    assert len(rules.classified_relations()) == len(CATALOG.relations) == 647


def test_packaged_preset_is_the_repository_file() -> None:
    assert get_adapter("evergreen").preset_path.read_text() == TEXT


def test_identity_is_identity_only() -> None:
    rules = load_rules(RULES_FILE)
    usr = rules.identity_table("actor.usr")
    assert usr is not None
    never = {"passwd", "last_xact_id", "claims_returned_count",
             "claims_never_checked_out_count", "credit_forward_balance", "standing", "barred",
             "usrname"}
    assert not never & set(usr.columns)
    assert {"family_name", "first_given_name", "pref_first_given_name", "dob", "email",
            "day_phone"} <= set(usr.columns)
    assert rules.secret["actor.usr"] == ("passwd",)
    assert rules.classify("action.circulation") == "confidential"
    assert rules.classify("money.billable_xact") == "confidential"
    assert rules.classify("actor.passwd") == "secret"


def test_every_column_of_identity_tables_is_classified() -> None:
    rules = load_rules(RULES_FILE)
    for t in rules.identity:
        rel = CATALOG.relation(t.relation)
        secret = rules.secret.get(t.relation, ())
        covered = set(t.columns) | set(t.withheld) | set(secret)
        assert covered == set(rel.column_names), t.relation


def test_unknown_column_names_line_and_suggests() -> None:
    text = TEXT.replace("      - evening_phone\n", "      - evening_phon\n", 1)
    errs = errors_of(text)
    assert errs == [f"r.yaml:{line_of(text, '- evening_phon')}: unknown column "
                    "actor.usr.evening_phon (did you mean evening_phone?)"]


def test_unknown_table_and_schema() -> None:
    text = TEXT.replace("  actor.usr_address:\n    patron_key: usr",
                        "  actor.usr_adress:\n    patron_key: usr", 1)
    errs = errors_of(text)
    assert any("unknown relation actor.usr_adress" in e and "did you mean actor.usr_address?"
               in e for e in errs)
    text = TEXT.replace("  - acq.fund\n", "  - acqq.fund\n", 1)
    errs = errors_of(text)
    assert errs == [f"r.yaml:{line_of(text, '- acqq.fund')}: unknown schema acqq (in "
                    "relation) acqq.fund (did you mean acq?)"]


def test_structural_errors_name_the_line() -> None:
    text = TEXT.replace("  max_patrons: 10", "  max_patrons: ten", 1)
    errs = errors_of(text)
    assert errs == [f"r.yaml:{line_of(text, 'max_patrons: ten')}: disclosure.max_patrons: "
                    "'ten' is not of type 'integer'"]
    text = TEXT.replace("  k: 11 ", "  k: 2  ", 1)
    assert "statistics.k: 2 is less than the minimum of 3" in errors_of(text)[0]
    text = TEXT.replace("gate:\n", "gaet: {}\ngate:\n", 1)
    assert "Additional properties are not allowed ('gaet' was unexpected)" in errors_of(text)[0]


def test_duplicate_keys_and_double_classification() -> None:
    text = TEXT.replace("confidential:\n", "confidential:\n  actor.usr_activity: twice\n", 1)
    errs = errors_of(text)
    assert any("duplicate key 'actor.usr_activity'" in e for e in errs)
    text = TEXT.replace("other:\n", "other:\n  - action.circulation\n", 1)
    errs = errors_of(text)
    assert any("action.circulation is classified twice" in e for e in errs)


def test_parent_of_confidential_must_be_confidential() -> None:
    text = TEXT.replace('  money.billable_xact: "', '  money.billable_xact_x: "', 1)
    text = text.replace("other:\n", "other:\n  - money.billable_xact\n", 1)
    errs = errors_of(text)
    assert any("money.billable_xact is classified other but it is an inheritance parent of "
               "confidential action.circulation" in e for e in errs)


def test_secret_column_cannot_be_identity() -> None:
    text = TEXT.replace("      - dob                     # date of birth\n",
                        "      - dob                     # date of birth\n      - passwd\n", 1)
    errs = errors_of(text)
    assert any("actor.usr.passwd is secret and can never be an identity column" in e
               for e in errs)


def test_view_cannot_be_identity() -> None:
    text = TEXT.replace("identity:\n", "identity:\n  reporter.demographic:\n"
                        "    patron_key: id\n    columns: [id]\n", 1)
    text = text.replace("  reporter.demographic: ", "  reporter.demographic_x: ", 1)
    errs = errors_of(text)
    assert any("identity reporter.demographic is a view" in e for e in errs)


def test_yaml_syntax_error_has_a_line() -> None:
    errs = errors_of("version: 1\nadapter: [evergreen\n")
    assert errs[0].startswith("r.yaml:3: not valid YAML") or errs[0].startswith("r.yaml:2")


def test_schema_is_valid_json_schema() -> None:
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(rules_schema())
    assert json.loads(run_cli("rules", "schema").stdout)["title"].startswith("ils-redact")


def test_cli_rules_check_offline(tmp_path: Path) -> None:
    res = run_cli("--rules", str(RULES_FILE), "rules", "check")
    assert res.returncode == 0 and "ok (3 identity tables, 647 relations" in res.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(TEXT.replace("      - family_name\n", "      - famly_name\n", 1))
    res = run_cli("--rules", str(bad), "rules", "check")
    assert res.returncode == 2
    assert f"{bad}:{line_of(bad.read_text(), 'famly_name')}: unknown column" in res.stderr
    assert "Traceback" not in res.stderr


def test_bad_rules_against_live_database_change_nothing(eg_db: EgDb, tmp_path: Path) -> None:
    before = snapshot(eg_db)
    for edit, expect in [
        (lambda t: t.replace("      - family_name\n", "      - famly_name\n", 1),
         "unknown column actor.usr.famly_name"),
        (lambda t: t.replace("  actor.card:\n    patron_key: usr",
                             "  actor.cards:\n    patron_key: usr", 1),
         "unknown relation actor.cards"),
        (lambda t: t.replace("adapter: evergreen", "adapter: evergren", 1),
         "unknown adapter 'evergren' (did you mean evergreen?)"),
    ]:
        path = write_rules(tmp_path, eg_db.prefix, edit)
        for cmd in ("plan", "install"):
            res = run_cli("--dsn", eg_db.dsn, "--rules", str(path), cmd)
            assert res.returncode == 2, (cmd, res.stdout, res.stderr)
            assert expect in res.stderr
            assert "Traceback" not in res.stderr
    assert snapshot(eg_db) == before


def test_connection_error_is_one_line() -> None:
    res = run_cli("--dsn", "postgresql://nobody@127.0.0.1:1/none", "plan")
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "cannot connect to nobody@127.0.0.1:1/none" in \
        res.stderr
