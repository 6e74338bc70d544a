"""The module ``backends.mariadb.verify.grants`` under its old name (the same module object,
for callers and tests that import this name)."""

import sys

from ...backends.mariadb.verify import grants

sys.modules[__name__] = grants
