"""The module ``backends.mariadb.verify.hazards`` under its old name (the same module object,
for callers and tests that import this name)."""

import sys

from ...backends.mariadb.verify import hazards

sys.modules[__name__] = hazards
