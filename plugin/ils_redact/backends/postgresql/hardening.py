"""Database-wide hardening: TEMP and the row counters taken from PUBLIC, given back.

Both settings (``hardening.revoke_public_temp``, ``hardening.revoke_public_counters``) are
on by default; docs/hardening.md says why.  Each revokes a privilege PostgreSQL gives to
PUBLIC and grants it back to the roles that should keep it; install records what PUBLIC
held and every grant it made, so that turning the setting off, or uninstall, restores
exactly the ACLs that were there (``pg_dump --schema-only`` is identical afterwards).

Who gets TEMP back: the roles that had it through PUBLIC and use this database (they own
or hold a privilege on something in it, or are named in its ACL), decided once, when
PUBLIC loses it, and recorded; never a layer role, a role that can act as one (a staff
login in a restricted role would get its temporary functions back), a superuser (who
needs no grant) or a predefined ``pg_*`` role; plus ``hardening.temp_roles``.  A role
created later gets TEMP from ``temp_roles`` or a GRANT of the DBA's.

Who gets the counters back: the ILS owner, ``pg_read_all_stats`` (monitoring) and
``hardening.counter_roles``; a login with no role no longer watches the ILS's activity.
"""

from __future__ import annotations

from psycopg import sql

from ...errors import StateError
from ...plan import Step
from ...rules import Rules
from .counters import Counter, counters_for, version_num
from .state import PgState

#: monitoring keeps the counters through PostgreSQL's own role for it
MONITORING_ROLE = "pg_read_all_stats"


def _s(q: sql.Composable) -> str:
    return q.as_string(None)


def _record(kind: str, obj: str, detail: dict, prior: dict | None = None) -> str:
    from .planner import record_sql

    return record_sql(kind, obj, detail, prior)


def _unrecord(*objs: str) -> str:
    from .planner import unrecord_sql

    return unrecord_sql(*objs)


def temp_sql(verb: str, database: str, role: str | None) -> str:
    """GRANT/REVOKE TEMPORARY ON DATABASE ... TO/FROM a role, or PUBLIC when role is None."""
    who = sql.SQL("PUBLIC") if role is None else sql.Identifier(role)
    return _s(sql.SQL("{} TEMPORARY ON DATABASE {} {} {}").format(
        sql.SQL(verb), sql.Identifier(database), sql.SQL("TO" if verb == "GRANT" else "FROM"),
        who))


def _layer_reachers(state: PgState, layer_roles: set[str]) -> set[str]:
    """Layer roles and every role that can act as one of them."""
    out = set(layer_roles)
    for r in layer_roles:
        out |= state.reached_by(r)
    return out


def _check_named(rules: Rules, state: PgState, key: str, names: tuple[str, ...]) -> None:
    if not state.live:
        return  # offline: the catalog file has no roles
    missing = sorted(set(names) - state.existing_roles)
    if missing:
        raise StateError(f"hardening.{key} names {', '.join(missing)}, which does not exist",
                         hint=rules.where("hardening", key))


