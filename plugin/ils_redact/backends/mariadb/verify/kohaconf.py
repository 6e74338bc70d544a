"""Koha's ``koha-conf.xml``: the database account Koha (and its saved SQL reports) uses.

Koha runs every saved SQL report through its own database connection, the one
``<config>`` names (``etc/koha-conf.xml`` in Koha's sources; ``/etc/koha/sites/<instance>/
koha-conf.xml`` in the Debian packages)::

    <yazgfs> ... <config>
      <db_scheme>mysql</db_scheme> <database>koha_library</database>
      <hostname>localhost</hostname> <port>3306</port>
      <user>koha_library</user> <pass>...</pass>
    </config> </yazgfs>

That account reads every Koha table by design; verify checks that it is no more than
that (no global privilege, nothing on the layer or the grant tables), since a report
runs with all of it.  The password is never read into the result.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from ....errors import IlsRedactError


@dataclass(frozen=True)
class KohaLogin:
    user: str
    database: str = ""
    host: str = ""
    port: str = ""
    scheme: str = ""
    element: str = "yazgfs/config"

    @property
    def where(self) -> str:
        target = f"{self.host}:{self.port}" if self.port else self.host
        return f"{self.user}@{target}/{self.database}" if target else self.user


def _text(el: ET.Element, tag: str) -> str:
    child = el.find(tag)
    return (child.text or "").strip() if child is not None else ""


def koha_login(path: Path | str) -> KohaLogin:
    """The database login of a Koha configuration file."""
    p = Path(path)
    try:
        root = ET.parse(p).getroot()  # noqa: S314 - the sysadmin's own configuration file
    except FileNotFoundError:
        raise IlsRedactError(f"{p}: Koha configuration not found") from None
    except ET.ParseError as exc:
        line = exc.position[0] if exc.position else 0
        raise IlsRedactError(f"{p}:{line}: not well-formed XML ({exc})") from None
    config = root if root.tag == "config" else root.find("config")
    if config is None:
        raise IlsRedactError(f"{p}: not a Koha configuration (no <config> element under "
                             f"<{root.tag}>)", hint="pass Koha's koha-conf.xml")
    user = _text(config, "user")
    if not user:
        raise IlsRedactError(f"{p}: <config> names no database <user>")
    scheme = _text(config, "db_scheme")
    if scheme and scheme.lower() not in ("mysql", "mariadb"):
        raise IlsRedactError(f"{p}: Koha connects to {scheme}, not MariaDB")
    return KohaLogin(user, _text(config, "database"), _text(config, "hostname"),
                     _text(config, "port"), scheme,
                     "config" if root.tag == "config" else f"{root.tag}/config")
