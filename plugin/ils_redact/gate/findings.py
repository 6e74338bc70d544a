"""Refusals as records: a stable code, the object concerned, where, and why.

A refusal is an expected outcome, not an error (STYLE 7): the gate collects every reason
it finds and hands them back together, so a person fixing a saved report sees the whole
list at once.  Codes are stable strings that tests, the YAML corpus and log searches
rely on; messages may improve, codes do not change meaning.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass

from sqlglot import exp

#: The statute quoted in messages.  Evergreen's rules are written for Illinois (the
#: Library Records Confidentiality Act); an adapter for another state passes its own
#: citation to the profile.
DEFAULT_LAW = "75 ILCS 70/1"

#: code -> one-line meaning.  ``ils-redact codes`` lists them (with verify's); each is
#: documented in docs/query-gate.md, and tests/gate/test_codes.py fails when a code the
#: source can emit is missing here, from the command or from the docs.
CODES: dict[str, str] = {
    "R-PARSE": "the text is not one SQL statement the parser (or the server's parser) accepts",
    "R-MULTI-STATEMENT": "more than one statement: the gate checks exactly one",
    "R-NOT-SELECT": "not a query: only SELECT (with WITH, set operations, VALUES) is allowed",
    "R-COMMAND": "a utility command (EXPLAIN, SET, SHOW, DO, COPY, PREPARE, CALL, LISTEN ...)",
    "R-SELECT-INTO": "SELECT ... INTO creates a table",
    "R-LOCKING": "FOR UPDATE / FOR SHARE takes row locks",
    "R-DML": "INSERT, UPDATE, DELETE or MERGE, also inside a WITH clause",
    "R-PARAMETER": "bind parameters ($1, ?, :name) are not supported: write the value",
    "R-VARIABLE": "a server or session variable (@@hostname, @@session.x, @x, @x := 1): "
                  "server state, outside the allow-list",
    "R-ALIAS-COLUMNS": "an alias column list the gate cannot map to the source's columns "
                       "by position (too many names, one name twice, none in MariaDB)",
    "R-UNSUPPORTED": "a construct the gate cannot check precisely",
    "R-WHOLE-ROW": "a whole-row reference (t, t.* inside an expression) reads every column",
    "R-UNKNOWN-RELATION": "a table or view the catalog does not know (fail closed)",
    "R-UNKNOWN-COLUMN": "a column that does not resolve, or resolves ambiguously (fail closed)",
    "R-CONFIDENTIAL-RELATION": "patron activity: loans, holds, fines, lists, searches, logs",
    "R-SECRET-RELATION": "credentials: never readable by a restricted role",
    "R-SECRET-COLUMN": "a credential column (password hash, token, API key)",
    "R-WITHHELD-COLUMN": "a column of an identity table that is not in the identity allow-list",
    "R-NOT-PERMITTED": "a relation this profile may not read",
    "R-FUNCTION": "a function that is not on the allow-list",
    "R-CAST": "a cast to a type whose input function looks objects up (regclass ...)",
    "R-PARSER-DIFFERENTIAL": "sqlglot and the server's parser read the text differently",
    "R-NOT-AGGREGATE": "a statistics report must return aggregates only",
    "R-WINDOW": "window functions return one row per input row",
    "R-PATRON-KEY-IN-GROUPING": "grouping by a patron identifier makes groups of one person",
    "R-PATRON-IDENTIFIER": "a patron identifier in the output or a filter of a statistics report",
    "R-SCOPE": "a disclosure that cannot be limited to the patrons of an approved request",
}


@dataclass(frozen=True)
class Finding:
    """One reason to refuse.  ``object`` names what is refused (a relation, a
    ``relation.column``, a function); ``line`` and ``col`` point into the text the user
    wrote (1-based), when known."""

    code: str
    message: str
    object: str = ""
    line: int | None = None
    col: int | None = None

    def __post_init__(self) -> None:
        if self.code not in CODES:  # a code nobody documented is a bug, not a refusal
            raise ValueError(f"unknown gate finding code {self.code}")

    def where(self) -> str:
        if self.line is None:
            return "-"
        return f"{self.line}:{self.col or 0}"

    def to_dict(self) -> dict[str, builtins.object]:  # the field ``object`` shadows it here
        return {
            "code": self.code,
            "object": self.object,
            "line": self.line,
            "col": self.col,
            "message": self.message,
        }

    def __str__(self) -> str:
        obj = f" {self.object}" if self.object else ""
        return f"{self.code}{obj} ({self.where()}): {self.message}"


def position(node: exp.Expr | None) -> tuple[int | None, int | None]:
    """Line and column of a node in the original text.

    sqlglot keeps token positions on identifiers (``meta``); other nodes are located
    through the first identifier below them, then through their parents.  Nodes the
    gate or ``qualify`` created have no position.
    """
    seen = 0
    while node is not None and seen < 50:
        meta = node.meta if node._meta else None  # noqa: SLF001 - avoid creating meta dicts
        if meta and "line" in meta:
            return _start(meta)
        for ident in node.find_all(exp.Identifier):
            m = ident._meta  # noqa: SLF001
            if m and "line" in m:
                return _start(m)
        node = node.parent
        seen += 1
    return None, None


def _start(meta: dict[str, int]) -> tuple[int, int | None]:
    """sqlglot records the column where a token ENDS; point at where it starts."""
    col = meta.get("col")
    if col is not None and "start" in meta and "end" in meta:
        col = max(1, col - (meta["end"] - meta["start"]))
    return meta["line"], col


def finding(code: str, message: str, obj: str = "", node: exp.Expr | None = None,
            line: int | None = None, col: int | None = None) -> Finding:
    """A Finding located at ``node`` unless a position is given."""
    if line is None and node is not None:
        line, col = position(node)
    return Finding(code, message, obj, line, col)


def offset_to_line_col(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of a character offset."""
    offset = max(0, min(offset, len(text)))
    before = text[:offset]
    line = before.count("\n") + 1
    col = offset - (before.rfind("\n") + 1) + 1
    return line, col


def dedupe(findings: list[Finding]) -> tuple[Finding, ...]:
    """Drop repeats of the same (code, object, message), keeping the first position."""
    seen: set[tuple[str, str, str]] = set()
    out = []
    for f in findings:
        key = (f.code, f.object, f.message)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return tuple(out)
