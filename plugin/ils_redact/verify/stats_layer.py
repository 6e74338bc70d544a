"""The module ``backends.postgresql.verify.stats_layer`` under its old name (the same module object,
for callers and tests that import this name)."""

import sys

from ..backends.postgresql.verify import stats_layer

sys.modules[__name__] = stats_layer
