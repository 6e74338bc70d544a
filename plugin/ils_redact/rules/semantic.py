"""Semantic checks: the rules against themselves and against a catalog.

Structural checks (types, keys) are the JSON Schema's job.  Here we check what a schema
cannot: that every name exists in the database, that a relation is classified once, that
an identity table is a real table whose inheritance children are not confidential, that
a parent of a confidential table is itself confidential (``money.billable_xact`` returns
circulations), and that no view reading confidential data is classified as harmless.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..catalog import Catalog, Relation
from ..errors import RulesError, RulesErrors, did_you_mean
from .model import ALL_COLUMNS, ReleaseMark, Rules


@dataclass(frozen=True)
class Notice:
    """A non-fatal observation (unclassified relation or column)."""

    code: str
    object: str
    message: str


_SECTIONS = ("identity", "secret", "confidential", "personal", "other")


def _sections_of(rules: Rules) -> dict[str, list[tuple[str, tuple]]]:
    """relation -> [(section, line path)] for every place a relation is classified."""
    seen: dict[str, list[tuple[str, tuple]]] = {}
    for t in rules.identity:
        seen.setdefault(t.relation, []).append(("identity", ("identity", t.relation)))
    for rel, cols in rules.secret.items():
        if cols == ALL_COLUMNS:
            seen.setdefault(rel, []).append(("secret", ("secret", rel)))
    for rel in rules.confidential:
        seen.setdefault(rel, []).append(("confidential", ("confidential", rel)))
    for rel in rules.personal:
        seen.setdefault(rel, []).append(("personal", ("personal", rel)))
    for i, rel in enumerate(rules.other):
        seen.setdefault(rel, []).append(("other", ("other", i)))
    return seen


def check_rules(rules: Rules) -> None:
    """Consistency of the rules on their own.  Raises RulesErrors."""
    errs = rules_errors(rules)
    if errs:
        raise RulesErrors(errs)


def rules_errors(rules: Rules) -> list[RulesError]:
    errs: list[RulesError] = []

    def err(msg: str, *path: object, hint: str | None = None) -> None:
        errs.append(RulesError(msg, path=rules.path, line=rules.line(*path), hint=hint))

    for rel, places in _sections_of(rules).items():
        if len(places) > 1:
            first = rules.line(*places[0][1])
            for section, path in places[1:]:
                err(f"{rel} is classified twice ({places[0][0]} at line {first}, and {section})",
                    *path)

    for t in rules.identity:
        base = ("identity", t.relation)
        if t.patron_key not in t.columns:
            err(f"identity {t.relation}: patron_key {t.patron_key} must be one of its columns",
                *base, "patron_key")
        secret = rules.secret.get(t.relation, ())
        for i, col in enumerate(t.columns):
            if col in t.withheld:
                err(f"{t.relation}.{col} is both an identity column and withheld",
                    *base, "columns", i)
            if secret == ALL_COLUMNS or col in secret:
                err(f"{t.relation}.{col} is secret and can never be an identity column",
                    *base, "columns", i)

    p = rules.patron
    pt = rules.identity_table(p.relation)
    if pt is None:
        err(f"patron.table {p.relation} must be an identity table", "patron", "table")
    else:
        if p.key not in pt.columns:
            err(f"patron.key {p.key} must be an identity column of {p.relation}", "patron", "key")
        for i, col in enumerate(p.display):
            if col not in pt.columns:
                err(f"patron.display {col} is not an identity column of {p.relation}",
                    "patron", "display", i)
    bt = rules.identity_table(p.barcode.relation)
    if bt is None:
        err(f"patron.barcode.table {p.barcode.relation} must be an identity table",
            "patron", "barcode", "table")
    else:
        for key in ("column", "patron_key"):
            col = getattr(p.barcode, key)
            if col not in bt.columns:
                err(f"patron.barcode.{key} {col} is not an identity column of "
                    f"{p.barcode.relation}", "patron", "barcode", key)

    errs.extend(_mark_errors(rules))

    names = [r.name for r in rules.statistics.reports]
    for i, name in enumerate(names):
        if name in names[:i]:
            err(f"statistics report {name} is defined twice", "statistics", "reports", i)
    return errs


def _used_columns(rules: Rules) -> set[tuple[str, str]]:
    """(relation, column) for every column the rules name."""
    used = {(t.relation, c) for t in rules.identity for c in (*t.columns, *t.withheld)}
    used |= {(t.relation, t.patron_key) for t in rules.identity}
    used |= {(rel, c) for rel, cols in rules.secret.items() if cols != ALL_COLUMNS
             for c in cols}
    return used


def _mark_errors(rules: Rules) -> list[RulesError]:
    """A release mark must name something the rules use, and its range must be a range."""
    from ..releases import version_key

    errs = []
    classified = set(_sections_of(rules))
    used = _used_columns(rules)
    marks: list[tuple[tuple, str, bool, ReleaseMark]] = [
        (("releases", "relations", rel), rel, rel in classified, m)
        for rel, m in rules.release_relations.items()]
    marks += [(("releases", "columns", f"{rel}.{col}"), f"{rel}.{col}",
               bool(rel) and (rel, col) in used, m)
              for (rel, col), m in rules.release_columns.items()]
    for path, name, is_used, m in marks:
        line = rules.line(*path)
        if not is_used:
            what = "relation" if path[1] == "relations" else "column (relation.column)"
            errs.append(RulesError(f"releases: {name} is not a {what} the rules name "
                                   "elsewhere", path=rules.path, line=line))
        if m.since and m.until and version_key(m.since) >= version_key(m.until):
            errs.append(RulesError(f"releases: {name}: since {m.since} is not before "
                                   f"until {m.until}", path=rules.path, line=line))
    return errs


def _absent_allowed(rules: Rules, catalog: Catalog, mark: ReleaseMark | None) -> bool:
    """Whether a name the rules mark may be missing from this catalog: only when its
    mark says this release lacks it, or when the release is unknown (then the name is
    left out and `plan` says the release could not be read)."""
    from ..releases import in_range

    if mark is None:
        return False
    if not catalog.release:
        return True
    return not in_range(catalog.release, mark.since, mark.until)


def _mark_hint(catalog: Catalog, mark: ReleaseMark | None) -> str:
    if mark is None:
        return ""
    return f" (present {mark.describe()} by the rules; this database is {catalog.release})"


def absent_names(rules: Rules, catalog: Catalog) -> tuple[set[str], set[tuple[str, str]]]:
    """The marked relations and columns this catalog lacks, as its release allows."""
    rels = {r for r, m in rules.release_relations.items()
            if catalog.get(r) is None and _absent_allowed(rules, catalog, m)}
    cols = set()
    for (r, c), m in rules.release_columns.items():
        found = catalog.get(r)
        if r in rels or (found is not None and found.column(c) is None
                         and _absent_allowed(rules, catalog, m)):
            cols.add((r, c))
    return rels, cols


def for_catalog(rules: Rules, catalog: Catalog) -> Rules:
    """The rules as they apply to this database's release: every name the release lacks
    (as the rules' ``releases`` marks allow) left out.  The text, and so the sha256, is
    the rules file's own.  Names without a mark are untouched (checking them is
    ``check_against_catalog``'s job)."""
    rels, cols = absent_names(rules, catalog)
    if not rels and not cols:
        return rules

    def keep(rel: str, col: str) -> bool:
        return (rel, col) not in cols

    identity = tuple(
        dataclasses.replace(t, columns=tuple(c for c in t.columns if keep(t.relation, c)),
                            withheld={c: w for c, w in t.withheld.items()
                                      if keep(t.relation, c)})
        for t in rules.identity if t.relation not in rels)
    secret = {rel: (v if v == ALL_COLUMNS else tuple(c for c in v if keep(rel, c)))
              for rel, v in rules.secret.items() if rel not in rels}
    patron = dataclasses.replace(rules.patron, display=tuple(
        c for c in rules.patron.display if keep(rules.patron.relation, c)))
    return dataclasses.replace(
        rules, identity=identity, secret=secret, patron=patron,
        confidential={r: w for r, w in rules.confidential.items() if r not in rels},
        personal={r: w for r, w in rules.personal.items() if r not in rels},
        other=tuple(r for r in rules.other if r not in rels),
        release_relations={r: m for r, m in rules.release_relations.items()
                           if r not in rels},
        release_columns={k: m for k, m in rules.release_columns.items() if k not in cols})


def release_notes(rules: Rules, catalog: Catalog) -> list[str]:
    """One line about the release for `plan` and `rules check`."""
    rels, cols = absent_names(rules, catalog)
    left = len(rels) + len(cols)
    if catalog.release:
        out = [f"ILS release {catalog.release}"]
        if left:
            out.append(f"{len(rels)} relations and {len(cols)} columns the rules mark as "
                       f"from other releases are not in this one (left out)")
        return out
    if left:
        return [f"ILS release unknown: {len(rels)} relations and {len(cols)} columns the "
                "rules mark as release-specific are missing and were left out"]
    return ["ILS release unknown"]


def check_against_catalog(rules: Rules, catalog: Catalog) -> list[Notice]:
    """Every name in the rules must exist; classification must be coherent.

    Raises RulesErrors for errors (exit 2, nothing changed); returns notices for what is
    merely unclassified (new tables or columns since the rules were written).
    """
    errs = rules_errors(rules)

    def err(msg: str, *path: object, hint: str | None = None) -> None:
        errs.append(RulesError(msg, path=rules.path, line=rules.line(*path), hint=hint))

    def rel_or_err(name: str, *path: object) -> Relation | None:
        rel = catalog.get(name)
        if rel is None:
            mark = rules.release_relations.get(name)
            if _absent_allowed(rules, catalog, mark):
                return None
            schema = name.split(".", 1)[0] if "." in name else None
            kind = "relation"
            if schema is not None and schema not in catalog.schemas:
                kind = f"schema {schema} (in relation)"
            err(f"unknown {kind} {name}{_mark_hint(catalog, mark)}", *path,
                hint=catalog.suggest_relation(name))
        return rel

    rules_name = {catalog.qualify(r): r for r in (*_sections_of(rules), *rules.secret)}

    def col_or_err(rel: Relation, col: str, *path: object) -> None:
        if rel.column(col) is None:
            mark = rules.release_columns.get((rules_name.get(rel.qualified, rel.qualified),
                                              col))
            if _absent_allowed(rules, catalog, mark):
                return
            err(f"unknown column {rel.qualified}.{col}{_mark_hint(catalog, mark)}", *path,
                hint=catalog.suggest_column(rel, col))

    resolved: dict[str, Relation] = {}
    for rel_name, places in _sections_of(rules).items():
        rel = rel_or_err(rel_name, *places[0][1])
        if rel is not None:
            resolved[rel_name] = rel

    for t in rules.identity:
        rel = resolved.get(t.relation)
        if rel is None:
            continue
        base = ("identity", t.relation)
        if rel.is_view:
            err(f"identity {t.relation} is a view; views run with their owner's rights, so "
                "only tables can be identity tables", *base)
        col_or_err(rel, t.patron_key, *base, "patron_key")
        for i, col in enumerate(t.columns):
            col_or_err(rel, col, *base, "columns", i)
        for col in t.withheld:
            col_or_err(rel, col, *base, "withheld", col)
        for kid in sorted(catalog.descendants(rel.qualified)):
            if rules.classify(_unqualify(catalog, kid)) != "identity":
                err(f"identity {t.relation} is an inheritance parent of {kid}: reading it "
                    "returns that table's rows", *base)

    for rel_name, cols in rules.secret.items():
        rel = resolved.get(rel_name) or rel_or_err(rel_name, "secret", rel_name)
        if rel is None or cols == ALL_COLUMNS:
            continue
        for i, col in enumerate(cols):
            col_or_err(rel, col, "secret", rel_name, i)

    # a parent of a confidential table returns the child's rows: it is confidential too
    confidential = {catalog.qualify(r) for r in rules.confidential}
    for rel_name in rules.confidential:
        for parent in sorted(catalog.ancestors(rel_name)):
            cls = rules.classify(_unqualify(catalog, parent))
            if cls not in ("confidential", "secret"):
                place = _place(rules, _unqualify(catalog, parent))
                err(f"{parent} is classified {cls or 'nowhere'} but it is an inheritance "
                    f"parent of confidential {rel_name}: classify it confidential", *place)

    # a view that reads confidential data is confidential, whatever it is called
    for rel_name in list(rules.other) + list(rules.personal):
        rel = resolved.get(rel_name)
        if rel is None or not rel.is_view:
            continue
        leaks = sorted(catalog.view_reads(rel.qualified) & confidential)
        if leaks:
            err(f"view {rel_name} reads confidential {', '.join(leaks)} (views run with their "
                "owner's rights): classify it confidential", *_place(rules, rel_name))

    if errs:
        errs.sort(key=lambda e: e.line or 0)
        raise RulesErrors(errs)
    return unclassified(rules, catalog)


def _place(rules: Rules, rel: str) -> tuple:
    places = _sections_of(rules).get(rel)
    return places[0][1] if places else ()


def _unqualify(catalog: Catalog, qualified: str) -> str:
    if catalog.default_schema and qualified.startswith(catalog.default_schema + "."):
        return qualified[len(catalog.default_schema) + 1:]
    return qualified


def unclassified(rules: Rules, catalog: Catalog, *,
                 skip_schemas: frozenset[str] = frozenset({"ils_redact"})) -> list[Notice]:
    """Relations, and columns of identity tables, that the rules do not classify."""
    known = {catalog.qualify(r) for r in rules.classified_relations()}
    out: list[Notice] = []
    for rel in sorted(catalog.relations.values(), key=lambda r: r.qualified):
        if rel.schema in skip_schemas or rel.qualified in known:
            continue
        out.append(Notice("UNCLASSIFIED-RELATION", rel.qualified,
                          f"{rel.kind} {rel.qualified} is not classified in the rules "
                          "(closed to restricted roles; classify it)"))
    for t in rules.identity:
        found = catalog.get(t.relation)
        if found is None:
            continue
        secret = rules.secret.get(t.relation, ())
        covered = set(t.columns) | set(t.withheld) | (set(secret) if secret != ALL_COLUMNS else
                                                      set(found.column_names))
        for col in found.column_names:
            if col not in covered:
                out.append(Notice("UNCLASSIFIED-COLUMN", f"{found.qualified}.{col}",
                                  f"column {found.qualified}.{col} is not classified in the rules "
                                  "(closed to the disclosure role; list it under columns or "
                                  "withheld)"))
    return out


__all__ = ["Notice", "absent_names", "check_against_catalog", "check_rules", "did_you_mean",
           "for_catalog", "release_notes", "unclassified"]
