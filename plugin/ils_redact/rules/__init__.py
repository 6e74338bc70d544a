"""Rules: load, validate and query ``redaction_rules.yaml``."""

from .load import default_rules_path, load_rules, parse_rules
from .model import ALL_COLUMNS, ROLE_KINDS, IdentityTable, ReleaseMark, Rules
from .semantic import check_against_catalog, for_catalog, release_notes

__all__ = [
    "ALL_COLUMNS",
    "ROLE_KINDS",
    "IdentityTable",
    "ReleaseMark",
    "Rules",
    "check_against_catalog",
    "for_catalog",
    "release_notes",
    "default_rules_path",
    "load_rules",
    "parse_rules",
]
