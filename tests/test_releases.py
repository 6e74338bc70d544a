"""Every supported ILS release plans with the packaged rules, offline, from the catalogs
built from upstream (plugin/ils_redact/adapters/*/releases); release marks never excuse a
typo in a library's own rules."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ils_redact.adapters import get_adapter
from ils_redact.adapters.evergreen.release import release_from_log
from ils_redact.adapters.koha.release import parse_koha_version
from ils_redact.adapters.releases import in_range, release_catalogs
from ils_redact.backends import get_backend
from ils_redact.catalog import catalog_from_json
from ils_redact.errors import RulesErrors
from ils_redact.rules import check_against_catalog, for_catalog, load_rules, parse_rules
from ils_redact.rules.model import ALL_COLUMNS
from ils_redact.stats import all_reports
from support import RULES_FILE, run_cli

KOHA_PRESET = get_adapter("koha").preset_path
PRESETS = {"evergreen": RULES_FILE, "koha": KOHA_PRESET}
ENGINES = {"evergreen": "postgresql", "koha": "mariadb"}
RELEASES = [(ils, rc.version) for ils in ("evergreen", "koha") for rc in release_catalogs(ils)]
#: credential column names: wherever one appears, the rules must list it as secret
CREDENTIALS = {"password", "passwd", "secret", "api_key", "token", "ils_token", "salt",
               "overdrive_auth_token", "verification_token", "invitekey", "access_token",
               "client_secret", "key_file"}


def release(ils: str, version: str):
    return next(rc for rc in release_catalogs(ils) if rc.version == version)


def test_the_supported_releases_are_built_and_recorded() -> None:
    eg = [rc.version for rc in release_catalogs("evergreen")]
    assert eg[0] == "3.12.0" and eg[-1] == "3.17.4"
    assert {v.rsplit(".", 1)[0] for v in eg} == {f"3.{n}" for n in range(12, 18)}
    koha = [rc.version for rc in release_catalogs("koha")]
    assert koha[0] == "23.05" and "23.11" in koha and koha[-1] == "25.11"
    for rc in release_catalogs("koha")[:-1]:
        # each Koha catalog names the dump's own date and how its release was told (25.11's
        # record, from the fork's facts, has the dump date only in its "loaded" text)
        assert rc.facts["dump_completed"] <= rc.date and rc.facts["release_from"], rc.version
    for rc in release_catalogs("evergreen") + release_catalogs("koha"):
        assert re.fullmatch(r"[0-9a-f]{40}", rc.commit), rc.version
        assert rc.repository and re.fullmatch(r"\d{4}-\d\d-\d\d", rc.date)
        assert rc.catalog().release == rc.version
    for rc in release_catalogs("evergreen"):
        assert rc.facts["statement_errors"] == 0, rc.version


def test_koha_catalogs_are_upstream_files_not_names_with_borrowed_types() -> None:
    """The Koha catalogs are built from a kohastructure.sql as stored for a repository
    (types and keys included), each recording where it came from and how its release was
    told; 23.05 carries 23.05's own types, not the newest release's."""
    manifest = json.loads((release_catalogs("koha")[0].store.parent / "manifest.json")
                          .read_text(encoding="utf-8"))
    old = release("koha", "23.05")
    assert old.repository == "Koha-Community/Koha"
    assert old.facts["dump_completed"] == "2023-05-31" and old.facts["release_from"]
    assert manifest["releases"]["23.05"]["tables"] == 249
    catalog = old.catalog()
    # widened to varchar(64) after 23.05: the approximation borrowed the newer type
    assert catalog.relation("borrower_attribute_types").column("code").type == "varchar(10)"
    assert catalog.relation("borrower_modifications").column("password").type == "varchar(30)"
    assert catalog.schemas == ("koha",)
    # 23.11 (KohaSuomi/Koha-23x, the 2023-11-30 dump): what it has of the later tables and
    # columns, and what it does not have yet
    mid = release("koha", "23.11")
    assert mid.repository == "KohaSuomi/Koha-23x" and mid.facts["dump_completed"] == "2023-11-30"
    cat = mid.catalog()
    assert cat.relation("borrowers").column("protected") is not None
    assert cat.relation("borrowers").column("preferred_name") is None
    assert [c.name for c in cat.relation("bookings").columns][-1] == "end_date"
    assert cat.get("koha.illbatches") is not None and cat.get("koha.record_sources") is None
    assert cat.relation("vendor_edi_accounts").column("password") is not None
    # 24.05 (KohaSuomi/Koha-24.05, the 2024-05-27 dump): record_sources without is_system,
    # the EDI account's ports, and still no preferred name
    cat = release("koha", "24.05").catalog()
    assert [c.name for c in cat.relation("record_sources").columns] == [
        "record_source_id", "name", "can_be_edited"]
    assert cat.relation("vendor_edi_accounts").column("upload_port") is not None
    assert cat.relation("borrowers").column("preferred_name") is None
    # 25.05 (KohaSuomi/Koha-25x, the 2025-05-26 dump): the preferred name arrives, the EDI
    # account's credentials are still there, the SIP tables are not yet
    cat = release("koha", "25.05").catalog()
    assert cat.relation("borrowers").column("preferred_name") is not None
    assert cat.relation("vendor_edi_accounts").column("password") is not None
    assert cat.get("koha.sip_accounts") is None and cat.get("koha.oai_servers") is not None


@pytest.mark.parametrize(("ils", "version"), RELEASES)
def test_every_release_plans_with_the_packaged_rules(ils: str, version: str) -> None:
    rc = release(ils, version)
    catalog = rc.catalog()
    rules = load_rules(PRESETS[ils])
    plan = get_backend(ENGINES[ils]).offline_install_plan(rules, catalog, reports=all_reports)
    assert f"ILS release {version}" in plan.notes
    # every grant names a column this release has
    applied = for_catalog(rules, catalog)
    for t in applied.identity:
        rel = catalog.relation(t.relation)
        assert t.columns and all(rel.column(c) for c in t.columns), (version, t.relation)
    # nothing a release has is left unclassified by the packaged rules
    assert check_against_catalog(applied, catalog) == []


@pytest.mark.parametrize(("ils", "version"), RELEASES)
def test_classification_holds_on_every_release(ils: str, version: str) -> None:
    catalog = release(ils, version).catalog()
    rules = for_catalog(load_rules(PRESETS[ils]), catalog)
    confidential = {catalog.qualify(r) for r in rules.confidential}
    for name, rel in catalog.relations.items():
        rname = name if ils == "evergreen" else rel.name
        # inheritance parents of confidential tables are confidential (or secret)
        if name in confidential:
            for parent in catalog.ancestors(name):
                pname = parent if ils == "evergreen" else parent.split(".", 1)[1]
                assert rules.classify(pname) in ("confidential", "secret"), (version, parent)
        # credentials are secret wherever a release has them
        secret = rules.secret.get(rname, ())
        for col in rel.column_names:
            if col.lower() in CREDENTIALS:
                assert secret == ALL_COLUMNS or col in secret, (version, f"{rname}.{col}")
    # the identity allow-list: real tables, never a credential, never a view
    for t in rules.identity:
        rel = catalog.relation(t.relation)
        assert not rel.is_view
        assert not set(t.columns) & CREDENTIALS


def test_the_preset_without_its_release_marks_fails_on_old_releases() -> None:
    """What issue 14 saw: the 3.17 rules refused by a 3.14 database."""
    text = RULES_FILE.read_text(encoding="utf-8").split("# ---- release marks")[0]
    rules = parse_rules(text, "nomarks.yaml")
    with pytest.raises(RulesErrors) as exc:
        check_against_catalog(rules, release("evergreen", "3.14.0").catalog())
    lines = exc.value.lines()
    assert any("unknown schema openapi (in relation) openapi.authen_attempt_log" in ln
               for ln in lines)
    assert any("unknown column actor.usr.guardian_email" in ln for ln in lines)
    check_against_catalog(rules, release("evergreen", "3.17.4").catalog())


def _own_rules(tmp: Path, edit) -> Path:
    path = tmp / "own.yaml"
    path.write_text(edit(RULES_FILE.read_text(encoding="utf-8")), encoding="utf-8")
    return path


def _line(path: Path, needle: str, after: int = 0) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(i for i, ln in enumerate(lines, 1) if i > after and needle in ln)


@pytest.mark.parametrize("version", ["3.12.0", "3.15.0", "3.17.4"])
def test_a_typo_in_a_librarys_own_rules_is_an_error_on_every_release(tmp_path, version) -> None:
    path = _own_rules(tmp_path, lambda t: t.replace("      - alias ", "      - alais ", 1))
    rules = load_rules(path)
    with pytest.raises(RulesErrors) as exc:
        check_against_catalog(rules, release("evergreen", version).catalog())
    assert f"{path}:{_line(path, 'alais')}: unknown column actor.usr.alais" \
        in exc.value.lines()[0]
    assert "did you mean alias" in str(exc.value)


def test_a_release_mark_does_not_excuse_a_typo_where_the_release_should_have_it(
        tmp_path) -> None:
    def edit(t: str) -> str:
        t = t.replace("      - alias ", "      - alais ", 1)
        return t.replace("\n  columns:\n", '\n  columns:\n    actor.usr.alais: {since: "3.14"}\n',
                         1)
    path = _own_rules(tmp_path, edit)
    rules = load_rules(path)
    with pytest.raises(RulesErrors) as exc:
        check_against_catalog(rules, release("evergreen", "3.17.4").catalog())
    msg = exc.value.lines()[0]
    assert msg.startswith(f"{path}:{_line(path, '- alais')}: unknown column "
                          "actor.usr.alais (present from release 3.14 by the rules; "
                          "this database is 3.17.4)")
    # the release before the mark: left out, as marked
    plan = get_backend("postgresql").offline_install_plan(
        rules, release("evergreen", "3.13.11").catalog(), reports=all_reports)
    assert not any("alais" in s.sql for s in plan.steps)


def test_a_mark_must_name_what_the_rules_use_and_be_a_range(tmp_path) -> None:
    def edit(t: str) -> str:
        return t.replace("\n  columns:\n", '\n  columns:\n    actor.usr.nosuch: {since: "3.14"}\n'
                         '    actor.usr.guardian: {since: "3.16", until: "3.15"}\n', 1)
    path = _own_rules(tmp_path, edit)
    with pytest.raises(RulesErrors) as exc:
        check_against_catalog(load_rules(path), release("evergreen", "3.17.4").catalog())
    lines = exc.value.lines()
    assert f"{path}:{_line(path, 'actor.usr.nosuch')}: releases: actor.usr.nosuch is not a " \
        "column (relation.column) the rules name elsewhere" in lines
    assert any(ln.startswith(f"{path}:{_line(path, 'actor.usr.guardian:')}: releases: "
                             "actor.usr.guardian: since 3.16 is not before until 3.15")
               for ln in lines)
    bad = tmp_path / "bad.yaml"
    bad.write_text(RULES_FILE.read_text().replace('{since: "3.15.0"}', '{since: "3.x"}', 1))
    res = run_cli("--rules", str(bad), "rules", "check")
    assert res.returncode == 2 and "does not match" in res.stderr


def test_an_unknown_release_leaves_marked_names_out_and_says_so() -> None:
    data = release("evergreen", "3.12.0").to_json()
    del data["release"]
    catalog = catalog_from_json(data)
    plan = get_backend("postgresql").offline_install_plan(load_rules(RULES_FILE), catalog,
                                                          reports=all_reports)
    assert any(n.startswith("ILS release unknown: 47 relations and 1 columns") for n in plan.notes)


@pytest.mark.parametrize(("ils", "version"), RELEASES)
def test_plan_catalog_cli_on_every_release(tmp_path, ils, version) -> None:
    path = tmp_path / f"{ils}-{version}.json"
    path.write_text(json.dumps(release(ils, version).to_json()), encoding="utf-8")
    res = run_cli("--rules", str(PRESETS[ils]), "plan", "--catalog", str(path))
    assert res.returncode == 0, res.stderr
    assert f"-- note: ILS release {version}\n" in res.stdout
    res = run_cli("--rules", str(PRESETS[ils]), "rules", "check", "--catalog", str(path))
    assert res.returncode == 0 and f"ILS release {version}" in res.stdout


def test_release_detection_parses_what_the_ils_writes() -> None:
    assert release_from_log(["1398", "3.12.0"]).version == "3.12.0"
    up = release_from_log(["1398", "3.12.0", "3.12.1", "1420", "3.13.0", "3.12.10"])
    assert up.version == "3.13.0" and up.detail == "database patch 1420"
    assert release_from_log(["1445"]).version == "3.12.10"  # a release point's own patch
    assert release_from_log(["1446"]).version is None
    assert parse_koha_version("23.0502000") == "23.05.02"
    assert parse_koha_version("25.11.00.003") == "25.11.00"
    assert parse_koha_version("banana") is None
    assert in_range("3.14.12", None, "3.15") and not in_range("3.15.0", None, "3.15")
    assert in_range("3.15.0", "3.15", None) and not in_range("3.14.99", "3.15", None)
