"""The module ``checks.ilsconfig`` under its old name (the same module object,
for callers and tests that import this name)."""

import sys

from ..checks import ilsconfig

sys.modules[__name__] = ilsconfig
