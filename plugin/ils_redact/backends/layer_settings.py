"""What both backends store in the layer from the rules: the identity allow-list and the
settings the database itself enforces (request limits, access mode, k).  The values are
the same on every engine; only how each backend writes them (a settings table row, a
literal in a function) differs, so the list is made once here."""

from __future__ import annotations

from ..rules import Rules


def identity_columns(rules: Rules) -> list[str]:
    """The allow-list as ``table.column``, in rules order: what a request may name."""
    return [f"{t.relation}.{c}" for t in rules.identity for c in t.columns]


def settings(rules: Rules) -> dict[str, object]:
    """Settings the database itself enforces."""
    d = rules.disclosure
    return {
        "max_patrons": d.max_patrons,
        "emergency_hours": d.emergency_hours,
        "court_order_max_days": d.court_order_max_days,
        "access": d.access,
        "identity_columns": identity_columns(rules),
        "statistics_k": rules.statistics.k,
    }
