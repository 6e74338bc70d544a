"""The readable disclosure document: a CSV export, one section per patron, labelled.

The export stays what the database rendered and hashed (the sparse one-row-per-table CSV,
for machines, the same layout on both engines); this module only regroups its rows by
patron for a person to read and print: a summary (name, date of birth, addresses, phones,
email, card) and then every field of every record with a plain label.  Nothing is read
from the database here; a value appears only if it is in the export.  The one change
made to a value: the quote the export puts before a cell that starts with ``=+-@``, TAB
or CR (so a spreadsheet does not run it as a formula) is taken off again.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

#: column -> label, for the Evergreen and Koha allow-lists; others get their name
LABELS: dict[str, str] = {
    # Evergreen actor.usr, actor.card, actor.usr_address
    "id": "Record id", "usr": "Patron id", "card": "Current card (record id)",
    "prefix": "Prefix", "first_given_name": "First name", "second_given_name": "Middle name",
    "family_name": "Family name", "suffix": "Suffix", "pref_prefix": "Preferred prefix",
    "pref_first_given_name": "Preferred first name",
    "pref_second_given_name": "Preferred middle name",
    "pref_family_name": "Preferred family name", "pref_suffix": "Preferred suffix",
    "alias": "Alias", "email": "Email", "day_phone": "Day phone",
    "evening_phone": "Evening phone", "other_phone": "Other phone",
    "mailing_address": "Mailing address (record id)",
    "billing_address": "Billing address (record id)", "dob": "Date of birth",
    "barcode": "Card number", "active": "Card in use", "address_type": "Address type",
    "street1": "Street", "street2": "Street (line 2)", "city": "City", "county": "County",
    "state": "State", "country": "Country", "post_code": "Post code",
    # Koha borrowers
    "borrowernumber": "Patron id", "cardnumber": "Card number", "title": "Title",
    "surname": "Surname", "firstname": "First name", "middle_name": "Middle name",
    "othernames": "Other names", "initials": "Initials", "preferred_name": "Preferred name",
    "streetnumber": "Street number", "streettype": "Street type", "address": "Address",
    "address2": "Address (line 2)", "zipcode": "ZIP code",
    "B_streetnumber": "Alternate address: street number",
    "B_streettype": "Alternate address: street type", "B_address": "Alternate address",
    "B_address2": "Alternate address (line 2)", "B_city": "Alternate address: city",
    "B_state": "Alternate address: state", "B_zipcode": "Alternate address: ZIP code",
    "B_country": "Alternate address: country", "emailpro": "Work email",
    "B_email": "Alternate email", "phone": "Phone", "mobile": "Mobile phone",
    "phonepro": "Work phone", "B_phone": "Alternate phone", "fax": "Fax",
    "dateofbirth": "Date of birth",
}

_NAME = ("prefix", "title", "first_given_name", "firstname", "second_given_name",
         "middle_name", "family_name", "surname", "suffix")
_PREFERRED = ("pref_prefix", "pref_first_given_name", "pref_second_given_name",
              "pref_family_name", "pref_suffix", "preferred_name", "alias", "othernames")
_DOB = ("dob", "dateofbirth")
_PHONES = ("day_phone", "evening_phone", "other_phone", "phone", "mobile", "phonepro",
           "B_phone", "fax")
_EMAILS = ("email", "emailpro", "B_email")
_KOHA_ADDRESSES = ((("streetnumber", "streettype", "address"), ("address2",),
                    ("city", "state", "zipcode"), ("country",)),
                   (("B_streetnumber", "B_streettype", "B_address"), ("B_address2",),
                    ("B_city", "B_state", "B_zipcode"), ("B_country",)))
_EG_ADDRESS = (("street1",), ("street2",), ("city", "county"), ("state", "post_code"),
               ("country",))


def label(column: str) -> str:
    return LABELS.get(column) or column.replace("_", " ").capitalize()


def shown(value: Any) -> str:
    """A value as a person reads it (booleans as yes or no)."""
    return _text(value)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value in ("t", "f") or value in ("true", "false"):
        return "yes" if value in ("t", "true") else "no"
    return str(value)


def _join(values: dict[str, Any], names: tuple[str, ...], sep: str = " ") -> str:
    return sep.join(t for t in (_text(values.get(n)).strip() for n in names) if t)


def _address(values: dict[str, Any], lines: tuple[tuple[str, ...], ...]) -> str:
    return ", ".join(t for t in (_join(values, line) for line in lines) if t)


@dataclass
class Record:
    relation: str
    fields: list[tuple[str, str]]


@dataclass
class PatronSection:
    patron_id: int
    name: str = ""
    summary: list[tuple[str, list[str]]] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)


def _cell(text: str) -> str:
    return text[1:] if len(text) > 1 and text[0] == "'" and text[1] in "=+-@\t\r" else text


def _records(document: bytes) -> list[tuple[int, str, dict[str, Any]]]:
    """(patron, relation, {column: value}) per row of a CSV export: a row holds the
    cells of its own relation's columns (``relation.column`` in the header)."""
    rows = list(csv.reader(io.StringIO(document.decode("utf-8"))))
    if not rows:
        return []
    header = rows[0]
    out = []
    for row in rows[1:]:
        if len(row) < 2:
            continue
        relation = row[1]
        values = {col.rsplit(".", 1)[1]: _cell(cell)
                  for col, cell in zip(header[2:], row[2:], strict=False)
                  if col.rsplit(".", 1)[0] == relation and cell != ""}
        out.append((int(row[0]), relation, values))
    return out


def sections(document: bytes) -> list[PatronSection]:
    """One section per patron of a CSV export, in the export's order."""
    out: dict[int, PatronSection] = {}
    merged: dict[int, dict[str, list[str]]] = {}
    for pid, relation, values in _records(document):
        sec = out.setdefault(pid, PatronSection(pid))
        sec.records.append(Record(relation, [
            (label(k), _text(v)) for k, v in values.items() if _text(v) != ""]))
        m = merged.setdefault(pid, {})

        def add(what: str, text: str, m: dict[str, list[str]] = m) -> None:
            if text and text not in m.setdefault(what, []):
                m[what].append(text)

        add("Name", _join(values, _NAME))
        add("Also known as", _join(values, _PREFERRED, " / "))
        add("Date of birth", _join(values, _DOB))
        if "street1" in values:
            kind = _text(values.get("address_type"))
            addr = _address(values, _EG_ADDRESS)
            add("Address", f"{addr} ({kind.lower()})" if addr and kind else addr)
        else:  # Koha: the main and the alternate address are columns of the patron row
            for lines in _KOHA_ADDRESSES:
                add("Address", _address(values, lines))
        for col in _PHONES:
            if _text(values.get(col)):
                add("Phones", f"{_text(values[col])} ({label(col).lower()})")
        for col in _EMAILS:
            add("Email", _text(values.get(col)))
        if "barcode" in values:
            active = values.get("active")
            state = "" if active is None else (" (in use)" if _text(active) == "yes"
                                               else " (not in use)")
            add("Card", _text(values["barcode"]) + state if _text(values["barcode"]) else "")
        add("Card", _text(values.get("cardnumber")))
    for pid, sec in out.items():
        m = merged.get(pid, {})
        sec.name = (m.get("Name") or [f"patron {pid}"])[0]
        sec.summary = [(k, m[k]) for k in ("Name", "Also known as", "Date of birth",
                                           "Address", "Phones", "Email", "Card") if m.get(k)]
    return list(out.values())
