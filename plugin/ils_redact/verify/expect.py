"""The module ``backends.postgresql.verify.expect`` under its old name (the same module object,
for callers and tests that import this name)."""

import sys

from ..backends.postgresql.verify import expect

sys.modules[__name__] = expect
