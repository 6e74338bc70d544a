"""Helpers of the console tests: the library a console serves, and a headless Chromium."""

from __future__ import annotations

import base64
import dataclasses
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1] / "console"  # tests/console
SCREENSHOTS = HERE / "screenshots"
PASSWORD = "Console-pw-1"
CHROMIUM = os.environ.get("ILS_REDACT_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("ILS_REDACT_CHROMEDRIVER", "/usr/bin/chromedriver")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync",
                  "--window-size=1280,1400")


@dataclass
class Library:
    """An installed ILS database, its staff logins, and the console serving it."""

    engine: str  # postgresql | mariadb
    dsn: str  # the console's DSN: server and database, no credential
    rules: Any
    rules_path: Path
    clerk: str
    director: str
    board: str
    superuser: str
    ils_owner: str
    barcodes: list[str]
    verify_report: Path
    superuser_dsn: str
    password: str = PASSWORD
    url: str = ""
    running: Any = None

    def start(self, **overrides: Any) -> Any:
        """Another console on the same database (its own sessions and limits)."""
        from ils_redact.console.app import ConsoleConfig
        from ils_redact.console.server import start

        config = ConsoleConfig(dsn=self.dsn, rules=self.rules, library="Test Library",
                               verify_report=self.verify_report)
        return start(dataclasses.replace(config, **overrides))

    def staff(self, login: str) -> Any:
        """A services.StaffConn as ``login`` (what a console session holds)."""
        from ils_redact.console import services

        return services.open_session(self.dsn, self.rules, login, self.password)

    def su(self) -> Any:
        """A connection as the superuser / administrator (for checks and set-up)."""
        from ils_redact.backends import get_backend

        return get_backend(self.engine).connect(self.superuser_dsn, autocommit=True)

    def scalar(self, query: str, params: Any = None) -> Any:
        conn = self.su()
        try:
            row = conn.execute(query, params).fetchone()
            return row[0] if row else None
        finally:
            conn.close()

    def request(self, *, approve: bool = False, barcodes: list[str] | None = None,
                **fields: Any) -> int:
        """A draft recorded by the clerk through the console's services (approved by the
        director if asked)."""
        import datetime as dt

        from ils_redact.console import services
        from ils_redact.disclosure import requests as rq

        values: dict[str, Any] = {
            "basis": "emergency", "agency": "State Police", "officer_name": "Pat Officer",
            "officer_badge": "4711", "case_number": "2026-CR-17",
            "emergency_reason": "imminent danger"} | fields
        new = rq.NewRequest(barcodes=barcodes or self.barcodes[:1],
                            expires_at=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2),
                            **values)
        new.validate(self.rules)
        new.columns = rq.resolve_columns(self.rules, [], new.basis)
        clerk = self.staff(self.clerk)
        try:
            found = services.preview_request(clerk, new)
            rid = services.create_request(clerk, new, [(f.named_as, f.patron_id)
                                                       for f in found])
        finally:
            services.close(clerk)
        if approve:
            director = self.staff(self.director)
            try:
                services.approve(director, rid)
            finally:
                services.close(director)
        return int(rid)

    def table(self, name: str) -> str:
        """A layer table as SQL, for the superuser's checks."""
        if self.engine == "postgresql":
            return f"ils_redact.{name}"
        db = self.dsn.rsplit("/", 1)[1]
        return f"`ils_redact_{db}`.`{name}`"

    def status(self, rid: int) -> str:
        return str(self.scalar(f"SELECT status FROM {self.table('request')} "  # noqa: S608
                               "WHERE id = %s", (rid,)))

    def serve(self) -> Library:
        self.running = self.start()
        self.url = self.running.url
        return self


