"""The staff console: a server-rendered Flask application (forms and links, no script).

Every page asks the database through :mod:`.services`, as the logged-in staff member's own
login; the console decides nothing the database does not decide again.  What the console
itself guarantees (tested in ``tests/console/``):

- sessions live on the server (:mod:`.sessions`); the cookie is a random id, HttpOnly,
  SameSite=Strict, Secure under TLS, and dies on logout (which closes the database
  connection) or after ``idle_timeout`` seconds;
- every POST carries the session's CSRF token (compared in constant time) and, when the
  browser sends one, an Origin of this site; the login form has a token of its own;
- login is rate-limited per account and per client address;
- every page sends a Content-Security-Policy with no script source at all, frame-ancestors
  'none', nosniff, a same-origin referrer policy and ``Cache-Control: no-store``;
- templates autoescape everything; no stored value is marked safe;
- database errors are shown by SQLSTATE (MariaDB: error number), never by their text.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import math
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, redirect, render_template, request, url_for
from markupsafe import Markup
from werkzeug.exceptions import HTTPException

from ..disclosure import requests as req_mod
from ..errors import IlsRedactError, Refused
from ..rules import Rules
from ..sdc.results import parse_month
from ..stats import render as stats_render
from ..text import escaped_lines
from . import readable, services, stats_view
from .sessions import RateLimiter, Session, SessionStore

log = logging.getLogger("ils_redact.console")

STATUSES = ("draft", "approved", "expired", "revoked", "closed")
COOKIE = "ilsr_session"
COOKIE_TLS = "__Host-ilsr_session"  # the __Host- prefix: Secure, Path=/, no Domain
LOGIN_COOKIE = "ilsr_login"
_STYLE_RE = re.compile(r"<style>(.*?)</style>", re.S)


@dataclass
class ConsoleConfig:
    dsn: str
    rules: Rules
    library: str | None = None
    idle_timeout: float = 15 * 60
    #: TLS here or at a proxy in front: Secure cookies (and the __Host- name), HSTS
    tls: bool = False
    behind_proxy: bool = False
    #: a report written by ``ils-redact --format json verify`` (shown to admins)
    verify_report: Path | None = None
    #: Server-Timing header with the database time (benchmarks)
    server_timing: bool = False
    account_limit: tuple[int, float] = (5, 15 * 60)
    address_limit: tuple[int, float] = (20, 15 * 60)
    page_size: int = 50
    audit_page_size: int = 50
    debug: bool = False
    clock: Callable[[], float] = field(default=time.monotonic)


class Console:
    """The parts of a running console that outlive a request."""

    def __init__(self, config: ConsoleConfig) -> None:
        self.config = config
        self.sessions = SessionStore(config.idle_timeout, clock=config.clock)
        self.by_account = RateLimiter(*config.account_limit, clock=config.clock)
        self.by_address = RateLimiter(*config.address_limit, clock=config.clock)
        #: signs the login form's token (double submit: cookie and field); per process
        self.login_key = secrets.token_bytes(32)
        self.cookie = COOKIE_TLS if config.tls else COOKIE


def _visible(value: object) -> object:
    """What a page prints of a value: text with every character of
    :data:`ils_redact.text.UNPRINTABLE` but line breaks and tabs as its escape (markup the
    templates build themselves, and numbers, pass as they are)."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return escaped_lines(value)
    return value


