"""Attacks on the console itself, each played as an attacker would, on both engines:
a cross-site POST, a stolen cookie after logout or timeout, script in stored fields,
a superuser (or the ILS owner) at the login page, password guessing, a cached page,
a password in the log, and database error text on a page."""

from __future__ import annotations

import http.server
import logging
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from ils_redact.stats import all_reports
from support.console import Client, Library

PAYLOAD = ('<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'
           '<b id="injected">b</b>')


def _sessions(lib: Library, login: str) -> int:
    """Database connections the console holds for ``login``."""
    if lib.engine == "postgresql":
        return int(lib.scalar("SELECT count(*) FROM pg_stat_activity WHERE usename = %s "
                              "AND application_name = 'ils-redact console'", (login,)))
    return int(lib.scalar("SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                          "WHERE USER = %s", (login,)))


def _settled(lib: Library, login: str, expected: int, wait: float = 5.0) -> bool:
    """Whether the console's connections for ``login`` come back to ``expected`` (a
    backend leaves pg_stat_activity a moment after its client closed the connection)."""
    import time

    deadline = time.monotonic() + wait
    while _sessions(lib, login) != expected:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.fixture
def attacker_site() -> Iterator[tuple[str, Path]]:
    """Another site (http://localhost:PORT, not the console's 127.0.0.1): serves the HTML
    files written into its folder."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="ils-redact-attacker-"))

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):  # type: ignore[no-untyped-def]
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *args):  # type: ignore[no-untyped-def]
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://localhost:{srv.server_address[1]}", root
    finally:
        srv.shutdown()
        srv.server_close()
        shutil.rmtree(root, ignore_errors=True)


# -- CSRF ---------------------------------------------------------------------------------------

def test_a_cross_site_post_without_the_token_is_refused(library: Library, browsers,
                                                        attacker_site) -> None:
    rid = library.request()
    director = browsers("director-csrf")
    director.login(library.url, library.director, library.password)
    assert director.cookie() is not None
    # the director, logged in, visits the attacker's page, which posts "approve"
    site, root = attacker_site
    (root / "evil.html").write_text(
        f'<form id="f" method="post" action="{library.url}requests/{rid}/approve">'
        '<input name="csrf" value="guessed"></form>'
        "<script>document.getElementById('f').submit()</script>", encoding="utf-8")
    director.get(f"{site}/evil.html")
    director.driver.implicitly_wait(0)
    import time

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and "Nothing was done" not in director.text():
        time.sleep(0.2)
    assert "Nothing was done" in director.text()
    director.shot("attack-cross-site-post")
    assert library.status(rid) == "draft"
    # the token itself, with the session cookie a script would have: refused without it,
    # with a wrong one, and from a foreign Origin; accepted only as the form sends it
    c = Client(library.url)
    assert c.login(library.director, library.password).status == 302
    token = c.csrf()
    for data, headers in (({}, {}), ({"csrf": "x" * len(token)}, {}),
                          ({"csrf": token}, {"Origin": "http://evil.example"}),
                          ({"csrf": token}, {"Origin": "null"})):
        r = c.post(f"/requests/{rid}/approve", data, headers=headers)
        assert r.status == 403 and "Nothing was done" in r.text, (data, headers)
    assert library.status(rid) == "draft"
    r = c.post(f"/requests/{rid}/approve", {"csrf": token}, headers={"Origin": c.origin})
    assert r.status == 302 and library.status(rid) == "approved"
    # logout is a state change too: without the token it is refused and the session lives
    assert c.post("/logout", {}).status == 403
    assert c.get("/requests").status == 200


def test_the_login_form_has_a_token_of_its_own(library: Library) -> None:
    c = Client(library.url)
    r = c.post("/login", {"login": library.clerk, "password": library.password})
    assert r.status == 403 and "another site" in r.text
    page = c.get("/login")
    c.cookies.pop("ilsr_login")  # a form posted from another site carries no cookie
    r = c.post("/login", {"login_token": page.field("login_token"), "login": library.clerk,
                          "password": library.password})
    assert r.status == 403 and not any(k.endswith("ilsr_session") for k in c.cookies)


# -- session theft ------------------------------------------------------------------------------

def test_a_session_cookie_is_useless_after_logout(library: Library) -> None:
    before = _sessions(library, library.clerk)
    c = Client(library.url)
    assert c.login(library.clerk, library.password).status == 302
    assert _sessions(library, library.clerk) == before + 1
    stolen = dict(c.cookies)
    token = c.csrf()
    assert c.post("/logout", {"csrf": token}).status == 302
    assert _sessions(library, library.clerk) == before  # the connection is closed
    thief = Client(library.url)
    thief.cookies = stolen
    r = thief.get("/requests")
    assert r.status == 302 and r.headers["Location"].startswith("/login")
    rid = library.request()
    r = thief.post(f"/requests/{rid}/close", {"csrf": token})
    assert r.status == 403 and library.status(rid) == "draft"


def test_a_session_cookie_is_useless_after_the_idle_timeout(library: Library) -> None:
    now = [1000.0]
    running = library.start(clock=lambda: now[0], idle_timeout=15 * 60)
    try:
        before = _sessions(library, library.clerk)
        c = Client(running.url)
        assert c.login(library.clerk, library.password).status == 302
        now[0] += 14 * 60
        assert c.get("/requests").status == 200  # activity keeps it alive
        now[0] += 14 * 60
        assert c.get("/requests").status == 200
        now[0] += 15 * 60 + 1
        r = c.get("/requests")
        assert r.status == 302 and "expired=1" in r.headers["Location"]
        assert "without activity" in c.get(r.headers["Location"]).text
        assert _sessions(library, library.clerk) == before
        assert c.get("/requests").status == 302  # and it stays dead
    finally:
        running.stop()


def test_idle_sessions_are_closed_without_a_request(library: Library) -> None:
    now = [1000.0]
    running = library.start(clock=lambda: now[0], idle_timeout=60)
    try:
        before = _sessions(library, library.clerk)
        c = Client(running.url)
        assert c.login(library.clerk, library.password).status == 302
        now[0] += 61
        sessions = running.app.extensions["ils_redact_console"].sessions
        assert sessions.sweep() == 1  # what the reaper thread does every 30 s
        assert _sessions(library, library.clerk) == before
    finally:
        running.stop()


def test_session_cookie_flags(library: Library, tmp_path: Path) -> None:
    c = Client(library.url)
    r = c.login(library.clerk, library.password)
    cookie = r.headers["Set-Cookie"]
    assert re.match(r"ilsr_session=[A-Za-z0-9_-]{43};", cookie)
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    # under TLS: Secure, and the __Host- prefix (no Domain, Path=/)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    from ils_redact.console.app import ConsoleConfig
    from ils_redact.console.server import start

    running = start(ConsoleConfig(dsn=library.dsn, rules=library.rules, tls=True),
                    certfile=cert, keyfile=key)
    try:
        import ssl

        assert running.url.startswith("https://")
        t = Client(running.url)
        t.context = ssl.create_default_context(cafile=str(cert))
        t.context.check_hostname = False
        r = t.login(library.clerk, library.password)
        assert r.status == 302
        cookie = r.headers["Set-Cookie"]
        assert cookie.startswith("__Host-ilsr_session=") and "Secure" in cookie
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert "max-age=" in t.get("/requests").headers["Strict-Transport-Security"]
    finally:
        running.stop()


def test_hidden_characters_in_stored_fields_are_shown_escaped(library: Library) -> None:
    """atk3: a direction override, a zero-width space or a soft hyphen in a stored field
    (a refusal reason any exporter may log on MariaDB, a row written before the database
    refused such characters) reversed or hid text on the console's pages.  Every value a
    page prints shows them as escapes."""
    rid = library.request()
    table = "ils_redact.request" if library.engine == "postgresql" else \
        f"`ils_redact_{library.dsn.rsplit('/', 1)[1]}`.request"
    conn = library.su()
    try:
        conn.execute(f"UPDATE {table} SET agency = %s, case_number = %s "  # noqa: S608
                     "WHERE id = %s", ("Metro\u200bPolice", "26-11\u00ad82", rid))
    finally:
        conn.close()
    c = Client(library.url)
    assert c.login(library.director, library.password).status == 302
    for page in (f"/requests/{rid}", "/requests"):
        r = c.get(page)
        assert r.status == 200, page
        assert "\u200b" not in r.text and "\u00ad" not in r.text, page
        assert "Metro\\u200bPolice" in r.text, page
    assert "26-11\\xad82" in c.get(f"/requests/{rid}").text


# -- stored script ------------------------------------------------------------------------------

def test_html_and_script_in_stored_fields_render_inert(library: Library, browsers) -> None:
    # a patron who registered with markup in the name, and a request typed with markup
    if library.engine == "postgresql":
        library.scalar("UPDATE actor.usr SET family_name = %s WHERE id = (SELECT usr FROM "
                       "actor.card WHERE barcode = %s) RETURNING 1",
                       (PAYLOAD, library.barcodes[2]))
    else:
        db = library.dsn.rsplit("/", 1)[1]
        conn = library.su()
        try:
            conn.execute(f"UPDATE `{db}`.borrowers SET surname = %s "  # noqa: S608
                         "WHERE cardnumber = %s", (PAYLOAD, library.barcodes[2]))
        finally:
            conn.close()
    clerk = browsers("clerk-xss")
    clerk.login(library.url, library.clerk, library.password)
    clerk.open("/requests/new")
    for name in ("agency", "officer_name", "officer_badge", "case_number"):
        clerk.fill(name, PAYLOAD[:60] + name)
    clerk.fill("emergency_reason", PAYLOAD)
    clerk.fill("barcodes", library.barcodes[2])
    clerk.click("main form button[type=submit]")

    def inert(page: str) -> None:
        d = clerk.driver
        assert d.find_elements(By.ID, "injected") == [], page
        assert d.find_elements(By.TAG_NAME, "script") == [], page
        assert d.find_elements(By.CSS_SELECTOR, "img[src=x]") == [], page
        assert d.execute_script("return window.pwned === undefined"), page
        assert "<script>window.pwned=1</script>" in clerk.text(), page

    inert("confirm")
    clerk.click("button[value=create]")
    rid = int(clerk.driver.current_url.rsplit("/", 1)[1])
    inert("request")
    clerk.shot("attack-stored-script")
    director = library.staff(library.director)
    from ils_redact.console import services

    services.approve(director, rid)
    services.end(director, rid, "closed", PAYLOAD)
    services.close(director)
    if library.engine == "postgresql":
        # closing an approved request ends the grantee's sessions, the console's too
        clerk.open("/requests")
        assert "the database connection was lost" in clerk.text()
        clerk.login(library.url, library.clerk, library.password)
    for path in ("/requests", f"/requests/{rid}", "/audit", f"/requests/{rid}/form"):
        clerk.open(path)
        inert(path)
    clerk.open(f"/requests/{rid}")
    assert "closed" in clerk.text("#status")


def test_stored_patron_markup_is_inert_in_the_readable_document(library: Library,
                                                               browsers) -> None:
    if library.engine == "postgresql":
        library.scalar("UPDATE actor.usr SET first_given_name = %s WHERE id = (SELECT usr "
                       "FROM actor.card WHERE barcode = %s) RETURNING 1",
                       (PAYLOAD, library.barcodes[1]))
    else:
        db = library.dsn.rsplit("/", 1)[1]
        conn = library.su()
        try:
            conn.execute(f"UPDATE `{db}`.borrowers SET firstname = %s "  # noqa: S608
                         "WHERE cardnumber = %s", (PAYLOAD, library.barcodes[1]))
        finally:
            conn.close()
    rid = library.request(approve=True, barcodes=[library.barcodes[1]])
    clerk = browsers("clerk-doc")
    clerk.login(library.url, library.clerk, library.password)
    clerk.open(f"/requests/{rid}")
    clerk.click("#export-document")
    d = clerk.driver
    assert len(d.find_elements(By.CSS_SELECTOR, "section.patron")) == 1
    assert d.find_elements(By.ID, "injected") == []
    assert d.find_elements(By.TAG_NAME, "script") == []
    assert d.execute_script("return window.pwned === undefined")
    assert "<script>window.pwned=1</script>" in clerk.text()


# -- who may log in -----------------------------------------------------------------------------

def test_a_superuser_and_the_ils_owner_cannot_log_in(library: Library) -> None:
    expected = {library.superuser: ("superuser" if library.engine == "postgresql"
                                    else "global privileges"),
                library.ils_owner: ("owner of the ILS tables" if library.engine == "postgresql"
                                    else "privileges on the Koha database")}
    before = {who: _sessions(library, who) for who in expected}
    for who, why in expected.items():
        c = Client(library.url)
        r = c.login(who, library.password)
        assert r.status == 403, (who, r.text)
        assert "does not accept" in r.text or "holds" in r.text, r.text
        assert why in r.text, (who, r.text)
        assert not any(k.endswith("ilsr_session") for k in c.cookies)
        assert c.get("/requests").status == 302
        assert _settled(library, who, before[who])  # its connection was closed


def test_a_login_without_an_ils_redact_role_cannot_log_in(library: Library) -> None:
    outsider = f"{library.clerk[:-5]}outsider"
    conn = library.su()
    try:
        if library.engine == "postgresql":
            from psycopg import sql

            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(outsider), sql.Literal(library.password)))
        else:
            conn.execute(f"CREATE USER '{outsider}'@'%%' IDENTIFIED BY %s", (library.password,))
        r = Client(library.url).login(outsider, library.password)
        assert r.status == 403 and "holds no ils-redact role" in r.text
    finally:
        if library.engine == "postgresql":
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(outsider)))
        else:
            conn.execute(f"DROP USER '{outsider}'@'%'")
        conn.close()


# -- a password the server did not check (B3) ----------------------------------------------------

def test_a_wrong_password_is_refused(library: Library) -> None:
    for login in (library.director, library.clerk):
        c = Client(library.url)
        r = c.login(login, "not-the-password")
        assert r.status == 403 and "Login failed" in r.text, r.text
        assert not any(k.endswith("ilsr_session") for k in c.cookies)
        assert c.get("/requests").status == 302
    assert Client(library.url).login(library.director, library.password).status == 302


@pytest.fixture(scope="module")
def trusting_library(server, eg_template: str, eg_roles: tuple[str, str],
                     run_prefix: str, tmp_path_factory: pytest.TempPathFactory
                     ) -> Iterator[Library]:
    """A library on the project's shared PostgreSQL, which lets every role in without a
    password (pg_hba trust), served by a console: the demo's server before the fix."""
    import psycopg
    from psycopg import sql

    from ils_redact.backends import postgresql as pg
    from ils_redact.backends.postgresql import staff
    from ils_redact.rules import load_rules
    from support import write_rules
    from support.console import PASSWORD

    tmp = tmp_path_factory.mktemp("console_trust")
    name = f"{run_prefix}ctrust"
    prefix = f"{name}_"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(eg_template)))
    rules_path = write_rules(tmp, prefix)
    rules = load_rules(rules_path)
    dsn = server.dsn_for(name)
    try:
        with pg.connect(dsn) as conn:
            pg.install(conn, rules, reports=all_reports)
        clerk, director = f"{prefix}clerk", f"{prefix}director"
        with pg.connect(dsn) as conn:
            for login, kind, create in ((clerk, "admin", True), (clerk, "disclosure", False),
                                        (director, "admin", True)):
                plan = staff.plan_grant(conn, rules, login, kind, create=create,
                                        password=PASSWORD)
                conn.rollback()
                staff.apply(conn, plan)
                conn.commit()
        d = psycopg.conninfo.conninfo_to_dict(dsn)
        d.pop("user", None)
        d.pop("password", None)
        lib = Library(engine="postgresql", dsn=psycopg.conninfo.make_conninfo(**d),
                      rules=rules, rules_path=rules_path, clerk=clerk, director=director,
                      board="", superuser="", ils_owner=eg_roles[0], barcodes=[],
                      verify_report=tmp / "none.json", superuser_dsn=dsn)
        lib.serve()
        try:
            yield lib
        finally:
            lib.running.stop()
    finally:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))
            for (role,) in conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s",
                                        (prefix.replace("_", r"\_") + "%",)).fetchall():
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_any_password_is_refused_when_the_server_does_not_ask(
        trusting_library: Library) -> None:
    """The attack: on a server that trusts the console's connections, the clerk records
    a request and then logs in as the director with a made-up password to approve it
    (both halves of the two-person rule).  The console must refuse that login, and the
    director's right password too: the server never asked for it."""
    from ils_redact.console import services

    lib = trusting_library
    import datetime as dt

    import psycopg

    from ils_redact.disclosure import requests as rq

    # the clerk's draft, recorded directly (the console refuses the clerk here too)
    barcode = lib.scalar("SELECT barcode FROM actor.card WHERE active LIMIT 1")
    with psycopg.connect(psycopg.conninfo.make_conninfo(lib.superuser_dsn, user=lib.clerk)
                         ) as conn:
        new = rq.NewRequest(basis="emergency", agency="State Police",
                            officer_name="Pat Officer", officer_badge="4711",
                            case_number="2026-CR-17", emergency_reason="imminent danger",
                            barcodes=[barcode], expires_at=dt.datetime.now(dt.timezone.utc)
                            + dt.timedelta(hours=2))
        new.validate(lib.rules)
        new.columns = rq.resolve_columns(lib.rules, [], new.basis)
        found, _ = rq.resolve_patrons(conn, [], [barcode])
        rid = rq.create(conn, new, found)
        conn.commit()
    for password in ("not-the-password", lib.password):
        c = Client(lib.url)
        r = c.login(lib.director, password)
        assert r.status == 403, r.text
        assert "did not ask for a password" in r.text and "scram-sha-256" in r.text, r.text
        assert not any(k.endswith("ilsr_session") for k in c.cookies)
        assert c.get("/requests").status == 302
        r = c.post(f"/requests/{rid}/approve", {"csrf": "x"})
        assert r.status == 403
        assert _settled(lib, lib.director, 0)  # the connection was closed
    assert lib.status(rid) == "draft"
    with pytest.raises(services.LoginRefused, match="did not ask for a password"):
        services.open_session(lib.dsn, lib.rules, lib.director, "not-the-password")


