"""The module ``checks.findings`` under its old name (the same module object,
for callers and tests that import this name)."""

import sys

from ..checks import findings

sys.modules[__name__] = findings
