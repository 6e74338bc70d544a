"""The group's options after the subcommand (``ils-redact verify --format json``), as
sysadmins type them; a subcommand's own option of the same name keeps its meaning."""

from __future__ import annotations

import json

import click
import pytest

from ils_redact.cli import cli, hoist_global_options
from support import run_cli


def hoisted(*args: str) -> list[str]:
    return hoist_global_options(cli, click.Context(cli), list(args))


@pytest.mark.parametrize(("given", "parsed"), [
    (["verify", "--format", "json"], ["--format", "json", "verify"]),
    (["verify", "--dsn=x", "--debug"], ["--dsn=x", "--debug", "verify"]),
    (["--debug", "status", "--rules", "r.yaml"], ["--debug", "--rules", "r.yaml", "status"]),
    (["request", "list", "--format", "json"], ["--format", "json", "request", "list"]),
    # export's and stats run's own --format is the file's format
    (["export", "--request", "7", "--format", "csv"],
     ["export", "--request", "7", "--format", "csv"]),
    (["--dsn", "x", "stats", "run", "r", "--format", "csv"],
     ["--dsn", "x", "stats", "run", "r", "--format", "csv"]),
    # a value of the subcommand's own option is never read as an option
    (["request", "revoke", "7", "--reason", "--format"],
     ["request", "revoke", "7", "--reason", "--format"]),
    # after --, nothing is an option
    (["lint", "--", "--format", "json"], ["lint", "--", "--format", "json"]),
    # unknown subcommand: left for click to refuse
    (["nosuch", "--format", "json"], ["nosuch", "--format", "json"]),
])
def test_group_options_after_the_subcommand(given: list[str], parsed: list[str]) -> None:
    assert hoisted(*given) == parsed


def test_format_json_after_the_subcommand_runs() -> None:
    after = run_cli("rules", "check", "--format", "json")
    before = run_cli("--format", "json", "rules", "check")
    assert after.returncode == before.returncode == 0, after.stderr
    assert json.loads(after.stdout) == json.loads(before.stdout)


def test_a_bad_value_after_the_subcommand_is_a_usage_error() -> None:
    res = run_cli("rules", "check", "--format", "yaml")
    assert res.returncode == 2
    assert "'yaml' is not one of 'text', 'json'" in res.stderr
