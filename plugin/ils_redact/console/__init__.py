"""The staff console: the disclosure workflow in a browser (``ils-redact serve``).

Server-rendered pages (Flask and Jinja2, no JavaScript) over the same library functions
the CLI calls, as the logged-in staff member's own database login: :mod:`.services` is
the only module that touches the database; :mod:`.app` the pages and the console's own
protections (CSRF, sessions, headers, rate limit); :mod:`.sessions` the server-side
session store; :mod:`.server` cheroot with TLS; :mod:`.readable` the readable disclosure
document; :mod:`.stats_view` the statistics tables and chart; :mod:`.demo`
``ils-redact demo --serve``.  ``docs/console.md`` has the security checklist.
"""
