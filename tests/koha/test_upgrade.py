"""Upgrading an installed Koha database from the previous release's MariaDB layer (version
3) to this one: the previous release's own code installs it and runs a request through
it (staff, an approved request, an export, audit entries); this code then plans only the
new layer file and the objects, grants and recorded catalog that changed, installs them,
keeps the request's scope for its grantee's account and the audit chain, verifies clean,
and still uninstalls to exactly what was there before the first install.

The previous release is taken from this repository's history: the parent of the commit
that added ``sql/mariadb/0004_hardening.sql``.
"""

# ruff: noqa: S608 - test SQL: names quoted with sqltext.ident

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from ils_redact.backends import mariadb as m
from ils_redact.backends.mariadb.layer import layer_version_available
from ils_redact.backends.mariadb.sqltext import ident
from ils_redact.disclosure import audit
from ils_redact.disclosure import export as ex
from ils_redact.stats import all_reports
from support.koha import PASSWORD, KohaDb, run_cli, snapshot, write_koha_rules

ROOT = Path(__file__).resolve().parents[2]


def previous_release(dest: Path) -> Path:
    """The package and SQL of the release before layer version 4, extracted from git;
    returns the directory to put on PYTHONPATH."""
    git = shutil.which("git")
    assert git, "the upgrade test needs git (it extracts the previous release)"

    def out(*args: str) -> str:
        res = subprocess.run([git, "-C", str(ROOT), *args], capture_output=True, text=True,
                             check=False)
        assert res.returncode == 0, f"git {' '.join(args)}: {res.stderr}"
        return res.stdout.strip()

    added = out("log", "--diff-filter=A", "--format=%H", "-1", "--",
                "sql/mariadb/0004_hardening.sql")
    assert added, "no commit adds sql/mariadb/0004_hardening.sql (a shallow clone?)"
    archive = subprocess.run([git, "-C", str(ROOT), "archive", f"{added}^", "plugin", "sql"],
                             capture_output=True, check=True).stdout
    dest.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    assert not (dest / "sql/mariadb/0004_hardening.sql").exists()
    return dest / "plugin"


def test_layer_3_upgrades_to_4_in_place(koha: KohaDb, tmp_path: Path) -> None:
    previous = previous_release(tmp_path / "previous")
    old = {"PYTHONPATH": str(previous)}
    rules = str(write_koha_rules(tmp_path, koha.prefix))
    # the previous release reads its own preset (a later preset has keys it did not know)
    old_rules = tmp_path / "koha_rules_previous.yaml"
    old_rules.write_text((previous / "ils_redact/adapters/koha/preset.yaml").read_text(
        encoding="utf-8").replace("role_prefix: ils_redact_", f"role_prefix: {koha.prefix}", 1),
        encoding="utf-8")
    alice, bob = f"{koha.prefix}alice", f"{koha.prefix}bob"
    before = snapshot(koha, (alice, bob))

    def cli(*args: str, user: str | None = None, env: dict | None = None,
            stdin: str | None = None):
        dsn = koha.dsn_as(user) if user else koha.dsn
        res = run_cli("--dsn", dsn, "--rules", str(old_rules) if env is old else rules, *args,
                      env=env, input=stdin)
        assert res.returncode == 0, (args, res.stderr)
        return res.stdout

    # the previous release: install, staff, a request approved and exported
    cli("install", "-q", env=old)
    assert koha.scalar(f"SELECT value FROM {ident(koha.layer)}.meta "
                       "WHERE `key` = 'layer_version'") == "3"
    for login, kinds in ((alice, ("admin", "disclosure")), (bob, ("admin",))):
        for i, kind in enumerate(kinds):
            extra = ("--create", "--password-prompt") if i == 0 else ()
            cli("staff", "grant", login, "--role", kind, *extra, env=old,
                stdin=f"{PASSWORD}\n{PASSWORD}\n")
    rid = json.loads(cli("--format", "json", "request", "create", "--basis", "emergency",
                         "--agency", "PD", "--officer", "Jo", "--badge", "1", "--case", "C",
                         "--reason", "danger", "--patron", "21", "--patron", "22",
                         "--hours", "4", "--yes", user=alice, env=old))["request"]
    cli("request", "approve", str(rid), user=bob, env=old)
    cli("export", "--request", str(rid), "-o", str(tmp_path / "v3.csv"), user=alice, env=old)
    assert koha.scalar(f"SELECT grantee FROM {ident(koha.layer)}.scope LIMIT 1") == alice

    # this release: only what changed
    with koha.connect() as c:
        plan = m.compute_install_plan(c, koha.rules, reports=all_reports)
    kinds = {s.kind for s in plan.changes()}
    assert "bootstrap" not in kinds and "create-role" not in kinds, kinds
    layers = {s.target.split()[1] for s in plan.steps if s.kind == "layer"}
    newest = layer_version_available()
    # each file since version 3
    assert layers == {f"v{n}" for n in range(4, newest + 1)}, layers
    assert any(s.kind == "catalog" for s in plan.steps)
    koha.install()
    with koha.connect() as c:
        assert m.compute_install_plan(c, koha.rules, reports=all_reports).steps == []
        st = m.status(c, koha.rules, reports=all_reports)
    assert st["layer_version"] == st["layer_version_available"] and st["in_sync"], st
    # the request approved under version 3 still serves its grantee, now an account
    assert koha.scalar(f"SELECT grantee FROM {ident(koha.layer)}.scope LIMIT 1") == f"{alice}@%"
    with koha.connect(alice, autocommit=False) as c:
        out = ex.export(c, rid, "csv")
    assert out.manifest["rows"] == 2 and out.manifest["exported_by"] == f"{alice}@%"
    with koha.connect() as c:
        res = audit.verify(c)
        actors = [e.actor for e in audit.entries(c)]
    assert res.ok and actors[0] == alice and actors[-1] == f"{alice}@%"
    ver = run_cli("--dsn", koha.dsn, "--rules", rules, "--format", "json", "verify")
    assert ver.returncode == 0, ver.stdout[-3000:] + ver.stderr

    koha.uninstall()
    after = snapshot(koha, (alice, bob))
    for key in before:
        assert after[key] == before[key], key
    assert after == before
