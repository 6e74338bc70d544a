"""Helpers for the verify tests: run the real console script, read what it found."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ils_redact.backends import postgresql as pg
from ils_redact.stats import all_reports
from support import EgDb, run_cli, write_rules


def install(db: EgDb) -> EgDb:
    with db.connect(autocommit=False) as conn:
        pg.install(conn, db.rules, reports=all_reports)
    return db


@dataclass
class Run:
    """One ``ils-redact --format json verify`` in a subprocess."""

    returncode: int
    stdout: str
    stderr: str
    data: dict[str, Any] | None
    junit: Path

    def findings(self, code: str | None = None, obj: str | None = None) -> list[dict]:
        assert self.data is not None, self.stderr
        return [f for c in self.data["checks"] for f in c["findings"]
                if (code is None or f["code"] == code) and (obj is None or f["object"] == obj)]

    def codes(self, severity: str = "violation") -> set[str]:
        return {f["code"] for f in self.findings() if f["severity"] == severity}

    def check(self, check_id: str) -> dict:
        assert self.data is not None, self.stderr
        return next(c for c in self.data["checks"] if c["id"] == check_id)

    def junit_root(self) -> ET.Element:
        return ET.parse(self.junit).getroot()

    def explain(self) -> str:
        """For assertion messages: the violations, one per line."""
        if self.data is None:
            return self.stderr
        return "\n".join(f"{f['code']} {f['object']}: {f['why']}" for f in self.findings()
                         if f["severity"] == "violation")[:4000] or self.stderr


def verify_cli(db: EgDb, tmp: Path, *args: str, fmt: str = "json",
               rules: Path | None = None, user: str | None = None) -> Run:
    rules = rules or write_rules(tmp, db.prefix)
    junit = tmp / f"verify-{len(list(tmp.glob('verify-*.xml')))}.xml"
    res = run_cli("--dsn", db.dsn_as(user) if user else db.dsn, "--rules", str(rules),
                  "--format", fmt, "verify", "--junit", str(junit), *args)
    data = json.loads(res.stdout) if fmt == "json" and res.stdout.lstrip().startswith("{") \
        else None
    return Run(res.returncode, res.stdout, res.stderr, data, junit)
