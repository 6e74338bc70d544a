"""What the statistics role may hold on MariaDB: what the statistics layer installed for it.

Kept apart on purpose.  The statistics layer for Koha is being built separately, so
verify does not hard-code its objects: it reads what install did.  Every privilege the
MariaDB installer hands out is written to the layer's bookkeeping before the GRANT runs
(``installed_object``, kind ``grant``, detail the grant), so the statistics layer's grants
to the stats role are the recorded grants whose grantee is the stats role and which

* name an object in a layer database (the layer database, or one the bookkeeping
  records with kind ``layer``),
* give SELECT on a table or view, or EXECUTE on a procedure or function, that exists,
* are not on an object of the disclosure workflow (the scope, requests, audit log,
  bookkeeping and identity views stay closed to the stats role whatever is recorded),
* and, for a view or routine, whose definer is an account or role the bookkeeping records
  as ils-redact's (its definer decides what it reads).

On those objects, and only for the stats role, the grants are allowed (not required: the
layer grants its reports, not their helpers), and the owner-rights-view and
SECURITY DEFINER hazards do not apply: aggregating over every patron is their purpose,
and the statistics layer's own tests prove the k threshold.  A grant added by hand is not
recorded, so it is judged like any other.  Until the statistics layer is installed the
stats role may hold nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..generated import LAYER_NAMES
from ..state import Grant, MariaState


@dataclass(frozen=True)
class StatsLayer:
    grants: frozenset[Grant]
    #: (db, name) of its relations and (type, db, name) of its routines
    relations: frozenset[tuple[str, str]]
    routines: frozenset[tuple[str, str, str]]

    @classmethod
    def none(cls) -> StatsLayer:
        return cls(frozenset(), frozenset(), frozenset())


def read_stats_layer(state: MariaState, stats_role: str, layers: tuple[str, ...],
                     definers: set[str], closed: set[str],
                     relations: dict[tuple[str, str], str | None],
                     routines: dict[tuple[str, str, str], str]) -> StatsLayer:
    """``relations``: (db, name) -> definer (None for a base table) of every relation in
    the layer databases; ``routines``: (type, db, name) -> definer; ``closed``: names of
    the disclosure workflow's objects (identity views included)."""
    grants: set[Grant] = set()
    for rec in state.installed_of("grant"):
        try:
            g = Grant.from_json(rec.detail)
        except (KeyError, TypeError):
            continue
        if g.grantee != stats_role or g.db not in layers or g.name in closed \
                or g.name in LAYER_NAMES:
            continue
        if g.level in ("table", "column") and g.privilege == "SELECT":
            if (g.db, g.name) not in relations:
                continue
            definer = relations[(g.db, g.name)]
        elif g.level in ("procedure", "function") and g.privilege == "EXECUTE":
            key = (g.level, g.db, g.name)
            if key not in routines:
                continue
            definer = routines[key]
        else:
            continue
        if definer is not None and definer not in definers:
            continue
        grants.add(g)
    return StatsLayer(
        frozenset(grants),
        frozenset((g.db, g.name) for g in grants if g.level in ("table", "column")),
        frozenset((g.level, g.db, g.name) for g in grants
                  if g.level in ("procedure", "function")))
