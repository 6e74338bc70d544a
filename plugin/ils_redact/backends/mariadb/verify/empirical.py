"""Empirical proof on MariaDB: as each restricted role, read every column of every table and
view of the Koha database and of the layer databases, and call every routine it might.

The catalog says what should happen; here the server decides.  A temporary probe login
(``probe``) is granted the restricted roles; for each role, ``SET ROLE`` and one probe
block (one round trip), per relation:

1. ``SELECT 1 FROM rel``: MariaDB allows it only if the role holds some privilege on the
   relation (a column is enough), so a refusal proves every column closed;
2. every column at once; when that is refused, each column alone (a second block, only
   for those relations);
3. for the disclosure role, on the identity views and ``scope_patrons``: the rows it sees,
   and the rows each identity lookup procedure returns for ``NULL`` (the whole scope; a
   call of its own after the block, which cannot keep a result set).  The probe login
   has no scope (no request names it), so every row it sees is a row outside its
   scope.

``--exhaustive`` skips 1 and 2 and reads every column of every relation alone.

Routines (all of the Koha and layer databases, and every SQL SECURITY DEFINER routine
elsewhere on the server) are called with one argument too many: the server checks
EXECUTE first (error 1370 when refused) and the number of arguments next (1318 when
allowed), so the body never runs.

One check per role and relation (``empirical/<kind>/<db>.<table>``), one per role for
the routines (``empirical/<kind>/functions``) and one per lookup procedure
(``empirical/disclosure/lookup/<db>.<procedure>``).
"""

# ruff: noqa: S608 - probe SQL: identifiers only through sqltext.ident / qname

from __future__ import annotations

from dataclasses import dataclass, field

from ....checks.findings import Check, Finding
from ....errors import StateError
from ...postgresql.verify.empirical import column_findings
from ..sqltext import ident, qname
from .context import MariaContext, Routine
from .expect import Expectation
from .grants import grantee_sql
from .probe import DENIED, WRONG_ARGS, call_rows, probe_session, run_block, set_role

ROW_LIMIT = 1_000_000


