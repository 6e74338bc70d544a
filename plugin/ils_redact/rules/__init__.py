"""Rules: load, validate and query ``redaction_rules.yaml``."""

from .load import default_rules_path, load_rules, parse_rules
from .model import ALL_COLUMNS, ROLE_KINDS, IdentityTable, Rules
from .semantic import check_against_catalog

__all__ = [
    "ALL_COLUMNS",
    "ROLE_KINDS",
    "IdentityTable",
    "Rules",
    "check_against_catalog",
    "default_rules_path",
    "load_rules",
    "parse_rules",
]
