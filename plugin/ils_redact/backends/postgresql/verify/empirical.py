"""Empirical proof: as each restricted role, read every relation and call the functions.

The catalog says what should happen; here the executor decides.  In verify's transaction
(rolled back), a SECURITY DEFINER function in ``pg_temp`` owned by each restricted role,
and by each role it can act as, reads as that role, per relation:

1. ``SELECT FROM rel WHERE false``: PostgreSQL allows a query that names no column only if
   the role may read at least one column, so a refusal proves every column closed;
2. if that is allowed: every column at once, and when that is refused, each column alone;
3. for the disclosure role on identity tables: counts rows outside the current scope
   (``ils_redact.scope_patron_ids()``), which the row policy must hide.

``--exhaustive`` skips the shortcut in 1 and reads every column of every relation alone.
Functions (every SECURITY DEFINER function, every function in the layer's schemas) are
probed with ``EXPLAIN SELECT f(args) FROM (SELECT NULL::type ... OFFSET 0) s``: the
executor checks EXECUTE when it prepares the call, and EXPLAIN never runs the body, whose
side effects are not ours to cause.  The arguments come from a subquery so that the
planner cannot fold the call into a constant (which would run it).  Procedures, trigger
functions, functions with pseudo-type arguments and zero-argument immutable functions are
judged by ``has_function_privilege`` instead.  Invoker functions are not probed: they run
with the caller's rights, which the relation probes already prove.

Each probe sits in its own exception block, so each role is one round trip.  Not ``SET
ROLE`` in the superuser's session: code the probes make run (an IMMUTABLE function of a
view, which the planner folds; a row policy) could ``RESET ROLE`` there and run as the
superuser (the fourth review); inside a SECURITY DEFINER function PostgreSQL refuses to
change the role.  A role that is a superuser is not probed.
One check per role and relation (``empirical/<kind>/<relation>``) and one per role for
the functions (``empirical/<kind>/functions``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from ....checks.findings import Check, Finding
from ....errors import StateError
from ..as_role import call_as
from ..introspect import function_idents
from .context import VerifyContext
from .expect import Expectation
from .graph import chain
from .sqltext import ident, roles, stmt
from .sqltext import role as role_sql

PROBE_FUNCTION = r"""
CREATE FUNCTION pg_temp.ils_redact_verify_probe(cfg jsonb, who jsonb) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $verify$
DECLARE
    exhaustive boolean := (cfg ->> 'exhaustive')::boolean;
    rel       record;
    fn        record;
    col       text;
    readable  text[];
    any_col   boolean;
    all_cols  boolean;
    leak      bigint;
    probed    integer;
    ok        boolean;
    how       text;
    err       text;
    q         text;
    rel_keys  text[];
    rel_vals  jsonb[];
    fn_keys   text[];
    fn_vals   jsonb[];
