"""The module ``checks.report`` under its old name (the same module object,
for callers and tests that import this name)."""

import sys

from ..checks import report

sys.modules[__name__] = report
