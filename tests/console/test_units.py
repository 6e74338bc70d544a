"""The console's pure parts: the export zip is what ``export -o`` writes, and the readable
document regroups a CSV export by patron without changing a value."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from pathlib import Path

from ils_redact.console import readable
from ils_redact.console.services import export_zip
from ils_redact.disclosure.export import Exported, write

CSV = (b'patron_id,relation,"actor.usr.id","actor.usr.family_name","actor.usr.first_given_name",'
       b'"actor.usr.day_phone","actor.usr.dob","actor.card.barcode","actor.card.active",'
       b'"actor.usr_address.street1","actor.usr_address.city","actor.usr_address.address_type"\n'
       b'7,"actor.usr","7","O\'Brien","<b>Ann</b>","\'+1 555 0100","1990-02-03",,,,,\n'
       b'7,"actor.card",,,,,,"2000007","true",,,\n'
       b'7,"actor.usr_address",,,,,,,,"1 Main St","Springfield","MAILING"\n'
       b'9,"actor.usr","9","Lee","Kim",,,,,,,\n')


def test_the_export_zip_is_what_export_o_writes(tmp_path: Path) -> None:
    e = Exported(CSV, {"sha256": "ab" * 32, "rows": 4, "patrons": 2,
                       "exported_at": dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc)})
    manifest = write(e, tmp_path / "request-3.csv")
    z = zipfile.ZipFile(io.BytesIO(export_zip(e, "request-3.csv")))
    assert z.namelist() == ["request-3.csv", "request-3.csv.manifest.json"]
    assert z.read("request-3.csv") == (tmp_path / "request-3.csv").read_bytes() == CSV
    assert z.read("request-3.csv.manifest.json") == manifest.read_bytes()


def test_the_readable_document_groups_by_patron() -> None:
    first, second = readable.sections(CSV)
    assert (first.patron_id, second.patron_id) == (7, 9)
    assert first.name == "<b>Ann</b> O'Brien"  # as stored: the template escapes it
    summary = dict(first.summary)
    assert summary["Date of birth"] == ["1990-02-03"]
    assert summary["Phones"] == ["+1 555 0100 (day phone)"]  # the export's formula guard off
    assert summary["Address"] == ["1 Main St, Springfield (mailing)"]
    assert summary["Card"] == ["2000007 (in use)"]
    assert [r.relation for r in first.records] == ["actor.usr", "actor.card",
                                                   "actor.usr_address"]
    assert ("Family name", "O'Brien") in first.records[0].fields
    assert second.name == "Kim Lee" and len(second.records) == 1


def test_which_mariadb_authentications_count_as_a_checked_password() -> None:
    """The account's own SHOW CREATE USER, as MariaDB 10.6-11 prints it (the real server's
    answer for the no-password and password cases is in
    test_attacks.py::test_a_mariadb_account_without_a_password_check_is_refused)."""
    from ils_redact.backends.mariadb.connection import password_was_checked

    class Conn:
        def __init__(self, text: str, unix_socket: str | None = None) -> None:
            self.text, self.unix_socket = text, unix_socket

        def rows(self, _query: str) -> list[tuple[str]]:
            return [(self.text,)]

    head = "CREATE USER `u`@`%`"
    either = f"{head} IDENTIFIED VIA unix_socket OR mysql_native_password USING '*AB'"
    for text, checked in (
            (head, False),
            (f"{head} IDENTIFIED BY PASSWORD '*2B60'", True),
            (f"{head} IDENTIFIED BY PASSWORD '*2B60' PASSWORD EXPIRE INTERVAL 90 DAY", True),
            (f"{head} IDENTIFIED VIA ed25519 USING 'abc' REQUIRE SSL", True),
            (f"{head} IDENTIFIED VIA unix_socket", False),
            (f"{head} IDENTIFIED VIA gssapi", False),
            (f"{head} IDENTIFIED VIA mysql_native_password USING ''", False),
            (either, True)):
        assert password_was_checked(Conn(text)) is checked, text  # type: ignore[arg-type]
    # over the socket, unix_socket may have let the connection in without the password
    assert password_was_checked(Conn(either, "/run/mysqld/mysqld.sock")) is False  # type: ignore[arg-type]
