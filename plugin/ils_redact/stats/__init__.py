"""Statistics: aggregate-only reports where no individual is identified.

The statute allows statistical reports "so that no individual is identified".  The
statistics role (``<prefix>stats``) holds no grant on any ILS relation; it may EXECUTE
the report functions in schema ``ils_redact_stats`` and nothing else.  Those functions
are owned by ``<prefix>stats_owner`` (NOLOGIN, never granted to a person), which holds
SELECT on exactly the columns the reports read.  Code: this package decides which reports
a rules file defines (:func:`all_reports`: ``adapters/<ils>/reports.py``, the standard
reports, and :mod:`.custom`, the rules' own, checked by the query gate) and renders
results (:mod:`.render`); :mod:`ils_redact.sdc` holds the report model, the suppression
solver, the publication arithmetic and the result types; each engine writes and runs its
SQL (``backends/postgresql/stats.py``, ``stats_publish.py``, ``stats_run.py`` with the
layer files ``sql/postgresql/0003_stats.sql`` and ``0006_stats_publication.sql``; on
MariaDB (Koha) the same reports read what ``stats publish`` recorded through SQL SECURITY
DEFINER procedures of a ``stats_owner`` role granted to nobody:
``backends/mariadb/stats.py``, ``stats_run.py``, ``stats_publish.py`` and
``sql/mariadb/0003_stats.sql``, ``0005_stats_publication.sql``).

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

2. *Complementary suppression within a page, at least cost, with protection
   intervals* (:mod:`ils_redact.sdc.solve`).  The released entries of a page, the facts "rows add up
   to their totals, columns to theirs" and "counts are never negative" let an attacker
   bound each suppressed entry by linear programming.  Each entry suppressed for fewer
   than k patrons must stay uncertain by a protection level either way
   (``statistics.protection`` x k, rounded up); the complements are the least-cost set
   under ``statistics.cost`` that achieves it, solved exactly (HiGHS through SciPy's
   ``milp``; a greedy fallback past ``statistics.exact_limit``, recorded).  The tests
   solve the attacker's LP for every suppressed entry and, as before, the linear system
   with exact fractions.  (Layers 3-5 suppressed in SQL by closing a cycle through every
   bridge of the suppression graph: ``suppress_page`` in ``0003_stats.sql``, kept for
   the exact-recovery tests.)

3. *Published once: no differencing between runs, over time or across reports*
   (:mod:`ils_redact.sdc.publish`).  An administrator publishes a month (``stats publish``); the
   released entries are recorded in the layer (``0006_stats_publication.sql``,
   ``sql/mariadb/0005_stats_publication.sql``), readable only by the statistics owner,
   and the report functions return published months only.  A later run, a run over an
   overlapping period, a change of k or of the records after publication all return the
   same page.  A number two reports share (the month's circulations are the grand total
   of three reports) is kept as the first publication released it, or suppressed and
   protected; whenever such a shared number is suppressed it is protected like a small
   cell, so no report narrows it for another.  Periods are whole months in a fixed time
   zone (``statistics.time_zone``), the current month is never reported, and no total
   spans months.

What this does not cover: knowledge from outside the published numbers; a chain of
several shared numbers across more than two reports is checked by the tests for the
standard reports (the joint LP over the three circulation reports of a month), not
proven in general.  Noise is deliberately not used: without a privacy budget it
averages away.
"""

from __future__ import annotations

from importlib import import_module

from ..adapters import get_adapter
from ..catalog import Catalog
from ..rules import Rules
from ..sdc.model import Dim, Join, Lookup, Measure, Report

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