@dataclass
class Outcome:
    """What one role could do."""

    readable: dict[str, list[str]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    #: routine key -> (callable, error)
    routines: dict[tuple[str, str, str], tuple[bool, str | None]] = field(default_factory=dict)
    probes: int = 0


def _count(inner: str) -> str:
    return f"SELECT COUNT(*) INTO @ils_redact_v FROM ({inner}) d"


def _any(q: str) -> str:
    return _count(f"SELECT 1 FROM {q} WHERE 0")


def _cols(q: str, cols: list[str] | tuple[str, ...]) -> str:
    return _count(f"SELECT {', '.join(ident(c) for c in cols)} FROM {q} WHERE 0")


def _rows(q: str) -> str:
    return _count(f"SELECT 1 FROM {q} LIMIT {ROW_LIMIT + 1}")


def call_probe(r: Routine) -> str:
    args = ", ".join(["NULL"] * (r.params + 1))
    if r.type == "procedure":
        return f"CALL {qname(r.db, r.name)}({args})"
    return f"SELECT {qname(r.db, r.name)}({args}) INTO @ils_redact_v"


def targets(ctx: MariaContext) -> tuple[dict[str, tuple[str, ...]], list[Routine]]:
    rels = {q: rel.column_names for q, rel in ctx.catalog.relations.items()}
    rels.update({q: cols for q, (_, cols) in ctx.layer_relations.items()})
    mine = {ctx.koha, *ctx.layers}
    routines = [r for r in ctx.routines if r.db in mine or r.security.upper() == "DEFINER"]
    return dict(sorted(rels.items())), sorted(routines, key=lambda r: r.key)


def _split(q: str) -> str:
    db, name = q.split(".", 1)
    return qname(db, name)


def probe_role(ctx: MariaContext, session, exp: Expectation, relations: dict[str, tuple[str, ...]],
               routines: list[Routine]) -> Outcome:
    out = Outcome()
    scoped = {f"{db}.{v}" for db, v in exp.scoped}
    if exp.kind == "disclosure":
        scoped.add(f"{ctx.layer}.scope_patrons")
    probes: list[str] = []
    index: list[tuple[str, str, object]] = []  # (what, relation or routine, detail)
    for q, cols in relations.items():
        sql_name = _split(q)
        if ctx.exhaustive:
            for c in cols:
                probes.append(_cols(sql_name, [c]))
                index.append(("col", q, c))
        else:
            probes.append(_any(sql_name))
            index.append(("any", q, None))
            if cols:
                probes.append(_cols(sql_name, cols))
                index.append(("all", q, None))
        if q in scoped:
            probes.append(_rows(sql_name))
            index.append(("rows", q, None))
    for r in routines:
        probes.append(call_probe(r))
        index.append(("call", r.qualified, r))
    results = run_block(session, probes)
    out.probes += len(probes)
    for db, name in sorted(exp.lookups):
        errno, n, msg = call_rows(session, f"CALL {qname(db, name)}(NULL)")
        out.probes += 1
        if errno:
            out.errors.setdefault(f"{db}.{name}", f"{errno} {msg}")
        elif n:
            out.rows[f"{db}.{name}"] = n

    partial: list[str] = []
    any_ok: dict[str, bool] = {}
    for (what, q, detail), (errno, value, msg) in zip(index, results, strict=True):
        if what == "call":
            assert isinstance(detail, Routine)
            r = detail
            if errno == WRONG_ARGS:
                out.routines[r.key] = (True, None)
            elif errno in DENIED:
                out.routines[r.key] = (False, None)
            else:
                out.routines[r.key] = (False, f"{errno} {msg}" if errno else
                                       "the call did not stop at its arguments")
            continue
        if errno not in (0, *DENIED):
            out.errors.setdefault(q, f"{errno} {msg}")
            continue
        if what == "any":
            any_ok[q] = errno == 0
            if errno == 0:
                partial.append(q)
        elif what == "all" and errno == 0:
            out.readable[q] = list(relations[q])
            if q in partial:
                partial.remove(q)
        elif what == "col" and errno == 0:
            out.readable.setdefault(q, []).append(str(detail))
        elif what == "rows" and errno == 0 and value is not None and int(value) > 0:
            out.rows[q] = int(value)
    if partial:
        probes2, index2 = [], []
        for q in partial:
            for c in relations[q]:
                probes2.append(_cols(_split(q), [c]))
                index2.append((q, c))
        out.probes += len(probes2)
        for (q, c), (errno, _v, msg) in zip(index2, run_block(session, probes2), strict=True):
            if errno == 0:
                out.readable.setdefault(q, []).append(c)
            elif errno not in DENIED:
                out.errors.setdefault(q, f"{errno} {msg}")
    return out


def run(ctx: MariaContext) -> list[Check]:
    relations, routines = targets(ctx)
    outcomes: dict[str, Outcome] = {}
    with probe_session(ctx.conn, [role for _, role in ctx.restricted]) as session:
        for kind, role in ctx.restricted:
            set_role(session, role)
            active = session.execute("SELECT CURRENT_ROLE()").fetchone()[0]
            if active != role:
                raise StateError(f"verify: SET ROLE {role} left {active} active")
            outcomes[kind] = probe_role(ctx, session, ctx.expect[kind], relations, routines)
    checks: list[Check] = []
    for kind, role in ctx.restricted:
        exp, mine = ctx.expect[kind], outcomes[kind]
        for q, cols in relations.items():
            checks.append(_relation_check(kind, role, exp, q, cols, mine))
        checks.append(_routine_check(kind, role, exp, routines, mine))
        checks += [_lookup_check(kind, role, db, name, mine) for db, name in sorted(exp.lookups)]
    return checks


def _lookup_check(kind: str, role: str, db: str, name: str, mine: Outcome) -> Check:
    q = f"{db}.{name}"
    check = Check(f"empirical/{kind}/lookup/{q}",
                  f"{role} calls {q} and gets the patrons of its own scope only")
    if q in mine.errors:
        check.findings.append(Finding(
            "E-PROBE-ERROR", f"procedure {q}", f"as {role}, CALL {q}(NULL) failed: "
            f"{mine.errors[q]}", "ils-redact install (it re-creates the procedure), then "
            "verify again", role=kind))
    elif q in mine.rows:
        check.findings.append(Finding(
            "E-ROWS", f"procedure {q}",
            f"as {role}, in a session that no approved request names, CALL {q}(NULL) "
            f"returned {mine.rows[q]:,} rows of patrons: the procedure no longer limits "
            "rows to the caller's scope",
            "ils-redact install (it re-creates the procedure with its scope filter)",
            role=kind))
    check.detail = "no row outside the scope" if not check.findings else "rows leak"
    return check


def _relation_check(kind: str, role: str, exp: Expectation, q: str, cols: tuple[str, ...],
                    mine: Outcome) -> Check:
    db, name = q.split(".", 1)
    allowed = exp.readable(db, name, cols)
    what = f"only {len(allowed)} columns of" if allowed else "nothing of"
    check = Check(f"empirical/{kind}/{q}", f"{role} reads {what} {q}")
    got = set(mine.readable.get(q, []))
    check.findings += column_findings(kind, role, q, cols, allowed, got,
                                      errored=q in mine.errors)
    if q in mine.rows:
        n = mine.rows[q]
        seen = "more than 1,000,000" if n > ROW_LIMIT else f"{n:,}"
        what_rows = ("scope entries of other logins" if name == "scope_patrons"
                     else "rows of patrons")
        check.findings.append(Finding(
            "E-ROWS", q,
            f"as {role}, in a session that no approved request names, {q} returned {seen} "
            f"{what_rows}: the view no longer limits rows to the caller's scope",
            "ils-redact install (it re-creates the view with its scope filter)", role=kind))
    if q in mine.errors:
        check.findings.append(Finding(
            "E-PROBE-ERROR", q, f"as {role}, reading {q} failed: {mine.errors[q]}",
            "fix the relation (a view whose definer lost its rights, a lock) and verify "
            "again", role=kind))
    check.detail = f"{len(got)} of {len(cols)} columns readable" if got else "closed"
    return check


def _routine_check(kind: str, role: str, exp: Expectation, routines: list[Routine],
                   mine: Outcome) -> Check:
    check = Check(f"empirical/{kind}/functions",
                  f"{role} may call exactly the layer routines the rules give it, and no "
                  "other routine that runs as its definer")
    for r in routines:
        ok, err = mine.routines.get(r.key, (False, "not probed"))
        allowed = exp.may_call(r.type, r.db, r.name)
        obj = f"{r.type} {r.qualified}"
        if ok and not allowed:
            check.findings.append(Finding(
                "E-FUNCTION", obj,
                f"as {role}, {obj} may be called (it refused only the extra argument); it "
                f"runs as {r.definer if r.security.upper() == 'DEFINER' else 'the caller'} "
                f"and the {kind} role is not given it",
                f"REVOKE EXECUTE ON {r.type.upper()} {qname(r.db, r.name)} FROM "
                f"{grantee_sql(role)}; (or from PUBLIC, or the role that grants it: see "
                "the catalog findings)", role=kind))
        elif err is not None:
            check.findings.append(Finding(
                "E-PROBE-ERROR", obj, f"as {role}, calling {obj} with one argument too many "
                f"failed otherwise: {err}", "fix the routine and verify again", role=kind))
        elif not ok and exp.must_call(r.type, r.db, r.name):
            check.findings.append(Finding(
                "E-FUNCTION-DENIED", obj, f"as {role}, {obj} may not be called",
                "ils-redact install (review with ils-redact plan)", role=kind))
    callable_ = sum(1 for ok, _ in mine.routines.values() if ok)
    check.detail = (f"{len(routines)} routines probed, {callable_} callable; "
                    f"{mine.probes} probes in all")
    return check
