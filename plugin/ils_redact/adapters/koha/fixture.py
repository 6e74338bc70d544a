"""A Koha database for demos, tests and benchmarks: the real schema and deterministic data.

``build_schema`` creates, in the (empty) database the connection uses, every one of the
293 tables of the Koha schema facts shipped with the adapter (``catalog.json.gz``): real
columns in their real order and MariaDB types, NOT NULL, primary keys, unique constraints
and the 403 foreign keys with their ON DELETE / ON UPDATE actions, InnoDB with the table's
collation. The facts carry no defaults, secondary indexes or AUTO_INCREMENT flags, so: a
single-column integer primary key that is not also a foreign key is AUTO_INCREMENT (as
Koha declares them), a NOT NULL ``timestamp`` defaults to CURRENT_TIMESTAMP (as Koha's
do), and there are no other indexes than the keys (InnoDB indexes every foreign key).

``fill`` loads deterministic synthetic data (libraries, patron categories, patrons with
names, card numbers, addresses, phones, emails and dates of birth, staff accounts,
bibliographic records and items, current and old checkouts, holds, the statistics
transaction log, fines, action logs, notices, OPAC search history, lists, the holds
queue, pseudonymised transactions, purchase suggestions and saved reports with real
report SQL), generated server-side with ``INSERT ... SELECT`` from MariaDB's sequence
engine (``seq_1_to_N``) and hash functions of the row number, so the same sizes give the
same tables and a million patrons load in well under a minute.

Nothing here commits DDL differently from the server (MariaDB commits each CREATE): call
it on a fresh database.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from ...catalog import Catalog

log = logging.getLogger(__name__)

FACTS = Path(__file__).resolve().parent / "catalog.json.gz"

#: library branches (branchcode, name); the last one is tiny (few patrons)
BRANCHES = (("CPL", "Centerville"), ("FFL", "Fairfield"), ("MPL", "Midway"),
            ("RPL", "Riverside"), ("TPL", "Tiny Township"))
#: patron categories (code, description, type): A adult, C child, S staff
CATEGORIES = (("PT", "Patron", "A"), ("J", "Juvenile", "C"), ("ST", "Student", "A"),
              ("S", "Staff", "S"))
ITEMTYPES = (("BK", "Book"), ("DVD", "DVD"), ("CD", "Audio CD"), ("MAG", "Magazine"))
#: every STAFF_EVERY-th borrower (1, 48, 95, ...) is a staff account
STAFF_EVERY = 47

SURNAMES = ("Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis",
            "Rodriguez", "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson",
            "Thomas", "Taylor", "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson",
            "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson", "O'Brien",
            "Nguyen", "Kowalski", "Müller")
FIRSTNAMES = ("James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda",
              "David", "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph",
              "Jessica", "Thomas", "Sarah", "Charles", "Karen", "Amara", "Chen", "Fatima",
              "José", "Zoë")
STREETS = ("Main", "Oak", "Maple", "Cedar", "Elm", "Washington", "Lake", "Hill", "Park",
           "Pine")
CITIES = (("Centerville", "IL", "62801"), ("Fairfield", "IL", "62837"),
          ("Midway", "IL", "62896"), ("Riverside", "IL", "60546"))
TITLES = ("The Silent River", "A History of Illinois", "Cooking for Two", "Deep Learning",
          "Gardening Basics", "The Lost City", "Poems of the Prairie", "Tax Law 2024",
          "Living with Diabetes", "Divorce and You", "Quit Smoking Now", "Bankruptcy Guide")

#: saved reports (name, SQL) in the style of the Koha reports library: some read only
#: catalogue data, some read circulation joined to patrons
SAVED_REPORTS = (
    ("Items by item type", "SELECT itype, COUNT(*) AS items FROM items GROUP BY itype"),
    ("Titles added this year",
     "SELECT biblionumber, title, author FROM biblio WHERE YEAR(datecreated) = YEAR(NOW())"),
    ("Patrons with overdues",
     "SELECT b.cardnumber, b.surname, b.firstname, i.date_due, bi.title FROM issues i "
     "JOIN borrowers b USING (borrowernumber) JOIN items it USING (itemnumber) "
     "JOIN biblio bi ON bi.biblionumber = it.biblionumber WHERE i.date_due < NOW()"),
    ("Checkouts per branch last month",
     "SELECT branch, COUNT(*) FROM statistics WHERE type = 'issue' AND datetime >= "
     "DATE_SUB(CURDATE(), INTERVAL 1 MONTH) GROUP BY branch"),
    ("Reading history of a patron",
     "SELECT bi.title, o.issuedate, o.returndate FROM old_issues o JOIN items it "
     "USING (itemnumber) JOIN biblio bi ON bi.biblionumber = it.biblionumber "
     "WHERE o.borrowernumber = <<Borrowernumber>>"),
    ("Patrons by category", "SELECT categorycode, COUNT(*) FROM borrowers GROUP BY categorycode"),
    ("Holds waiting", "SELECT r.reserve_id, b.surname, bi.title, r.waitingdate FROM reserves r "
     "JOIN borrowers b ON b.borrowernumber = r.borrowernumber JOIN biblio bi "
     "ON bi.biblionumber = r.biblionumber WHERE r.found = 'W'"),
    ("Fines owed over 10", "SELECT borrowernumber, SUM(amountoutstanding) AS owed FROM "
     "accountlines GROUP BY borrowernumber HAVING owed > 10"),
    ("Branch list", "SELECT branchcode, branchname FROM branches ORDER BY branchname"),
    ("Patron contact list", "SELECT cardnumber, surname, firstname, email, phone FROM "
     "borrowers WHERE branchcode = <<Branch|branches>>"),
    ("Popular titles", "SELECT bi.title, COUNT(*) AS loans FROM old_issues o JOIN items it "
     "USING (itemnumber) JOIN biblio bi ON bi.biblionumber = it.biblionumber "
     "GROUP BY bi.biblionumber ORDER BY loans DESC LIMIT 20"),
    ("Items never borrowed", "SELECT itemnumber, barcode FROM items WHERE issues = 0 OR "
     "issues IS NULL"),
)


@lru_cache(maxsize=1)
def facts() -> dict[str, Any]:
    with gzip.open(FACTS, "rt", encoding="utf-8") as fh:
        return json.load(fh)


# == schema =============================================================================

_TYPE = re.compile(
    r"^(tinyint|smallint|mediumint|int|bigint|decimal|float|double|varchar|char|"
    r"tinytext|text|mediumtext|longtext|tinyblob|blob|mediumblob|longblob|varbinary|binary|"
    r"date|datetime|timestamp|time|year|enum|set)(\((\d+(,\d+)?|'([^'\\]|'')*'(,'([^'\\]|'')*')*)\))?"
    r"( unsigned)?( zerofill)?$")


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def column_type(t: str) -> str:
    """The facts' MariaDB type, checked against what a type can look like."""
    if not _TYPE.match(t):
        raise ValueError(f"unexpected column type in the Koha facts: {t!r}")
    return t


