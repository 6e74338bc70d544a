"""The vocabulary of ``ils-redact verify``, below the engines: checks, findings, the
report and its JUnit form, and the ILS configuration files both engines' checks read.
Each engine's checks (``backends/<engine>/verify/``) produce these; ``verify`` runs them.
"""