BEGIN
        rel_keys := '{}';
        rel_vals := '{}';
        fn_keys := '{}';
        fn_vals := '{}';
        probed := 0;
        FOR rel IN
            SELECT c.oid, n.nspname, c.relname, (who -> 'scoped') ->> c.oid::text AS key,
                   ARRAY(SELECT a.attname::text FROM pg_attribute a
                         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                         ORDER BY a.attnum) AS cols
            FROM jsonb_array_elements_text(cfg -> 'relations') j(o)
            JOIN pg_class c ON c.oid = j.o::oid
            JOIN pg_namespace n ON n.oid = c.relnamespace
        LOOP
            probed := probed + 1;
            err := NULL;
            readable := '{}';
            BEGIN
                EXECUTE format('SELECT FROM %I.%I WHERE false', rel.nspname, rel.relname);
                any_col := true;
            EXCEPTION
                WHEN insufficient_privilege THEN any_col := false;
                WHEN OTHERS THEN
                    any_col := false;
                    err := SQLSTATE || ' ' || SQLERRM;
            END;
            IF err IS NULL AND (any_col OR exhaustive) THEN
                all_cols := false;
                IF any_col AND cardinality(rel.cols) > 0 THEN
                    BEGIN
                        EXECUTE format('SELECT %s FROM %I.%I WHERE false',
                                       (SELECT string_agg(quote_ident(x), ', ')
                                        FROM unnest(rel.cols) x),
                                       rel.nspname, rel.relname);
                        all_cols := true;
                        readable := rel.cols;
                    EXCEPTION WHEN insufficient_privilege THEN NULL;
                    END;
                END IF;
                IF NOT all_cols THEN
                    FOREACH col IN ARRAY rel.cols LOOP
                        BEGIN
                            EXECUTE format('SELECT %I FROM %I.%I WHERE false',
                                           col, rel.nspname, rel.relname);
                            readable := readable || col;
                        EXCEPTION
                            WHEN insufficient_privilege THEN NULL;
                            WHEN OTHERS THEN err := SQLSTATE || ' ' || SQLERRM;
                        END;
                    END LOOP;
                END IF;
            END IF;
            leak := NULL;
            IF rel.key IS NOT NULL AND rel.key = ANY (readable) THEN
                BEGIN
                    EXECUTE format(
                        'SELECT count(*) FROM (SELECT FROM %I.%I t WHERE NOT (t.%I::bigint '
                        '= ANY ((SELECT ils_redact.scope_patron_ids())::bigint[])) '
                        'LIMIT 1000001) s', rel.nspname, rel.relname, rel.key) INTO leak;
                EXCEPTION WHEN OTHERS THEN err := SQLSTATE || ' ' || SQLERRM;
                END;
            END IF;
            IF cardinality(readable) > 0 OR err IS NOT NULL THEN
                rel_keys := rel_keys || rel.oid::text;
                rel_vals := rel_vals || jsonb_build_object(
                    'cols', to_jsonb(readable), 'rows', leak, 'error', err);
            END IF;
        END LOOP;

        FOR fn IN
            SELECT p.oid, n.nspname, p.proname, p.prokind, p.provolatile, p.pronargs,
                   p.provariadic <> 0 AS variadic,
                   p.prorettype IN ('trigger'::regtype, 'event_trigger'::regtype)
                   OR EXISTS (SELECT 1 FROM unnest(p.proargtypes::oid[]) t
                              JOIN pg_type ty ON ty.oid = t WHERE ty.typtype = 'p') AS pseudo,
                   (SELECT string_agg(CASE WHEN p.provariadic <> 0 AND u.i = p.pronargs
                                           THEN 'VARIADIC ' ELSE '' END || 's.a' || u.i,
                                      ', ' ORDER BY u.i)
                    FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY u(t, i)) AS call_args,
                   (SELECT string_agg(format('NULL::%I.%I AS a%s', tn.nspname, ty.typname,
                                             u.i), ', ' ORDER BY u.i)
                    FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY u(t, i)
                    JOIN pg_type ty ON ty.oid = u.t
                    JOIN pg_namespace tn ON tn.oid = ty.typnamespace) AS nulls
            FROM jsonb_array_elements_text(cfg -> 'functions') j(o)
            JOIN pg_proc p ON p.oid = j.o::oid
            JOIN pg_namespace n ON n.oid = p.pronamespace
        LOOP
            err := NULL;
            IF fn.prokind NOT IN ('f', 'a') OR fn.pseudo
               OR (fn.pronargs = 0 AND fn.provolatile = 'i') THEN
                how := 'catalog';
                ok := has_function_privilege(fn.oid, 'EXECUTE');
            ELSE
                how := 'explain';
                IF fn.pronargs = 0 THEN
                    q := format('EXPLAIN (COSTS OFF) SELECT %I.%I()', fn.nspname, fn.proname);
                ELSE
                    q := format('EXPLAIN (COSTS OFF) SELECT %I.%I(%s) FROM (SELECT %s OFFSET 0) s',
                                fn.nspname, fn.proname, fn.call_args, fn.nulls);
                END IF;
                BEGIN
                    EXECUTE q;
                    ok := true;
                EXCEPTION
                    WHEN insufficient_privilege THEN ok := false;
                    WHEN OTHERS THEN
                        how := 'catalog';
                        err := SQLSTATE || ' ' || SQLERRM;
                        ok := has_function_privilege(fn.oid, 'EXECUTE');
                END;
            END IF;
            fn_keys := fn_keys || fn.oid::text;
            fn_vals := fn_vals || jsonb_build_object('ok', ok, 'how', how, 'error', err);
        END LOOP;
        RETURN jsonb_build_object(
            'probed', probed,
            'relations', (SELECT coalesce(jsonb_object_agg(k, v), '{}')
                          FROM unnest(rel_keys, rel_vals) u(k, v)),
            'functions', (SELECT coalesce(jsonb_object_agg(k, v), '{}')
                          FROM unnest(fn_keys, fn_vals) u(k, v)));