def create_app(config: ConsoleConfig) -> Flask:
    services.check_dsn(config.dsn, config.rules)
    app = Flask(__name__)
    # no secret key: Flask's cookie session stays a NullSession (writing it fails), so
    # nothing but the session id ever reaches the browser
    app.config.update(SECRET_KEY=None, MAX_CONTENT_LENGTH=256 * 1024,
                      SEND_FILE_MAX_AGE_DEFAULT=3600, TEMPLATES_AUTO_RELOAD=False)
    app.jinja_env.autoescape = True
    # every value a page prints: a direction override or an invisible character typed
    # into a stored field (a refusal reason, a request field) is shown as its escape
    app.jinja_env.finalize = _visible
    app.jinja_env.globals.update(STATUSES=STATUSES, label=readable.label, shown=readable.shown,
                                 by_relation=_by_relation)
    console = Console(config)
    app.extensions["ils_redact_console"] = console
    if config.behind_proxy:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)  # type: ignore[method-assign]
    rules = config.rules
    engine = services.engine_of(rules)

    # -- helpers -------------------------------------------------------------------------
    def current() -> Session:
        return g.session

    def flash(kind: str, text: str) -> None:
        current().pending.setdefault("_flash", []).append((kind, text))

    def page(template: str, status: int = 200, **kw: Any) -> Response:
        s: Session | None = g.get("session")
        messages = s.pending.pop("_flash", []) if s else []
        body = render_template(template, s=s, staff=s.staff if s else None,
                               messages=messages, engine=engine, library=config.library,
                               **kw)
        return Response(body, status=status, mimetype="text/html")

    def problem(exc: Exception) -> tuple[str, str]:
        """('refused'|'error', text) for an error the person should see."""
        if isinstance(exc, Refused):
            return "refused", exc.message
        if isinstance(exc, IlsRedactError):
            return "error", str(exc)
        raise exc

    def login_token() -> tuple[str, str]:
        nonce = secrets.token_urlsafe(24)
        mac = hmac.new(console.login_key, nonce.encode(), hashlib.sha256).hexdigest()
        return nonce, f"{nonce}.{mac}"

    def login_token_ok() -> bool:
        field_value = request.form.get("login_token", "")
        cookie_value = request.cookies.get(LOGIN_COOKIE, "")
        nonce, _, mac = field_value.partition(".")
        good = hmac.new(console.login_key, nonce.encode(), hashlib.sha256).hexdigest()
        return bool(nonce) and hmac.compare_digest(mac.encode(), good.encode()) and \
            hmac.compare_digest(cookie_value.encode(), field_value.encode())

    def same_origin() -> bool:
        origin = request.headers.get("Origin")
        if origin is None:  # an older browser or a non-browser client: the token decides
            return True
        return origin == request.host_url.rstrip("/")

    def needs(*kinds: str) -> Response | None:
        staff = current().staff
        if staff.kinds & set(kinds):
            return None
        return page("message.html", 403, title="Not for this login",
                    text=f"This page is for logins in the {' or '.join(kinds)} role; "
                         f"{staff.login} holds {', '.join(sorted(staff.kinds)) or 'none'}.")

    def login_required(fn: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            s, expired = console.sessions.get(request.cookies.get(console.cookie))
            if s is None:
                if request.method == "POST":
                    return page("message.html", 403, title="Not logged in",
                                text="This form was not sent from a live session of the "
                                     "console (logged out, timed out, or another site). "
                                     "Nothing was done.")
                return redirect(url_for("login", expired=1 if expired else None,
                                        next=request.path))
            g.session = s
            if request.method == "POST" and not (
                    same_origin() and s.csrf_ok(request.form.get("csrf"))):
                log.warning("refused a POST to %s without a valid CSRF token", request.path)
                return page("message.html", 403, title="Refused",
                            text="This form did not carry this session's token (a form "
                                 "from another site, or an old page). Nothing was done.")
            if not s.staff.lock.acquire(timeout=60):
                return page("message.html", 503, title="Busy",
                            text="Another page of this session is still working.")
            try:
                s.staff.reset_timer()
                g.started = time.perf_counter()
                return fn(*args, **kwargs)
            except services.ConnectionLost as exc:
                console.sessions.end(request.cookies.get(console.cookie))
                g.session = None
                return page("message.html", 503, title="Connection lost", text=str(exc))
            finally:
                g.db_seconds = s.staff.db_seconds
                s.staff.lock.release()
        return wrapper

    # -- headers on every response ---------------------------------------------------------
    @app.after_request
    def headers(resp: Response) -> Response:
        styles = " ".join(f"'sha256-{h}'" for h in g.get("style_hashes", ()))
        resp.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'self'" + (f" {styles}" if styles else "")
            + "; img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
              "base-uri 'none'")
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "same-origin"  # no-referrer would send Origin: null
        resp.headers["Cross-Origin-Opener-Policy"] = "same-origin"
        resp.headers["Cross-Origin-Resource-Policy"] = "same-origin"
        resp.headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
        if request.endpoint != "static":
            resp.headers["Cache-Control"] = "no-store"
            resp.headers["Pragma"] = "no-cache"
        if config.tls:
            resp.headers["Strict-Transport-Security"] = "max-age=31536000"
        if config.server_timing and "started" in g:
            total = (time.perf_counter() - g.started) * 1000
            resp.headers["Server-Timing"] = (f"db;dur={g.get('db_seconds', 0) * 1000:.3f}, "
                                             f"app;dur={total:.3f}")
        log.info("%s %s %s %s", request.remote_addr, request.method, request.path,
                 resp.status_code)
        return resp

    @app.errorhandler(Exception)
    def internal(exc: Exception) -> Any:
        if isinstance(exc, HTTPException):
            return exc
        # the class only: a message can carry values (the traceback with --debug)
        log.error("internal error in %s %s: %s", request.method, request.path,
                  type(exc).__name__, exc_info=config.debug)
        return Response(render_template("message.html", s=None, staff=None, messages=[],
                                        engine=engine, library=config.library,
                                        title="Internal error",
                                        text="The console failed on this page; nothing "
                                             "more is shown here. The server log names "
                                             "the error class."),
                        status=500, mimetype="text/html")

    # -- login and logout -------------------------------------------------------------------
    def cookie_args() -> dict[str, Any]:
        return {"httponly": True, "samesite": "Strict", "secure": config.tls, "path": "/"}

    def login_page(status: int = 200, error: str | None = None, login: str = "") -> Response:
        nonce, token = login_token()
        expired = request.args.get("expired") == "1"
        resp = page("login.html", status, token=token, error=error, login_name=login,
                    expired=expired, timeout_minutes=round(config.idle_timeout / 60))
        resp.set_cookie(LOGIN_COOKIE, token, max_age=3600, **cookie_args())
        return resp

    def safe_next(value: str | None) -> str:
        if value and value.startswith("/") and not value.startswith("//") and \
                "\\" not in value:
            return value
        return url_for("home")

    @app.get("/login")
    def login() -> Response:
        return login_page()

    @app.post("/login")
    def login_post() -> Response:
        if not (same_origin() and login_token_ok()):
            return login_page(403, "The login form expired or came from another site: "
                                   "try again.")
        name = request.form.get("login", "").strip()
        password = request.form.get("password", "")
        if not name or not password or len(name) > 128:
            return login_page(400, "Give your database login and password.", name[:128])
        account_key = "account:" + name.lower()
        address_key = "address:" + str(request.remote_addr)
        wait = max(console.by_account.wait(account_key), console.by_address.wait(address_key))
        if wait:
            log.warning("login rate limit: refused an attempt from %s", request.remote_addr)
            return login_page(429, f"Too many failed logins: try again in "
                                   f"{math.ceil(wait / 60)} minutes.", name)
        try:
            staff = services.open_session(config.dsn, rules, name, password)
        except (services.LoginFailed, services.LoginRefused, IlsRedactError) as exc:
            console.by_account.fail(account_key)
            console.by_address.fail(address_key)
            log.info("login refused for an account from %s: %s", request.remote_addr,
                     type(exc).__name__)
            text = exc.message if isinstance(exc, services.LoginRefused) else \
                "Login failed: wrong login or password, or the database refused the " \
                "connection."
            return login_page(403, text, name)
        finally:
            del password
        console.by_account.clear(account_key)
        console.sessions.end(request.cookies.get(console.cookie))  # no session fixation
        session_id, s = console.sessions.create(staff)
        log.info("login: %s from %s (%s)", staff.login, request.remote_addr,
                 ", ".join(sorted(staff.kinds)))
        resp = redirect(safe_next(request.form.get("next")))
        resp.set_cookie(console.cookie, session_id, **cookie_args())
        resp.delete_cookie(LOGIN_COOKIE, path="/")
        return resp  # type: ignore[return-value]

    @app.post("/logout")
    @login_required
    def logout() -> Response:
        console.sessions.end(request.cookies.get(console.cookie))
        g.session = None
        resp = redirect(url_for("login"))
        resp.delete_cookie(console.cookie, path="/", secure=config.tls, samesite="Strict")
        return resp  # type: ignore[return-value]

    @app.get("/")
    @login_required
    def home() -> Response:
        kinds = current().staff.kinds
        if kinds & {"admin", "disclosure", "exporter"}:
            return redirect(url_for("requests_list"))  # type: ignore[return-value]
        return redirect(url_for("stats"))  # type: ignore[return-value]

    # -- requests ---------------------------------------------------------------------------
    @app.get("/requests")
    @login_required
    def requests_list() -> Response:
        status = request.args.get("status") or None
        if status not in (None, *STATUSES):
            status = None
        pageno = _page(request.args.get("page"))
        size = config.page_size
        try:
            rows, total = services.list_requests(current().staff, status, page=pageno,
                                                 page_size=size)
            pages = max(1, math.ceil(total / size))
            if pageno > pages:  # past the end: the last page
                pageno = pages
                rows, total = services.list_requests(current().staff, status, page=pageno,
                                                     page_size=size)
        except IlsRedactError as exc:
            kind, text = problem(exc)
            return page("requests.html", 200, rows=[], shown_status=status, pageno=1,
                        pages=1, total=0, error=(kind, text))
        return page("requests.html", rows=rows, shown_status=status, pageno=pageno,
                    pages=pages, total=total, error=None)

    def allow_list() -> list[str]:
        return [f"{t.relation}.{c}" for t in rules.identity for c in t.columns]

    def new_form(status: int = 200, error: tuple[str, str] | None = None,
                 form: dict[str, Any] | None = None) -> Response:
        return page("new_request.html", status, form=form or {}, error=error,
                    columns=allow_list(), max_patrons=rules.disclosure.max_patrons,
                    emergency_hours=rules.disclosure.emergency_hours,
                    court_days=rules.disclosure.court_order_max_days)

    @app.get("/requests/new")
    @login_required
    def request_new() -> Response:
        return new_form()

    def parse_new(form: dict[str, Any]) -> req_mod.NewRequest:
        """The form as a request, every field checked for what a page can be sent (a
        script need not use the form): text within the database's column sizes and
        without control characters, numbers finite and within the rules, dates a
        calendar holds.  Each refusal names the field, on the form (HTTP 422)."""
        basis = form.get("basis", "")
        text = {name: _text(form, name, limit) for name, limit in TEXT_FIELDS.items()}
        raw_barcodes = form.get("barcodes", "")
        if len(raw_barcodes) > 64 * 1024:
            raise IlsRedactError("barcodes: too much text")
        barcodes = [b for b in re.split(r"[\s,;]+", raw_barcodes) if b]
        if len(barcodes) > rules.disclosure.max_patrons:
            raise IlsRedactError(f"a request names at most {rules.disclosure.max_patrons} "
                                 f"patrons; {len(barcodes)} barcodes were given")
        for b in barcodes:
            if len(b) > MAX_BARCODE or not b.isprintable():
                raise IlsRedactError(f"not a card barcode: {_cut(b)!r} (at most "
                                     f"{MAX_BARCODE} printable characters)")
        if basis == "emergency":
            hours = _hours(form.get("hours"), rules.disclosure.emergency_hours)
            expires = req_mod.default_expiry(rules, basis, hours)
        else:
            expires = _local_datetime(form.get("expires_date"), form.get("expires_time"))
        order_date = _date(form.get("order_date")) if basis == "court-order" else None
        if order_date is not None and not (dt.date(1900, 1, 1) <= order_date
                                           <= dt.date.today() + dt.timedelta(days=1)):
            raise IlsRedactError(f"the order date {order_date.isoformat()} is not the date "
                                 "of an order already signed")
        new = req_mod.NewRequest(
            basis=basis, agency=text["agency"], officer_name=text["officer_name"],
            officer_badge=text["officer_badge"], case_number=text["case_number"],
            emergency_reason=text["emergency_reason"] or None
            if basis == "emergency" else None,
            court=text["court"] or None if basis == "court-order" else None,
            order_reference=text["order_reference"] or None
            if basis == "court-order" else None,
            order_date=order_date,
            barcodes=barcodes, expires_at=expires,
            grantee=text["grantee"] or None)
        new.validate(rules)
        new.columns = req_mod.resolve_columns(
            rules, form.get("columns_list", []) if basis == "court-order" else [], basis)
        return new

    def form_dict() -> dict[str, Any]:
        d: dict[str, Any] = {k: v for k, v in request.form.items() if k != "csrf"}
        d["columns_list"] = request.form.getlist("columns")
        return d

    @app.post("/requests/new")
    @login_required
    def request_preview() -> Response:
        form = form_dict()
        try:
            new = parse_new(form)
            found = services.preview_request(current().staff, new)
        except IlsRedactError as exc:
            return new_form(422, problem(exc), form)
        token = secrets.token_urlsafe(16)
        pending = current().pending
        pending.pop("_create", None)
        pending["_create"] = {"token": token, "new": new,
                              "confirmed": [(f.named_as, f.patron_id) for f in found]}
        return page("confirm.html", new=new, found=found, token=token)

    @app.post("/requests/confirm")
    @login_required
    def request_confirm() -> Response:
        pending = current().pending.get("_create")
        token = request.form.get("token", "")
        if not pending or not hmac.compare_digest(pending["token"].encode(), token.encode()):
            return page("message.html", 409, title="Nothing to confirm",
                        text="This confirmation is no longer pending: fill in the request "
                             "again.")
        current().pending.pop("_create", None)
        if request.form.get("action") != "create":
            flash("info", "Nothing was created.")
            return redirect(url_for("requests_list"))  # type: ignore[return-value]
        try:
            rid = services.create_request(current().staff, pending["new"],
                                          pending["confirmed"])
        except IlsRedactError as exc:
            kind, text = problem(exc)
            flash(kind, text)
            return redirect(url_for("request_new"))  # type: ignore[return-value]
        flash("ok", f"Request {rid} recorded as a draft. A different login must approve it "
                    "before anything can be exported.")
        return redirect(url_for("request_page", rid=rid))  # type: ignore[return-value]

    @app.get("/requests/<int:rid>")
    @login_required
    def request_page(rid: int) -> Response:
        try:
            req, entries = services.show_request(current().staff, rid)
        except IlsRedactError as exc:
            kind, text = problem(exc)
            return page("message.html", 404 if text.startswith("no request") else 403,
                        title=f"Request {rid}", text=text)
        return page("request.html", req=req, entries=entries, rid=rid,
                    audit_json=_detail_text)

    def _action(rid: int, fn: Callable[[], None], done: str) -> Response:
        try:
            fn()
        except IlsRedactError as exc:
            flash(*problem(exc))
        else:
            flash("ok", f"Request {rid} {done}.")
        return redirect(url_for("request_page", rid=rid))  # type: ignore[return-value]

    @app.post("/requests/<int:rid>/approve")
    @login_required
    def request_approve(rid: int) -> Response:
        return _action(rid, lambda: services.approve(current().staff, rid), "approved")

    @app.post("/requests/<int:rid>/revoke")
    @login_required
    def request_revoke(rid: int) -> Response:
        reason = (request.form.get("reason") or "").strip() or None
        return _action(rid, lambda: services.end(current().staff, rid, "revoked", reason),
                       "revoked")

    @app.post("/requests/<int:rid>/close")
    @login_required
    def request_close(rid: int) -> Response:
        reason = (request.form.get("reason") or "").strip() or None
        return _action(rid, lambda: services.end(current().staff, rid, "closed", reason),
                       "closed")

    @app.post("/requests/<int:rid>/export")
    @login_required
    def request_export(rid: int) -> Response:
        what = request.form.get("what", "csv")
        if what not in ("csv", "json", "document", "document-download"):
            what = "csv"
        fmt = "csv" if what.startswith("document") else what
        try:
            exported = services.export(current().staff, rid, fmt)
        except IlsRedactError as exc:
            flash(*problem(exc))
            return redirect(url_for("request_page", rid=rid))  # type: ignore[return-value]
        if what in ("csv", "json"):
            name = f"request-{rid}.{fmt}"
            data = services.export_zip(exported, name)
            return _download(data, f"{name}.zip", "application/zip")
        manifest = exported.manifest
        css = _readable_css()  # a file of this package, not a stored value
        g.style_hashes = [_style_hash(css)]
        body = render_template("document.html", sections=readable.sections(exported.document),
                               manifest=manifest, rid=rid, css=Markup(css),  # noqa: S704
                               library=config.library,
                               printed=_utc_now())
        disposition = "attachment" if what == "document-download" else "inline"
        resp = Response(body, mimetype="text/html")
        resp.headers["Content-Disposition"] = \
            f'{disposition}; filename="request-{rid}-disclosure.html"'
        return resp

    @app.get("/requests/<int:rid>/form")
    @login_required
    def request_form(rid: int) -> Response:
        try:
            html = services.form(current().staff, rules, rid, config.library)
        except IlsRedactError as exc:
            kind, text = problem(exc)
            return page("message.html", 403, title=f"Request {rid}", text=text)
        g.style_hashes = [_style_hash(m) for m in _STYLE_RE.findall(html)[:1]]
        return Response(html, mimetype="text/html")

    @app.get("/requests/<int:rid>/packet")
    @login_required
    def request_packet(rid: int) -> Response:
        try:
            data = services.packet(current().staff, rules, rid, config.library)
        except IlsRedactError as exc:
            flash(*problem(exc))
            return redirect(url_for("request_page", rid=rid))  # type: ignore[return-value]
        return _download(data, f"packet-{rid}.zip", "application/zip")

    # -- audit --------------------------------------------------------------------------------
    @app.get("/audit")
    @login_required
    def audit() -> Response:
        rid = _int(request.args.get("request"), 0) or None
        try:
            entries, check = services.audit_log(current().staff, rid)
        except IlsRedactError as exc:
            kind, text = problem(exc)
            return page("message.html", 403, title="Audit log", text=text)
        entries.reverse()
        size = config.audit_page_size
        pages = max(1, math.ceil(len(entries) / size))
        pageno = min(_page(request.args.get("page")), pages)
        return page("audit.html", entries=entries[(pageno - 1) * size: pageno * size],
                    check=check, pageno=pageno, pages=pages, total=len(entries),
                    request_id=rid, audit_json=_detail_text)

    # -- statistics ---------------------------------------------------------------------------
    @app.get("/stats")
    @login_required
    def stats() -> Response:
        refused = needs("stats")
        if refused:
            return refused
        try:
            reports = services.stats_reports(current().staff)
        except IlsRedactError as exc:
            kind, text = problem(exc)
            return page("message.html", 403, title="Statistics", text=text)
        return page("stats.html", reports=reports, result=None, args=request.args,
                    error=None)

    def run_stats() -> tuple[Any, Any, tuple[str, str] | None]:
        name = request.args.get("report", "")
        try:
            lo = parse_month(request.args.get("from") or None, "from")
            hi = parse_month(request.args.get("to") or None, "to")
            reports = services.stats_reports(current().staff)
            result = services.stats_run(current().staff, name, lo, hi)
        except IlsRedactError as exc:
            return None, None, problem(exc)
        return reports, result, None

    @app.get("/stats/report")
    @login_required
    def stats_report() -> Response:
        refused = needs("stats")
        if refused:
            return refused
        reports, result, error = run_stats()
        if error:
            try:
                reports = services.stats_reports(current().staff)
            except IlsRedactError:
                reports = []
            return page("stats.html", 422, reports=reports, result=None,
                        args=request.args, error=error)
        return page("stats.html", reports=reports, result=result, args=request.args,
                    pages=stats_view.pages(result), chart=stats_view.chart(result),
                    suppressed=sum(1 for e in result.entries if e.suppressed), error=None)

    @app.get("/stats/report.csv")
    @login_required
    def stats_csv() -> Response:
        refused = needs("stats")
        if refused:
            return refused
        _reports, result, error = run_stats()
        if error:
            return page("message.html", 422, title="Statistics", text=error[1])
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", result.info.name)
        return _download(stats_render.to_csv(result).encode("utf-8"), f"{name}.csv",
                         "text/csv")

    # -- verify -------------------------------------------------------------------------------
    @app.get("/verify")
    @login_required
    def verify() -> Response:
        refused = needs("admin")
        if refused:
            return refused
        report, info = _published_report(config.verify_report)
        return page("verify.html", report=report, info=info)

    return app


