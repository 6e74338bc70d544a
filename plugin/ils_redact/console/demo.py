"""``ils-redact demo --serve``: the demo's database, its staff logins and the console on it.

Runs as the demo's superuser, once, before the console starts (the console itself never
sees that credential): gives the demo's clerk and director a password, adds a statistics
login, publishes a verify report (as a sysadmin would) and serves the console until
Ctrl-C.  The passwords are made up here and printed once; they die with the demo.
"""

from __future__ import annotations

import json
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ..rules import Rules
from ..servers import Server

if TYPE_CHECKING:
    from .app import ConsoleConfig

Say = Callable[[str], None]


def serve_demo(srv: Server, rules: Rules, database: str, *, host: str, port: int,
               say: Say) -> None:
    from .server import serve_forever

    config, logins, passwords = prepare(srv, rules, database, say)

    def ready(url: str) -> None:
        say(f"   The staff console: {url}  (Ctrl-C stops it and removes the demo)")
        for login, what in logins.items():
            say(f"     {login:28} password {passwords[login]:14} {what}")
        say("   Log in as the clerk, record an emergency request by card barcode (e.g. "
            "20000000000001), approve it as the director in another browser, export it as "
            "the clerk, print the form; the board sees the statistics.")

    serve_forever(config, host, port, on_ready=ready)


def prepare(srv: Server, rules: Rules, database: str, say: Say
            ) -> tuple[ConsoleConfig, dict[str, str], dict[str, str]]:
    """The staff logins' passwords, the server asking for them, the published report:
    (the console's configuration, login -> what it does, login -> password)."""
    from ..backends import postgresql as pg
    from ..backends.postgresql import staff
    from ..verify import verify
    from .app import ConsoleConfig

    prefix = rules.role_prefix
    logins = {f"{prefix}clerk": "records requests and exports (admin + disclosure)",
              f"{prefix}director": "approves them (admin)",
              f"{prefix}board": "reads the statistics (stats)"}
    passwords = {login: secrets.token_urlsafe(9) for login in logins}
    dsn = srv.dsn_for(database)
    with pg.connect(dsn) as conn:
        plan = staff.plan_grant(conn, rules, f"{prefix}board", "stats", create=True)
        conn.rollback()
        staff.apply(conn, plan)
        for login, password in passwords.items():
            hashed = conn.pgconn.encrypt_password(password.encode(), login.encode(),
                                                  b"scram-sha-256").decode()
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(login), sql.Literal(hashed)))
        conn.commit()
    if srv.kind == "embedded":  # made with trust: the staff logins must give passwords
        from ..servers import require_passwords

        require_passwords(srv, list(logins))
        say("   The embedded server now asks the staff logins for their password "
            "(scram-sha-256 in pg_hba.conf)")
    else:
        _warn_unless_checked(dsn, f"{prefix}clerk", passwords[f"{prefix}clerk"], say)
    report = Path(tempfile.mkdtemp(prefix="ils-redact-demo-")) / "verify.json"
    with pg.connect(dsn) as conn:
        report.write_text(json.dumps(verify(conn, rules).to_json()), encoding="utf-8")
    say(f"   Published verify's report ({report}) for the console's admins")
    d = conninfo_to_dict(dsn)
    for k in ("user", "password"):
        d.pop(k, None)
    config = ConsoleConfig(dsn=make_conninfo(**d), rules=rules,  # type: ignore[arg-type]
                           library="Demo Library", verify_report=report)
    return config, logins, passwords


def _warn_unless_checked(dsn: str, login: str, password: str,
                         say: Say) -> None:
    """On a server given with --dsn (its pg_hba.conf is the sysadmin's): say so when it
    does not ask the staff logins for a password, since the console will refuse them."""
    from ..backends import get_backend

    d = conninfo_to_dict(dsn)
    d.pop("user", None)
    d.pop("password", None)
    engine = get_backend("postgresql")
    conn = engine.connect_as(make_conninfo(**d), login, password)  # type: ignore[arg-type]
    try:
        if not engine.password_was_checked(conn):
            say(f"   WARNING: this server lets {login} in without asking for its password "
                "(pg_hba trust/peer): the console will refuse every staff login; "
                "configure scram-sha-256 for them in pg_hba.conf")
    finally:
        conn.close()