def test_the_console_takes_no_credential_from_its_environment(
        trusting_library: Library, monkeypatch: pytest.MonkeyPatch) -> None:
    """PGPASSWORD and PGPASSFILE are overridden by the typed password; PGSERVICE (which
    no connection parameter turns off) stops the console from starting."""
    from ils_redact.console import services
    from ils_redact.console.app import ConsoleConfig, create_app
    from ils_redact.errors import IlsRedactError

    lib = trusting_library
    monkeypatch.setenv("PGPASSWORD", lib.password)
    monkeypatch.setenv("PGPASSFILE", "/nonexistent/pgpass")
    with pytest.raises(services.LoginRefused):  # still: the server did not ask
        services.open_session(lib.dsn, lib.rules, lib.director, "x")
    monkeypatch.setenv("PGSERVICE", "ils")
    with pytest.raises(IlsRedactError, match="PGSERVICE"):
        create_app(ConsoleConfig(dsn=lib.dsn, rules=lib.rules))
    monkeypatch.delenv("PGSERVICE")
    for dsn in (lib.dsn + " service=ils", lib.dsn + " passfile=/tmp/p"):
        with pytest.raises(IlsRedactError, match="service or password file"):
            create_app(ConsoleConfig(dsn=dsn, rules=lib.rules))


