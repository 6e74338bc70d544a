"""The verify report, and its three renderings: a text table, JSON, and JUnit XML.

JUnit: one ``<testcase>`` per check (``classname`` the group, ``name`` the rest of the
check id), a ``<failure>`` carrying the text of every violation, warnings in
``<system-out>``, checks that did not run as ``<skipped>``.  CI systems (GitHub Actions
test reporters, GitLab, Jenkins) show each check as a test.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from ..errors import EXIT_OK, EXIT_VIOLATION
from .findings import VIOLATION, WARNING, Check, Finding

#: findings of one code and role listed in the text report before "... and N more"
TEXT_LIMIT = 12


@dataclass
class Report:
    database: str
    server_version: str
    rules: str
    rules_sha256: str
    #: restricted role kind -> role name
    roles: dict[str, str]
    checks: list[Check]
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    strict: bool = False
    #: the server, as the text report names it
    engine: str = "PostgreSQL"

    @property
    def findings(self) -> list[Finding]:
        return [f for c in self.checks for f in c.findings]

    @property
    def violations(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == VIOLATION or self.strict]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING and not self.strict]

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.ok else EXIT_VIOLATION

    def check(self, check_id: str) -> Check:
        for c in self.checks:
            if c.id == check_id:
                return c
        raise KeyError(check_id)

    # -- JSON ------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        statuses: dict[str, int] = defaultdict(int)
        for c in self.checks:
            statuses[c.status(self.strict)] += 1
        return {
            "database": self.database,
            "engine": self.engine,
            "server_version": self.server_version,
            "rules": self.rules,
            "rules_sha256": self.rules_sha256,
            "roles": self.roles,
            "ok": self.ok,
            "exit_code": self.exit_code,
            "strict": self.strict,
            "seconds": round(self.seconds, 3),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "summary": {"checks": len(self.checks), **statuses,
                        "violations": len(self.violations), "warnings": len(self.warnings)},
            "checks": [c.to_dict(self.strict) for c in self.checks],
        }

    # -- text ------------------------------------------------------------------------------
    def _rows(self) -> list[tuple[str, str, str]]:
        """One row per check, except the per-relation empirical checks: one per role."""
        rows: list[tuple[str, str, str]] = []
        per_role: dict[str, list[Check]] = defaultdict(list)
        for c in self.checks:
            parts = c.id.split("/")
            # a role's relations fold into one row; its routines and lookups keep theirs
            if parts[0] == "empirical" and parts[-1] != "functions" and parts[2:3] != ["lookup"]:
                if parts[1] not in per_role:
                    rows.append((f"empirical/{parts[1]}", "", ""))
                per_role[parts[1]].append(c)
            else:
                rows.append((c.id, c.status(self.strict), c.skipped or c.detail))
        out = []
        for cid, status, detail in rows:
            if cid.startswith("empirical/") and not status:
                group = per_role[cid.split("/")[1]]
                bad = [c for c in group if c.status(self.strict) == "fail"]
                readable = [c for c in group if c.detail != "closed"]
                status = "fail" if bad else "warn" if any(c.findings for c in group) else "pass"
                detail = (f"{len(group)} relations read as the role: {len(readable)} "
                          f"readable" + (f", {len(bad)} failing" if bad else ""))
            out.append((cid, status, detail))
        return out

    def text(self) -> str:
        lines = [f"ils-redact verify: database {self.database} ({self.engine} "
                 f"{self.server_version}), rules {self.rules} (sha256 {self.rules_sha256[:16]})",
                 "restricted roles: " + ", ".join(f"{k} {v}" for k, v in self.roles.items()),
                 ""]
        rows = [("CHECK", "RESULT", "DETAIL")] + [
            (cid, status.upper() if status == "fail" else status, detail)
            for cid, status, detail in self._rows()]
        w0 = max(len(r[0]) for r in rows)
        w1 = max(len(r[1]) for r in rows)
        lines += [f"{r[0].ljust(w0)}  {r[1].ljust(w1)}  {r[2]}".rstrip() for r in rows]
        lines.append("")
        shown: dict[tuple[str, str | None], int] = defaultdict(int)
        hidden: dict[tuple[str, str | None], int] = defaultdict(int)
        body = []
        for f in sorted(self.findings, key=lambda f: (f.severity != VIOLATION, f.code)):
            key = (f.code, f.role)
            if shown[key] >= TEXT_LIMIT:
                hidden[key] += 1
                continue
            shown[key] += 1
            sev = "VIOLATION" if f.severity == VIOLATION or self.strict else "warning"
            who = f"  [{f.role}]" if f.role else ""
            body += [f"{sev}  {f.code}  {f.object}{who}", f"    why: {f.why}",
                     f"    fix: {f.fix}"]
        for (code, role), n in sorted(hidden.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
            body.append(f"... and {n} more {code}{f' [{role}]' if role else ''} "
                        "(--format json lists them all)")
        if body:
            lines.append(f"{len(self.violations)} violations, {len(self.warnings)} warnings:")
            lines += body
            lines.append("")
        verdict = "all rules hold" if self.ok else "the rules do NOT hold"
        lines.append(f"verify: {verdict}: {len(self.checks)} checks, {len(self.violations)} "
                     f"violations, {len(self.warnings)} warnings in {self.seconds:.2f} s "
                     f"(exit {self.exit_code})")
        return "\n".join(lines)

    # -- JUnit -----------------------------------------------------------------------------
    def junit(self) -> str:
        root = ET.Element("testsuites", name="ils-redact verify",
                          time=f"{self.seconds:.3f}")
        groups: dict[str, list[Check]] = defaultdict(list)
        for c in self.checks:
            groups[c.group].append(c)
        totals: defaultdict[str, int] = defaultdict(int)
        for group, checks in groups.items():
            suite = ET.SubElement(root, "testsuite", name=f"ils-redact verify: {group}",
                                  time=f"{self.timings.get(group, 0.0):.3f}")
            props = ET.SubElement(suite, "properties")
            for k, v in (("database", self.database), ("server_version", self.server_version),
                         ("rules", self.rules), ("rules_sha256", self.rules_sha256)):
                ET.SubElement(props, "property", name=k, value=v)
            counts: defaultdict[str, int] = defaultdict(int)
            for c in checks:
                classname, _, name = _junit_names(c)
                case = ET.SubElement(suite, "testcase", classname=classname, name=name,
                                     time="0")
                counts["tests"] += 1
                status = c.status(self.strict)
                if status == "skipped":
                    ET.SubElement(case, "skipped", message=c.skipped or "")
                    counts["skipped"] += 1
                    continue
                bad = c.violations(self.strict)
                if bad:
                    fail = ET.SubElement(case, "failure", type=bad[0].code,
                                         message=f"{len(bad)} violations: {bad[0]}"[:1000])
                    fail.text = "\n".join(str(f) for f in bad)
                    counts["failures"] += 1
                rest = [f for f in c.findings if f not in bad]
                out = [c.title] + ([c.detail] if c.detail else []) + [
                    f"warning: {f}" for f in rest]
                ET.SubElement(case, "system-out").text = "\n".join(out)
            for k in ("tests", "failures", "skipped"):
                suite.set(k, str(counts[k]))
                totals[k] += counts[k]
            suite.set("errors", "0")
        for k in ("tests", "failures", "skipped"):
            root.set(k, str(totals[k]))
        root.set("errors", "0")
        ET.indent(root)
        return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(
            root, encoding="unicode") + "\n"


def _junit_names(c: Check) -> tuple[str, str, str]:
    """(classname, separator, name): ``empirical/disclosure/actor.usr`` ->
    ``ils_redact.verify.empirical.disclosure`` and ``actor.usr``."""
    parts = c.id.split("/")
    if len(parts) == 1:
        return "ils_redact.verify", "", parts[0]
    return "ils_redact.verify." + ".".join(parts[:-1]), "", parts[-1]


def junit_error(message: str, database: str = "") -> str:
    """A JUnit file for a verify that could not run (exit 2): one test case in error."""
    root = ET.Element("testsuites", name="ils-redact verify", tests="1", failures="0",
                      errors="1", skipped="0")
    suite = ET.SubElement(root, "testsuite", name="ils-redact verify", tests="1",
                          failures="0", errors="1", skipped="0")
    case = ET.SubElement(suite, "testcase", classname="ils_redact.verify",
                         name=f"verify {database}".strip())
    err = ET.SubElement(case, "error", message=message[:1000], type="IlsRedactError")
    err.text = message
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(
        root, encoding="unicode") + "\n"
