"""The rules as frozen data: what a sysadmin wrote in ``redaction_rules.yaml``.

Nothing here knows about PostgreSQL or MariaDB.  Relation names are written as the ILS
writes them (``actor.usr`` for Evergreen, ``borrowers`` for Koha); the backend resolves
them against its catalog.  The disclosure role is an *allow-list*: it reads the columns
named under ``identity`` and nothing else, so classification lists (``confidential``,
``personal``, ``other``) document and check, they never open anything.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import IlsRedactError

#: The roles ils-redact creates, by their suffix after the role prefix.  ``owner`` owns
#: the layer's objects and is never granted to a person; ``admin`` is for the staff who
#: manage requests; ``disclosure`` and ``stats`` are the restricted roles; ``exporter``
#: may only call the logged export function (the default way staff disclose);
#: ``stats_owner`` owns the statistics reports (NOLOGIN, never granted to a person) and
#: holds only the column grants they read; ``export_owner`` (PostgreSQL) owns the logged
#: export function (NOLOGIN, granted to nobody, itself a member of ``disclosure`` so that
#: the export reads under that role's column grants and row policy).
ROLE_KINDS = ("owner", "admin", "disclosure", "exporter", "stats", "stats_owner",
              "export_owner")
#: what `ils-redact staff grant --role` takes
STAFF_KINDS = ("disclosure", "stats", "admin")

ALL_COLUMNS = "all"


@dataclass(frozen=True)
class IdentityTable:
    """A table the disclosure role may read, for patrons in scope only."""

    relation: str
    patron_key: str
    columns: tuple[str, ...]
    withheld: dict[str, str] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class BarcodeLookup:
    relation: str
    column: str
    patron_key: str
    active_column: str | None = None


@dataclass(frozen=True)
class PatronModel:
    relation: str
    key: str
    barcode: BarcodeLookup
    #: columns shown to the staff member creating a request, so they can confirm who
    #: the named patron is (a subset of the identity columns).
    display: tuple[str, ...] = ()


@dataclass(frozen=True)
class DisclosureSettings:
    max_patrons: int = 10
    emergency_hours: int = 24
    court_order_max_days: int = 90
    #: ``function``: staff logins may only call the logged export function (default);
    #: ``role``: staff logins become members of the disclosure role and may query.
    access: str = "function"


@dataclass(frozen=True)
class CustomReport:
    name: str
    source: str
    group_by: tuple[str, ...]
    measure: str
    patron_column: str
    time_column: str | None = None
    description: str = ""


@dataclass(frozen=True)
class StatisticsSettings:
    k: int = 11
    reports: tuple[CustomReport, ...] = ()
    #: month boundaries of every report (an IANA zone name, e.g. America/Chicago)
    time_zone: str = "UTC"
    #: complementary suppression (ils_redact.sdc.solve): the cost policy, the
    #: protection level as a fraction of k, the exact solver's size limit
    cost: str = "totals_first"
    protection: float = 0.5
    exact_limit: int = 400_000


@dataclass(frozen=True)
class GateSettings:
    row_cap: int = 1000
    statement_timeout_ms: int = 5000
    functions: tuple[str, ...] = ()


@dataclass(frozen=True)
class HardeningSettings:
    """Database-wide settings beyond the allow-list (PostgreSQL), both on by default.

    ``revoke_public_temp``: PostgreSQL grants TEMP on a database to PUBLIC, so a
    restricted role can create temporary tables and functions.  Install revokes it from
    PUBLIC and grants it back to the roles that had it and use this database (those that
    own or hold something in it, the layer's roles and their members excepted) and to
    ``temp_roles``.

    ``revoke_public_counters``: the row and block counters (``pg_stat_xact_user_tables``,
    ``pg_stat_get_*``, ...) count rows fetched before a row policy drops them, an oracle
    over hidden rows for anyone who may run SQL.  Install revokes them from PUBLIC and
    grants them back to the ILS owner, ``pg_read_all_stats`` and ``counter_roles``.

    Install records what PUBLIC and each role held before; turning a setting off, or
    uninstall, restores exactly that (docs/hardening.md)."""

    revoke_public_temp: bool = True
    temp_roles: tuple[str, ...] = ()
    revoke_public_counters: bool = True
    counter_roles: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReleaseMark:
    """The releases that have a name: ``[since, until)``; None is open-ended."""

    since: str | None = None
    until: str | None = None

    def describe(self) -> str:
        if self.since and self.until:
            return f"from release {self.since} until {self.until}"
        return f"from release {self.since}" if self.since else f"until release {self.until}"


@dataclass(frozen=True)
class Rules:
    version: int
    adapter: str
    role_prefix: str
    patron: PatronModel
    identity: tuple[IdentityTable, ...]
    secret: dict[str, tuple[str, ...] | str]
    confidential: dict[str, str]
    personal: dict[str, str]
    other: tuple[str, ...]
    disclosure: DisclosureSettings = DisclosureSettings()
    statistics: StatisticsSettings = StatisticsSettings()
    gate: GateSettings = GateSettings()
    hardening: HardeningSettings = HardeningSettings()
    policy_text: Path | None = None
    #: ``releases.relations`` / ``releases.columns``: names that exist only in some
    #: releases of the ILS (relation -> mark; (relation, column) -> mark)
    release_relations: dict[str, ReleaseMark] = field(default_factory=dict, compare=False)
    release_columns: dict[tuple[str, str], ReleaseMark] = field(default_factory=dict,
                                                                compare=False)
    path: Path | None = None
    #: (key, key, index...) -> line in the rules file, for error messages.
    lines: dict[tuple[Any, ...], int] = field(default_factory=dict, repr=False, compare=False)
    raw_text: str = field(default="", repr=False, compare=False)

    # -- names -----------------------------------------------------------------------
    def role(self, kind: str, database: str | None = None) -> str:
        """Role name for ``admin`` / ``disclosure`` / ``stats``.

        ``{database}`` in the prefix is replaced by the database name, so one rules
        file can serve production and a test copy on the same server.
        """
        prefix = self.role_prefix
        if "{database}" in prefix:
            if database is None:
                raise ValueError("role prefix needs a database name")
            prefix = prefix.replace("{database}", database)
        return f"{prefix}{kind}"

    def roles(self, database: str | None = None) -> dict[str, str]:
        return {k: self.role(k, database) for k in ROLE_KINDS}

    def staff_role(self, kind: str, database: str | None = None) -> str:
        """The role a staff login joins for ``kind`` (``staff grant --role``): in the
        default ``function`` access mode, disclosure staff join the exporter role
        (EXECUTE on the logged export only), not the disclosure role."""
        if kind not in STAFF_KINDS:
            raise IlsRedactError(f"unknown role {kind!r}: disclosure, stats or admin")
        if kind == "disclosure" and self.disclosure.access == "function":
            return self.role("exporter", database)
        return self.role(kind, database)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw_text.encode("utf-8")).hexdigest()

    def line(self, *path: Any) -> int | None:
        """Best line for a path: the deepest known prefix."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return None

    def where(self, *path: Any) -> str:
        line = self.line(*path)
        name = str(self.path) if self.path else "<rules>"
        return f"{name}:{line}" if line else name

    # -- classification --------------------------------------------------------------
    def identity_table(self, relation: str) -> IdentityTable | None:
        for t in self.identity:
            if t.relation == relation:
                return t
        return None

    def secret_columns(self, relation: str) -> tuple[str, ...] | str:
        return self.secret.get(relation, ())

    def classify(self, relation: str) -> str | None:
        """``identity``, ``secret``, ``confidential``, ``personal``, ``other`` or None."""
        if self.identity_table(relation):
            return "identity"
        if self.secret.get(relation) == ALL_COLUMNS:
            return "secret"
        if relation in self.confidential:
            return "confidential"
        if relation in self.personal:
            return "personal"
        if relation in self._other_set:
            return "other"
        return None

    @property
    def _other_set(self) -> frozenset[str]:
        return frozenset(self.other)

    def classified_relations(self) -> set[str]:
        out = {t.relation for t in self.identity}
        out |= {r for r, c in self.secret.items() if c == ALL_COLUMNS}
        out |= set(self.confidential) | set(self.personal) | set(self.other)
        return out

    def disclosure_columns(self) -> dict[str, tuple[str, ...]]:
        """relation -> identity columns: exactly what the disclosure role is granted."""
        return {t.relation: t.columns for t in self.identity}
