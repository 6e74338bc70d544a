"""A backend-neutral picture of an ILS database: relations, columns, keys, inheritance.

The same model is read from three places: a live PostgreSQL catalog, a live MariaDB
catalog, and a JSON file (what ``ils-redact catalog dump`` writes; the adapters'
``catalog.json.gz``), so ``plan`` works offline and fixtures are built from the facts of a
real ILS, not invented). Planning, verification and the query gate all look names up here,
so an unknown name fails in one place, with one "did you mean" message.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from .errors import CatalogError, did_you_mean


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool = True


@dataclass(frozen=True)
class ForeignKey:
    name: str
    columns: tuple[str, ...]
    ref_relation: str  # qualified name
    ref_columns: tuple[str, ...]


@dataclass(frozen=True)
class Relation:
    """A table or view.  ``qualified`` is ``schema.name`` for PostgreSQL and
    ``database.name`` for MariaDB."""

    schema: str
    name: str
    kind: str  # table | view | matview | foreign | partitioned
    owner: str | None = None
    columns: tuple[Column, ...] = ()
    primary_key: tuple[str, ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    unique_constraints: tuple[tuple[str, ...], ...] = ()
    inherits: tuple[str, ...] = ()
    rls_enabled: bool = False
    rls_forced: bool = False
    depends_on: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @cached_property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column | None:
        for c in self.columns:
            if c.name == name:
                return c
        return None

    @property
    def is_view(self) -> bool:
        return self.kind in ("view", "matview")


@dataclass(frozen=True)
class Function:
    schema: str
    name: str
    argument_types: str = ""
    return_type: str = ""
    security_definer: bool = False
    language: str = ""
    owner: str | None = None
    public_execute: bool = True
    mentions_relations: tuple[str, ...] = ()

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def signature(self) -> str:
        return f"{self.schema}.{self.name}({self.argument_types})"


@dataclass
class Catalog:
    """Everything the planner and checks need to know about one database."""

    engine: str  # postgresql | mariadb
    database: str
    relations: dict[str, Relation]
    functions: tuple[Function, ...] = ()
    schemas: tuple[str, ...] = ()
    server_version: str = ""
    #: MariaDB: the connected database, used to resolve unqualified names.
    default_schema: str | None = None
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    #: the ILS release the database is at (``3.14.4``, ``23.05.02``), when it is known:
    #: detected from the live database, or recorded in a catalog file
    release: str | None = None

    # -- lookups ---------------------------------------------------------------------
    def qualify(self, name: str) -> str:
        """``borrowers`` -> ``koha.borrowers`` where the engine has a default schema."""
        if "." not in name and self.default_schema:
            return f"{self.default_schema}.{name}"
        return name

    def get(self, name: str) -> Relation | None:
        return self.relations.get(self.qualify(name))

    def relation(self, name: str) -> Relation:
        """The relation, or a CatalogError with the nearest valid name."""
        rel = self.get(name)
        if rel is None:
            raise CatalogError(f"unknown relation {name}", hint=self.suggest_relation(name))
        return rel

    def suggest_relation(self, name: str) -> str | None:
        q = self.qualify(name)
        schema = q.split(".", 1)[0]
        if schema not in self.schemas and "." in q:
            hint = did_you_mean(schema, self.schemas)
            if hint:
                return hint
        return did_you_mean(q, self.relations)

    def suggest_column(self, relation: Relation, column: str) -> str | None:
        return did_you_mean(column, relation.column_names)

    def tables(self) -> Iterator[Relation]:
        return (r for r in self.relations.values() if not r.is_view)

    def views(self) -> Iterator[Relation]:
        return (r for r in self.relations.values() if r.is_view)

    @cached_property
    def _children(self) -> dict[str, tuple[str, ...]]:
        kids: dict[str, list[str]] = {}
        for rel in self.relations.values():
            for parent in rel.inherits:
                kids.setdefault(parent, []).append(rel.qualified)
        return {k: tuple(sorted(v)) for k, v in kids.items()}

    def children(self, name: str) -> tuple[str, ...]:
        return self._children.get(self.qualify(name), ())

    def descendants(self, name: str) -> set[str]:
        out: set[str] = set()
        todo = [self.qualify(name)]
        while todo:
            for kid in self.children(todo.pop()):
                if kid not in out:
                    out.add(kid)
                    todo.append(kid)
        return out

    def ancestors(self, name: str) -> set[str]:
        out: set[str] = set()
        todo = [self.qualify(name)]
        while todo:
            rel = self.get(todo.pop())
            for parent in rel.inherits if rel else ():
                if parent not in out:
                    out.add(parent)
                    todo.append(parent)
        return out

    def view_reads(self, name: str) -> set[str]:
        """Base relations a view reads, followed through other views."""
        out: set[str] = set()
        todo = list(self.relation(name).depends_on)
        while todo:
            dep = todo.pop()
            if dep in out:
                continue
            out.add(dep)
            rel = self.get(dep)
            if rel is not None and rel.is_view:
                todo.extend(rel.depends_on)
        return out

    # -- (de)serialisation -----------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The JSON catalog format ``catalog dump`` writes and ``plan --catalog`` reads."""
        rels = []
        for r in sorted(self.relations.values(), key=lambda r: r.qualified):
            d = {
                "schema": r.schema,
                "name": r.name,
                "kind": r.kind,
                "owner": r.owner,
                "columns": [asdict(c) for c in r.columns],
                "primary_key": list(r.primary_key),
                "foreign_keys": [
                    {
                        "name": fk.name,
                        "columns": list(fk.columns),
                        "references": {
                            "schema": fk.ref_relation.split(".", 1)[0],
                            "table": fk.ref_relation.split(".", 1)[1],
                            "columns": list(fk.ref_columns),
                        },
                    }
                    for fk in r.foreign_keys
                ],
                "unique_constraints": [
                    {"name": f"uq_{i}", "columns": list(u)}
                    for i, u in enumerate(r.unique_constraints)
                ],
                "inherits": list(r.inherits),
                "rls_enabled": r.rls_enabled,
                "rls_forced": r.rls_forced,
            }
            if r.depends_on:
                d["depends_on"] = list(r.depends_on)
            if r.options:
                d["options"] = list(r.options)
            rels.append(d)
        out: dict[str, Any] = {
            "system": self.extra.get("system", ""),
            "engine": self.engine,
            "server_version": self.server_version,
            "database": self.database,
            "schemas": [{"schema": s} for s in self.schemas],
            "relations": rels,
            "functions": [
                {
                    "schema": f.schema,
                    "name": f.name,
                    "argument_types": f.argument_types,
                    "return_type": f.return_type,
                    "security_definer": f.security_definer,
                    "language": f.language,
                    "owner": f.owner,
                    "public_execute": f.public_execute,
                    "mentions_relations": list(f.mentions_relations),
                }
                for f in self.functions
            ],
        }
        if self.release:
            out["release"] = self.release
        return out


