"""Everything the MariaDB checks share, read once before any of them runs.

The Koha catalog and the install's state (as ``plan`` reads them), every grant on the
server (``grants``), every view and routine on the server outside the system databases
(a definer view in another application's database can read Koha's tables too), the
relations of the layer databases, the expectations, and the statistics layer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from ....catalog import Catalog
from ....rules import Rules
from ....rules.model import ALL_COLUMNS
from ....sdc.model import Report as SdcReport
from ..connection import Connection
from ..generated import LAYER_NAMES
from ..introspect import view_reads
from ..planner import ROLE_KINDS, Names
from ..state import MariaState
from .expect import RESTRICTED_KINDS, Expectation
from .grants import ServerGrants
from .layer_facts import LayerFacts
from .stats_layer import StatsLayer

SYSTEM_DATABASES = ("mysql", "sys", "information_schema", "performance_schema")
#: the layer's roles that people are given; any other layer role (stats_owner) is a
#: definer, granted to nobody
PEOPLE_KINDS = ("admin", "disclosure", "exporter", "stats")
PROTECTED = ("identity", "secret", "confidential", "personal", "unclassified")


@dataclass(frozen=True)
class View:
    db: str
    name: str
    definer: str
    security: str  # DEFINER | INVOKER
    definition: str

    @property
    def qualified(self) -> str:
        return f"{self.db}.{self.name}"

    @cached_property
    def reads(self) -> tuple[str, ...]:
        return view_reads(self.definition, self.db)


@dataclass(frozen=True)
class Routine:
    db: str
    name: str
    type: str  # procedure | function
    definer: str
    security: str
    params: int
    body: str

    @property
    def qualified(self) -> str:
        return f"{self.db}.{self.name}"

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.type, self.db, self.name)


_VIEWS = ("SELECT TABLE_SCHEMA, TABLE_NAME, DEFINER, SECURITY_TYPE, VIEW_DEFINITION "
          "FROM information_schema.VIEWS WHERE TABLE_SCHEMA NOT IN ({})")
_ROUTINES = ("SELECT db, name, LOWER(type), definer, security_type, "
             "CONVERT(body_utf8 USING utf8mb4) FROM mysql.proc "
             "WHERE type IN ('PROCEDURE', 'FUNCTION') AND db NOT IN ({})")
_PARAMS = ("SELECT SPECIFIC_SCHEMA, SPECIFIC_NAME, LOWER(ROUTINE_TYPE), COUNT(*) "
           "FROM information_schema.PARAMETERS WHERE ORDINAL_POSITION > 0 "
           "AND SPECIFIC_SCHEMA NOT IN ({}) GROUP BY 1, 2, 3")


def read_views(conn: Connection) -> list[View]:
    ph = ", ".join(["%s"] * len(SYSTEM_DATABASES))
    return [View(*r) for r in conn.execute(_VIEWS.format(ph), SYSTEM_DATABASES).fetchall()]


def read_routines(conn: Connection) -> list[Routine]:
    ph = ", ".join(["%s"] * len(SYSTEM_DATABASES))
    params = {(d, n, t): int(c) for d, n, t, c in
              conn.execute(_PARAMS.format(ph), SYSTEM_DATABASES).fetchall()}
    out = []
    for db, name, rtype, definer, security, body in conn.execute(
            _ROUTINES.format(ph), SYSTEM_DATABASES).fetchall():
        out.append(Routine(db, name, rtype, definer, security,
                           params.get((db, name, rtype), 0), body or ""))
    return out


def read_relations(conn: Connection, databases: tuple[str, ...]
                   ) -> dict[str, tuple[str, tuple[str, ...]]]:
    """``db.name`` -> (BASE TABLE | VIEW, its columns in order) for the given databases."""
    if not databases:
        return {}
    ph = ", ".join(["%s"] * len(databases))
    kinds = {(d, n): t for d, n, t in conn.execute(
        f"SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES "  # noqa: S608 - placeholders only
        f"WHERE TABLE_SCHEMA IN ({ph})", databases).fetchall()}
    cols: dict[tuple[str, str], list[str]] = {k: [] for k in kinds}
    for d, n, c in conn.execute(
            f"SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS "  # noqa: S608 - placeholders only
            f"WHERE TABLE_SCHEMA IN ({ph}) ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION",
            databases).fetchall():
        cols.setdefault((d, n), []).append(c)
    return {f"{d}.{n}": (kinds.get((d, n), "BASE TABLE"), tuple(cs))
            for (d, n), cs in sorted(cols.items())}


@dataclass
class MariaContext:
    conn: Connection
    rules: Rules
    catalog: Catalog
    state: MariaState
    grants: ServerGrants
    names: Names
    #: the layer databases: ils_redact_<koha db>, and any the bookkeeping records
    layers: tuple[str, ...]
    views: list[View]
    routines: list[Routine]
    #: relations of the layer databases: ``db.name`` -> (type, columns)
    layer_relations: dict[str, tuple[str, tuple[str, ...]]]
    stats: StatsLayer
    expect: dict[str, Expectation]
    #: accounts and roles ils-redact created (grantee keys): the only valid definers
    definers: set[str]
    #: (login, role) edges CREATE ROLE added for the installing administrator
    installer_edges: frozenset[tuple[str, str]] = frozenset()
    #: the clock, the trace reconciled with the audit log (layer_facts)
    facts: LayerFacts = field(default_factory=LayerFacts)
    exhaustive: bool = False
    ils_config: Path | None = None
    notes: list[str] = field(default_factory=list)
    #: the statistics reports the rules define here (the verify service's report source)
    reports: list[SdcReport] = field(default_factory=list)

    @property
    def koha(self) -> str:
        return self.state.database

    @property
    def layer(self) -> str:
        return self.state.layer

    @property
    def roles(self) -> dict[str, str]:
        return self.names.roles

    @property
    def restricted(self) -> list[tuple[str, str]]:
        return [(k, self.names.roles[k]) for k in RESTRICTED_KINDS]

    @property
    def layer_roles(self) -> set[str]:
        """The layer's roles people are given (a login may combine them)."""
        return {self.names.roles[k] for k in PEOPLE_KINDS if k in self.names.roles}

    @property
    def definer_roles(self) -> set[str]:
        """The layer's roles that only define routines (``stats_owner``): granted to nobody."""
        return {self.names.roles[k] for k in ROLE_KINDS if k not in PEOPLE_KINDS}

    @property
    def owner(self) -> str:
        return self.names.owner

    # -- classification ------------------------------------------------------------------
    def classify(self, db: str, name: str) -> str:
        """identity | secret | confidential | personal | other | unclassified (Koha), layer
        (a layer database), or outside (any other database)."""
        if db in self.layers:
            return "layer"
        if db != self.koha:
            return "outside"
        return self.rules.classify(name) or "unclassified"

    def protected(self, qualified: str) -> bool:
        """Patron data, credentials, anything not classified, or a layer base table (the
        scope, requests, audit log: who is under investigation)."""
        db, _, name = qualified.partition(".")
        cls = self.classify(db, name)
        if cls == "layer":
            kind = self.layer_relations.get(qualified, ("BASE TABLE", ()))[0]
            return kind != "VIEW"
        if cls in PROTECTED:
            return True
        secret = self.rules.secret.get(name, ())
        return cls == "other" and bool(secret) and secret != ALL_COLUMNS

    @cached_property
    def identity_views(self) -> set[str]:
        return {f"{db}.{v}" for db, v in self.expect["disclosure"].scoped}

    @cached_property
    def closed_names(self) -> set[str]:
        """The disclosure workflow's objects in the layer: no stats grant may name them."""
        return set(LAYER_NAMES) | {q.split(".", 1)[1] for q in self.identity_views}

    @cached_property
    def mentions(self) -> re.Pattern[str]:
        """Matches a protected relation named in SQL text: ``db.t``, `` `db`.`t` ``, or
        ``t`` alone (which a routine of the Koha database resolves there)."""
        alts = []
        for q in sorted(self.catalog.relations, key=len, reverse=True):
            db, name = q.split(".", 1)
            if self.protected(q):
                alts.append(rf"(?:`?{re.escape(db)}`?\s*\.\s*)?`?{re.escape(name)}`?")
        for q, (kind, _) in sorted(self.layer_relations.items()):
            db, name = q.split(".", 1)
            if kind != "VIEW":
                alts.append(rf"`?{re.escape(db)}`?\s*\.\s*`?{re.escape(name)}`?")
        body = "|".join(alts) or "(?!)"
        return re.compile(rf"(?<![\w$.`])(?:{body})(?![\w$`])", re.IGNORECASE)

    def reads_in(self, routine: Routine) -> list[str]:
        """Protected relations a routine's text names (qualified)."""
        out = set()
        for m in self.mentions.finditer(routine.body):
            text = m.group(0).replace("`", "").replace(" ", "")
            if "." not in text:
                if routine.db != self.koha:
                    continue
                text = f"{self.koha}.{text}"
            out.add(text)
        return sorted(out)