@pytest.mark.mariadb
def test_a_mariadb_account_without_a_password_check_is_refused(koha_library: Library
                                                                ) -> None:
    """MariaDB checks the password of an account that has one; an account with none, or
    one that authenticates by the client's socket, is refused after connecting."""
    from ils_redact.backends import get_backend

    lib = koha_library
    engine = get_backend("mariadb")
    who = f"{lib.clerk[:-5]}nopw"
    conn = lib.su()
    try:
        conn.execute(f"CREATE USER '{who}'@'%'")
        c = engine.connect_as(lib.dsn, who, "")
        try:
            assert engine.password_was_checked(c) is False
        finally:
            c.close()
        c = engine.connect_as(lib.dsn, lib.clerk, lib.password)
        try:
            assert engine.password_was_checked(c) is True
        finally:
            c.close()
    finally:
        conn.execute(f"DROP USER IF EXISTS '{who}'@'%'")
        conn.close()


# -- password guessing --------------------------------------------------------------------------

def test_the_login_rate_limit_holds(library: Library) -> None:
    running = library.start(account_limit=(3, 900), address_limit=(6, 900))
    try:
        c = Client(running.url)
        # three wrong passwords for the clerk; then the right one is refused too
        for _ in range(3):
            assert c.login(library.clerk, "wrong-password").status == 403
        r = c.login(library.clerk, library.password)
        assert r.status == 429 and "Too many failed logins" in r.text
        # the account's case does not reset its count
        assert c.login(library.clerk.upper(), "guess").status == 429
        # from this address, any further account: the address limit
        for i in range(6):
            c.login(f"{library.clerk}_x{i}", "guess")
        r = c.login(library.director, library.password)
        assert r.status == 429, r.text
        # the limits are the console's own: the other console still lets the director in
        assert Client(library.url).login(library.director, library.password).status == 302
    finally:
        running.stop()


