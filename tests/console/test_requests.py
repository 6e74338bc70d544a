"""Recording requests through the console's forms (as a browser posts them): a court
order covering only the fields it names, the input the CLI refuses refused here too with
nothing created, and a cancelled confirmation creating nothing."""

from __future__ import annotations

import datetime as dt
import json
import re

from support.console import Client, Library

#: two identity fields a court order names, per engine
ORDER_FIELDS = {"postgresql": ["actor.usr.family_name", "actor.card.barcode"],
                "mariadb": ["borrowers.surname", "borrowers.cardnumber"]}


def _count(lib: Library) -> int:
    return int(lib.scalar(f"SELECT count(*) FROM {lib.table('request')}"))  # noqa: S608


def _form(c: Client, **fields: str) -> dict[str, str]:
    base = {"csrf": c.csrf(), "basis": "court-order", "agency": "County Sheriff",
            "officer_name": "Lee Park", "officer_badge": "88", "case_number": "CR-9",
            "court": "Circuit Court of Cook County", "order_reference": "2026-MR-311",
            "order_date": dt.date.today().isoformat(),
            "expires_date": (dt.date.today() + dt.timedelta(days=10)).isoformat(),
            "expires_time": "17:00"}
    return base | fields


def test_a_court_order_covers_only_the_fields_it_names(library: Library) -> None:
    c = Client(library.url)
    assert c.login(library.clerk, library.password).status == 302
    fields = ORDER_FIELDS[library.engine]
    data = _form(c, barcodes=library.barcodes[0])
    # the checked boxes: one "columns" pair each, as a browser sends them
    page = c.post("/requests/new", list(data.items()) + [("columns", f) for f in fields])
    assert page.status == 200 and "Are these the people" in page.text, page.text[:2000]
    token = page.field("token")
    before = _count(library)
    r = c.post("/requests/confirm", {"csrf": data["csrf"], "token": token,
                                     "action": "create"})
    assert r.status == 302, r.text[:500]
    rid = int(r.headers["Location"].rsplit("/", 1)[1])
    assert _count(library) == before + 1
    columns = library.scalar(f"SELECT columns FROM {library.table('request')} "  # noqa: S608
                             "WHERE id = %s", (rid,))
    if isinstance(columns, str):
        columns = json.loads(columns)
    assert sorted(columns) == sorted(fields)
    shown = c.get(f"/requests/{rid}").text
    assert "Circuit Court of Cook County" in shown and "2026-MR-311" in shown
    # the confirmation token is spent: posting it again creates nothing
    r = c.post("/requests/confirm", {"csrf": data["csrf"], "token": token,
                                     "action": "create"})
    assert r.status == 409 and _count(library) == before + 1


def test_bad_input_is_refused_and_creates_nothing(library: Library) -> None:
    c = Client(library.url)
    assert c.login(library.clerk, library.password).status == 302
    before = _count(library)
    max_patrons = library.rules.disclosure.max_patrons
    cases = [
        (_form(c, court="", barcodes=library.barcodes[0]), "issuing court"),
        (_form(c, basis="emergency", emergency_reason="", barcodes=library.barcodes[0]),
         "stated reason"),
        (_form(c, barcodes="\n".join(f"9{i:012d}" for i in range(max_patrons + 1))),
         f"at most {max_patrons}"),
        (_form(c, barcodes=library.barcodes[0],
               expires_date=(dt.date.today() + dt.timedelta(days=400)).isoformat()),
         "later than the rules allow"),
        (_form(c, barcodes=library.barcodes[0], order_date="yesterday"), "not a date"),
        (_form(c, basis="emergency", emergency_reason="danger", barcodes="0000000000000"),
         "unknown patrons: 0000000000000"),
    ]
    for data, message in cases:
        if data["basis"] == "court-order":
            data.setdefault("columns", ORDER_FIELDS[library.engine][0])
        r = c.post("/requests/new", data)
        assert r.status == 422, (message, r.status, r.text[:300])
        assert message in r.text, (message, re.findall(r'id="form-error">([^<]*)', r.text))
        assert "Are these the people" not in r.text
        # what was typed is kept for the correction
        assert 'value="County Sheriff"' in r.text
    assert _count(library) == before
    # an unknown barcode is an audit entry, as through the CLI
    audit = c.get("/audit").text
    assert "request.create.refused" in audit and "unknown patrons: 0000000000000" in audit


