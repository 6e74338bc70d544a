"""The ILS releases, under the name they had before ``ils_redact.releases``.

Release facts sit below the engine (the catalog readers and the rules use them), so the
module moved out of ``adapters``; this name is the same module object, for callers and
tests that import it from here.
"""

import sys

from .. import releases

sys.modules[__name__] = releases