# -- caching, headers ---------------------------------------------------------------------------

def test_no_page_with_patron_data_is_cacheable(library: Library) -> None:
    rid = library.request(approve=True)
    c = Client(library.url)
    assert c.login(library.clerk, library.password).status == 302
    token = c.csrf()
    replies = {}
    for path in ("/login", "/requests", "/requests?status=approved", "/requests/new",
                 f"/requests/{rid}", f"/requests/{rid}/form", f"/requests/{rid}/packet",
                 "/audit"):
        replies[path] = c.get(path)
    replies["POST /requests/new"] = c.post("/requests/new", {
        "csrf": token, "basis": "emergency", "agency": "a", "officer_name": "o",
        "officer_badge": "b", "case_number": "c", "emergency_reason": "r", "hours": "2",
        "barcodes": library.barcodes[0]})
    assert "Are these the people" in replies["POST /requests/new"].text
    for what in ("csv", "json", "document", "document-download"):
        replies[f"export {what}"] = c.post(f"/requests/{rid}/export",
                                           {"csrf": token, "what": what})
    board = Client(library.url)
    assert board.login(library.board, library.password).status == 302
    replies["/stats"] = board.get("/stats")
    replies["/stats/report"] = board.get("/stats/report?report=" + (
        "circ_by_library_modifier" if library.engine == "postgresql"
        else "circ_by_branch_itemtype") + "&from=2023-01&to=2023-02")
    replies["/stats/report.csv"] = board.get("/stats/report.csv?report=" + (
        "circ_by_library_modifier" if library.engine == "postgresql"
        else "circ_by_branch_itemtype") + "&from=2023-01&to=2023-02")
    director = Client(library.url)
    assert director.login(library.director, library.password).status == 302
    replies["/verify"] = director.get("/verify")
    for what, r in replies.items():
        assert r.status == 200, (what, r.status, r.text[:300])
        assert r.headers["Cache-Control"] == "no-store", what
        csp = r.headers["Content-Security-Policy"]
        assert "script-src" not in csp and "'unsafe-inline'" not in csp, what
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp, what
        assert r.headers["X-Frame-Options"] == "DENY", what
        assert r.headers["X-Content-Type-Options"] == "nosniff", what
        assert r.headers["Referrer-Policy"] == "same-origin", what
    assert replies["export csv"].headers["Content-Type"] == "application/zip"
    # the stylesheet is the one thing a browser may keep
    css = c.get("/static/console.css")
    assert css.status == 200 and "no-store" not in css.headers.get("Cache-Control", "")