END
$verify$
"""


@dataclass
class Outcome:
    """What one role could do: relation -> readable columns (only where any), rows seen
    outside the scope, errors, and function -> callable."""

    probed: int = 0
    readable: dict[str, list[str]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    functions: dict[str, tuple[bool, str, str | None]] = field(default_factory=dict)


def probe(ctx: VerifyContext, roles: list[str], scoped: dict[str, dict[str, str]],
          relations: dict[int, str], functions: dict[int, str]) -> dict[str, Outcome]:
    """Run the probes as each role; relation and function oids -> names for the results."""
    by_name = {v: k for k, v in relations.items()}
    whos: list[dict[str, Any]] = [
        {"role": r, "scoped": {str(by_name[rel]): key for rel, key in scoped.get(r, {}).items()
                               if rel in by_name}} for r in roles]
    cfg = {
        "exhaustive": ctx.exhaustive,
        "relations": [str(o) for o in relations],
        "functions": [str(o) for o in functions],
    }
    conn = ctx.conn
    superusers = {r for (r,) in conn.execute(
        "SELECT rolname FROM pg_roles WHERE rolsuper AND rolname = ANY (%s)",
        (roles,)).fetchall()}
    raw: dict[str, Any] = {}
    try:
        with conn.transaction():  # a savepoint: a failure names the probes, not us
            for who in whos:
                role = who["role"]
                if role in superusers:  # catalog/<kind> reports reaching it; nothing to read
                    continue
                # code the probes make run (a view's function the planner folds, a row
                # policy) stays that role: call_as
                raw[role] = call_as(conn, role, PROBE_FUNCTION,
                                    "pg_temp.ils_redact_verify_probe(jsonb, jsonb)",
                                    (json.dumps(cfg), json.dumps(who))) or {}
    except psycopg.Error as exc:
        raise StateError(f"verify: the probes failed: {exc.diag.message_primary or exc}",
                         hint="nothing was changed; run again with --debug") from None
    out: dict[str, Outcome] = {}
    for role, data in raw.items():
        o = Outcome(probed=int(data["probed"]))
        for oid, r in data["relations"].items():
            name = relations[int(oid)]
            if r.get("cols"):
                o.readable[name] = list(r["cols"])
            if r.get("rows"):
                o.rows[name] = int(r["rows"])
            if r.get("error"):
                o.errors[name] = r["error"]
        for oid, f in data["functions"].items():
            o.functions[functions[int(oid)]] = (bool(f["ok"]), f["how"], f.get("error"))
        out[role] = o
    for role in superusers:
        out[role] = Outcome(errors={"(every relation)": "not probed: a superuser role, "
                                    "which reads everything (catalog/<kind> names the path)"})
    return out


# -- the checks ----------------------------------------------------------------------------

def _targets(ctx: VerifyContext) -> tuple[dict[int, str], dict[int, str]]:
    rels = {int(oid): name for oid, name in ctx.conn.execute(
        "SELECT c.oid, n.nspname || '.' || c.relname FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') "
        "AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') "
        "AND n.nspname NOT LIKE 'pg\\_temp\\_%%' AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%%' "
        "ORDER BY 2")}
    funcs = {int(oid): sig for oid, sig in ctx.conn.execute(
        "SELECT p.oid, n.nspname || '.' || p.proname || '(' || oidvectortypes(p.proargtypes) "
        "|| ')' FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND (p.prosecdef OR n.nspname = ANY (%s)) ORDER BY 2", (ctx.layer_schemas,))}
    return rels, funcs


STANDBY_SKIP = ("not probed on a standby: the probes run in temporary SECURITY DEFINER "
                "functions, which a server in recovery cannot create; run verify on the "
                "primary (the catalog checks above hold here too)")


def run(ctx: VerifyContext) -> list[Check]:
    row = ctx.conn.execute("SELECT pg_is_in_recovery()").fetchone()
    if row and row[0]:
        return [Check(f"empirical/{kind}", f"as {role}, read every relation and call the "
                      "functions", skipped=STANDBY_SKIP) for kind, role in ctx.restricted]
    relations, functions = _targets(ctx)
    roles: list[str] = []
    for _, name in ctx.restricted:
        for other in sorted(ctx.reach[name], key=lambda r: (r != name, r)):
            if other not in roles:
                roles.append(other)
    scoped = {ctx.expect[k].role: ctx.expect[k].scoped for k, _ in ctx.restricted}
    outcomes = probe(ctx, roles, scoped, relations, functions)
    columns = {name: ctx.catalog.relations[name].column_names
               for name in relations.values() if name in ctx.catalog.relations}

    checks: list[Check] = []
    idents = {functions[oid]: f for oid, f in function_idents(ctx.conn, list(functions)).items()}
    for kind, role in ctx.restricted:
        exp = ctx.expect[kind]
        mine = outcomes.get(role, Outcome())
        if mine.probed != len(relations):
            raise StateError(f"verify: probed {mine.probed} of {len(relations)} relations "
                             f"as {role}")
        others = {o: outcomes[o] for o in ctx.reach[role] if o != role and o in outcomes}
        for name in sorted(relations.values()):
            checks.append(_relation_check(ctx, kind, role, exp, name,
                                          columns.get(name, ()), mine, others))
        checks.append(_function_check(ctx, kind, role, exp, functions, mine, others, idents))
    return checks


def column_findings(kind: str, role: str, name: str, cols: Sequence[str],
                    allowed: set[str], got: set[str], *, errored: bool) -> list[Finding]:
    """What reading ``name`` column by column as ``role`` showed against the rules:
    columns read that the rules close (``E-READABLE``), columns the rules give that were
    refused (``E-CLOSED``; not when the relation could not be read at all).  Both
    servers' probes end here, so a finding reads the same on either."""
    out: list[Finding] = []
    order = {c: i for i, c in enumerate(cols)}
    opened = sorted(got - allowed, key=lambda c: (order.get(c, len(order)), c))
    if opened:
        out.append(Finding(
            "E-READABLE", name,
            f"as {role}, SELECT returned columns of {name} the rules close to it: "
            f"{', '.join(opened[:8])}{' ...' if len(opened) > 8 else ''}"
            f" ({len(opened)} of {len(cols)})",
            "see the catalog findings for the grant that opens it", role=kind))
    closed = sorted(allowed - got, key=lambda c: (order.get(c, len(order)), c))
    if closed and not errored:
        out.append(Finding(
            "E-CLOSED", name,
            f"as {role}, {name} refused columns the rules give it: {', '.join(closed[:8])}",
            "ils-redact install (review with ils-redact plan)", role=kind))
    return out