# -- small helpers ----------------------------------------------------------------------------

def _by_relation(columns: list[str]) -> list[tuple[str, list[str]]]:
    """``[actor.usr.id, actor.usr.dob, actor.card.barcode]`` -> ``[(actor.usr, [id, dob]),
    (actor.card, [barcode])]``, in the order given."""
    out: dict[str, list[str]] = {}
    for c in columns:
        rel, _, col = c.rpartition(".")
        out.setdefault(rel, []).append(col)
    return list(out.items())


def _page(value: str | None) -> int:
    """A page number: 1 to a million (past the end shows the last page)."""
    return min(max(1, _int(value, 1)), 1_000_000)


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


#: the request's text fields and their longest value (MariaDB's columns: VARCHAR(255),
#: the reason TEXT, the grantee a login name)
TEXT_FIELDS = {"agency": 255, "officer_name": 255, "officer_badge": 255,
               "case_number": 255, "court": 255, "order_reference": 255,
               "emergency_reason": 4000, "grantee": 128}
MAX_BARCODE = 64


def _cut(value: str, n: int = 40) -> str:
    return value if len(value) <= n else value[:n] + "..."


def _text(form: dict[str, Any], name: str, limit: int) -> str:
    """A text field, stripped: at most ``limit`` characters, no control characters
    (the reason may have line breaks)."""
    value = str(form.get(name) or "").strip()
    label = name.replace("_", " ")
    if len(value) > limit:
        raise IlsRedactError(f"{label}: at most {limit} characters ({len(value)} given)")
    allowed = "\n\r\t" if name == "emergency_reason" else ""
    if any(not (ch.isprintable() or ch in allowed) for ch in value):
        raise IlsRedactError(f"{label}: control characters are not accepted")
    return value


