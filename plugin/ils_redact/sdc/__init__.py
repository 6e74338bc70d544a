"""Statistical disclosure control, engine-neutral: what a statistics report is
(:mod:`.model`), the least-cost cell suppression that protects it (:mod:`.solve`), the
arithmetic of publishing months (:mod:`.publish`) and what a run returns
(:mod:`.results`).

The engines (``backends/<engine>/stats*.py``) write and run the SQL and import this
package; the statistics service (:mod:`ils_redact.stats`) decides which reports a rules
file defines, and the CLI and the console render the results.  Nothing here imports an
engine, a service or a driver.
"""