def _auto_increment(rel: dict[str, Any]) -> str | None:
    pk = rel["primary_key"]
    if len(pk) != 1:
        return None
    col = next(c for c in rel["columns"] if c["name"] == pk[0])
    fk_cols = {c for fk in rel["foreign_keys"] for c in fk["columns"]}
    if re.match(r"^(tiny|small|medium|big)?int\b", col["type"]) and pk[0] not in fk_cols:
        return pk[0]
    return None


def _key_columns(cols: list[str], types: dict[str, str]) -> str:
    """Key columns, with the 191-character prefixes Koha declares where a utf8mb4 key
    would pass InnoDB's 3072-byte limit (the facts do not record prefix lengths)."""
    width = 0
    for c in cols:
        m = re.match(r"^(var)?char\((\d+)\)", types[c])
        width += int(m[2]) * 4 if m else 8
    out = []
    for c in cols:
        m = re.match(r"^(var)?char\((\d+)\)", types[c])
        if width > 3072 and m and int(m[2]) > 191:
            out.append(f"{_q(c)}(191)")
        else:
            out.append(_q(c))
    return ", ".join(out)


def create_table_statement(rel: dict[str, Any]) -> str:
    ai = _auto_increment(rel)
    parts = []
    for c in rel["columns"]:
        d = f"{_q(c['name'])} {column_type(c['type'])}"
        if not c["nullable"]:
            d += " NOT NULL"
        if c["type"] == "timestamp" and not c["nullable"]:
            d += " DEFAULT CURRENT_TIMESTAMP"
        if c["name"] == ai:
            d += " AUTO_INCREMENT"
        parts.append(d)
    types = {c["name"]: c["type"] for c in rel["columns"]}
    if rel["primary_key"]:
        parts.append(f"PRIMARY KEY ({_key_columns(rel['primary_key'], types)})")
    for u in rel["unique_constraints"]:
        if u["columns"] == rel["primary_key"]:
            continue
        parts.append(f"UNIQUE KEY {_q(u['name'])} ({_key_columns(u['columns'], types)})")
    collation = rel.get("collation") or "utf8mb4_unicode_ci"
    if not re.fullmatch(r"[a-z0-9_]+", collation):
        raise ValueError(f"unexpected collation {collation!r}")
    return (f"CREATE TABLE {_q(rel['name'])} (\n  " + ",\n  ".join(parts) + "\n) "
            f"ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={collation}")


