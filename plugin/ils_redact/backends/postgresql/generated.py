"""Layer objects whose text depends on the rules: settings, patron lookup, export.

The versioned files in ``sql/postgresql`` hold what is the same for every library; these
objects name the ILS's own tables and columns, so the planner writes them from the rules
and diffs them by a digest kept in the object's comment (as for policies).

The export function is owned by the ``export_owner`` role: NOLOGIN, granted to nobody
(an owner may ALTER, DROP or GRANT what it owns: threat model row 21), and itself a
member of the disclosure role, so even a bug in the function cannot read more than that
role may (its column grants and row policies apply inside it).  It reads the
rows, renders the exact bytes handed to the officer (CSV or JSON), hashes them and appends
the manifest to the audit log (through ``ils_redact.export_record``: no staff role
appends to the log directly), all in the transaction of the read.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from psycopg import sql

from ...catalog import Catalog
from ...rules import Rules
from ..layer_settings import identity_columns

MARK = "ils-redact:"


def _s(q: sql.Composable) -> str:
    return q.as_string(None)


def _rel(name: str) -> sql.Identifier:
    return sql.Identifier(*name.split(".", 1))


#: The settings every SECURITY DEFINER function of the layer enters with (the versioned
#: files spell out the same clauses): ``search_path`` so that nothing in ``pg_temp`` or
#: the caller's schemas stands in for a catalog object (threat model row 9); the
#: ``debug_print_*`` trees off, client messages at WARNING or above, and generic plans,
#: because any login may turn the trees on and read every constant of every query the
#: function plans, values the caller may not see included (row 17); and the settings that
#: change how SQL is parsed or values are written as text.
PINNED_SETTINGS = (
    ("search_path", "pg_catalog, pg_temp"),
    ("client_min_messages", "warning"),
    ("debug_print_parse", "off"),
    ("debug_print_rewritten", "off"),
    ("debug_print_plan", "off"),
    ("plan_cache_mode", "force_generic_plan"),
    # how the function's own SQL is read and its text written must not be the caller's
    # choice: standard_conforming_strings = off makes '\.' in a string constant mean '.'
    # (the JSON export lost every field name, under the hash the audit log recorded);
    # DateStyle, IntervalStyle, extra_float_digits and bytea_output change the text of
    # dates, intervals, floats and bytes an export or a message carries.  TimeZone is
    # not pinned: timestamps are written with their offset (the audit hash in UTC), and
    # the reports pin their own statistics.time_zone.
    ("standard_conforming_strings", "on"),
    ("DateStyle", "'ISO, MDY'"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "1"),
    ("bytea_output", "hex"),
)
PINS = "".join(f"    SET {name} = {value}\n" for name, value in PINNED_SETTINGS)


def definer_function(head: sql.Composable, returns: str, language: str, volatility: str,
                     body: sql.Composable) -> str:
    """``CREATE OR REPLACE FUNCTION`` of a SECURITY DEFINER function, with the pinned
    settings every one of the layer's definer functions must have
    (:data:`PINNED_SETTINGS`): the one place that text is written."""
    return _s(sql.SQL(
        "CREATE OR REPLACE FUNCTION {}\n"
        "    RETURNS {}\n"
        "    LANGUAGE {} {} SECURITY DEFINER\n"
        + PINS +
        "AS $fn${}$fn$").format(head, sql.SQL(returns), sql.SQL(language), sql.SQL(volatility),
                                body))


@dataclass(frozen=True)
class Generated:
    """One rules-derived function: its signature, owner, body and who may execute it."""

    signature: str  # e.g. ils_redact.export(bigint, text)
    owner_kind: str  # owner | export_owner | stats_owner
    create: str
    execute_kinds: tuple[str, ...]
    why: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.create.encode()).hexdigest()[:16]

    def comment_sql(self) -> str:
        return f"COMMENT ON FUNCTION {self.signature} IS " + _s(
            sql.Literal(f"{MARK}{self.digest}: {self.why}"))


def settings_sql(values: dict[str, object]) -> str:
    rows = sql.SQL(", ").join(
        sql.SQL("({}, {}::jsonb)").format(sql.Literal(k), sql.Literal(json.dumps(v)))
        for k, v in values.items())
    return _s(sql.SQL("INSERT INTO ils_redact.setting (key, value) VALUES {} "
                      "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value").format(rows))


def patron_lookup(rules: Rules) -> Generated:
    """Resolve ids and barcodes to patrons, with the display columns, for the staff member
    who creates a request ("resolve them and show who they are").

    An admin could otherwise page through every patron's name and birth date, a list of
    registered patrons that is itself confidential.  Lookups exist to confirm the patrons
    of one request, so they are bounded as a request is: at most
    ``disclosure.max_patrons`` names per call and per transaction (a ``LATERAL`` over
    ``generate_series`` calls it once per row of one statement: refused after the cap),
    never inside a subtransaction (a savepoint rolled back would forget the count).  Each
    call is an audit entry and, before any row is returned, a server-log line that
    survives a rollback (``ils_redact.audit_record``).  What it resolved is remembered for
    an hour: ``request_create`` records a barcode as a patron's name only if a lookup by
    the same login resolved it to that patron."""
    p = rules.patron
    b = p.barcode
    display = sql.SQL(", ").join(
        sql.SQL("{}, u.{}").format(sql.Literal(c), sql.Identifier(c)) for c in p.display)
    active = (sql.SQL(", 'active', c.{}").format(sql.Identifier(b.active_column))
              if b.active_column else sql.SQL(""))
    body = sql.SQL("""