def _engine(raw: str) -> str:
    raw = raw.lower()
    if raw.startswith("postgres"):
        return "postgresql"
    if "maria" in raw or "mysql" in raw:
        return "mariadb"
    raise CatalogError(f"unknown engine {raw!r} in catalog (expected postgresql or mariadb)")


def relation_from_json(d: Mapping[str, Any]) -> Relation:
    fks = tuple(
        ForeignKey(
            name=fk.get("name", ""),
            columns=tuple(fk["columns"]),
            ref_relation=f"{fk['references']['schema']}.{fk['references']['table']}",
            ref_columns=tuple(fk["references"]["columns"]),
        )
        for fk in d.get("foreign_keys", ())
    )
    return Relation(
        schema=d["schema"],
        name=d["name"],
        kind=d.get("kind", "table"),
        owner=d.get("owner"),
        columns=tuple(
            Column(c["name"], c.get("type", "text"), bool(c.get("nullable", True)))
            for c in d["columns"]
        ),
        primary_key=tuple(d.get("primary_key") or ()),
        foreign_keys=fks,
        unique_constraints=tuple(tuple(u["columns"]) for u in d.get("unique_constraints", ())),
        inherits=tuple(d.get("inherits") or ()),
        rls_enabled=bool(d.get("rls_enabled", False)),
        rls_forced=bool(d.get("rls_forced", False)),
        depends_on=tuple(d.get("depends_on") or ()),
        options=tuple(d.get("options") or ()),
    )


def catalog_from_json(data: Mapping[str, Any], source: str = "<json>") -> Catalog:
    try:
        engine = _engine(data.get("engine", "postgresql"))
        rels = [relation_from_json(r) for r in data["relations"]]
    except (KeyError, TypeError) as exc:
        raise CatalogError(f"{source}: not a catalog file (missing {exc})") from None
    schemas = tuple(
        sorted({s["schema"] if isinstance(s, dict) else s for s in data.get("schemas", ())}
               | {r.schema for r in rels})
    )
    functions = tuple(
        Function(
            schema=f["schema"],
            name=f["name"],
            argument_types=f.get("argument_types", ""),
            return_type=f.get("return_type", ""),
            security_definer=bool(f.get("security_definer", False)),
            language=f.get("language", ""),
            owner=f.get("owner"),
            public_execute=bool(f.get("public_execute", True)),
            mentions_relations=tuple(f.get("mentions_relations") or ()),
        )
        for f in data.get("functions", ())
    )
    database = data.get("database", "")
    return Catalog(
        engine=engine,
        database=database,
        relations={r.qualified: r for r in rels},
        functions=functions,
        schemas=schemas,
        server_version=data.get("server_version", ""),
        default_schema=database if engine == "mariadb" else None,
        source=source,
        extra={"system": data.get("system", "")},
        release=data.get("release") or None,
    )


def load_catalog(path: Path | str) -> Catalog:
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogError(f"{p}: catalog file not found") from None
    except json.JSONDecodeError as exc:
        raise CatalogError(f"{p}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    return catalog_from_json(data, source=str(p))


def qualified_names(rels: Iterable[Relation]) -> list[str]:
    return sorted(r.qualified for r in rels)
