"""Serving the console: cheroot (a threaded, pure-Python WSGI server with built-in TLS).

Binds 127.0.0.1 by default.  Any other address needs TLS (``certfile``/``keyfile``) or
an explicit statement that a TLS-terminating reverse proxy is in front
(``behind_proxy``), because the login form carries database passwords.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import IlsRedactError
from .app import ConsoleConfig, create_app

log = logging.getLogger("ils_redact.console")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, *, tls: bool, behind_proxy: bool) -> None:
    if is_loopback(host) or tls or behind_proxy:
        return
    raise IlsRedactError(
        f"refusing to serve on {host} without TLS: the login form carries database "
        "passwords", hint="give --certfile and --keyfile, or put a TLS proxy in front and "
                          "say so with --behind-proxy (see docs/console.md)")


@dataclass
class Running:
    """A console serving in a background thread (tests, the demo, benchmarks)."""

    server: Any
    thread: threading.Thread
    app: Any
    url: str
    reaper_stop: threading.Event = field(default_factory=threading.Event)

    def stop(self) -> None:
        self.reaper_stop.set()
        self.server.stop()
        self.thread.join(timeout=10)
        self.app.extensions["ils_redact_console"].sessions.close_all()


def build(config: ConsoleConfig, host: str, port: int, *, certfile: Path | None = None,
          keyfile: Path | None = None, threads: int = 8) -> tuple[Any, Any]:
    """(cheroot server, Flask app), bound but not yet serving."""
    from cheroot import wsgi

    check_bind(host, tls=certfile is not None, behind_proxy=config.behind_proxy)
    if (certfile is None) != (keyfile is None):
        raise IlsRedactError("TLS needs both --certfile and --keyfile")
    app = create_app(config)
    server = wsgi.Server((host, port), app, numthreads=threads, server_name="ils-redact",
                         shutdown_timeout=2)
    if certfile is not None and keyfile is not None:
        from cheroot.ssl.builtin import BuiltinSSLAdapter

        for p in (certfile, keyfile):
            if not Path(p).is_file():
                raise IlsRedactError(f"{p}: no such file")
        server.ssl_adapter = BuiltinSSLAdapter(str(certfile), str(keyfile))
    server.prepare()  # binds (port 0: the kernel picks one)
    return server, app


def url_of(server: Any, tls: bool) -> str:
    host, port = server.bind_addr[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}/"


def _reaper(app: Any, stop: threading.Event, every: float) -> None:
    sessions = app.extensions["ils_redact_console"].sessions
    while not stop.wait(every):
        n = sessions.sweep()
        if n:
            log.info("closed %d idle sessions", n)


def start(config: ConsoleConfig, host: str = "127.0.0.1", port: int = 0, **kw: Any
          ) -> Running:
    """Serve in a background thread; ``stop()`` ends it and closes every session."""
    server, app = build(config, host, port, **kw)
    thread = threading.Thread(target=server.serve, name="ils-redact-console", daemon=True)
    thread.start()
    running = Running(server, thread, app, url_of(server, kw.get("certfile") is not None))
    threading.Thread(target=_reaper, args=(app, running.reaper_stop, 30.0), daemon=True,
                     name="ils-redact-console-reaper").start()
    return running


def serve_forever(config: ConsoleConfig, host: str, port: int, *,
                  certfile: Path | None = None, keyfile: Path | None = None,
                  on_ready: Any = None) -> None:
    """Serve in this thread until interrupted; every session is closed on the way out."""
    server, app = build(config, host, port, certfile=certfile, keyfile=keyfile)
    stop = threading.Event()
    threading.Thread(target=_reaper, args=(app, stop, 30.0), daemon=True,
                     name="ils-redact-console-reaper").start()
    old = None
    if threading.current_thread() is threading.main_thread():
        old = signal.signal(signal.SIGTERM, _interrupt)  # a service manager's stop: as Ctrl-C
    if on_ready:
        on_ready(url_of(server, certfile is not None))
    try:
        server.serve()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        server.stop()
        app.extensions["ils_redact_console"].sessions.close_all()
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