_ACTIONS = frozenset({"RESTRICT", "CASCADE", "SET NULL", "NO ACTION", "SET DEFAULT"})


def foreign_keys_statement(rel: dict[str, Any]) -> str | None:
    """``ALTER TABLE ... ADD CONSTRAINT ... FOREIGN KEY`` for all of a table's keys."""
    adds = []
    for fk in rel["foreign_keys"]:
        ref = fk["references"]
        on_delete, on_update = fk.get("on_delete", "RESTRICT"), fk.get("on_update", "RESTRICT")
        if on_delete not in _ACTIONS or on_update not in _ACTIONS:
            raise ValueError(f"unexpected foreign key action in {rel['name']}")
        adds.append(
            f"ADD CONSTRAINT {_q(fk['name'])} FOREIGN KEY ({', '.join(map(_q, fk['columns']))}) "
            f"REFERENCES {_q(ref['table'])} ({', '.join(map(_q, ref['columns']))}) "
            f"ON DELETE {on_delete} ON UPDATE {on_update}")
    return f"ALTER TABLE {_q(rel['name'])} " + ", ".join(adds) if adds else None


def _referenced_indexes(rels: list[dict[str, Any]]) -> list[str]:
    """Indexes InnoDB needs on referenced columns that are neither a key nor indexed."""
    indexed: dict[str, list[tuple[str, ...]]] = {}
    for r in rels:
        keys = [tuple(r["primary_key"])] + [tuple(u["columns"]) for u in r["unique_constraints"]]
        keys += [tuple(fk["columns"]) for fk in r["foreign_keys"]]
        indexed[r["name"]] = keys
    out = []
    for r in rels:
        for fk in r["foreign_keys"]:
            t, cols = fk["references"]["table"], tuple(fk["references"]["columns"])
            if not any(k[:len(cols)] == cols for k in indexed.get(t, [])):
                name = f"ils_fixture_{t}_{'_'.join(cols)}"[:64]
                out.append(f"ALTER TABLE {_q(t)} ADD KEY {_q(name)} ({', '.join(map(_q, cols))})")
                indexed.setdefault(t, []).append(cols)
    return out


def _retry(cur: Any, stmt: str, attempts: int = 3) -> None:
    """Run an ALTER TABLE ... ADD FOREIGN KEY; on a busy server InnoDB has been seen to
    refuse one (error 1825) that succeeds when run again."""
    for i in range(attempts):
        try:
            cur.execute(stmt)
            return
        except Exception as exc:  # noqa: BLE001 - re-raised after the last attempt
            if i == attempts - 1 or not exc.args or exc.args[0] not in (1005, 1825):
                raise
            log.warning("retrying after %s", exc)
            time.sleep(0.5)


