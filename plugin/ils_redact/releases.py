"""ILS releases: which one a database is at, and the catalog facts of each supported one.

A release is a version string as the ILS writes it (Evergreen ``3.14.4``, Koha
``23.05.02``), compared as a tuple of integers: ``3.15`` is the first 3.15 release, so
``3.15.0 >= 3.15`` and ``3.14.12 < 3.15``.  The rules mark names that exist only in some
releases with ``since``/``until`` (see ``rules/model.py``); the database says which release
it is at (each adapter's ``release`` module reads it: Evergreen's ``config.upgrade_log``,
Koha's ``Version`` system preference), and the catalog carries it.

Each adapter ships the catalog facts of the releases it supports in ``releases/`` beside it
(compact gzipped JSON, built from upstream by ``tools/build_release_catalogs.py``), with a
``manifest.json`` naming the source repository, commit and date of each.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import import_module
from pathlib import Path
from typing import Any

from .catalog import Catalog, catalog_from_json

_VERSION = re.compile(r"^\d+(\.\d+){1,3}$")


def version_key(version: str) -> tuple[int, ...]:
    """``3.14.4`` -> (3, 14, 4); ``23.05`` -> (23, 5).  ValueError if not a version."""
    if not _VERSION.match(version):
        raise ValueError(f"not a release number: {version!r}")
    return tuple(int(x) for x in version.split("."))


def in_range(version: str, since: str | None, until: str | None) -> bool:
    """Whether a release is in ``[since, until)``: ``since`` is the first release that
    has the name, ``until`` the first that no longer has it.  Missing parts count as 0."""
    key = version_key(version)
    width = max(len(key), 3)

    def pad(v: str) -> tuple[int, ...]:
        k = version_key(v)
        return k + (0,) * (width - len(k))

    k = key + (0,) * (width - len(key))
    if since is not None and k < pad(since):
        return False
    return not (until is not None and k >= pad(until))


@dataclass(frozen=True)
class Release:
    """What a database says about its ILS release."""

    ils: str  # evergreen | koha
    version: str | None  # None: the database names no release we can read
    source: str  # where it was read, for people
    detail: str = ""

    def describe(self) -> str:
        name = {"evergreen": "Evergreen", "koha": "Koha"}.get(self.ils, self.ils)
        what = f"{name} {self.version}" if self.version else f"{name}, release unknown"
        extra = f", {self.detail}" if self.detail else ""
        return f"{what} ({self.source}{extra})"

    def to_json(self) -> dict[str, Any]:
        return {"ils": self.ils, "version": self.version, "source": self.source,
                "detail": self.detail}


def detect_release(conn: Any, engine: str, database: str | None = None) -> Release | None:
    """Ask each built-in adapter of this engine whether the database is its ILS and at
    which release.  Never raises for a database that is not an ILS (None) and never
    aborts the caller's transaction (each probe checks before it reads)."""
    modules = {"postgresql": ("ils_redact.adapters.evergreen.release",),
               "mariadb": ("ils_redact.adapters.koha.release",)}.get(engine, ())
    for name in modules:
        module = import_module(name)
        found = (module.detect_release(conn, database) if database is not None
                 else module.detect_release(conn))
        if found is not None:
            return found
    return None


# -- the catalogs of the supported releases ---------------------------------------------
#
# One file per adapter, ``releases/catalogs.json.gz``: the releases of a series differ in a
# few relations, so each distinct relation and function is stored once (under a hash of
# its JSON) and each release lists the ones it has.  Twelve Evergreen releases take about
# the size of one catalog.

STORE = "catalogs.json.gz"


def _key(obj: Any) -> str:
    text = json.dumps(obj, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def store_catalog(catalog: Catalog, store: Path, version: str) -> Path:
    """Add (or replace) one release's catalog in the store; reproducible gzip."""
    data: dict[str, Any] = (dict(_load_store(store)) if store.exists() else
                            {"format": 1, "relations": {}, "functions": {}, "catalogs": {}})
    full = catalog.to_json()
    entry = {k: v for k, v in full.items() if k not in ("relations", "functions")}
    entry["relations"] = []
    entry["functions"] = []
    for kind in ("relations", "functions"):
        for obj in full[kind]:
            k = _key(obj)
            data[kind][k] = obj
            entry[kind].append(k)
    data["catalogs"][version] = entry
    used = {kind: {k for e in data["catalogs"].values() for k in e[kind]}
            for kind in ("relations", "functions")}
    for kind in ("relations", "functions"):
        data[kind] = {k: v for k, v in sorted(data[kind].items()) if k in used[kind]}
    text = json.dumps(data, separators=(",", ":"), sort_keys=True)
    store.parent.mkdir(parents=True, exist_ok=True)
    with open(store, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0,
                                                filename="", compresslevel=9) as fh:
        fh.write(text.encode("utf-8"))
    _load_store.cache_clear()
    _read.cache_clear()
    return store


@lru_cache(maxsize=4)
def _load_store(store: Path) -> dict[str, Any]:
    with gzip.open(store, "rt", encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def catalog_json(store: Path, version: str) -> dict[str, Any]:
    """One release's catalog in the catalog file format (what `plan --catalog` reads)."""
    data = _load_store(store)
    entry = dict(data["catalogs"][version])
    entry["relations"] = [data["relations"][k] for k in entry["relations"]]
    entry["functions"] = [data["functions"][k] for k in entry["functions"]]
    return entry


@dataclass(frozen=True)
class ReleaseCatalog:
    """One supported release's catalog and where its facts came from."""

    ils: str
    version: str
    store: Path
    repository: str
    commit: str
    date: str
    facts: dict[str, Any]

    def catalog(self) -> Catalog:
        return _read(self.store, self.version)

    def to_json(self) -> dict[str, Any]:
        return catalog_json(self.store, self.version)

    def describe(self) -> str:
        return f"{self.ils} {self.version}: {self.repository} @ {self.commit[:12]} ({self.date})"


@lru_cache(maxsize=32)
def _read(store: Path, version: str) -> Catalog:
    return catalog_from_json(catalog_json(store, version),
                             source=f"{store.parent.parent.name} {version} ({store.name})")


def release_catalogs(ils: str) -> list[ReleaseCatalog]:
    """The supported releases of an adapter, oldest first (empty if it ships none)."""
    manifest = Path(__file__).resolve().parent / "adapters" / ils / "releases" / "manifest.json"
    if not manifest.exists():
        return []
    data = json.loads(manifest.read_text(encoding="utf-8"))
    out = [ReleaseCatalog(ils, version, manifest.parent / STORE, e["repository"],
                          e["commit"], e["date"], e)
           for version, e in data.get("releases", {}).items()]
    return sorted(out, key=lambda r: version_key(r.version))


def supported_range(ils: str) -> tuple[str, str] | None:
    """(oldest, newest) supported release."""
    cats = release_catalogs(ils)
    return (cats[0].version, cats[-1].version) if cats else None
