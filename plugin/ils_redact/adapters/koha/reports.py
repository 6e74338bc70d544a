"""The standard statistics reports for Koha, on its real tables and columns.

The same reports as Evergreen's, as Koha keeps the data (see :mod:`ils_redact.stats`):

* a checkout lives in ``issues`` while it is out and in ``old_issues`` once returned,
  so circulation reports count both as one source (``Measure.also``): a patron with a
  loan in each is one patron;
* the item type is ``items.itype`` (Koha's item-level item types), else the record's
  ``biblioitems.itemtype`` (the older, record-level setting);
* a hold is in ``reserves`` until it is filled, cancelled or expires, then in
  ``old_reserves``; a filled hold has ``found = 'F'`` and is dated by its last change
  (``timestamp``), as Koha's own holds reports do: Koha keeps no separate fill date;
* registrations are ``borrowers.dateenrolled`` (patrons deleted since are in
  ``deletedborrowers`` and are not counted);
* ages come from ``borrowers.dateofbirth`` at the checkout's date, in ten-year bands;
  the date itself never leaves the database;
* ``statistics`` is Koha's transaction log (issue, return, renew, localuse, payment ...);
  its rows name the patron (``borrowernumber``), which is what the threshold counts,
  and are grouped by branch and transaction type only.

Codes are shown by name: branches by ``branchname``, item types and patron categories
by ``description``.  Profile and registration reports group by the patron's *current*
category and home library, as Evergreen's do.
"""

from __future__ import annotations

from typing import TypedDict

from ...sdc.model import Dim, Join, Lookup, Measure, Report

BRANCH = Lookup("branches", "branchcode", "branchname")
ITEMTYPE = Lookup("itemtypes", "itemtype", "description")
CATEGORY = Lookup("categories", "categorycode", "description")


class _Source(TypedDict):
    """The keyword arguments of a :class:`Measure` that say what it counts."""

    relation: str
    also: tuple[str, ...]
    time_column: str
    patron: tuple[str, ...]


#: checkouts: current loans and returned ones
CHECKOUTS = _Source(relation="issues", also=("old_issues",), time_column="issuedate",
                    patron=("borrowernumber",))
ITEM = Join("i", "items", "itemnumber", "t", "itemnumber")
RECORD = Join("bi", "biblioitems", "biblioitemnumber", "i", "biblioitemnumber")
PATRON = Join("u", "borrowers", "borrowernumber", "t", "borrowernumber")

REPORTS: tuple[Report, ...] = (
    Report(
        "circ_by_branch_itemtype",
        "Checkouts by branch and item type",
        "Checkouts per month at each branch (where the item was checked out), by item "
        "type (the item's, else its record's).",
        (Measure("checkouts", rows=Dim("Checkout branch", "t", "branchcode", lookup=BRANCH),
                 cols=Dim("Item type", "i", "itype", lookup=ITEMTYPE,
                          fallback=(("bi", "itemtype"),)),
                 joins=(ITEM, RECORD), **CHECKOUTS),),
    ),
    Report(
        "circ_by_category",
        "Checkouts by patron category",
        "Checkouts per month by the patron's category.",
        (Measure("checkouts", rows=Dim("Patron category", "u", "categorycode",
                                       lookup=CATEGORY),
                 joins=(PATRON,), **CHECKOUTS),),
    ),
    Report(
        "holds_by_pickup_branch",
        "Holds placed and filled by pickup branch",
        "Holds placed (by the date they were placed) and holds filled (by the date the "
        "filled hold was last changed) per month at each pickup branch.",
        (Measure("holds placed", "reserves", "reservedate", ("borrowernumber",),
                 rows=Dim("Pickup branch", "t", "branchcode", lookup=BRANCH),
                 also=("old_reserves",)),
         Measure("holds filled", "old_reserves", "timestamp", ("borrowernumber",),
                 rows=Dim("Pickup branch", "t", "branchcode", lookup=BRANCH),
                 only=(("found", "F"),))),
    ),
    Report(
        "registrations_by_branch",
        "New registrations by home branch",
        "Patron accounts enrolled per month, by home branch.",
        (Measure("registrations", "borrowers", "dateenrolled", ("borrowernumber",),
                 rows=Dim("Home branch", "t", "branchcode", lookup=BRANCH)),),
    ),
    Report(
        "circ_by_age_band",
        "Checkouts by age band",
        "Checkouts per month by the patron's age at checkout, in ten-year bands (computed "
        "from the date of birth, which is never shown).",
        (Measure("checkouts", rows=Dim("Age at checkout", "u", "dateofbirth",
                                       kind="age_band"),
                 joins=(PATRON,), **CHECKOUTS),),
    ),
    Report(
        "transactions_by_branch_type",
        "Transactions by branch and type",
        "Koha's transaction log (statistics) per month at each branch, by transaction "
        "type (issue, return, renew, local use, payment ...).",
        (Measure("transactions", "statistics", "datetime", ("borrowernumber",),
                 rows=Dim("Branch", "t", "branch", lookup=BRANCH),
                 cols=Dim("Transaction type", "t", "type")),),
    ),
)