DECLARE
    v_max   integer := ils_redact.setting_int('max_patrons');
    v_names text[] := ARRAY(SELECT x::text FROM unnest(coalesce(p_ids, '{{}}'::bigint[])) x)
                      || coalesce(p_barcodes, '{{}}'::text[]);
    v_tx    integer;
    v_top   boolean;
    v_named text[];
    v_ids   bigint[];
    v_disp  jsonb[];
    v_seq   bigint;
    v_open  integer;
BEGIN
    IF cardinality(v_names) > v_max THEN
        RAISE EXCEPTION 'look up at most % patrons at a time (rules: disclosure.max_patrons)',
            v_max USING ERRCODE = '22023';
    END IF;
    IF cardinality(v_names) > 0 THEN
        -- request_create accepts what was resolved within the hour
        DELETE FROM ils_redact.patron_lookup_tx
        WHERE at < clock_timestamp() - interval '1 hour';
        SELECT count(DISTINCT n) INTO v_tx
        FROM (SELECT t.named_as FROM ils_redact.patron_lookup_tx t
              WHERE t.xid = pg_current_xact_id()
              UNION ALL SELECT unnest(v_names)) x(n);
        IF v_tx > v_max THEN
            RAISE EXCEPTION 'look up at most % patrons in one transaction (rules: '
                'disclosure.max_patrons): lookups confirm the patrons of one request',
                v_max USING ERRCODE = '22023';
        END IF;
    END IF;
    SELECT coalesce(array_agg(r.named_as ORDER BY r.src, r.ord), '{{}}'),
           coalesce(array_agg(r.patron_id ORDER BY r.src, r.ord), '{{}}'),
           coalesce(array_agg(r.display ORDER BY r.src, r.ord), '{{}}')
    INTO v_named, v_ids, v_disp
    FROM (SELECT 1 AS src, x.i AS ord, x.v::text AS named_as, u.{key}::bigint AS patron_id,
                 jsonb_build_object({display}) AS display
          FROM unnest(coalesce(p_ids, '{{}}'::bigint[])) WITH ORDINALITY x(v, i)
          JOIN {patron} u ON u.{key} = x.v
          UNION ALL
          SELECT 2, x.i, x.v, u.{key}::bigint,
                 jsonb_build_object({display}, 'barcode', c.{bcol}{active})
          FROM unnest(coalesce(p_barcodes, '{{}}'::text[])) WITH ORDINALITY x(v, i)
          JOIN {card} c ON c.{bcol} = x.v
          JOIN {patron} u ON u.{key} = c.{bkey}) r;
    -- and per login and hour: patrons this login resolved in the last hour that no
    -- request of its own, approved by another login, names (a draft excuses nothing), as
    -- on MariaDB: thirty separate transactions of ten lookups read 300 patrons (the
    -- fourth review)
    SELECT count(DISTINCT y.p) INTO v_open
    FROM (SELECT t.patron_id FROM ils_redact.patron_lookup_tx t
          WHERE t.login = session_user AND t.patron_id IS NOT NULL
            AND t.at > clock_timestamp() - interval '1 hour'
          UNION SELECT unnest(v_ids)) y(p)
    WHERE NOT EXISTS (
        SELECT 1 FROM ils_redact.request r
        JOIN ils_redact.request_patron rp ON rp.request_id = r.id
        WHERE r.created_by = session_user AND r.approved_by IS NOT NULL
          AND r.approved_by <> session_user
          AND r.created_at > clock_timestamp() - interval '1 hour' AND rp.patron_id = y.p);
    IF v_open > v_max THEN
        RAISE EXCEPTION 'lookup refused: % patrons looked up in the last hour by % are named '
            'by no approved request of theirs; at most % (rules: disclosure.max_patrons)',
            v_open, session_user, v_max USING ERRCODE = '22023';
    END IF;
    IF cardinality(v_names) > 0 THEN
        -- every name, resolved or not; the rows' xmin is this transaction's own id unless
        -- the call runs in a subtransaction
        WITH ins AS (
            -- stamped with the clock, not the statement's start: a DO block that waits an
            -- hour before its lookups would otherwise stamp them all an hour old, outside
            -- the hourly bound (the fourth review's re-check)
            INSERT INTO ils_redact.patron_lookup_tx (named_as, patron_id, at)
            SELECT n, (SELECT v_ids[k] FROM generate_subscripts(v_named, 1) k
                       WHERE v_named[k] = n LIMIT 1), clock_timestamp()
            FROM unnest(v_names) n
            RETURNING xmin = pg_current_xact_id()::xid AS top)
        SELECT bool_and(top) INTO v_top FROM ins;
        IF NOT v_top THEN
            RAISE EXCEPTION 'patron lookups cannot run inside a savepoint or subtransaction'
                USING ERRCODE = '25000';
        END IF;
    END IF;
    -- the audit entry, and its server-log line (kept even if the caller rolls back)
    v_seq := ils_redact.audit_record('patron.lookup', NULL, jsonb_build_object(
        'ids', to_jsonb(p_ids), 'barcodes', to_jsonb(p_barcodes),
        'found', cardinality(v_ids), 'patrons', to_jsonb(v_ids)), v_ids);
    RETURN QUERY SELECT x.n, x.p, x.d FROM unnest(v_named, v_ids, v_disp) x(n, p, d);
END
""").format(key=sql.Identifier(p.key), display=display, patron=_rel(p.relation),
            card=_rel(b.relation), bcol=sql.Identifier(b.column), bkey=sql.Identifier(b.patron_key),
            active=active)
    create = definer_function(
        sql.SQL("ils_redact.patron_lookup(p_ids bigint[], p_barcodes text[])"),
        "TABLE (named_as text, patron_id bigint, display jsonb)", "plpgsql", "VOLATILE", body)
    return Generated("ils_redact.patron_lookup(bigint[], text[])", "owner", create, ("admin",),
                     "resolves the patrons a request names, for the staff member to confirm")


def patron_ids_known(rules: Rules) -> Generated:
    """Which of these ids are patrons: request_create's check (no audit entry, no names)."""
    p = rules.patron
    create = definer_function(
        sql.SQL("ils_redact.patron_ids_known(p_ids bigint[])"), "bigint[]", "sql", "STABLE",
        sql.SQL("\n    SELECT coalesce(array_agg(u.{key}::bigint ORDER BY u.{key}), "
                "'{{}}'::bigint[])\n    FROM {patron} u WHERE u.{key} = ANY (p_ids)\n").format(
            key=sql.Identifier(p.key), patron=_rel(p.relation)))
    return Generated("ils_redact.patron_ids_known(bigint[])", "owner", create, (),
                     "which ids are patrons (for request_create; executable by no one else)")


def _branches(rules: Rules, catalog: Catalog, shape: str) -> sql.Composable:
    """One SELECT per identity table, for the patrons of the request (``v.patrons``).

    ``text``: ``vals`` is a text[] as wide as the whole allow-list (NULL outside this
    table's columns), so the CSV picks its cells by position with no per-row JSON work;
    ``json``: ``vals`` is a jsonb object of this table's identity columns, typed.
    """
    allow = identity_columns(rules)
    branches = []
    for order, t in enumerate(rules.identity, start=1):
        rel = catalog.relation(t.relation)
        pk = rel.primary_key[0] if rel.primary_key else t.patron_key
        if shape == "text":
            vals = sql.SQL("ARRAY[{}]::text[]").format(sql.SQL(", ").join(
                sql.SQL("t.{}::text").format(sql.Identifier(c.rsplit(".", 1)[1]))
                if c.rsplit(".", 1)[0] == t.relation else sql.SQL("NULL") for c in allow))
        else:
            # keyed by the qualified name: the document reads ``vals -> c`` for each of
            # the request's columns, which are qualified (relation.column)
            vals = sql.SQL("jsonb_build_object({})").format(sql.SQL(", ").join(
                sql.SQL("{}, t.{}").format(sql.Literal(f"{t.relation}.{c}"), sql.Identifier(c))
                for c in t.columns))
        # a table none of whose fields the request names gives no rows: an empty row per
        # card or address would still tell how many the patron has (the fourth review)
        prefix = f"{t.relation}."
        branches.append(sql.SQL(
            "SELECT t.{key}::bigint AS patron_id, {ord} AS rel_order, {relname}::text AS relation,"
            " t.{pk}::text AS row_key, {vals} AS vals"
            " FROM {rel} t WHERE t.{key} = ANY (v.patrons)"
            " AND EXISTS (SELECT 1 FROM unnest(v.columns) AS rc(c)"
            " WHERE left(rc.c, {n}) = {prefix})").format(
            key=sql.Identifier(t.patron_key), ord=sql.Literal(order),
            relname=sql.Literal(t.relation), pk=sql.Identifier(pk), vals=vals,
            rel=_rel(t.relation), n=sql.Literal(len(prefix)), prefix=sql.Literal(prefix)))
    return sql.SQL("\n                  UNION ALL ").join(branches)


def export_function(rules: Rules, catalog: Catalog) -> Generated:
    allow = sql.Literal(identity_columns(rules))
    body = sql.SQL(r"""
DECLARE
    v record;
    v_cols text[];
    v_pos integer[];
    v_doc text;
    v_rows integer;
    v_patrons integer;
    v_manifest jsonb;
    v_seq bigint;
BEGIN
    SELECT * INTO v FROM ils_redact.export_check(p_request);
    IF NOT v.ok THEN
        v_seq := ils_redact.log_refusal('export', p_request, v.reason);
        RETURN QUERY SELECT v_seq, NULL::text, jsonb_build_object('refused', v.reason);
        RETURN;
    END IF;
    IF p_format IS NULL OR p_format NOT IN ('csv', 'json') THEN
        RAISE EXCEPTION 'format must be csv or json' USING ERRCODE = '22023';
    END IF;
    -- the request's columns, in allow-list order, and their positions in it
    SELECT array_agg(x.c ORDER BY x.p), array_agg(x.p ORDER BY x.p) INTO v_cols, v_pos
    FROM (SELECT c, array_position({allow}::text[], c) AS p FROM unnest(v.columns) c) x
    WHERE x.p IS NOT NULL;
    IF p_format = 'csv' THEN
        SELECT 'patron_id,relation,' || array_to_string(
                   ARRAY(SELECT ils_redact.csv_cell(c) FROM unnest(v_cols) c), ',') || E'\n'
               || coalesce(string_agg(l.line, E'\n' ORDER BY l.patron_id, l.rel_order,
                                      length(l.row_key), l.row_key) || E'\n', ''),
               count(*), count(DISTINCT l.patron_id)
        INTO v_doc, v_rows, v_patrons
        FROM (SELECT s.patron_id, s.rel_order, s.row_key,
                     s.patron_id::text || ',' || ils_redact.csv_cell(s.relation) || ','
                     || array_to_string(ARRAY(SELECT ils_redact.csv_cell(s.vals[i])
                                              FROM unnest(v_pos) i), ',') AS line
              FROM ({text_rows}) s) l;
    ELSE
        SELECT jsonb_pretty(jsonb_build_object(
                   'request', p_request, 'basis', v.basis, 'columns', to_jsonb(v_cols),
                   'records', coalesce(jsonb_agg(jsonb_build_object(
                       'patron_id', s.patron_id, 'relation', s.relation,
                       'values', (SELECT coalesce(jsonb_object_agg(
                                      regexp_replace(c, '^.*\.', ''), s.vals -> c), '{{}}'::jsonb)
                                  FROM unnest(v_cols) c
                                  WHERE regexp_replace(c, '\.[^.]*$', '') = s.relation))
                       ORDER BY s.patron_id, s.rel_order, length(s.row_key), s.row_key),
                       '[]'::jsonb))) || E'\n',
               count(*), count(DISTINCT s.patron_id)
        INTO v_doc, v_rows, v_patrons
        FROM ({json_rows}) s;
    END IF;
    -- the manifest entry, built and hashed by the layer, and its server-log line (kept
    -- even if the caller rolls the transaction back), before the document is returned
    SELECT x.seq, x.manifest INTO v_seq, v_manifest
    FROM ils_redact.export_record(p_request, p_format, v_cols, v_doc, v_rows, v_patrons) x;
    RETURN QUERY SELECT v_seq, v_doc, v_manifest;
END
""").format(allow=allow, text_rows=_branches(rules, catalog, "text"),
            json_rows=_branches(rules, catalog, "json"))
    create = definer_function(
        sql.SQL("ils_redact.export(p_request bigint, p_format text)"),
        "TABLE (audit_seq bigint, document text, manifest jsonb)", "plpgsql", "VOLATILE", body)
    return Generated("ils_redact.export(bigint, text)", "export_owner", create, ("exporter",),
                     "the logged export: identity rows of one approved request's patrons")


def generated_functions(rules: Rules, catalog: Catalog) -> list[Generated]:
    return [patron_lookup(rules), patron_ids_known(rules), export_function(rules, catalog)]