# -- secrets and errors -------------------------------------------------------------------------

def test_the_password_is_never_logged(library: Library, caplog: pytest.LogCaptureFixture,
                                      capfd: pytest.CaptureFixture[str]) -> None:
    secret = f"{library.password}-never-in-a-log"
    caplog.set_level(logging.DEBUG)
    c = Client(library.url)
    c.login(library.clerk, secret)  # a wrong password
    c.login(f"{library.clerk}_nobody", secret)
    c.login(library.superuser, secret)
    ok = Client(library.url)
    assert ok.login(library.clerk, library.password).status == 302
    out, err = capfd.readouterr()
    logged = caplog.text + out + err
    assert "login" in caplog.text  # the log was captured
    assert secret not in logged and library.password not in logged


def test_database_error_text_is_not_shown(library: Library) -> None:
    """A real database error, mapped: the page names its class, never the server's text."""
    from ils_redact.console import services

    staff = library.staff(library.clerk)
    try:
        table = "actor.usr" if library.engine == "postgresql" else \
            f"`{library.dsn.rsplit('/', 1)[1]}`.borrowers"
        with pytest.raises(services.DatabaseError) as exc:
            with services._work(staff):
                staff.conn.execute(f"SELECT passwd, password FROM {table}")  # noqa: S608
        text = str(exc.value)
        assert "passwd" not in text and "usr" not in text and "borrowers" not in text
        assert re.search(r"\((42[0-9A-Z]{3}|MariaDB error \d+)", text), text
    finally:
        services.close(staff)
    # through a page: the session's connection killed under it
    c = Client(library.url)
    assert c.login(library.clerk, library.password).status == 302
    if library.engine == "postgresql":
        library.scalar("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                       "WHERE usename = %s AND application_name = 'ils-redact console'",
                       (library.clerk,))
    else:
        conn = library.su()
        try:
            for (pid,) in conn.execute("SELECT ID FROM information_schema.PROCESSLIST "
                                       "WHERE USER = %s", (library.clerk,)).fetchall():
                conn.execute(f"KILL {int(pid)}")
        finally:
            conn.close()
    r = c.get("/requests")
    assert r.status == 503 and "connection was lost: log in again" in r.text
    assert "terminat" not in r.text.lower() and "server has gone" not in r.text.lower()
    assert c.get("/requests").status == 302  # the session ended with its connection