def _hours(value: str | None, cap: int) -> float:
    """The emergency's hours: empty is the rules' ``emergency_hours``; else a finite
    number, more than 0 and at most that (1e308, inf or nan once overflowed the
    expiry's arithmetic: HTTP 500)."""
    if value is None or not value.strip():
        return float(cap)
    try:
        hours = float(value)
    except ValueError:
        raise IlsRedactError(f"not a number of hours: {_cut(value)!r}") from None
    if not (math.isfinite(hours) and 0 < hours <= cap):
        raise IlsRedactError(f"hours: {_cut(value)!r} is not allowed; the hours must be a "
                             f"finite number, more than 0 and at most {cap} (the rules' "
                             "emergency_hours)")
    return hours


def _date(value: str | None) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise IlsRedactError(f"not a date: {_cut(value)!r} (YYYY-MM-DD)") from None


def _local_datetime(day: str | None, clock: str | None) -> dt.datetime | None:
    """A date and time in this server's time zone, as an aware datetime."""
    d = _date(day)
    if d is None:
        return None
    try:
        t = dt.time.fromisoformat(clock) if clock else dt.time(17, 0)
    except ValueError:
        raise IlsRedactError(f"not a time: {_cut(clock or '')!r} (HH:MM)") from None
    try:
        return dt.datetime.combine(d, t).astimezone()
    except (OverflowError, ValueError):  # the first or last days a datetime holds
        when = "in the past" if d < dt.date.today() else "out of range"
        raise IlsRedactError(f"the expiry date {d.isoformat()} is {when}") from None


