"""The standard statistics reports for Evergreen, on its real tables and columns.

Boards and state reports ask for these; each is counted per month, released only where a
cell counts at least k distinct patrons, and suppressed so that no hidden cell can be
recomputed (see :mod:`ils_redact.stats`).  Codes are shown by name where Evergreen has
one: org units by ``shortname``, profiles by ``permission.grp_tree.name``.
"""

from __future__ import annotations

from ...sdc.model import Dim, Join, Lookup, Measure, Report

ORG = Lookup("actor.org_unit", "id", "shortname")
PROFILE = Lookup("permission.grp_tree", "id", "name")
CIRC = "action.circulation"

REPORTS: tuple[Report, ...] = (
    Report(
        "circ_by_library_modifier",
        "Circulations by circulating library and circulation modifier",
        "Checkouts per month at each circulating library, by the item's circulation "
        "modifier.",
        (Measure("circulations", CIRC, "xact_start", ("usr",),
                 rows=Dim("Circulating library", "t", "circ_lib", lookup=ORG),
                 cols=Dim("Circulation modifier", "c", "circ_modifier"),
                 joins=(Join("c", "asset.copy", "id", "t", "target_copy"),)),),
    ),
    Report(
        "circ_by_profile",
        "Circulations by patron profile",
        "Checkouts per month by the patron's profile (permission group).",
        (Measure("circulations", CIRC, "xact_start", ("usr",),
                 rows=Dim("Patron profile", "u", "profile", lookup=PROFILE),
                 joins=(Join("u", "actor.usr", "id", "t", "usr"),)),),
    ),
    Report(
        "holds_by_pickup_library",
        "Holds placed and filled by pickup library",
        "Holds placed (by request time) and holds filled (by fulfillment time) per month "
        "at each pickup library.",
        (Measure("holds placed", "action.hold_request", "request_time", ("usr",),
                 rows=Dim("Pickup library", "t", "pickup_lib", lookup=ORG)),
         Measure("holds filled", "action.hold_request", "fulfillment_time", ("usr",),
                 rows=Dim("Pickup library", "t", "pickup_lib", lookup=ORG))),
    ),
    Report(
        "registrations_by_library",
        "New registrations by home library",
        "Patron accounts created per month, by home library.",
        (Measure("registrations", "actor.usr", "create_date", ("id",),
                 rows=Dim("Home library", "t", "home_ou", lookup=ORG)),),
    ),
    Report(
        "circ_by_age_band",
        "Circulations by age band",
        "Checkouts per month by the patron's age at checkout, in ten-year bands "
        "(computed from the date of birth, which is never shown).",
        (Measure("circulations", CIRC, "xact_start", ("usr",),
                 rows=Dim("Age at checkout", "u", "dob", kind="age_band"),
                 joins=(Join("u", "actor.usr", "id", "t", "usr"),)),),
    ),
    Report(
        "aged_circ_by_library",
        "Aged circulations by circulating library and patron profile",
        "Circulations kept after their patron link was removed, per month, by circulating "
        "library and the profile recorded with them; post code and birth year are never "
        "shown (they only bound the count of distinct patrons from below).",
        (Measure("aged circulations", "action.aged_circulation", "xact_start",
                 ("usr_post_code", "usr_home_ou", "usr_profile", "usr_birth_year"),
                 rows=Dim("Circulating library", "t", "circ_lib", lookup=ORG),
                 cols=Dim("Patron profile", "t", "usr_profile", lookup=PROFILE)),),
    ),
)
