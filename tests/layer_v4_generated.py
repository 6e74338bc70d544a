"""Layer v4 as libraries have it installed: the functions that release dae2b20 (the
last before layer v5) wrote from the rules, frozen so that the upgrade test can build a
v4 database.  Test data, not product code: it must not follow later changes."""
# ruff: noqa


from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from psycopg import sql

from ils_redact.catalog import Catalog
from ils_redact.rules import Rules
from ils_redact.backends.layer_settings import identity_columns

MARK = "ils-redact:"


def _s(q: sql.Composable) -> str:
    return q.as_string(None)


def _rel(name: str) -> sql.Identifier:
    return sql.Identifier(*name.split(".", 1))


def definer_function(head: sql.Composable, returns: str, language: str, volatility: str,
                     body: sql.Composable) -> str:
    """``CREATE OR REPLACE FUNCTION`` of a SECURITY DEFINER function, with the pinned
    ``search_path`` every one of the layer's definer functions must have (threat model
    row 9): the one place that text is written."""
    return _s(sql.SQL(
        "CREATE OR REPLACE FUNCTION {}\n"
        "    RETURNS {}\n"
        "    LANGUAGE {} {} SECURITY DEFINER\n"
        "    SET search_path = pg_catalog, pg_temp\n"
        "AS $fn${}$fn$").format(head, sql.SQL(returns), sql.SQL(language), sql.SQL(volatility),
                                body))


@dataclass(frozen=True)
class Generated:
    """One rules-derived function: its signature, owner, body and who may execute it."""

    signature: str  # e.g. ils_redact.export(bigint, text)
    owner_kind: str  # owner | disclosure
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
    registered patrons that is itself confidential: so a call names at most
    ``disclosure.max_patrons`` patrons and every call is an audit entry."""
    p = rules.patron
    b = p.barcode
    display = sql.SQL(", ").join(
        sql.SQL("{}, u.{}").format(sql.Literal(c), sql.Identifier(c)) for c in p.display)
    active = (sql.SQL(", 'active', c.{}").format(sql.Identifier(b.active_column))
              if b.active_column else sql.SQL(""))
    body = sql.SQL("""
DECLARE
    v_n integer := coalesce(cardinality(p_ids), 0) + coalesce(cardinality(p_barcodes), 0);
    v_found integer;
BEGIN
    IF v_n > ils_redact.setting_int('max_patrons') THEN
        RAISE EXCEPTION 'look up at most % patrons at a time (rules: disclosure.max_patrons)',
            ils_redact.setting_int('max_patrons') USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
    SELECT x::text, u.{key}::bigint, jsonb_build_object({display})
    FROM unnest(coalesce(p_ids, '{{}}'::bigint[])) x
    JOIN {patron} u ON u.{key} = x
    UNION ALL
    SELECT bc, u.{key}::bigint, jsonb_build_object({display}, 'barcode', c.{bcol}{active})
    FROM unnest(coalesce(p_barcodes, '{{}}'::text[])) bc
    JOIN {card} c ON c.{bcol} = bc
    JOIN {patron} u ON u.{key} = c.{bkey};
    GET DIAGNOSTICS v_found = ROW_COUNT;
    PERFORM ils_redact.audit_append('patron.lookup', NULL, jsonb_build_object(
        'ids', to_jsonb(p_ids), 'barcodes', to_jsonb(p_barcodes), 'found', v_found));
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
            vals = sql.SQL("jsonb_build_object({})").format(sql.SQL(", ").join(
                sql.SQL("{}, t.{}").format(sql.Literal(c), sql.Identifier(c))
                for c in t.columns))
        branches.append(sql.SQL(
            "SELECT t.{key}::bigint AS patron_id, {ord} AS rel_order, {relname}::text AS relation,"
            " t.{pk}::text AS row_key, {vals} AS vals"
            " FROM {rel} t WHERE t.{key} = ANY (v.patrons)").format(
            key=sql.Identifier(t.patron_key), ord=sql.Literal(order),
            relname=sql.Literal(t.relation), pk=sql.Identifier(pk), vals=vals,
            rel=_rel(t.relation)))
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
        v_seq := ils_redact.audit_append('export.refused', p_request,
                     jsonb_build_object('reason', v.reason, 'format', p_format));
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
    v_manifest := jsonb_build_object(
        'request', p_request, 'basis', v.basis, 'format', p_format,
        'columns', to_jsonb(v_cols), 'rows', v_rows, 'patrons', v_patrons,
        'sha256', encode(sha256(convert_to(v_doc, 'UTF8')), 'hex'),
        'bytes', octet_length(convert_to(v_doc, 'UTF8')),
        'exported_by', session_user, 'exported_at', statement_timestamp());
    v_seq := ils_redact.audit_append('export', p_request, v_manifest);
    -- the server log keeps a line even if the caller rolls the transaction back
    RAISE LOG 'ils-redact: export of request % by % (% rows, sha256 %), audit entry %',
        p_request, session_user, v_rows, v_manifest ->> 'sha256', v_seq;
    RETURN QUERY SELECT v_seq, v_doc, v_manifest;
END
""").format(allow=allow, text_rows=_branches(rules, catalog, "text"),
            json_rows=_branches(rules, catalog, "json"))
    create = definer_function(
        sql.SQL("ils_redact.export(p_request bigint, p_format text)"),
        "TABLE (audit_seq bigint, document text, manifest jsonb)", "plpgsql", "VOLATILE", body)
    return Generated("ils_redact.export(bigint, text)", "disclosure", create, ("exporter",),
                     "the logged export: identity rows of one approved request's patrons")


def generated_functions(rules: Rules, catalog: Catalog) -> list[Generated]:
    return [patron_lookup(rules), patron_ids_known(rules), export_function(rules, catalog)]