def temp_steps(rules: Rules, state: PgState, layer_roles: set[str]) -> list[Step]:
    """``hardening.revoke_public_temp``: PUBLIC loses TEMP, the roles that had it and use
    this database get it back, and ``temp_roles``.  Recorded; off restores it."""
    h = rules.hardening
    db = state.database
    steps: list[Step] = []
    public_rec = state.record("temp public")
    granted = {i.detail["role"]: i for i in state.installed_of("temp-grant")}
    if h.revoke_public_temp:
        _check_named(rules, state, "temp_roles", h.temp_roles)
    wanted: set[str] = set(h.temp_roles) if h.revoke_public_temp else set()
    auto: set[str] = set()
    if h.revoke_public_temp:
        # decided when PUBLIC loses TEMP, then kept as recorded (roles dropped since: gone)
        auto = {r for r, i in granted.items() if i.detail.get("auto")} & state.existing_roles
        if state.public_temp:
            excluded = _layer_reachers(state, layer_roles)
            auto |= {r for r in state.users_here
                     if r not in excluded and r not in state.superusers
                     and not r.startswith("pg_") and r != "public"}
        wanted |= auto
        # the database's owner holds TEMP as its owner: a grant would merge into that
        # entry, and taking it back later would take the owner's own TEMP away
        wanted.discard(state.database_owner)
        auto.discard(state.database_owner)
    if h.revoke_public_temp:
        if state.public_temp:
            steps.append(Step("revoke-temp", db, temp_sql("REVOKE", db, None),
                              "no restricted role creates temporary tables or functions "
                              "(hardening.revoke_public_temp)"))
            if public_rec is None:
                steps.append(Step("record", db, _record("temp", "temp public", {},
                                                        {"public_temp": True})))
    elif public_rec is not None:
        if (public_rec.prior or {}).get("public_temp") and not state.public_temp:
            steps.append(Step("grant-temp", db, temp_sql("GRANT", db, None),
                              "TEMP back to PUBLIC, as it was before ils-redact"))
        steps.append(Step("record", db, _unrecord("temp public")))
    for role in sorted(wanted):
        why = (f"{role} had TEMP through PUBLIC and uses this database" if role in auto
               else f"{role} keeps TEMP (hardening.temp_roles)")
        if (role, "TEMPORARY") not in state.database_acl:
            steps.append(Step("grant-temp", role, temp_sql("GRANT", db, role), why))
            if role in granted:
                continue
            steps.append(Step("record", role, _record(
                "temp-grant", f"temp grant {role}", {"role": role, "auto": role in auto})))
    for role in sorted(set(granted) - wanted):
        if (role, "TEMPORARY") in state.database_acl:
            steps.append(Step("revoke-temp", role, temp_sql("REVOKE", db, role),
                              f"{role} no longer keeps TEMP (hardening)"))
        steps.append(Step("record", role, _unrecord(f"temp grant {role}")))
    return steps


def counter_sql(verb: str, counters: list[Counter], grantees: list[str | None]) -> str:
    """One GRANT/REVOKE of the same privilege on several counters (None: PUBLIC)."""
    c0 = counters[0]
    what = sql.SQL("TABLE" if c0.kind == "view" else "FUNCTION")
    who = sql.SQL(", ").join(sql.SQL("PUBLIC") if g is None else sql.Identifier(g)
                             for g in grantees)
    return _s(sql.SQL("{} {} ON {} {} {} {}").format(
        sql.SQL(verb), sql.SQL(c0.privilege), what,
        sql.SQL(", ").join(c.ident() for c in counters),
        sql.SQL("TO" if verb == "GRANT" else "FROM"), who))


def _by_kind(counters: list[Counter]) -> list[list[Counter]]:
    return [g for g in ([c for c in counters if c.kind == "view"],
                        [c for c in counters if c.kind == "function"]) if g]


def counter_roles(rules: Rules, state: PgState, ils_owner: str) -> list[str]:
    """Who keeps the row counters when PUBLIC loses them."""
    h = rules.hardening
    _check_named(rules, state, "counter_roles", h.counter_roles)
    out = {ils_owner, *h.counter_roles}
    if MONITORING_ROLE in state.existing_roles or not state.live:
        out.add(MONITORING_ROLE)
    return sorted(r for r in out if r not in state.superusers)