class Browser:
    """One headless Chromium (its own profile: a separate browser context)."""

    def __init__(self, name: str, shots: Path) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.name = name
        self.shots = shots
        self.profile = Path(tempfile.mkdtemp(prefix="ils-redact-chromium-"))
        self.downloads = self.profile / "downloads"
        self.downloads.mkdir()
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for flag in CHROMIUM_FLAGS:
            opts.add_argument(flag)
        opts.add_argument(f"--user-data-dir={self.profile / 'profile'}")
        opts.add_experimental_option("prefs", {
            "download.default_directory": str(self.downloads),
            "download.prompt_for_download": False})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
        self.driver.execute_cdp_cmd("Page.setDownloadBehavior", {
            "behavior": "allow", "downloadPath": str(self.downloads)})
        self.base = ""

    # navigation
    def get(self, url: str) -> None:
        self.driver.get(url)

    def open(self, path: str) -> None:
        self.driver.get(self.base.rstrip("/") + path)  # returns when the page has loaded

    def find(self, css: str) -> Any:
        from selenium.common.exceptions import NoSuchElementException
        from selenium.webdriver.common.by import By

        try:
            return self.driver.find_element(By.CSS_SELECTOR, css)
        except NoSuchElementException:
            page = self.driver.find_element(By.TAG_NAME, "body").text
            raise AssertionError(f"{self.name}: no {css} on {self.driver.current_url}:\n"
                                 f"{page[:2000]}") from None

    def finds(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str = "body") -> str:
        return str(self.find(css).text)

    def fill(self, name: str, value: str) -> None:
        el = self.find(f"[name='{name}']")
        el.clear()
        el.send_keys(value)

    def click(self, css: str, *, navigates: bool = True) -> None:
        """Click; wait until the page it leads to has replaced this one."""
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        old = self.driver.find_element(By.TAG_NAME, "html")
        self.find(css).click()

        def replaced(_d: Any) -> bool:
            try:
                old.is_enabled()
            except WebDriverException:  # stale (chromedriver also says "does not belong
                return True             # to the document" while the new one loads)
            return False

        if navigates:
            wait = WebDriverWait(self.driver, 30)
            wait.until(replaced)
            wait.until(lambda d: d.execute_script("return document.readyState") == "complete")

    def click_download(self, css: str) -> Path:
        """Click something that downloads a file; the file."""
        before = self.files()
        self.find(css).click()
        return self.download(before)

    def login(self, base: str, login: str, password: str = PASSWORD) -> None:
        self.base = base
        self.open("/login")
        self.fill("login", login)
        self.fill("password", password)
        self.click("form button[type=submit]")

    def logout(self) -> None:
        self.click("form.who button")

    def cookie(self) -> dict[str, Any] | None:
        found = [c for c in self.driver.get_cookies() if c["name"].endswith("ilsr_session")]
        return found[0] if found else None

    def shot(self, name: str) -> Path:
        self.shots.mkdir(parents=True, exist_ok=True)
        path = self.shots / f"{name}.png"
        path.write_bytes(self.driver.get_screenshot_as_png())
        return path

    def pdf(self, name: str) -> bytes:
        from selenium.webdriver.common.print_page_options import PrintOptions

        data = base64.b64decode(self.driver.print_page(PrintOptions()))
        self.shots.mkdir(parents=True, exist_ok=True)
        (self.shots / f"{name}.pdf").write_bytes(data)
        return data

    def download(self, before: set[str], timeout: float = 30) -> Path:
        """The file a click just downloaded."""
        deadline = time.monotonic() + timeout
        sizes: dict[Path, int] = {}
        while time.monotonic() < deadline:
            done = [p for p in self.downloads.iterdir()
                    if p.name not in before and not p.name.endswith(".crdownload")]
            for p in done:  # Chromium may show the final name before the bytes are in
                size = p.stat().st_size
                if size > 0 and sizes.get(p) == size:
                    return p
                sizes[p] = size
            time.sleep(0.1)
        raise AssertionError(f"no download in {timeout} s: {list(self.downloads.iterdir())}")

    def files(self) -> set[str]:
        return {p.name for p in self.downloads.iterdir()}

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)


@dataclass
class Reply:
    status: int
    headers: Any
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def field(self, name: str) -> str:
        """The value of a hidden form field on this page."""
        import re

        m = re.search(rf'name="{name}" value="([^"]*)"', self.text)
        assert m, f"no field {name} in {self.text[:500]}"
        return m.group(1)


class Client:
    """A plain HTTP client with a cookie jar (what a script, not a browser, sends)."""

    def __init__(self, base: str) -> None:
        from urllib.parse import urlsplit

        u = urlsplit(base)
        self.scheme, self.host, self.port = u.scheme, u.hostname or "127.0.0.1", u.port
        self.cookies: dict[str, str] = {}
        self.context: Any = None

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def request(self, method: str, path: str,
                data: dict[str, str] | list[tuple[str, str]] | None = None,
                headers: dict[str, str] | None = None, cookies: bool = True) -> Reply:
        import http.client
        from http.cookies import SimpleCookie
        from urllib.parse import urlencode

        if self.scheme == "https":
            conn: Any = http.client.HTTPSConnection(self.host, self.port, timeout=60,
                                                    context=self.context)
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        h = dict(headers or {})
        if cookies and self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if data is not None:
            body = urlencode(data)
            h["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            reply = Reply(resp.status, resp.headers, resp.read())
        finally:
            conn.close()
        for raw in reply.headers.get_all("Set-Cookie") or []:
            c: SimpleCookie = SimpleCookie()
            c.load(raw)
            for k, morsel in c.items():
                if morsel["max-age"] == "0" or (morsel.value == "" and morsel["expires"]):
                    self.cookies.pop(k, None)
                else:
                    self.cookies[k] = morsel.value
        return reply

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, data: dict[str, str] | list[tuple[str, str]],
             **kw: Any) -> Reply:
        return self.request("POST", path, data, **kw)

    def login(self, login: str, password: str) -> Reply:
        page = self.get("/login")
        return self.post("/login", {"login_token": page.field("login_token"), "login": login,
                                    "password": password, "next": ""})

    def csrf(self) -> str:
        return self.get("/requests/new").field("csrf")
