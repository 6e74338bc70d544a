"""Statistics: aggregate-only reports where no individual is identified.

The statute allows statistical reports "so that no individual is identified".  The
statistics role (``<prefix>stats``) holds no grant on any ILS relation; it may EXECUTE
the report functions in schema ``ils_redact_stats`` and nothing else.  Those functions
are owned by ``<prefix>stats_owner`` (NOLOGIN, never granted to a person), which holds
SELECT on exactly the columns the reports read.  Code: :mod:`.model` (reports as data),
``adapters/<ils>/reports.py`` (the standard reports), :mod:`.custom` (the rules' own,
checked by the query gate), :mod:`.pgsql` (SQL), :mod:`.run` and :mod:`.render`, and
``sql/postgresql/0003_stats.sql`` (suppression).  On MariaDB (Koha) the same reports and
the same suppression run as SQL SECURITY DEFINER procedures of a ``stats_owner`` role
granted to nobody: ``backends/mariadb/stats.py``, ``stats_run.py`` and
``sql/mariadb/0003_stats.sql``.

What is released, and why it is safe
====================================

A report is a set of *pages*: one per month (and per measure, e.g. holds placed / holds
filled).  A page is a table of counts of records (circulations, holds, registrations)
with one or two groupings, completed with its totals: row totals, column totals and the
grand total (a one-way page has cells and a grand total).  Each entry is released or
suppressed (value NULL, ``suppressed`` true).

1. *Threshold on people, not rows.*  An entry is released only if the records in it
   belong to at least k distinct patrons (``statistics.k``, default 11, the CMS cell-size
   rule; the rules schema refuses k < 3).  Cells count ``count(DISTINCT patron)``; a total
   is compared through its largest cell (a total has at least as many patrons as any of
   its cells), a lower bound, so a total whose cells are all small is suppressed even if
   it might have passed.  Aged circulations keep no patron id: the combination (post
   code, home library, profile, birth year) is counted instead, which merges people and
   so is again a lower bound.

2. *Complementary suppression within a page.*  The released entries of a page and the
   facts "rows add up to their totals, columns to theirs" form a linear system in the
   suppressed entries.  Write the table with its totals as a bipartite graph (a vertex
   per row, the totals row included, and per column, the totals column included; a
   suppressed entry is an edge).  A suppressed entry is determined by the released ones
   exactly when it is a bridge of that graph: if it lies on a cycle, adding +1, -1, +1 ...
   around the cycle changes it and keeps every row and column sum.  ``suppress_page``
   adds the cheapest released entry that closes a cycle through each bridge until there
   is none (first, cheaply, until no row or column holds exactly one suppressed entry).
   A one-way page has one equation (cells add up to the total): one suppressed entry is
   solvable, two are not.  Zero cells are simply absent (known to be zero, no patron).
   ``tests/test_stats_pg.py`` solves the system with exact fractions for every page.

3. *No differencing between runs.*  ``--from`` and ``--to`` must fall on the first day of
   a month (in ``statistics.time_zone``, pinned into the report, so a session's TimeZone
   cannot move a boundary), and the current, incomplete month is never reported.  Every
   total is within a page: no total ever spans months.  The page of a month depends only
   on that month's records (suppression is a deterministic function of the page's cells),
   so a run over a year and a run over any month of it release the same entries for that
   month: the union of everything any set of runs can release is the union of
   independently protected pages, and a period minus a sub-period reveals nothing a page
   does not.  Tested: overlapping runs give identical pages; misaligned or incomplete
   periods are refused.

What this does not cover: records of a past month
that change after the fact (a loan aged or deleted, a patron's current profile or home
library changing, which the profile and registration reports group by) produce a
different page for that month in a later run; the difference between the two pages
concerns the patrons who changed.  A change of k changes suppression patterns.  Two
different reports share their monthly grand totals (circulations); a total suppressed in
one and released in another is recomputable there.  Noise is deliberately not used:
without a privacy budget it averages away.
"""

from __future__ import annotations

from importlib import import_module

from ..adapters import get_adapter
from ..catalog import Catalog
from ..rules import Rules
from .model import Dim, Join, Lookup, Measure, Report

__all__ = ["Dim", "Join", "Lookup", "Measure", "Report", "all_reports", "standard_reports"]


def standard_reports(adapter: str) -> list[Report]:
    """The adapter's standard reports (``Adapter.reports_module``: ``REPORTS``)."""
    module = get_adapter(adapter).reports_module
    if not module:
        return []
    return list(import_module(module).REPORTS)


def all_reports(rules: Rules, catalog: Catalog) -> list[Report]:
    """Standard reports whose relations exist here, then the rules' custom reports
    (checked: raises RulesErrors with file:line)."""
    from .custom import custom_reports

    standard = [r for r in standard_reports(rules.adapter)
                if all(catalog.get(rel) is not None and all(
                    catalog.get(rel).column(c) is not None  # type: ignore[union-attr]
                    for c in cols) for rel, cols in r.columns_read().items())]
    return standard + custom_reports(rules, catalog, standard)