def build_schema(conn: Any) -> int:
    """Create the 293 tables in the connection's database, then their foreign keys;
    returns the table count."""
    rels = facts()["relations"]
    cur = conn.cursor()
    cur.execute("SET SESSION foreign_key_checks = 0")
    try:
        for r in rels:
            cur.execute(create_table_statement(r))
        for stmt in _referenced_indexes(rels):
            cur.execute(stmt)
        # one session at a time adds foreign keys on this server: MariaDB 10.11.19 has
        # crashed (signal 11 in ALTER TABLE ... ADD FOREIGN KEY) when several sessions did
        # it at once, e.g. parallel test workers each building a Koha database
        cur.execute("SELECT GET_LOCK('ils_redact_fixture_foreign_keys', 900)")
        cur.fetchall()
        try:
            for r in rels:
                fks = foreign_keys_statement(r)
                if fks:
                    _retry(cur, fks)
        finally:
            cur.execute("SELECT RELEASE_LOCK('ils_redact_fixture_foreign_keys')")
            cur.fetchall()
    finally:
        cur.execute("SET SESSION foreign_key_checks = 1")
    return len(rels)


def reference_catalog() -> Catalog:
    from . import ADAPTER

    return ADAPTER.reference_catalog()


# == data ===============================================================================

def _elt(values: tuple[str, ...], expr: str) -> str:
    quoted = ", ".join("'" + v.replace("'", "''") + "'" for v in values)
    return f"ELT(1 + ({expr}) % {len(values)}, {quoted})"


def _h(salt: str, expr: str = "seq") -> str:
    """A deterministic pseudo-random non-negative integer of the row number."""
    return f"CRC32(CONCAT('{salt}', {expr}))"


def _default(col: dict[str, Any]) -> str:
    t = col["type"]
    if t.startswith("enum("):
        return t[5:].split(",")[0].rstrip(")")
    base = t.split("(")[0]
    if base in ("tinyint", "smallint", "mediumint", "int", "bigint", "decimal", "float",
                "double", "year"):
        return "0"
    if base in ("date",):
        return "'2024-01-01'"
    if base in ("datetime", "timestamp"):
        return "'2024-01-01 00:00:00'"
    if base == "time":
        return "'00:00:00'"
    return "''"


def _relation(name: str) -> dict[str, Any]:
    for r in facts()["relations"]:
        if r["name"] == name:
            return r
    raise KeyError(name)


def insert_rows(conn: Any, table: str, n: int, values: dict[str, str],
                source: str | None = None) -> int:
    """INSERT n rows into ``table``: the given column expressions (SQL over ``seq``, the
    row number from 1), the type's zero for other NOT NULL columns, NULL elsewhere."""
    if n <= 0:
        return 0
    rel = _relation(table)
    cols, exprs = [], []
    for c in rel["columns"]:
        if c["name"] in values:
            cols.append(c["name"])
            exprs.append(values[c["name"]])
        elif not c["nullable"] and c["name"] != _auto_increment(rel) and c["type"] != "timestamp":
            cols.append(c["name"])
            exprs.append(_default(c))
    unknown = set(values) - {c["name"] for c in rel["columns"]}
    if unknown:
        raise KeyError(f"{table} has no column {', '.join(sorted(unknown))}")
    src = source or f"seq_1_to_{n}"
    sql = (f"INSERT INTO {_q(table)} ({', '.join(map(_q, cols))}) "  # noqa: S608 - fixture
           f"SELECT {', '.join(exprs)} FROM {src}")
    cur = conn.cursor()
    cur.execute(sql)
    return int(cur.rowcount)


def _date(start: str, days_expr: str) -> str:
    return f"DATE_ADD('{start}', INTERVAL ({days_expr}) DAY)"


def _dt(start: str, seconds_expr: str) -> str:
    return f"DATE_ADD('{start}', INTERVAL ({seconds_expr}) SECOND)"


