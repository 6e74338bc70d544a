"""pytest plugin: a library's CI runs ``ils-redact verify`` as its own tests.

    pytest --ils-redact-dsn postgresql://postgres@db/evergreen --ils-redact-rules rules.yaml
    pytest --ils-redact-dsn mysql://root@db:3306/koha --ils-redact-rules koha_rules.yaml

adds one test per verify check: per restricted role (``catalog/disclosure``), per role and
relation (``empirical/disclosure/action.circulation``), per role for the functions, per
hazard class (``hazard/owner-rights-view``) and the drift, next to whatever tests the
library already has.  A failing test names its findings (code, object, why, fix); a check
with only warnings passes and emits an :class:`IlsRedactVerifyWarning`; a check that did
not run (no ``--ils-redact-ils-config``) is skipped.  Verify runs once, at collection.

Without ``--ils-redact-dsn`` the plugin does nothing, so it can stay installed in any
project (it is registered through the ``pytest11`` entry point).  Imports are lazy for the
same reason.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .verify import Check


class IlsRedactVerifyWarning(UserWarning):
    """A verify warning (e.g. TEMP through PUBLIC): reported, not failed, unless strict."""


class VerifyFailed(Exception):
    """Raised by a check's test when the check holds violations."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ils-redact", "ils-redact verify: the confidentiality rules as "
                                          "tests")
    group.addoption("--ils-redact-dsn", metavar="DSN", default=None,
                    help="Superuser (administrator) DSN of the ILS database to verify: "
                         "postgresql://... or mysql://... (enables the plugin).")
    group.addoption("--ils-redact-rules", metavar="FILE", default=None,
                    help="The rules file the database was installed with.")
    group.addoption("--ils-redact-ils-config", metavar="PATH", default=None,
                    help="Evergreen's opensrf.xml or Koha's koha-conf.xml: check the "
                         "logins reports run as.")
    group.addoption("--ils-redact-backup-role", metavar="ROLE", action="append", default=[],
                    help="A login that runs pg_dump (repeatable).")
    group.addoption("--ils-redact-strict", action="store_true", default=False,
                    help="Warnings fail too.")
    group.addoption("--ils-redact-exhaustive", action="store_true", default=False,
                    help="Read every column of every relation one by one.")


def _options(config: pytest.Config) -> dict[str, Any] | None:
    dsn = config.getoption("--ils-redact-dsn")
    rules = config.getoption("--ils-redact-rules")
    if not dsn and not rules:
        return None
    if not dsn or not rules:
        raise pytest.UsageError("ils-redact: --ils-redact-dsn and --ils-redact-rules go "
                                "together")
    return {"dsn": dsn, "rules": rules,
            "ils_config": config.getoption("--ils-redact-ils-config"),
            "backup_roles": tuple(config.getoption("--ils-redact-backup-role") or ()),
            "strict": bool(config.getoption("--ils-redact-strict")),
            "exhaustive": bool(config.getoption("--ils-redact-exhaustive"))}


class VerifyCollector(pytest.Collector):
    """The parent of the verify tests (``ils-redact-verify::<check id>``)."""

    def collect(self) -> list[pytest.Item]:  # pragma: no cover - items are made directly
        return []


class CheckItem(pytest.Item):
    """One verify check as a test."""

    def __init__(self, *, check: Check | None = None, error: str | None = None,
                 strict: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check = check
        self.error = error
        self.strict = strict

    def runtest(self) -> None:
        if self.error is not None:
            raise VerifyFailed(f"ils-redact verify could not run: {self.error}")
        assert self.check is not None
        if self.check.skipped is not None:
            pytest.skip(self.check.skipped)
        bad = self.check.violations(self.strict)
        if bad:
            raise VerifyFailed("\n".join(
                [f"{self.check.title}: {len(bad)} violations"]
                + [f"{f.code} {f.object}\n    why: {f.why}\n    fix: {f.fix}" for f in bad]))
        for f in self.check.findings:
            warnings.warn(IlsRedactVerifyWarning(f"{self.check.id}: {f}"), stacklevel=1)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        if isinstance(excinfo.value, VerifyFailed):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, f"ils-redact verify {self.name}"


def _run(opts: dict[str, Any]) -> tuple[list[Check] | None, str | None]:
    from .adapters import get_adapter
    from .backends import get_backend
    from .errors import IlsRedactError
    from .rules import load_rules
    from .verify import verify

    try:
        rules = load_rules(opts["rules"])
        backend = get_backend(get_adapter(rules.adapter).engine)  # PostgreSQL or MariaDB
        with backend.connect(opts["dsn"]) as conn:
            report = verify(conn, rules, ils_config=opts["ils_config"],
                            backup_roles=opts["backup_roles"], exhaustive=opts["exhaustive"],
                            strict=opts["strict"])
    except IlsRedactError as exc:
        return None, str(exc)
    return report.checks, None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    opts = _options(config)
    if opts is None:
        return
    checks, error = _run(opts)
    parent = VerifyCollector.from_parent(session, name="ils-redact-verify",
                                         nodeid="ils-redact-verify")
    if checks is None:
        items.insert(0, CheckItem.from_parent(parent, name="verify", error=error))
        return
    items[:0] = [CheckItem.from_parent(parent, name=c.id, check=c, strict=opts["strict"])
                 for c in checks]