def _relation_check(ctx: VerifyContext, kind: str, role: str, exp: Expectation, name: str,
                    cols: tuple[str, ...], mine: Outcome, others: dict[str, Outcome]
                    ) -> Check:
    allowed = exp.readable(name, cols)
    what = f"only {len(allowed)} columns of" if allowed else "nothing of"
    check = Check(f"empirical/{kind}/{name}", f"{role} reads {what} {name}")
    got = set(mine.readable.get(name, []))
    check.findings += column_findings(kind, role, name, cols, allowed, got,
                                      errored=name in mine.errors)
    if name in mine.rows:
        n = mine.rows[name]
        check.findings.append(Finding(
            "E-ROWS", name,
            f"as {role} with no approved request for this session, {name} returned "
            f"{'more than 1,000,000' if n > 1_000_000 else f'{n:,}'} rows of patrons outside "
            "the scope: the row policy does not hold",
            stmt("ALTER TABLE {t} ENABLE ROW LEVEL SECURITY;", t=ident(name),
                 note=" and `ils-redact install` (restores the ils_redact_scope policy)"),
            role=kind))
    if name in mine.errors:
        check.findings.append(Finding(
            "E-PROBE-ERROR", name, f"as {role}, reading {name} failed: {mine.errors[name]}",
            "fix the relation (or the lock holding it) and verify again", role=kind))
    for other, o in sorted(others.items()):
        extra = sorted(set(o.readable.get(name, [])) - allowed)
        if extra:
            path = ctx.reach[role][other]
            check.findings.append(Finding(
                "E-READABLE", name,
                f"after SET ROLE {other} ({chain(path)}), {role}'s members read {len(extra)} "
                f"columns of {name} ({', '.join(extra[:6])}{' ...' if len(extra) > 6 else ''})",
                stmt("REVOKE {g} FROM {r};", g=role_sql(path[1]), r=role_sql(role)),
                role=kind))
    check.detail = (f"{len(got)} of {len(cols)} columns readable" if got else "closed")
    return check