def test_a_cancelled_confirmation_creates_nothing(library: Library) -> None:
    c = Client(library.url)
    assert c.login(library.clerk, library.password).status == 302
    before = _count(library)
    data = _form(c, basis="emergency", emergency_reason="danger",
                 barcodes=library.barcodes[0])
    page = c.post("/requests/new", data)
    assert page.status == 200 and "Are these the people" in page.text
    r = c.post("/requests/confirm", {"csrf": data["csrf"], "token": page.field("token"),
                                     "action": "cancel"})
    assert r.status == 302 and _count(library) == before
    assert "Nothing was created" in c.get(r.headers["Location"]).text


def test_out_of_range_input_is_refused_on_the_form(library: Library) -> None:
    """Numbers and dates a person (or a script) can type that once crashed the page
    (HTTP 500: a timedelta or datetime overflow, a value out of the database's range):
    each is refused with a message on the form, or answered as "no such thing"; nothing
    is created and no page fails."""
    c = Client(library.url)
    assert c.login(library.clerk, library.password).status == 302
    before = _count(library)
    hours_cap = library.rules.disclosure.emergency_hours
    emergency = {"basis": "emergency", "emergency_reason": "danger",
                 "barcodes": library.barcodes[0]}
    cases = [(_form(c, **emergency, hours=h), message) for h, message in (
        ("1e9", f"at most {hours_cap}"), ("1e308", f"at most {hours_cap}"),
        ("inf", "a finite number"), ("-inf", "a finite number"), ("nan", "a finite number"),
        ("-2", "more than 0"), ("0", "more than 0"), (str(hours_cap + 1), f"at most {hours_cap}"),
        ("1" * 5000, f"at most {hours_cap}"), ("two", "not a number of hours"))]
    cases += [(_form(c, barcodes=library.barcodes[0], expires_date=d), message)
              for d, message in (("9999-12-31", "later than the rules allow"),
                                 ("0001-01-01", "in the past"),
                                 ("99999-01-01", "not a date"))]
    cases += [
        (_form(c, barcodes=library.barcodes[0], expires_time="99:99"), "not a time"),
        (_form(c, barcodes=library.barcodes[0], order_date="0001-01-01"), "order date"),
        (_form(c, barcodes=library.barcodes[0], order_date="9999-12-31"), "order date"),
        (_form(c, **emergency | {"barcodes": "x" * 300}), "barcode"),
        (_form(c, **emergency | {"barcodes": "123\x00456"}), "barcode"),
        (_form(c, **emergency, agency="a" * 5000), "agency"),
        (_form(c, **emergency, case_number="CR-9\x00"), "case number"),
    ]
    for data, message in cases:
        if data["basis"] == "court-order":
            data.setdefault("columns", ORDER_FIELDS[library.engine][0])
        r = c.post("/requests/new", data)
        assert r.status == 422, (message, r.status, r.text[:300])
        assert message in r.text, (message, re.findall(r'id="form-error">([^<]*)', r.text))
        assert "Are these the people" not in r.text
    assert _count(library) == before
    # ids and page numbers beyond any integer the database holds
    huge = "9" * 30
    for path in (f"/requests/{huge}", "/requests/-1", f"/requests?page={huge}",
                 f"/requests?page=-{huge}", f"/audit?request={huge}", f"/audit?page={huge}",
                 f"/requests/{huge}/form"):
        r = c.get(path)
        assert r.status in (200, 404, 403), (path, r.status, r.text[:300])
        assert "Internal error" not in r.text, path
    token = c.csrf()
    for path in (f"/requests/{huge}/approve", f"/requests/{huge}/export"):
        r = c.post(path, {"csrf": token})
        assert r.status in (302, 404), (path, r.status, r.text[:300])
    board = Client(library.url)
    assert board.login(library.board, library.password).status == 302
    for q in ("from=99999-99", "from=0000-01", "from=9999-12&to=0001-01", "from=-1"):
        r = board.get("/stats/report?report=x&" + q)
        assert r.status == 422 and "Internal error" not in r.text, (q, r.status, r.text[:300])
