"""The query gate: the second layer in front of staff queries (see :mod:`.gate`)."""

from .findings import CODES, Finding
from .gate import Gate, GateResult
from .profiles import PROFILES, STATS_SCHEMA, Profile, build_profile

__all__ = [
    "CODES",
    "PROFILES",
    "STATS_SCHEMA",
    "Finding",
    "Gate",
    "GateResult",
    "Profile",
    "build_profile",
]
