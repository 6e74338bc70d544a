"""Read ``redaction_rules.yaml``: YAML with line numbers, then the shipped JSON Schema.

Every error names ``file:line`` so a sysadmin can open the file at the right place.  The
YAML is composed once into nodes (which carry their marks) and constructed from those
nodes, so the line table and the data come from the same parse.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from ..errors import RulesError, RulesErrors
from ..resources import package_file
from .model import (
    BarcodeLookup,
    CustomReport,
    DisclosureSettings,
    GateSettings,
    HardeningSettings,
    IdentityTable,
    PatronModel,
    ReleaseMark,
    Rules,
    StatisticsSettings,
)

try:  # the C loader is several times faster on the 700-line default file
    _Loader: type[yaml.CSafeLoader | yaml.SafeLoader] = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Loader = yaml.SafeLoader


RULES_FILENAME = "redaction_rules.yaml"


def default_rules_path(cwd: Path | None = None) -> Path:
    """``./redaction_rules.yaml`` if present, else the packaged Evergreen default."""
    local = (cwd or Path.cwd()) / RULES_FILENAME
    if local.is_file():
        return local
    return package_file("presets/evergreen.yaml", source_fallback=RULES_FILENAME)


@lru_cache(maxsize=1)
def rules_schema() -> dict[str, Any]:
    return json.loads(Path(__file__).with_name("schema.json").read_text(encoding="utf-8"))


def _walk(node: yaml.Node, path: tuple[Any, ...], lines: dict[tuple[Any, ...], int],
          errors: list[RulesError], file: str) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in seen:
                errors.append(RulesError(
                    f"duplicate key {key!r} (first at line {seen[key]})", path=file, line=line))
            seen[key] = line
            lines[path + (key,)] = line
            _walk(value_node, path + (key,), lines, errors, file)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, path + (i,), lines, errors, file)


def _schema_errors(data: Any, lines: dict[tuple[Any, ...], int], file: str) -> list[RulesError]:
    validator = jsonschema.Draft202012Validator(rules_schema())
    out = []
    for err in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        path = tuple(err.absolute_path)
        p = path
        while p and p not in lines:
            p = p[:-1]
        line = lines.get(p)
        where = ".".join(str(x) for x in path) or "(top level)"
        msg = err.message
        if err.validator == "additionalProperties":
            allowed = sorted((err.schema.get("properties") or {}).keys())
            if allowed:
                msg += f"; allowed keys: {', '.join(allowed)}"
        out.append(RulesError(f"{where}: {msg}", path=file, line=line))
    return out


def parse_rules(text: str, path: Path | str | None = None) -> Rules:
    """Parse and structurally validate rules text.  Raises RulesErrors."""
    file = str(path) if path is not None else "<rules>"
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise RulesErrors([RulesError("the rules file is empty", path=file, line=1)])
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise RulesErrors([RulesError(f"not valid YAML: {exc.problem}", path=file,
                                      line=line)]) from None
    finally:
        loader.dispose()

    lines: dict[tuple[Any, ...], int] = {}
    errors: list[RulesError] = []
    _walk(node, (), lines, errors, file)
    if not isinstance(data, dict):
        raise RulesErrors([RulesError("the rules file must be a mapping", path=file, line=1)])
    errors += _schema_errors(data, lines, file)
    if errors:
        raise RulesErrors(errors)
    return _build(data, text, Path(path) if path is not None else None, lines)


def load_rules(path: Path | str | None = None) -> Rules:
    p = Path(path) if path is not None else default_rules_path()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RulesErrors([RulesError("rules file not found", path=p)]) from None
    except UnicodeDecodeError as exc:
        raise RulesErrors([RulesError(f"not UTF-8 text ({exc.reason})", path=p)]) from None
    return parse_rules(text, p)


def _build(data: dict[str, Any], text: str, path: Path | None,
           lines: dict[tuple[Any, ...], int]) -> Rules:
    patron = data["patron"]
    bc = patron["barcode"]
    identity = tuple(
        IdentityTable(
            relation=rel,
            patron_key=spec["patron_key"],
            columns=tuple(spec["columns"]),
            withheld=dict(spec.get("withheld") or {}),
        )
        for rel, spec in data["identity"].items()
    )
    secret = {
        rel: (cols if isinstance(cols, str) else tuple(cols))
        for rel, cols in (data.get("secret") or {}).items()
    }
    disc = data.get("disclosure") or {}
    stats = data.get("statistics") or {}
    gate = data.get("gate") or {}
    hardening = data.get("hardening") or {}
    reports = tuple(
        CustomReport(
            name=r["name"],
            source=r["source"],
            group_by=tuple(r["group_by"]),
            measure=r.get("measure", "count"),
            patron_column=r["patron_column"],
            time_column=r.get("time_column"),
            description=r.get("description", ""),
        )
        for r in stats.get("reports") or ()
    )
    marks = data.get("releases") or {}
    release_relations = {rel: ReleaseMark(m.get("since"), m.get("until"))
                         for rel, m in (marks.get("relations") or {}).items()}
    release_columns = {}
    for name, m in (marks.get("columns") or {}).items():
        rel, _, col = name.rpartition(".")
        release_columns[(rel, col)] = ReleaseMark(m.get("since"), m.get("until"))
    policy = data.get("policy_text")
    policy_path = None
    if policy:
        policy_path = Path(policy)
        if not policy_path.is_absolute() and path is not None:
            policy_path = path.parent / policy_path
    return Rules(
        version=data["version"],
        adapter=data["adapter"],
        role_prefix=data["role_prefix"],
        patron=PatronModel(
            relation=patron["table"],
            key=patron["key"],
            display=tuple(patron.get("display") or ()),
            barcode=BarcodeLookup(
                relation=bc["table"],
                column=bc["column"],
                patron_key=bc["patron_key"],
                active_column=bc.get("active_column"),
            ),
        ),
        identity=identity,
        secret=secret,
        confidential=dict(data.get("confidential") or {}),
        personal=dict(data.get("personal") or {}),
        other=tuple(data.get("other") or ()),
        disclosure=DisclosureSettings(
            max_patrons=disc.get("max_patrons", 10),
            emergency_hours=disc.get("emergency_hours", 24),
            court_order_max_days=disc.get("court_order_max_days", 90),
            access=disc.get("access", "function"),
        ),
        statistics=StatisticsSettings(k=stats.get("k", 11), reports=reports,
                                      time_zone=stats.get("time_zone", "UTC"),
                                      cost=stats.get("cost", "totals_first"),
                                      protection=float(stats.get("protection", 0.5)),
                                      exact_limit=stats.get("exact_limit", 400_000)),
        gate=GateSettings(
            row_cap=gate.get("row_cap", 1000),
            statement_timeout_ms=gate.get("statement_timeout_ms", 5000),
            functions=tuple(gate.get("functions") or ()),
        ),
        hardening=HardeningSettings(
            revoke_public_temp=hardening.get("revoke_public_temp", True),
            temp_roles=tuple(hardening.get("temp_roles") or ()),
            revoke_public_counters=hardening.get("revoke_public_counters", True),
            counter_roles=tuple(hardening.get("counter_roles") or ()),
        ),
        policy_text=policy_path,
        release_relations=release_relations,
        release_columns=release_columns,
        path=path,
        lines=lines,
        raw_text=text,
    )