def _utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _detail_text(detail_text: str) -> str:
    """An audit entry's detail as compact JSON text (escaped by the template)."""
    try:
        return json.dumps(json.loads(detail_text), ensure_ascii=False, sort_keys=True)
    except ValueError:
        return detail_text


def _style_hash(css: str) -> str:
    return base64.b64encode(hashlib.sha256(css.encode("utf-8")).digest()).decode()


def _readable_css() -> str:
    return (Path(__file__).parent / "static" / "document.css").read_text(encoding="utf-8")


def _download(data: bytes, filename: str, mimetype: str) -> Response:
    resp = Response(data, mimetype=mimetype)
    resp.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return resp


def _published_report(path: Path | None) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The verify report the sysadmin published (JSON from ``ils-redact --format json
    verify``), read only; with what is known about the file."""
    info: dict[str, Any] = {"path": str(path) if path else None}
    if path is None:
        return None, info
    try:
        raw = path.read_bytes()
    except OSError as exc:
        info["error"] = f"cannot read the published report ({exc.strerror or 'unreadable'})"
        return None, info
    st = path.stat()
    info["modified"] = dt.datetime.fromtimestamp(st.st_mtime, dt.timezone.utc).strftime(
        "%Y-%m-%d %H:%M UTC")
    info["age_days"] = (time.time() - st.st_mtime) / 86400
    info["sha256"] = hashlib.sha256(raw).hexdigest()
    try:
        report = json.loads(raw.decode("utf-8"))
        if not isinstance(report, dict) or "checks" not in report:
            raise ValueError("not a verify report")
    except ValueError:
        info["error"] = ("the published file is not a verify report in JSON (write it with "
                         "`ils-redact --format json verify > FILE`)")
        return None, info
    return report, info
