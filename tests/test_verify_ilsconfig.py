"""Reading Evergreen's opensrf.xml: the reporter's database logins, never its passwords."""

from __future__ import annotations

from pathlib import Path

import pytest

from ils_redact.errors import IlsRedactError
from ils_redact.verify.ilsconfig import reporter_logins

EXAMPLE = Path(__file__).parent / "data" / "opensrf.xml.example"


def test_the_example_reporter_connects_as_postgres() -> None:
    logins = reporter_logins(EXAMPLE)
    assert [(x.element, x.user) for x in logins] == [
        ("default/reporter/setup/database", "postgres"),
        ("default/reporter/setup/state_store", "postgres"),
        ("default/apps/open-ils.reporter-store/app_settings/database", "postgres"),
    ]
    assert logins[0].where == "postgres@localhost:5432/evergreen"
    # the cstore login is the ILS application's, not the reporter's
    assert not any("cstore" in x.element for x in logins)


def test_settings_under_hosts_and_older_password_element(tmp_path: Path) -> None:
    p = tmp_path / "opensrf.xml"
    p.write_text("<opensrf><hosts><lib.example.org><reporter><setup><database>"
                 "<driver>Pg</driver><host>db1</host><db>eg</db><user>reporter</user>"
                 "<password>secret</password></database></setup></reporter>"
                 "</lib.example.org></hosts></opensrf>", encoding="utf-8")
    (login,) = reporter_logins(p)
    assert login.user == "reporter" and login.where == "reporter@db1/eg"
    assert login.element == "hosts/lib.example.org/reporter/setup/database"
    assert "secret" not in repr(login)


@pytest.mark.parametrize("text, message", [
    ("<opensrf><default>", ":1: not well-formed XML"),
    ("<config/>", "not an OpenSRF configuration (root element <config>"),
])
def test_bad_files_are_user_errors(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "opensrf.xml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(IlsRedactError) as err:
        reporter_logins(p)
    assert message in str(err.value)
    assert err.value.exit_code == 2


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(IlsRedactError, match="ILS configuration not found"):
        reporter_logins(tmp_path / "nope.xml")
