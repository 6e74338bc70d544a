"""Relation and column permissions, after qualification.

Every column referenced ANYWHERE counts: a column used only in WHERE, JOIN, GROUP BY,
HAVING, ORDER BY, a window or a function argument discloses as much as a projection
(``WHERE id IN (SELECT usr FROM action.circulation WHERE target_copy = 42)`` tells who
borrowed item 42).  So the check is over all column nodes, attributed to their source
through sqlglot's scopes, and any column that cannot be attributed refuses.

The one exception is ``*``: ``qualify`` expands it to every column of the catalog, and
this pass then drops the columns the profile may not read, so ``SELECT *`` returns the
permitted columns instead of failing on the first withheld one (PostgreSQL fact 4).  A
star-expanded column is recognised by having no source position (the user did not write
it) in a SELECT whose projection had a star; an explicit reference to a dropped column of
a CTE or derived table is refused like the base column.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlglot import exp
from sqlglot.optimizer.scope import Scope

from ..rules import ALL_COLUMNS, Rules
from .aliases import renamed_from
from .findings import Finding, finding
from .profiles import Classification, Classifier, Profile

STAR_META = "ils_redact_star"
#: a column already refused with a precise finding (ORDER BY 3 naming a dropped column)
EXPLAINED_META = "ils_redact_explained"


def mark_star_selects(tree: exp.Expr) -> bool:
    """Tag every SELECT whose projection has ``*`` or ``t.*`` (before qualify)."""
    found = False
    for select in tree.find_all(exp.Select):
        for p in select.expressions:
            if isinstance(p, exp.Star) or (isinstance(p, exp.Column)
                                           and isinstance(p.this, exp.Star)):
                select.meta[STAR_META] = True
                found = True
                break
    return found


@dataclass
class Access:
    """What the query reads, filled in while checking."""

    relations: set[str] = field(default_factory=set)
    columns: set[str] = field(default_factory=set)
    #: (relation, column) of base columns, for lint
    pairs: set[tuple[str, str]] = field(default_factory=set)


class AccessChecker:
    """Relation and column checks for one profile."""

    def __init__(self, rules: Rules, profile: Profile, classifier: Classifier) -> None:
        self.rules = rules
        self.profile = profile
        self.classifier = classifier

    # -- relations -----------------------------------------------------------------
    def relation_finding(self, rel: str, node: exp.Expr) -> Finding | None:
        if rel in self.profile.permitted:
            return None
        c = self.classifier.classify(rel)
        law = self.profile.law
        if c.cls == "confidential":
            if self.profile.name == "stats":
                msg = (f"{rel} is confidential patron activity ({law}); the statistics "
                       f"profile reads it only through the suppressed views in "
                       f"ils_redact_stats: {c.reason}")
            else:
                msg = (f"{rel} is confidential patron activity and is never disclosed "
                       f"({law}: records of what a patron borrowed, requested or used are "
                       f"confidential): {c.reason}")
            return finding("R-CONFIDENTIAL-RELATION", msg, rel, node)
        if c.cls == "secret":
            return finding("R-SECRET-RELATION", f"{rel} holds credentials and is never "
                           f"readable by a restricted role", rel, node)
        return finding("R-NOT-PERMITTED", self._not_permitted(rel, c), rel, node)

    def _not_permitted(self, rel: str, c: Classification) -> str:
        name = self.profile.name
        if name == "disclosure":
            allowed = ", ".join(sorted(self.profile.permitted))
            if c.cls == "personal":
                return (f"{rel} is personal data that is not disclosed ({c.reason}); a "
                        f"disclosure reads only the identity tables: {allowed}")
            return (f"{rel} ({c.cls}: {c.reason}) is not an identity table; a disclosure "
                    f"reads only {allowed}")
        if name == "stats":
            return (f"{rel} is not a statistics view; the statistics profile reads only "
                    f"the suppressed views in ils_redact_stats")
        return f"{rel} is {c.cls} data and not readable by a statistics report ({c.reason})"

    # -- columns ---------------------------------------------------------------------
    def column_finding(self, rel: str, col: str, node: exp.Expr) -> Finding | None:
        allowed = self.profile.permitted.get(rel)
        if allowed is None or col in allowed:
            return None  # relation refusal already covers an unpermitted relation
        obj = f"{rel}.{col}"
        secret = self.classifier.secret_columns(rel)
        if secret == ALL_COLUMNS or col in secret:
            return finding("R-SECRET-COLUMN", f"{obj} is a credential and is never "
                           f"readable by a restricted role", obj, node)
        ident = self.classifier.identity(rel)
        if ident is not None and self.profile.name == "disclosure":
            why = ident.withheld.get(col)
            covered = self.profile.request_columns
            if col in ident.columns and covered is not None:
                req = self.profile.request_id
                msg = (f"{obj} is not among the fields request {req} covers (it covers: "
                       f"{', '.join(sorted(covered)) or 'none'})")
            elif why:
                msg = f"{obj} is withheld from disclosure: {why}"
            else:
                msg = (f"{obj} is not in the identity allow-list of the rules (a "
                       f"disclosure reads only: {', '.join(ident.columns)})")
            return finding("R-WITHHELD-COLUMN", msg, obj, node)
        return finding("R-WITHHELD-COLUMN", f"{obj} is not readable by the "
                       f"{self.profile.name} profile", obj, node)

    def permitted(self, rel: str, col: str) -> bool:
        allowed = self.profile.permitted.get(rel)
        return allowed is not None and col in allowed


def unresolved_columns(scopes: list[Scope]) -> Iterator[exp.Column]:
    """Columns ``qualify`` could not attach to a source: unknown or ambiguous names, and
    qualified names whose table is not in scope (what sqlglot's
    ``validate_qualify_columns`` checks, on scopes the gate has already built)."""
    for scope in scopes:
        if not isinstance(scope.expression, exp.Select):
            continue
        if scope.external_columns and not scope.is_correlated_subquery and not scope.pivots:
            yield from scope.external_columns
        yield from scope.unqualified_columns


def _source_of(scope: Scope, table: str) -> exp.Table | Scope | None:
    return scope.sources.get(table)


def filter_star_columns(scopes: list[Scope], checker: AccessChecker,
                        withheld: dict[int, dict[str, tuple[str, str]]]) -> Iterator[Finding]:
    """Drop star-expanded projections the profile may not read (inner scopes first).

    ``withheld`` maps id(scope expression) -> output name -> (relation, column) of what
    was dropped, so outer references to it can be refused precisely.
    """
    for scope in scopes:
        select = scope.expression
        if not isinstance(select, exp.Select) or not select.meta.get(STAR_META):
            continue
        keep = []
        dropped: dict[str, tuple[str, str]] = {}
        for proj in select.expressions:
            col = proj.this if isinstance(proj, exp.Alias) else proj
            if isinstance(col, exp.Column) and not _has_position(col):
                base = _base_of(scope, col, withheld)
                if base is not None and not checker.permitted(*base):
                    dropped[proj.alias_or_name] = base
                    continue
            keep.append(proj)
        if dropped:
            if not keep:
                rels = sorted({r for r, _ in dropped.values()})
                yield finding("R-WITHHELD-COLUMN", f"* selects no column this profile may "
                              f"read from {', '.join(rels)}", ", ".join(rels), select)
                continue
            select.set("expressions", keep)
            withheld[id(select)] = dropped
            kept = set(select.named_selects)
            for key in ("order", "distinct"):
                clause = select.args.get(key)
                for col in clause.find_all(exp.Column) if clause else ():
                    if not col.table and col.name in dropped and col.name not in kept:
                        rel, name = dropped[col.name]
                        col.meta[EXPLAINED_META] = True
                        f = checker.column_finding(rel, name, col)
                        if f:
                            yield f


def _has_position(col: exp.Column) -> bool:
    ident = col.this
    return bool(ident is not None and ident._meta and "line" in ident._meta)  # noqa: SLF001


def _base_of(scope: Scope, col: exp.Column, withheld: dict[int, dict[str, tuple[str, str]]]
             ) -> tuple[str, str] | None:
    """(relation, column) a star-expanded column reads, through derived tables."""
    source = _source_of(scope, col.table)
    if isinstance(source, exp.Table):
        if isinstance(source.this, exp.Identifier):
            return f"{source.text('db')}.{source.name}", col.name
        return None
    if isinstance(source, Scope):
        return withheld.get(id(source.expression), {}).get(col.name)
    return None


def check_columns(scopes: list[Scope], tree: exp.Expr, checker: AccessChecker,
                  withheld: dict[int, dict[str, tuple[str, str]]], access: Access
                  ) -> Iterator[Finding]:
    """Attribute every column to its source and check it; refuse what cannot be placed."""
    covered: set[int] = set()
    for scope in scopes:
        for col in scope.columns:
            if id(col) in covered or not col.table:
                continue
            source = _source_of(scope, col.table)
            if source is None:
                continue  # an outer scope's column: attributed there
            covered.add(id(col))
            if isinstance(source, exp.Table):
                if not isinstance(source.this, exp.Identifier):
                    continue  # a column of a table function's result
                rel = f"{source.text('db')}.{source.name}"
                access.columns.add(f"{rel}.{col.name}")
                access.pairs.add((rel, col.name))
                f = checker.column_finding(rel, col.name, col)
                if f:
                    yield _renamed(f, col, rel)
            else:
                base = withheld.get(id(source.expression), {}).get(col.name)
                if base is not None:
                    f = checker.column_finding(base[0], base[1], col)
                    if f:
                        yield f
    for whole in tree.find_all(exp.TableColumn):
        yield finding("R-WHOLE-ROW", f"{whole.name} is a whole-row reference: it reads every "
                      f"column of the row; name the columns", whole.name, whole)
    for col in tree.find_all(exp.Column):
        if id(col) in covered or isinstance(col.this, exp.Star) or \
                (col._meta and col._meta.get(EXPLAINED_META)):  # noqa: SLF001
            continue
        if _is_output_alias_reference(col):
            continue
        if not col.table and _names_a_source(col):
            yield finding("R-WHOLE-ROW", f"{col.name} is a whole-row reference: it reads "
                          f"every column of the row; name the columns", col.name, col)
        else:
            yield finding("R-UNKNOWN-COLUMN", f"cannot tell which relation column "
                          f"{col.sql()} belongs to", col.sql(), col)


def _renamed(f: Finding, col: exp.Column, rel: str) -> Finding:
    """Say so when the reference was renamed by an alias column list (``u.family_name``
    standing for ``dob``): the user wrote one name and is refused for another."""
    written = renamed_from(col)
    if written is None:
        return f
    return Finding(f.code, f"{f.message} ({written} is column {col.name} of {rel}: an alias "
                   f"column list renames columns by position)", f.object, f.line, f.col)


def _is_output_alias_reference(col: exp.Column) -> bool:
    """``ORDER BY n`` / ``DISTINCT ON (n)`` where ``n`` is an output column of the same
    SELECT (PostgreSQL and MariaDB resolve a bare name there against output names first).

    Only a bare name: inside an expression (``ORDER BY n + 0``, ``ORDER BY n COLLATE
    "C"``, ``extract(year FROM n)``) both servers read ``n`` as an INPUT column, so
    ``SELECT family_name AS dob ... ORDER BY dob + 0`` sorts by the date of birth.  Such a
    reference is left unattributed and refused."""
    if col.table:
        return False
    item: exp.Expr = col
    while isinstance(item.parent, exp.Paren):
        item = item.parent
    holder = item.parent
    if isinstance(holder, exp.Ordered) and item.arg_key == "this":
        holder = holder.parent
    elif isinstance(holder, exp.Tuple) and isinstance(holder.parent, exp.Distinct):
        holder = holder.parent
    if not isinstance(holder, (exp.Order, exp.Distinct)):
        return False
    query = holder.parent
    while isinstance(query, (exp.SetOperation, exp.Subquery)):  # a UNION's names: its first
        query = query.this                                       # branch's (left = this)
    return isinstance(query, exp.Select) and col.name in query.named_selects


def _names_a_source(col: exp.Column) -> bool:
    select = col.find_ancestor(exp.Select)
    while select is not None:
        for src in [select.args.get("from_"), *(select.args.get("joins") or [])]:
            if src is None:
                continue
            node = src.this
            if node.alias_or_name == col.name:
                return True
        select = select.find_ancestor(exp.Select)
    return False