#: the servers' own wording of a privilege denial (names objects and accounts)
SERVER_TEXT = re.compile(r"permission denied for|command denied to user|Access denied for "
                         r"user|denied to user", re.I)


def test_privilege_denials_show_no_server_text(library: Library) -> None:
    """The board member (stats only) opens the admin pages: each is refused by the
    database, and the page says so by class (SQLSTATE / error number), never in the
    server's words, which name the objects and the account."""
    rid = library.request()
    board = Client(library.url)
    assert board.login(library.board, library.password).status == 302
    token = board.csrf()
    pages = [board.get(p) for p in ("/requests", f"/requests/{rid}", "/audit",
                                    f"/requests/{rid}/form")]
    pages.append(board.post(f"/requests/{rid}/approve", {"csrf": token}))
    if pages[-1].status == 302:
        pages.append(board.get(pages[-1].headers["Location"]))
    for r in pages:
        assert "Internal error" not in r.text
        assert not SERVER_TEXT.search(r.text), SERVER_TEXT.search(r.text)
    assert any("42501" in r.text or "MariaDB error" in r.text for r in pages)
    assert library.status(rid) == "draft"


def test_a_public_bind_needs_tls_or_a_proxy(library: Library) -> None:
    from ils_redact.console.server import check_bind
    from ils_redact.errors import IlsRedactError

    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        check_bind(host, tls=False, behind_proxy=False)
    with pytest.raises(IlsRedactError, match="without TLS"):
        check_bind("0.0.0.0", tls=False, behind_proxy=False)  # noqa: S104
    check_bind("0.0.0.0", tls=True, behind_proxy=False)  # noqa: S104
    check_bind("0.0.0.0", tls=False, behind_proxy=True)  # noqa: S104
    import sys

    exe = Path(sys.executable).parent / "ils-redact"
    res = subprocess.run([str(exe), "--dsn", library.dsn, "--rules", str(library.rules_path),
                          "serve", "--host", "0.0.0.0", "--port", "0"],  # noqa: S104
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "without TLS" in res.stderr, res.stderr
    # and the console holds no credential: a DSN with a password is refused
    dsn = (library.dsn + " password=x" if library.engine == "postgresql"
           else library.dsn.replace("://", "://u:x@", 1))
    res = subprocess.run([str(exe), "--dsn", dsn, "--rules", str(library.rules_path),
                          "serve", "--port", "0"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "holds no credential" in res.stderr, res.stderr
