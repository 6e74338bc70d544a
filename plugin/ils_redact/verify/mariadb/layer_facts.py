"""The module ``backends.mariadb.verify.layer_facts`` under its old name (the same module object,
for callers and tests that import this name)."""

import sys

from ...backends.mariadb.verify import layer_facts

sys.modules[__name__] = layer_facts
