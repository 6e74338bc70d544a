"""Shared helpers for the gate tests (imported by conftest.py and the test modules).

``stats_catalog`` is the reference catalog plus a few synthetic suppressed views in
schema ``ils_redact_stats`` (what ils-redact installs for the statistics role), so the
``stats`` profile has something to read.
"""

from __future__ import annotations

import dataclasses
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from ils_redact.adapters import get_adapter
from ils_redact.catalog import Catalog, Column, Relation
from ils_redact.gate import Gate
from ils_redact.rules import Rules, load_rules

REPO = Path(__file__).resolve().parents[2]
CASES = Path(__file__).resolve().parents[1] / "gate" / "cases"

STATS_VIEWS = {
    "circ_by_month": [("month", "date"), ("circ_lib", "integer"), ("circulations", "bigint"),
                      ("patrons", "bigint")],
    "holds_by_branch": [("month", "date"), ("pickup_lib", "integer"), ("holds", "bigint"),
                        ("patrons", "bigint")],
    "patrons_by_profile": [("home_ou", "integer"), ("profile", "integer"),
                           ("patrons", "bigint")],
}


@cache
def evergreen_rules() -> Rules:
    return load_rules(REPO / "redaction_rules.yaml")


@cache
def evergreen_catalog() -> Catalog:
    return get_adapter("evergreen").reference_catalog()


@cache
def stats_catalog() -> Catalog:
    """The reference catalog with the synthetic ``ils_redact_stats`` views added."""
    base = evergreen_catalog()
    rels = dict(base.relations)
    for name, cols in STATS_VIEWS.items():
        rel = Relation(schema="ils_redact_stats", name=name, kind="view",
                       columns=tuple(Column(c, t) for c, t in cols))
        rels[rel.qualified] = rel
    return dataclasses.replace(base, relations=rels,
                               schemas=tuple(sorted({*base.schemas, "ils_redact_stats"})))


@cache
def gate_for(profile: str, request: int | None = None,
             search_path: tuple[str, ...] = ("public",),
             columns: tuple[str, ...] | None = None) -> Gate:
    return Gate(evergreen_rules(), stats_catalog(), profile, request_id=request,
                search_path=search_path, columns=columns)


def case_gate(case: dict[str, Any]) -> Gate:
    """The gate a corpus case names: its profile, request, search path and (a court
    order's) columns."""
    columns = case.get("columns")
    return gate_for(case["profile"], case.get("request"),
                    tuple(case.get("search_path") or ("public",)),
                    tuple(columns) if columns is not None else None)


def load_cases() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(CASES.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        for case in data["cases"]:
            out.append((f"{path.stem}:{case['name']}", case))
    return out


#: every case of every file, as (file:name, case)
ALL = load_cases()