def fill(conn: Any, *, patrons: int = 2_000, circulations: int | None = None,
         items: int | None = None, progress: bool = False) -> dict[str, int]:
    """Deterministic data; sizes of everything else follow the patron count unless
    given.  Returns rows per table."""
    t0 = time.perf_counter()
    circulations = circulations if circulations is not None else patrons * 5
    items = items if items is not None else max(200, min(patrons // 2, 200_000))
    biblios = max(100, items // 2)
    counts: dict[str, int] = {}
    cur = conn.cursor()
    cur.execute("SET SESSION foreign_key_checks = 0, unique_checks = 0")

    def ins(table: str, n: int, values: dict[str, str], source: str | None = None) -> None:
        counts[table] = counts.get(table, 0) + insert_rows(conn, table, n, values, source)
        if progress:
            log.info("%s: %d rows (%.1f s)", table, counts[table], time.perf_counter() - t0)

    try:
        for code, name in BRANCHES:
            cur.execute("INSERT INTO branches (branchcode, branchname, branchcity, "
                        "pickup_location, public) VALUES (%s, %s, %s, 1, 1)", (code, name, name))
        counts["branches"] = len(BRANCHES)
        for code, desc, ctype in CATEGORIES:
            cur.execute("INSERT INTO categories (categorycode, description, enrolmentperiod, "
                        "category_type, hidelostitems, BlockExpiredPatronOpacActions, "
                        "default_privacy, checkprevcheckout, can_place_ill_in_opac, "
                        "can_be_guarantee, enforce_expiry_notice) VALUES (%s, %s, 12, %s, 0, "
                        "'follow_syspref_BlockExpiredPatronOpacActions', 'default', "
                        "'inherit', 1, 0, 0)", (code, desc, ctype))
        counts["categories"] = len(CATEGORIES)
        for code, desc in ITEMTYPES:
            cur.execute("INSERT INTO itemtypes (itemtype, description, "
                        "rentalcharge_daily_calendar, rentalcharge_hourly_calendar, notforloan, "
                        "checkinmsgtype, sip_magnetic, hideinopac, automatic_checkin, bookable, "
                        "checkprevcheckout) VALUES (%s, %s, 1, 1, 0, 'message', 0, 0, 0, 0, "
                        "'inherit')", (code, desc))
        counts["itemtypes"] = len(ITEMTYPES)
        for code in ("email", "sms", "print", "phone"):
            cur.execute("INSERT INTO message_transport_types VALUES (%s)", (code,))
        for code in ("OVERDUE", "LOST", "RENT", "MANUAL", "ACCOUNT_EXPIRED"):
            cur.execute("INSERT INTO account_debit_types (code, description, can_be_invoiced, "
                        "can_be_sold, is_system, archived, restricts_checkouts) "
                        "VALUES (%s, %s, 0, 0, 1, 0, 1)", (code, code.title()))
        for code in ("PAYMENT", "WRITEOFF", "FORGIVEN"):
            cur.execute("INSERT INTO account_credit_types (code, description, "
                        "can_be_added_manually, credit_number_enabled, is_system, archived) "
                        "VALUES (%s, %s, 1, 0, 1, 0)", (code, code.title()))

        # the tiny branch gets every 499th patron only
        branch = (f"IF(seq % 499 = 0, 'TPL', {_elt(tuple(b for b, _ in BRANCHES[:-1]), _h('br'))})")
        city = _h("city")
        staff = f"seq % {STAFF_EVERY} = 1"
        ins("borrowers", patrons, {
            "borrowernumber": "seq",
            "cardnumber": "CONCAT('2', LPAD(seq, 11, '0'))",
            "surname": _elt(SURNAMES, _h("sn")),
            "firstname": _elt(FIRSTNAMES, _h("fn")),
            "middle_name": f"IF({_h('mn')} % 3 = 0, {_elt(FIRSTNAMES, _h('mn2'))}, NULL)",
            "title": f"IF({_h('tt')} % 4 = 0, 'Dr', NULL)",
            "streetnumber": f"CAST(1 + {_h('no')} % 9999 AS CHAR)",
            "address": f"CONCAT({_elt(STREETS, _h('st'))}, ' Street')",
            "city": _elt(tuple(c for c, _, _ in CITIES), city),
            "state": "'IL'",
            "zipcode": _elt(tuple(z for _, _, z in CITIES), city),
            "country": "'USA'",
            "email": "CONCAT('patron', seq, '@example.org')",
            "phone": f"CONCAT('217-555-', LPAD({_h('ph')} % 10000, 4, '0'))",
            "mobile": f"IF({_h('mo')} % 2 = 0, CONCAT('312-555-', LPAD({_h('mo2')} % 10000, 4, "
                      "'0')), NULL)",
            "dateofbirth": _date("1940-01-01", f"{_h('dob')} % 29000"),
            "branchcode": branch,
            "categorycode": f"IF({staff}, 'S', {_elt(('PT', 'PT', 'PT', 'J', 'ST'), _h('cat'))})",
            "dateenrolled": _date("2015-01-01", f"{_h('enr')} % 3650"),
            "dateexpiry": _date("2026-01-01", f"{_h('exp')} % 730"),
            "userid": "CONCAT('patron', seq)",
            "password": "CONCAT('$2a$08$', LEFT(SHA2(CONCAT('pw', seq), 256), 53))",
            "flags": f"IF({staff}, 1, NULL)",
            "sex": _elt(("F", "M", "", "F", "M"), _h("sex")),
            "borrowernotes": f"IF({_h('nt')} % 50 = 0, 'Claims returned: see fines', NULL)",
            "lastseen": _dt("2024-06-01", f"{_h('ls')} % 15000000"),
            "auth_method": "'password'",
            "privacy": "1",
            "checkprevcheckout": "'inherit'",
            "lang": "'default'",
        })
        ins("biblio", biblios, {
            "biblionumber": "seq",
            "frameworkcode": "''",
            "title": f"CONCAT({_elt(TITLES, _h('ti'))}, ' (', seq, ')')",
            "author": f"CONCAT({_elt(SURNAMES, _h('au'))}, ', ', {_elt(FIRSTNAMES, _h('au2'))})",
            "datecreated": _date("2010-01-01", f"{_h('dc')} % 5000"),
        })
        ins("biblioitems", biblios, {
            "biblioitemnumber": "seq", "biblionumber": "seq",
            "itemtype": _elt(tuple(i for i, _ in ITEMTYPES), _h("it")),
            "isbn": "CONCAT('978', LPAD(seq, 10, '0'))",
        })
        ins("items", items, {
            "itemnumber": "seq",
            "biblionumber": f"1 + (seq - 1) % {biblios}",
            "biblioitemnumber": f"1 + (seq - 1) % {biblios}",
            "barcode": "CONCAT('3', LPAD(seq, 11, '0'))",
            "homebranch": _elt(tuple(b for b, _ in BRANCHES), _h("hb")),
            "holdingbranch": _elt(tuple(b for b, _ in BRANCHES), _h("hb")),
            "itype": _elt(tuple(i for i, _ in ITEMTYPES), _h("it")),
            "itemcallnumber": "CONCAT('FIC ', seq)",
            "issues": f"{_h('iss')} % 40",
            "datelastborrowed": _date("2023-01-01", f"{_h('dlb')} % 700"),
        })
        patron = f"1 + {_h('pat')} % {patrons}"
        current = min(items, max(1, circulations // 10))
        ins("issues", current, {
            "issue_id": "seq",
            "borrowernumber": patron,
            "itemnumber": "seq",
            "issuer_id": "1",
            "date_due": _dt("2025-01-01", f"{_h('due')} % 2500000"),
            "branchcode": _elt(tuple(b for b, _ in BRANCHES[:-1]), _h("ib")),
            "issuedate": _dt("2024-12-01", f"{_h('isd')} % 2500000"),
            "renewals_count": "0", "unseen_renewals": "0", "onsite_checkout": "0",
        })
        ins("old_issues", circulations - current, {
            "issue_id": f"{current} + seq",
            "borrowernumber": patron,
            "itemnumber": f"1 + {_h('oit')} % {items}",
            "issuer_id": "1",
            "date_due": _dt("2023-01-15", f"{_h('odue')} % 60000000"),
            "returndate": _dt("2023-01-10", f"{_h('odue')} % 60000000"),
            "branchcode": _elt(tuple(b for b, _ in BRANCHES[:-1]), _h("ob")),
            "issuedate": _dt("2023-01-01", f"{_h('odue')} % 60000000"),
            "renewals_count": f"{_h('ren')} % 3", "unseen_renewals": "0",
            "onsite_checkout": "0",
        })
        ins("statistics", circulations, {
            "datetime": _dt("2023-01-01", f"{_h('sdt')} % 63000000"),
            "branch": _elt(tuple(b for b, _ in BRANCHES[:-1]), _h("sb")),
            "type": _elt(("issue", "return", "renew", "localuse"), _h("sty")),
            "itemnumber": f"1 + {_h('sit')} % {items}",
            "itemtype": _elt(tuple(i for i, _ in ITEMTYPES), _h("sit")),
            "borrowernumber": patron,
            "categorycode": "'PT'",
            "interface": "'intranet'",
        })
        holds = max(10, patrons // 20)
        ins("reserves", holds, {
            "reserve_id": "seq", "borrowernumber": patron,
            "reservedate": _date("2024-10-01", f"{_h('rd')} % 90"),
            "biblionumber": f"1 + {_h('rbib')} % {biblios}",
            "branchcode": _elt(tuple(b for b, _ in BRANCHES[:-1]), _h("rb")),
            "priority": f"1 + {_h('pri')} % 5",
            "found": f"IF({_h('fnd')} % 5 = 0, 'W', NULL)",
            "reservenotes": f"IF({_h('rn')} % 7 = 0, 'Please call when in', NULL)",
        })
        ins("old_reserves", max(10, patrons // 10), {
            "reserve_id": f"{holds} + seq", "borrowernumber": patron,
            "reservedate": _date("2023-01-01", f"{_h('ord')} % 600"),
            "biblionumber": f"1 + {_h('orbib')} % {biblios}",
            "branchcode": _elt(tuple(b for b, _ in BRANCHES[:-1]), _h("orb")),
            "priority": "0", "found": "'F'",
        })
        ins("accountlines", max(10, patrons // 10), {
            "borrowernumber": patron,
            "itemnumber": f"1 + {_h('ait')} % {items}",
            "date": _dt("2024-01-01", f"{_h('adt')} % 30000000"),
            "amount": f"ROUND(({_h('amt')} % 2000) / 100, 2)",
            "amountoutstanding": f"ROUND(({_h('amt')} % 2000) / 100, 2)",
            "description": f"CONCAT('Overdue: ', {_elt(TITLES, _h('ati'))})",
            "debit_type_code": "'OVERDUE'",
            "branchcode": "'CPL'",
            "interface": "'intranet'",
        })
        ins("action_logs", max(10, circulations // 10), {
            "timestamp": _dt("2024-01-01", f"{_h('alt')} % 30000000"),
            "user": "1",
            "module": "'CIRCULATION'",
            "action": _elt(("ISSUE", "RETURN", "RENEWAL"), _h("ala")),
            "object": patron,
            "info": f"CAST(1 + {_h('ali')} % {items} AS CHAR)",
            "interface": "'intranet'",
        })
        ins("message_queue", max(10, patrons // 10), {
            "borrowernumber": patron,
            "subject": "'Item overdue'",
            "content": f"CONCAT('Dear patron, the following item is overdue: ', "
                       f"{_elt(TITLES, _h('mqt'))})",
            "message_transport_type": "'email'",
            "status": "'sent'",
            "to_address": "CONCAT('patron', seq, '@example.org')",
        })
        ins("search_history", max(10, patrons // 5), {
            "userid": patron,
            "sessionid": "MD5(CONCAT('session', seq DIV 5))",
            "query_desc": f"CONCAT('kw,wrdl: ', {_elt(TITLES, _h('sq'))})",
            "query_cgi": "CONCAT('idx=kw&q=', seq)",
            "type": "'biblio'",
            "total": f"{_h('tot')} % 100",
            "time": _dt("2024-01-01", f"{_h('sht')} % 30000000"),
        })
        shelves = max(5, patrons // 50)
        ins("virtualshelves", shelves, {
            "shelfnumber": "seq",
            "shelfname": "CONCAT('To read ', seq)",
            "owner": patron,
            "public": f"{_h('pub')} % 2",
            "created_on": _dt("2023-06-01", f"{_h('vsc')} % 30000000"),
        })
        ins("virtualshelfcontents", shelves * 5, {
            "shelfnumber": "1 + (seq - 1) DIV 5",
            "biblionumber": f"1 + {_h('vcb')} % {biblios}",
            "borrowernumber": patron,
        })
        last = min(items, max(10, circulations // 10))
        ins("items_last_borrower", last, {
            "itemnumber": "seq", "borrowernumber": patron,
        })
        ins("suggestions", max(5, patrons // 100), {
            "suggestedby": patron,
            "suggesteddate": _date("2024-01-01", f"{_h('sgd')} % 365"),
            "STATUS": "'ASKED'",
            "title": f"CONCAT('Suggested: ', {_elt(TITLES, _h('sgt'))})",
            "branchcode": "'CPL'",
        })
        queue = min(items, max(5, holds // 2))
        holder = f"1 + {_h('hq')} % {patrons}"

        def of_holder(col: str) -> str:  # one primary-key lookup per row, whatever the stats
            return (f"(SELECT b.{_q(col)} FROM borrowers b "  # noqa: S608 - fixture
                    f"WHERE b.borrowernumber = {holder})")

        ins("tmp_holdsqueue", queue, {
            "biblionumber": f"1 + (seq - 1) % {biblios}",
            "itemnumber": "seq",
            "barcode": "CONCAT('3', LPAD(seq, 11, '0'))",
            "surname": of_holder("surname"), "firstname": of_holder("firstname"),
            "phone": of_holder("phone"), "borrowernumber": holder,
            "cardnumber": of_holder("cardnumber"),
            "reservedate": "'2024-12-01'", "title": "'On hold'",
            "holdingbranch": "'CPL'", "pickbranch": "'CPL'", "item_level_request": "0",
        })
        ins("pseudonymized_transactions", max(10, circulations // 10), {
            "hashed_borrowernumber": f"LEFT(SHA2(CONCAT('salt', {patron}), 256), 60)",
            "has_cardnumber": "1",
            "title": "'A'",
            "branchcode": "'CPL'", "categorycode": "'PT'",
            "transaction_type": "'issue'",
            "datetime": _dt("2024-01-01", f"{_h('ptd')} % 30000000"),
        })
        for i, (name, sql) in enumerate(SAVED_REPORTS, start=1):
            cur.execute("INSERT INTO saved_sql (id, borrowernumber, date_created, savedsql, "
                        "report_name, type, cache_expiry, public, report_area) VALUES "
                        "(%s, 1, '2024-01-01', %s, %s, 1, 300, 0, 'CIRC')", (i, sql, name))
        counts["saved_sql"] = len(SAVED_REPORTS)
    finally:
        cur.execute("SET SESSION foreign_key_checks = 1, unique_checks = 1")
    conn.commit()
    log.info("filled in %.1f s", time.perf_counter() - t0)
    return counts


def build(conn: Any, *, patrons: int = 2_000, circulations: int | None = None,
          items: int | None = None, analyze: bool = True) -> dict[str, int]:
    """Schema and data in the connection's (empty) database."""
    build_schema(conn)
    counts = fill(conn, patrons=patrons, circulations=circulations, items=items)
    if analyze:
        cur = conn.cursor()
        cur.execute("ANALYZE TABLE borrowers, issues, old_issues, items")
        cur.fetchall()
    return counts
