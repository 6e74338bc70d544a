"""Drive the disclosure workflow on a Koha database through the library, as staff logins."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from ils_redact.disclosure import requests as rq
from ils_redact.rules import Rules
from support.koha import KohaDb


def role_mode(rules: Rules) -> Rules:
    """The rules with ``disclosure.access: role``: disclosure staff query the views."""
    return dataclasses.replace(rules, disclosure=dataclasses.replace(rules.disclosure,
                                                                     access="role"))


@dataclasses.dataclass
class Staff:
    """Logins of one database: two admins, a member of the disclosure role (role mode),
    an exporter (function mode) and a second disclosure member who is never a grantee."""

    db: KohaDb
    alice: str  # admin + exporter: creates requests for herself
    bob: str  # admin: approves
    dora: str  # disclosure role (reads the views)
    erin: str  # disclosure role, never named as grantee
    carol: str = ""  # admin: approves a request that discloses to alice or bob

    @classmethod
    def create(cls, db: KohaDb) -> Staff:
        rm = role_mode(db.rules)
        alice = db.login("alice", "admin", "disclosure")
        bob = db.login("bob", "admin")
        dora = _login_with(db, "dora", rm, "disclosure")
        erin = _login_with(db, "erin", rm, "disclosure")
        carol = db.login("carol", "admin")
        return cls(db, alice, bob, dora, erin, carol)

    def request(self, creator: str, patrons: list[int], *, grantee: str | None = None,
                basis: str = "emergency", columns: list[str] | None = None,
                hours: float = 2, approve_as: str | None = None) -> int:
        rules = self.db.rules
        new = rq.NewRequest(
            basis=basis, agency="State Police", officer_name="Pat Officer",
            officer_badge="4711", case_number="2026-CR-17", patrons=patrons,
            emergency_reason="imminent danger" if basis == "emergency" else None,
            court="Circuit Court" if basis == "court-order" else None,
            order_reference="ORD-1" if basis == "court-order" else None,
            order_date=dt.date(2026, 1, 1) if basis == "court-order" else None,
            expires_at=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=hours),
            grantee=grantee)
        new.validate(rules)
        new.columns = rq.resolve_columns(rules, columns or [], basis)
        with self.db.connect(creator, autocommit=False) as c:
            found, unknown = rq.resolve_patrons(c, patrons, [])
            assert not unknown, unknown
            rid = rq.create(c, new, found)
            c.commit()
        if approve_as:
            with self.db.connect(approve_as, autocommit=False) as c:
                rq.approve(c, rid)
                c.commit()
        return rid


def _login_with(db: KohaDb, name: str, rules: Rules, kind: str) -> str:
    from ils_redact.backends.mariadb import staff

    user = f"{db.prefix}{name}"
    with db.connect(autocommit=False) as c:
        plan = staff.plan_grant(c, rules, user, kind, create=True, password="Sekr1t-pw")
        c.rollback()
        staff.apply(c, plan)
    return user


def identity_select(db: KohaDb, where: str = "") -> str:
    from ils_redact.backends.mariadb.sqltext import ident

    cols = ", ".join(ident(c) for c in db.rules.identity[0].columns)
    return f"SELECT {cols} FROM {ident(db.layer)}.borrowers {where}"  # noqa: S608


def warnings_of(conn: Any) -> list[str]:
    return [r[2] for r in conn.execute("SHOW WARNINGS").fetchall()]
