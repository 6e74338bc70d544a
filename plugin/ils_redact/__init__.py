"""ils-redact: library-records confidentiality enforced inside the ILS database.

Rules (``redaction_rules.yaml``) -> plan (a reviewable list of SQL statements) -> apply (one
transaction).  The database is the line of defence; the query gate in front of it is a
second layer that explains refusals and makes allowed queries work.
"""

__version__ = "0.1.0"
