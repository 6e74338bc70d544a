"""Evergreen's ``opensrf.xml``: the database logins its reporter is configured with.

Evergreen's example configuration (``Open-ILS/examples/opensrf.xml.example``) has the
reporter daemon (Clark Kent) connect as ``postgres``, a superuser, and a superuser bypasses
row-level security and every grant (threat model fact 1).  Three places hold reporter
logins, each a ``<database>``-shaped element with ``driver``, ``host``, ``port``, ``db``,
``user`` and ``pw`` (older files: ``password``):

* ``opensrf/default/reporter/setup/database``: the connection reports run on;
* ``opensrf/default/reporter/setup/state_store``: where Clark Kent keeps its state
  (Evergreen 3.x);
* ``opensrf/default/apps/open-ils.reporter-store/app_settings/database``: the C service
  behind the reporter's staff interface.

They are looked up anywhere in the file (an installation may move them under
``<hosts>``).  Passwords are never read into the result.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from ..errors import IlsRedactError

#: XPath (relative to the root) -> what the connection is for
REPORTER_PATHS: tuple[tuple[str, str], ...] = (
    (".//reporter/setup/database", "reporter (Clark Kent report runs)"),
    (".//reporter/setup/state_store", "reporter state store"),
    (".//open-ils.reporter-store/app_settings/database", "open-ils.reporter-store service"),
)


@dataclass(frozen=True)
class DbLogin:
    """One configured database connection (no password)."""

    purpose: str
    element: str  # where in the file, e.g. default/reporter/setup/database
    user: str
    host: str = ""
    port: str = ""
    db: str = ""

    @property
    def where(self) -> str:
        target = "/".join(x for x in (f"{self.host}:{self.port}" if self.port else self.host,
                                      self.db) if x)
        return f"{self.user}@{target}" if target else self.user


def _path_of(root: ET.Element, target: ET.Element) -> str:
    parents = {c: p for p in root.iter() for c in p}
    parts = []
    node: ET.Element | None = target
    while node is not None and node is not root:
        parts.append(node.tag)
        node = parents.get(node)
    return "/".join(reversed(parts))


def _text(el: ET.Element, tag: str) -> str:
    child = el.find(tag)
    return (child.text or "").strip() if child is not None else ""


def reporter_logins(path: Path | str) -> list[DbLogin]:
    """The reporter's database logins in an Evergreen ``opensrf.xml``."""
    p = Path(path)
    try:
        root = ET.parse(p).getroot()  # noqa: S314 - the sysadmin's own configuration file
    except FileNotFoundError:
        raise IlsRedactError(f"{p}: ILS configuration not found") from None
    except ET.ParseError as exc:
        line = exc.position[0] if exc.position else 0
        raise IlsRedactError(f"{p}:{line}: not well-formed XML ({exc})") from None
    if root.tag != "opensrf":
        raise IlsRedactError(f"{p}: not an OpenSRF configuration (root element <{root.tag}>, "
                             "expected <opensrf>)", hint="pass Evergreen's opensrf.xml")
    out: list[DbLogin] = []
    seen: set[int] = set()
    for xpath, purpose in REPORTER_PATHS:
        for el in root.findall(xpath):
            if id(el) in seen:
                continue
            seen.add(id(el))
            user = _text(el, "user")
            if not user:
                continue
            out.append(DbLogin(purpose, _path_of(root, el), user, _text(el, "host"),
                               _text(el, "port"), _text(el, "db")))
    return out