def counter_steps(rules: Rules, state: PgState, ils_owner: str) -> list[Step]:
    """``hardening.revoke_public_counters``.  Bookkeeping: ``counters public`` (prior: the
    counters PUBLIC held) and one ``counter grant ROLE`` per role given any (detail: which)."""
    on = rules.hardening.revoke_public_counters
    live = state.live
    known = [c for c in counters_for(version_num(state.server_version))
             if not live or c.key in state.counters]
    acl = state.counters
    steps: list[Step] = []
    public_rec = state.record("counters public")
    granted = {i.detail["role"]: set(i.detail.get("counters") or ())
               for i in state.installed_of("counter-grant")}
    # which counters PUBLIC holds now (offline: PostgreSQL's default, all of them)
    public_now = [c for c in known if not live or acl[c.key].public]
    if on:
        holders = counter_roles(rules, state, ils_owner)
        if public_now:
            for group in _by_kind(public_now):
                steps.append(Step("revoke-counters", group[0].kind, counter_sql(
                    "REVOKE", group, [None]),
                    f"the row counters count rows a row policy hides: PUBLIC loses "
                    f"{len(group)} {group[0].kind}s (hardening.revoke_public_counters)"))
            before = set((public_rec.prior or {}).get("counters") or ()) if public_rec \
                else set()
            if public_rec is None or not {c.key for c in public_now} <= before:
                # a counter added to the list since the first install (pg_locks) is
                # recorded too, so that uninstall gives it back to PUBLIC
                if public_rec is not None:
                    steps.append(Step("record", "counters", _unrecord("counters public")))
                steps.append(Step("record", "counters", _record(
                    "counters", "counters public", {},
                    {"counters": sorted(before | {c.key for c in public_now})})))
        for role in holders:
            missing = [c for c in known if not live or role not in acl[c.key].roles]
            for group in _by_kind(missing):
                steps.append(Step("grant-counters", role, counter_sql("GRANT", group, [role]),
                                  f"{role} keeps the row counters it had through PUBLIC"))
            mine = granted.get(role, set()) | {c.key for c in missing}
            if missing and mine != granted.get(role):
                if role in granted:
                    steps.append(Step("record", role, _unrecord(f"counter grant {role}")))
                steps.append(Step("record", role, _record(
                    "counter-grant", f"counter grant {role}",
                    {"role": role, "counters": sorted(mine)})))
        gone = set(granted) - set(holders)
    else:
        gone = set(granted)
        if public_rec is not None:
            back = [c for c in known if c.key in set((public_rec.prior or {}).get(
                "counters") or ()) and live and not acl[c.key].public]
            for group in _by_kind(back):
                steps.append(Step("grant-counters", group[0].kind, counter_sql(
                    "GRANT", group, [None]), "the row counters back to PUBLIC, as before"))
            steps.append(Step("record", "counters", _unrecord("counters public")))
    for role in sorted(gone):
        steps.extend(ungrant_counters(state, role, granted[role]))
    return steps


def ungrant_counters(state: PgState, role: str, keys: set[str]) -> list[Step]:
    """Revoke the counters install granted ``role`` (those it still holds), and forget."""
    held = [c for c in counters_for(version_num(state.server_version))
            if c.key in keys and c.key in state.counters and role in state.counters[c.key].roles]
    steps = [Step("revoke-counters", role, counter_sql("REVOKE", group, [role]),
                  f"{role} was given the row counters by ils-redact")
             for group in _by_kind(held)]
    steps.append(Step("record", role, _unrecord(f"counter grant {role}")))
    return steps


def restore_steps(state: PgState) -> list[Step]:
    """Uninstall: PUBLIC gets back what it held, the roles lose what install gave them."""
    steps: list[Step] = []
    db = state.database
    for rec in state.installed_of("temp-grant"):
        role = rec.detail["role"]
        if (role, "TEMPORARY") in state.database_acl:
            steps.append(Step("revoke-temp", role, temp_sql("REVOKE", db, role)))
    public_rec = state.record("temp public")
    if public_rec and (public_rec.prior or {}).get("public_temp") and not state.public_temp:
        steps.append(Step("grant-temp", db, temp_sql("GRANT", db, None),
                          "TEMP back to PUBLIC, as it was before install"))
    for rec in state.installed_of("counter-grant"):
        role = rec.detail["role"]
        steps += [s for s in ungrant_counters(state, role, set(rec.detail.get("counters") or ()))
                  if s.kind != "record"]
    public_rec = state.record("counters public")
    if public_rec is not None:
        keys = set((public_rec.prior or {}).get("counters") or ())
        back = [c for c in counters_for(version_num(state.server_version))
                if c.key in keys and c.key in state.counters and not state.counters[c.key].public]
        for group in _by_kind(back):
            steps.append(Step("grant-counters", group[0].kind, counter_sql(
                "GRANT", group, [None]), "the row counters back to PUBLIC, as before install"))
    return steps
