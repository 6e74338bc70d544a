"""Text from a database or a person, as it may be shown in a comment line, a terminal, a
spreadsheet or a printed form."""

from __future__ import annotations

import re

_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}

#: Characters that move the cursor, recolour, retitle or reorder a terminal's text, or
#: hide themselves in a printed page: C0 and C1 controls (NUL included), DEL, line and
#: paragraph separators, interlinear annotation, and Unicode's default-ignorable code
#: points (bidirectional marks, overrides and isolates, zero-width characters, the soft
#: hyphen, fillers that print blank, variation selectors, the byte-order mark, tags).
#: The layer's request checks refuse the same set (sql/*/0007).
UNPRINTABLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f"
    "\u200b-\u200f\u2028-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0"
    "\ufff0-\uffff\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0000-\U000e0fff]")

#: what makes a spreadsheet read a cell as a formula (OWASP's CSV injection list)
_FORMULA = ("=", "+", "-", "@")


def printable(text: str) -> str:
    """Catalog text as it may be shown in a comment line or a terminal: control
    characters (a newline would end an SQL comment; an escape sequence drives the
    terminal) written as ``\\xNN``, and every other character of :data:`UNPRINTABLE` as
    its escape."""
    return escaped(text.translate(_CONTROL))


def escaped(text: str) -> str:
    """Every character of :data:`UNPRINTABLE` written as its escape (``\\x1b``, ``\\n``,
    ``\\u202e``): one safe line for a terminal, a CSV cell or a printed form."""
    return UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"),
                           text)


def escaped_lines(text: str) -> str:
    """:func:`escaped`, but line breaks and tabs stay (text shown on a page, where a
    reason's lines are its lines)."""
    return UNPRINTABLE.sub(lambda m: m.group() if m.group() in "\n\t" else escaped(m.group()),
                           text)


def csv_label(text: str) -> str:
    """A label (a branch, a category, a report name) as a CSV cell a spreadsheet shows as
    text: escaped, and a leading ``= + - @`` quoted with an apostrophe."""
    out = escaped(text)
    return "'" + out if out.startswith(_FORMULA) else out
