"""MariaDB SQL text: quoting, placeholders and scripts, without a connection.

Identifiers are backtick-quoted with embedded backticks doubled; string literals are
single-quoted with backslashes and quotes escaped (the executor pins an ``sql_mode``
without ``NO_BACKSLASH_ESCAPES``, so this is how the server reads them); accounts are
``'user'@'host'``.  Nothing here formats input into SQL any other way, so a plan prints
offline and is byte for byte what ``install`` runs.

Layer scripts (``sql/mariadb/*.sql``) are written as the ``mariadb`` client reads them:
statements end with ``;``, and ``DELIMITER $$`` ... ``DELIMITER ;`` surrounds routine and
trigger bodies.  :func:`split_script` turns a script into statements;
:func:`render` fills the ``{layer}``-style placeholders with quoted names.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal
from typing import Any

#: the sql_mode every layer object is created under (routines keep the mode they were
#: created with): strict, no zero dates, backslash escapes on, ANSI quotes off.
SQL_MODE = ("STRICT_ALL_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ZERO_DATE,NO_ZERO_IN_DATE,"
            "NO_ENGINE_SUBSTITUTION")


def ident(name: str) -> str:
    """A quoted identifier: ``a`b`` -> ```a``b```."""
    if not name or "\0" in name:
        raise ValueError(f"invalid identifier {name!r}")
    return "`" + name.replace("`", "``") + "`"


def qname(database: str, name: str) -> str:
    return f"{ident(database)}.{ident(name)}"


_ESCAPES = {"\0": "\\0", "\n": "\\n", "\r": "\\r", "\x1a": "\\Z", "'": "\\'", "\\": "\\\\"}


def string(value: str) -> str:
    return "'" + "".join(_ESCAPES.get(ch, ch) for ch in value) + "'"


def literal(value: Any) -> str:
    """A SQL literal for a Python value (None, bool, int, Decimal, str, dict/list as JSON,
    dates and datetimes as strings)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, dict | list | tuple):
        return string(json.dumps(value, sort_keys=True))
    if isinstance(value, dt.datetime):
        return string(value.isoformat(sep=" "))
    if isinstance(value, dt.date):
        return string(value.isoformat())
    if isinstance(value, str):
        return string(value)
    raise TypeError(f"no SQL literal for {type(value).__name__}")


def account(user: str, host: str) -> str:
    """``'user'@'host'`` as GRANT, CREATE USER and DEFINER take it."""
    return f"{string(user)}@{string(host)}"


def grantee_sql(grantee: str) -> str:
    """A grantee key (``role``, ``user@host``, ``@host`` for an anonymous account, or
    ``PUBLIC``, a name MariaDB 10.11 reserves for the role every account has) as GRANT
    and REVOKE take it."""
    if grantee == "PUBLIC":
        return "PUBLIC"
    user, at, host = grantee.rpartition("@")
    return account(user, host) if at else ident(grantee)


_DELIM = re.compile(r"^\s*DELIMITER\s+(\S+)\s*$", re.IGNORECASE)


def split_script(text: str) -> list[str]:
    """Statements of a client script: ``;`` ends a statement unless ``DELIMITER``
    changed it; comment-only lines between statements are dropped, quoted text is
    respected (a ``;`` inside a string does not end a statement)."""
    statements: list[str] = []
    delim = ";"
    buf: list[str] = []
    for line in text.splitlines():
        m = _DELIM.match(line)
        if m and not _in_string("\n".join(buf)):
            if "".join(buf).strip():
                raise ValueError("DELIMITER inside an unterminated statement")
            delim = m.group(1)
            buf = []
            continue
        if not buf and (not line.strip() or line.lstrip().startswith("--")):
            continue
        buf.append(line)
        joined = "\n".join(buf).rstrip()
        if joined.endswith(delim) and not _in_string(joined[: -len(delim)]):
            stmt = joined[: -len(delim)].strip()
            if stmt:
                statements.append(stmt)
            buf = []
    if "".join(buf).strip():
        raise ValueError(f"unterminated statement at the end: {' '.join(buf)[:80]}")
    return statements


def _in_string(text: str) -> bool:
    """Whether ``text`` ends inside a quoted string or a backtick identifier (with
    backslash escapes inside single and double quotes, as MariaDB reads them), ignoring
    quotes in ``--`` comments."""
    quote = None
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if quote is None:
            if text.startswith("-- ", i) or text.startswith("--\n", i):
                j = text.find("\n", i)
                i = n if j < 0 else j
                continue
            if ch in "'\"`":
                quote = ch
        elif ch == "\\" and quote != "`":
            i += 1
        elif ch == quote:
            if i + 1 < n and text[i + 1] == quote:
                i += 1
            else:
                quote = None
        i += 1
    return quote is not None


_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def render(text: str, values: dict[str, str]) -> str:
    """Replace ``{name}`` with already-quoted SQL for the names given; any other brace
    text (a JSON literal such as ``'{}'``) is left as it is."""
    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in values:
            return m.group(0)
        return values[key]

    return _PLACEHOLDER.sub(sub, text)


def is_compound(statement: str) -> bool:
    """Statements the mariadb client needs a DELIMITER for (a routine or trigger body)."""
    return ";" in statement and not _in_string(statement) and bool(re.match(
        r"\s*CREATE\s+(OR\s+REPLACE\s+)?(DEFINER\s*=\s*\S+\s+)?"
        r"(PROCEDURE|FUNCTION|TRIGGER|EVENT)\b", statement, re.IGNORECASE))
