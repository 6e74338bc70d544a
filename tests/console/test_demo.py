"""``ils-redact demo --serve``: the console on the demo's embedded server asks for the
staff logins' passwords (the embedded server is made with trust for everyone)."""

from __future__ import annotations

from typing import Any

from support.console import Client


def test_the_demo_console_refuses_a_wrong_password() -> None:
    from ils_redact import demo
    from ils_redact.console.demo import prepare
    from ils_redact.console.server import start

    seen: dict[str, Any] = {}

    def then(srv: Any, rules: Any) -> None:
        config, _logins, passwords = prepare(srv, rules, demo.DEMO_DB, say=lambda _m: None)
        running = start(config)
        try:
            director = f"{rules.role_prefix}director"
            c = Client(running.url)
            r = c.login(director, "not-the-password")
            seen["wrong"] = (r.status, r.text, dict(c.cookies))
            seen["right"] = Client(running.url).login(director, passwords[director]).status
        finally:
            running.stop()

    res = demo.run(patrons=200, circulations=1_000, say=lambda _m: None, then=then)
    assert res.ok
    status, text, cookies = seen["wrong"]
    assert status == 403 and "Login failed" in text, text
    assert not any(k.endswith("ilsr_session") for k in cookies)
    assert seen["right"] == 302