def _function_check(ctx: VerifyContext, kind: str, role: str, exp: Expectation,
                    functions: dict[int, str], mine: Outcome, others: dict[str, Outcome],
                    idents: dict[str, sql.Composable]) -> Check:
    check = Check(f"empirical/{kind}/functions",
                  f"{role} may call exactly the layer functions the rules give it, and no "
                  "other SECURITY DEFINER function")
    for sig in sorted(functions.values()):
        ok, how, err = mine.functions.get(sig, (False, "missing", None))
        allowed = exp.may_execute(sig)
        required = sig in exp.functions or sig in exp.owns
        note = f" (by {'EXPLAIN' if how == 'explain' else 'has_function_privilege'}" + (
            f"; the call could not be prepared: {err}" if err else "") + ")"
        if ok and not allowed:
            check.findings.append(Finding(
                "E-FUNCTION", sig,
                f"as {role}, {sig} may be called{note}; it runs as its owner and the "
                f"{kind} role is not given it",
                stmt("REVOKE EXECUTE ON ROUTINE {f} FROM {r};", f=idents[sig],
                     r=roles(["PUBLIC", role])), role=kind))
        elif required and not ok:
            check.findings.append(Finding(
                "E-FUNCTION-DENIED", sig, f"as {role}, {sig} may not be called{note}",
                "ils-redact install (review with ils-redact plan)", role=kind))
        for other, o in sorted(others.items()):
            if o.functions.get(sig, (False,))[0] and not allowed:
                check.findings.append(Finding(
                    "E-FUNCTION", sig,
                    f"after SET ROLE {other} ({chain(ctx.reach[role][other])}), {role}'s "
                    f"members may call {sig}",
                    stmt("REVOKE {g} FROM {r};", g=role_sql(ctx.reach[role][other][1]),
                         r=role_sql(role)), role=kind))
    callable_ = sum(1 for v in mine.functions.values() if v[0])
    check.detail = f"{len(functions)} functions probed, {callable_} callable"
    return check
