"""The module ``backends.mariadb.verify.probe`` under its old name (the same module object,
for callers and tests that import this name)."""

import sys

from ...backends.mariadb.verify import probe

sys.modules[__name__] = probe
