"""Layer objects whose text depends on the rules: settings, identity views, patron
lookup, export.

The versioned files in ``sql/mariadb`` hold what is the same for every library; these
objects name the ILS's own tables and columns, so the planner writes them from the rules
and diffs them by a digest recorded in the bookkeeping (MariaDB views carry no comment).

Row scope without row-level security.  For each identity table the layer database gets
a view of the same name, ``SQL SECURITY DEFINER`` with the locked owner account as
definer, that selects the identity columns of the rows whose patron is in the caller's
active scope.  The disclosure role holds SELECT on these views and nothing on the Koha
tables.

Who the caller is: the account, not a name.  Inside a definer view ``CURRENT_USER()`` is
the definer, and ``USER()`` is ``name@client-host`` where the name may itself contain
``@`` (the host never does).  The views compare the user name split at the LAST ``@``
and the client host against the grantee account's host pattern (``grantee_user``,
``grantee_host`` of the scope row); approval refuses a grantee whose user name another
account shares, so the two identify one account (``verify`` reports a namesake created
later).  The layer's other routines name the caller by ``caller_account()``, which
finds the account as the server does (sql/mariadb/0004_hardening.sql); it reads the
grant tables, a cost the fast path does not pay.

When: the server's clock (``clock_utc()``: ``SYSDATE`` in UTC), never ``NOW()`` or
``UTC_TIMESTAMP()``, which ``SET timestamp`` moves for the session that sets it.

Which fields: a scope row remembers whether its request covers every identity field
(``all_fields``).  The views and lookups return only such rows: row-level access cannot
narrow columns per request, so a request for fewer fields is served by the export alone,
which renders only its fields.

How the view is built is a security property, not tuning.  A plain MERGE view lets the
optimizer evaluate the caller's own WHERE clause on rows outside the scope: with
``SET optimizer_switch='semijoin=off'``, ``WHERE email + 0 = 1`` prints the email of
every patron in its truncation warnings.  A TEMPTABLE view without LIMIT still gets the
caller's condition pushed down into it (``condition_pushdown_for_derived``).  So:

* the caller's scope is a derived table with a LIMIT (``s``): MariaDB materialises it
  first and pushes nothing into it, so it holds the caller's active patron ids and
  nothing else;
* every column of the view is guarded, ``IF(s.patron_id = t.key, t.col, NULL)``: an
  expression the caller writes over a column depends on ``s`` and ``t`` together, so it
  is evaluated only on a pair of rows, and on a pair that is not a scoped patron's it
  sees NULL, whatever the join order, join buffering or optimizer_switch.

The outer view merges (the ILS table is read by primary key from the scope's ids, with
no temporary copy of its wide TEXT columns).  tests/koha/test_restricted.py checks all of
this with the warning oracle as the restricted login, and checks that the oracle does
find the leak of a plain MERGE view.

The safety has a price: MariaDB parses a view's text on every use, and the guards are
an expression per column.  So each identity table also gets a lookup procedure,
``lookup_<table>(p_patrons)`` (SQL SECURITY DEFINER, the same owner): the identity
columns of the caller's scoped patrons, all of them (``NULL``) or those in a JSON array
of ids.  A caller passes ids, never SQL: nothing of the caller's runs inside, so the
procedure needs neither guards nor a derived table, and its body is parsed once per
connection.  It is the fast path for a client that looks patrons up (bench/koha_lookup.py);
the views stay for ad-hoc SQL and the query gate.

The patron lookup (``patron_lookup``, for the admin creating a request) confirms who the
patrons of one request are: at most ``disclosure.max_patrons`` per call, and at most that
many per account and hour that no request of its own names; each call writes a row to
the Aria ``trace`` table, which a ROLLBACK does not undo, before it returns a row.

The export procedure runs as the owner account.  It reads the identity rows of exactly
the patrons of the scope rows of this request and this caller, renders the exact bytes
handed to the officer (CSV or JSON) with the request's fields only, hashes them with
SHA2, appends the manifest to the audit log in the caller's transaction, and writes a
``trace`` row before it returns the document.

(MariaDB turns a stored-procedure variable into a JSON *string* in JSON_OBJECT; ``v + 0``
keeps numbers numbers.)
"""

# ruff: noqa: S608 - MariaDB SQL text is built here: identifiers only through sqltext.ident /
# qname / account, values only through sqltext.literal or driver parameters.

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from ...catalog import Catalog
from ...errors import StateError
from ...rules import Rules
from ..layer_settings import identity_columns
from .sqltext import ident, literal, qname, string

#: rows a scoped view can return per query; the LIMIT that keeps the caller's conditions
#: out of the view (see the module docstring), far above any real scope.
VIEW_LIMIT = 1_000_000_000
ISO_UTC = "'%Y-%m-%dT%H:%i:%s.%fZ'"
#: the lookup procedure of an identity table is this prefix and the table's name
LOOKUP_PREFIX = "lookup_"
#: names the versioned layer files use; an identity view must not collide with them
LAYER_NAMES = frozenset({
    "installed_object", "meta", "install_log", "install_run", "scope", "audit_lock",
    "scope_patrons", "setting", "request", "request_patron", "audit_log", "trace",
    "catalog_snapshot",
})
#: patrons an account may have looked up in this many hours that no request of its own
#: names (at most disclosure.max_patrons)
LOOKUP_WINDOW_HOURS = 1
#: the caller's user name (USER() split at the LAST '@') and client host, as SQL
CALLER_NAME = ("LEFT(USER(), CHAR_LENGTH(USER()) - CHAR_LENGTH(SUBSTRING_INDEX(USER(), '@', -1))"
               " - 1)")
CALLER_HOST = "SUBSTRING_INDEX(USER(), '@', -1)"


def scope_match(alias: str) -> str:
    """The fast path's test that scope row ``alias`` is the caller's: its grantee's user
    name, and the client host matched by the grantee's host pattern (``%`` and ``_``
    wildcards, as the server matched it at login; approval refuses an ``address/mask``
    host, which this does not evaluate)."""
    return (f"{alias}.grantee_user = {CALLER_NAME}\n"
            f"  AND {CALLER_HOST} LIKE {alias}.grantee_host\n"
            f"  AND {alias}.all_fields = 1")


#: the lookup procedures' clock: ``clock_utc()`` written out in the body, because a stored
#: function call costs as much as the rest of the lookup (bench/koha_lookup.py)
CLOCK_STATEMENTS = """    DECLARE v_tz VARCHAR(64) DEFAULT @@session.time_zone;
    DECLARE v_now DATETIME(6);
    SET @@session.time_zone = '+00:00';
    SET v_now = SYSDATE(6);
    SET @@session.time_zone = v_tz;
"""


@dataclass(frozen=True)
class Generated:
    """One rules-derived layer object: its type and name, definer, text and grants."""

    objtype: str  # VIEW | PROCEDURE
    name: str
    definer_kind: str  # owner | disclosure
    create: str
    why: str
    #: the role kind that reads the view (SELECT) or calls the procedure (EXECUTE)
    granted_to: str | None = None

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.create.encode()).hexdigest()[:16]

    @property
    def key(self) -> str:
        return f"{self.objtype.lower()} {self.name}"

    @property
    def grant(self) -> tuple[str, str]:
        """(level, privilege) of the grant to ``granted_to``."""
        return ("table", "SELECT") if self.objtype == "VIEW" else \
            (self.objtype.lower(), "EXECUTE")


def settings_sql(layer: str, values: dict[str, object]) -> str:
    rows = ", ".join(f"({string(k)}, {literal(json.dumps(v))})" for k, v in values.items())
    return (f"INSERT INTO {qname(layer, 'setting')} (`key`, value) VALUES {rows} "
            "ON DUPLICATE KEY UPDATE value = VALUES(value)")


def koha_table(rules: Rules, catalog: Catalog, relation: str) -> tuple[str, str]:
    """(database, table) of a rules relation; it must live in the Koha database."""
    rel = catalog.relation(relation)
    if rel.schema != catalog.database:
        raise StateError(f"{relation} is in database {rel.schema}, not in the Koha database "
                         f"{catalog.database}")
    return rel.schema, rel.name


def identity_view(rules: Rules, catalog: Catalog, layer: str, relation: str) -> Generated:
    t = rules.identity_table(relation)
    assert t is not None
    db, table = koha_table(rules, catalog, relation)
    if table in LAYER_NAMES:
        raise StateError(f"identity table {relation} has the name of a layer object; "
                         "the Koha backend cannot scope it")
    key = ident(t.patron_key)
    cols = ",\n       ".join(f"IF(s.patron_id = t.{key}, t.{ident(c)}, NULL) AS {ident(c)}"
                              for c in t.columns)
    match = scope_match("sc").replace("\n", "\n      ")
    create = (
        f"CREATE OR REPLACE ALGORITHM=MERGE DEFINER={{owner}} SQL SECURITY DEFINER\n"
        f"VIEW {qname(layer, table)} AS\n"
        f"SELECT {cols}\n"
        f"FROM (SELECT DISTINCT sc.patron_id FROM {qname(layer, 'scope')} sc\n"
        f"      JOIN (SELECT {qname(layer, 'clock_utc')}() AS now_utc LIMIT 1) k\n"
        f"      WHERE {match}\n"
        "        AND sc.expires_at > k.now_utc\n"
        f"      LIMIT {VIEW_LIMIT}) s\n"
        f"JOIN {qname(db, table)} t ON t.{key} = s.patron_id")
    return Generated("VIEW", table, "owner", create,
                     f"{relation}: identity columns of patrons in the caller's active scope",
                     granted_to="disclosure")


def lookup_name(table: str) -> str:
    return f"{LOOKUP_PREFIX}{table}"


def identity_lookup(rules: Rules, catalog: Catalog, layer: str, relation: str) -> Generated:
    """``lookup_<table>(p_patrons)``: the view's rows without the view's price (see the
    module docstring).  ``p_patrons``: NULL for the whole scope, or a JSON array of
    patron ids, which only narrows it.  No ORDER BY: sorting rows with Koha's TEXT
    columns goes through a temporary table and costs more than the lookup itself; the
    caller sorts."""
    t = rules.identity_table(relation)
    assert t is not None
    db, table = koha_table(rules, catalog, relation)
    key = ident(t.patron_key)
    cols = ", ".join(f"t.{ident(c)}" for c in t.columns)
    name = lookup_name(table)
    if len(name) > 64:
        raise StateError(f"identity table {relation}: the name of its lookup procedure, "
                         f"{name}, is longer than MariaDB's 64 characters")
    match = scope_match("sc").replace("\n", "\n                    ")
    create = (
        f"CREATE OR REPLACE DEFINER={{owner}} PROCEDURE {qname(layer, name)}"
        "(IN p_patrons LONGTEXT)\n"
        "    READS SQL DATA SQL SECURITY DEFINER\n"
        f"    COMMENT {string(f'ils-redact: identity columns of {relation}, caller scope')}\n"
        "BEGIN\n"
        f"{CLOCK_STATEMENTS}"
        f"    SELECT {cols}\n"
        f"    FROM {qname(db, table)} t\n"
        f"    WHERE t.{key} IN (SELECT sc.patron_id FROM {qname(layer, 'scope')} sc\n"
        f"                      WHERE {match}\n"
        "                        AND sc.expires_at > v_now)\n"
        f"      AND (p_patrons IS NULL OR t.{key} IN (\n"
        "           SELECT j.p FROM JSON_TABLE(p_patrons, '$[*]'\n"
        "                                      COLUMNS (p BIGINT PATH '$')) j));\n"
        "END")
    return Generated("PROCEDURE", name, "owner", create,
                     f"{relation}: the same rows as the view, for a client that looks "
                     "patrons up by id", granted_to="disclosure")


def patron_unknown(rules: Rules, catalog: Catalog, layer: str) -> Generated:
    p = rules.patron
    db, table = koha_table(rules, catalog, p.relation)
    create = (
        f"CREATE OR REPLACE DEFINER={{owner}} PROCEDURE {qname(layer, 'patron_unknown')}"
        "(IN p_ids LONGTEXT, OUT p_unknown LONGTEXT)\n"
        "    MODIFIES SQL DATA SQL SECURITY DEFINER\n"
        "    COMMENT 'ils-redact: ids in p_ids that are not patrons (internal; traced)'\n"
        "BEGIN\n"
        "    DECLARE v_me VARCHAR(400);\n"
        "    DECLARE v_gcl BIGINT UNSIGNED DEFAULT @@SESSION.group_concat_max_len;\n"
        f"    CALL {qname(layer, 'caller_required')}(v_me);\n"
        f"{base_tables_guard(rules, catalog)}"
        "    -- which ids are patrons is what a lookup says: traced and bounded as one\n"
        f"    CALL {qname(layer, 'lookup_trace')}(v_me, {qname(layer, 'clock_utc')}(), p_ids,\n"
        "                                        JSON_OBJECT('via', 'request'));\n"
        "    SET SESSION group_concat_max_len = 1073741824;\n"
        "    SELECT JSON_ARRAYAGG(j.p) INTO p_unknown\n"
        "    FROM JSON_TABLE(p_ids, '$[*]' COLUMNS (p BIGINT PATH '$')) j\n"
        f"    WHERE NOT EXISTS (SELECT 1 FROM {qname(db, table)} u WHERE u.{ident(p.key)} = j.p);\n"
        "    SET SESSION group_concat_max_len = v_gcl;\n"
        "END")
    return Generated("PROCEDURE", "patron_unknown", "owner", create,
                     "checks that the patrons a request names exist")


def patron_lookup(rules: Rules, catalog: Catalog, layer: str) -> Generated:
    """Resolve ids and barcodes to patrons, with the display columns, for the staff
    member who creates a request: bounded as a request is (``disclosure.max_patrons`` per
    call, and per account and hour of patrons no request of its own names), and traced
    (a ``trace`` row, which a ROLLBACK leaves, before any row is returned)."""
    p = rules.patron
    b = p.barcode
    pdb, ptable = koha_table(rules, catalog, p.relation)
    bdb, btable = koha_table(rules, catalog, b.relation)
    display = ", ".join(f"{string(c)}, u.{ident(c)}" for c in p.display)
    active = f", 'active', c.{ident(b.active_column)}" if b.active_column else ""
    key = ident(p.key)
    ptab, btab = qname(pdb, ptable), qname(bdb, btable)
    ids = "JSON_TABLE(COALESCE(p_ids, '[]'), '$[*]' COLUMNS (x BIGINT PATH '$')) j"
    codes = ("JSON_TABLE(COALESCE(p_barcodes, '[]'), '$[*]'\n"
             "                    COLUMNS (bc VARCHAR(255) PATH '$')) j")
    found = (f"SELECT u.{key} AS p FROM {ids}\n"
             f"              JOIN {ptab} u ON u.{key} = j.x\n"
             "              UNION\n"
             f"              SELECT c.{ident(b.patron_key)} FROM {codes}\n"
             f"              JOIN {btab} c ON c.{ident(b.column)} = j.bc")
    guard = base_tables_guard(rules, catalog)
    create = (
        f"CREATE OR REPLACE DEFINER={{owner}} PROCEDURE {qname(layer, 'patron_lookup')}"
        "(IN p_ids LONGTEXT, IN p_barcodes LONGTEXT)\n"
        "    MODIFIES SQL DATA SQL SECURITY DEFINER\n"
        "    COMMENT 'ils-redact: who the patrons a request names are (bounded, traced)'\n"
        f"""BEGIN
    DECLARE v_me VARCHAR(400);
    DECLARE v_now DATETIME(6) DEFAULT {qname(layer, 'clock_utc')}();
    DECLARE v_max BIGINT DEFAULT {qname(layer, 'setting_int')}('max_patrons');
    DECLARE v_named INT;
    DECLARE v_found LONGTEXT;
    DECLARE v_count INT;
    DECLARE v_gcl BIGINT UNSIGNED DEFAULT @@SESSION.group_concat_max_len;
    DECLARE v_seq BIGINT;
    DECLARE v_msg VARCHAR(500);
    CALL {qname(layer, 'caller_required')}(v_me);
{guard}    IF (p_ids IS NOT NULL AND (NOT JSON_VALID(p_ids) OR JSON_TYPE(p_ids) <> 'ARRAY'))
       OR (p_barcodes IS NOT NULL
           AND (NOT JSON_VALID(p_barcodes) OR JSON_TYPE(p_barcodes) <> 'ARRAY')) THEN
        SIGNAL SQLSTATE '22023' SET MESSAGE_TEXT = 'patrons are named as JSON arrays';
    END IF;
    SET v_named = COALESCE(JSON_LENGTH(p_ids), 0) + COALESCE(JSON_LENGTH(p_barcodes), 0);
    IF v_named > v_max THEN
        SET v_msg = CONCAT('a lookup confirms the patrons of one request: at most ', v_max,
                           ' (rules: disclosure.max_patrons); ', v_named, ' named');
        SIGNAL SQLSTATE '22023' SET MESSAGE_TEXT = v_msg;
    END IF;
    -- the list is built with the caller's group_concat_max_len raised (a session may set
    -- it to 4: the trace would name two patrons of ten), and its length checked
    SET SESSION group_concat_max_len = 1073741824;
    SELECT JSON_ARRAYAGG(f.p), COUNT(*) INTO v_found, v_count
    FROM ({found}) f;
    SET SESSION group_concat_max_len = v_gcl;
    IF COALESCE(JSON_LENGTH(v_found), 0) <> v_count THEN
        SIGNAL SQLSTATE '22023' SET MESSAGE_TEXT = 'the patrons found could not be listed whole';
    END IF;
    -- bounded per account and hour, and traced (layer 8's lookup_trace): a trace row,
    -- which a ROLLBACK leaves, before any row is returned
    CALL {qname(layer, 'lookup_trace')}(v_me, v_now, COALESCE(v_found, '[]'),
                                        JSON_OBJECT('named', v_named));
    -- and an audit entry, as on PostgreSQL (the trace row above is what survives a
    -- ROLLBACK of the caller's transaction; verify reconciles the two)
    CALL {qname(layer, 'audit_append')}('patron.lookup', NULL,
        JSON_OBJECT('patrons', JSON_EXTRACT(COALESCE(v_found, '[]'), '$'), 'named', v_named),
        v_seq);
    SELECT CAST(j.x AS CHAR) AS named_as, u.{key} AS patron_id,
           JSON_OBJECT({display}) AS display
    FROM {ids}
    JOIN {ptab} u ON u.{key} = j.x
    UNION ALL
    SELECT j.bc, u.{key},
           JSON_OBJECT({display}, 'barcode', c.{ident(b.column)}{active})
    FROM {codes}
    JOIN {btab} c ON c.{ident(b.column)} = j.bc
    JOIN {ptab} u ON u.{key} = c.{ident(b.patron_key)};
END""")
    return Generated("PROCEDURE", "patron_lookup", "owner", create,
                     "resolves the patrons a request names, for the staff member to confirm "
                     "(bounded and traced)")


#: why an export or a lookup is refused when a Koha table it reads is not a base table
NOT_BASE_TABLE = ("a Koha table that patrons are read from is not a base table (a view put "
                  "in its place?): refused; ils-redact verify names it")


def base_tables_sql(rules: Rules, catalog: Catalog) -> str:
    """True when every Koha table the layer reads patrons from is still a base table.  The
    Koha account may rename ``borrowers`` and put a view in its place, whose functions
    would see every export as it runs (the fourth review); each table is one lookup by
    schema and name (information_schema opens only that table's definition)."""
    tables = sorted({koha_table(rules, catalog, r) for r in
                     [*(t.relation for t in rules.identity), rules.patron.relation,
                      rules.patron.barcode.relation]})
    return " AND ".join(
        "COALESCE((SELECT TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = "
        f"{string(db)} AND TABLE_NAME = {string(table)}), '') = 'BASE TABLE'"
        for db, table in tables)


def base_tables_guard(rules: Rules, catalog: Catalog) -> str:
    """The statement (indented, one line each) that refuses, with :data:`NOT_BASE_TABLE`,
    when a Koha table patrons are read from is not a base table: the lookup and the
    request's checks open with it (the export sets its refusal instead, to log it)."""
    return (f"    IF NOT ({base_tables_sql(rules, catalog)}) THEN\n"
            f"        SIGNAL SQLSTATE '42000' SET MESSAGE_TEXT = {string(NOT_BASE_TABLE)};\n"
            "    END IF;\n")


def export_procedure(rules: Rules, catalog: Catalog, layer: str) -> Generated:
    allow = identity_columns(rules)
    n = len(allow)
    var = [f"c{i}" for i in range(n)]
    want = [f"w{i}" for i in range(n)]
    decl = "\n".join(f"    DECLARE {v} LONGTEXT;" for v in var)
    decl += "\n" + "\n".join(f"    DECLARE {w} BOOLEAN DEFAULT FALSE;" for w in want)
    branches = []
    scope = (f"(SELECT sc.patron_id FROM {qname(layer, 'scope')} sc WHERE sc.request_id = "
             "p_request AND sc.grantee = v_me AND sc.expires_at > v_now)")
    for order, t in enumerate(rules.identity, start=1):
        rel = catalog.relation(t.relation)
        db, table = koha_table(rules, catalog, t.relation)
        # the row key orders a patron's rows; the primary key if the owner may read it
        readable = set(t.columns) | {t.patron_key}
        pk = rel.primary_key[0] if rel.primary_key and set(rel.primary_key) <= readable \
            else t.patron_key
        vals = ", ".join(
            f"CAST(t.{ident(c.rsplit('.', 1)[1])} AS CHAR)" if c.rsplit(".", 1)[0] == t.relation
            else "NULL" for c in allow)
        branches.append(
            f"SELECT t.{ident(t.patron_key)} AS patron_id, {order} AS rel_order, "
            f"{string(t.relation)} AS relation, CAST(t.{ident(pk)} AS CHAR) AS row_key, {vals} "
            f"FROM {qname(db, table)} t WHERE t.{ident(t.patron_key)} IN {scope}")
    union = "\n            UNION ALL ".join(branches)
    fetch = ", ".join(["r_patron", "r_order", "r_relation", "r_key", *var])
    wants = "\n".join(
        f"        SET {w} = JSON_CONTAINS(v_columns, JSON_QUOTE({string(c)}));\n"
        f"        IF {w} THEN SET v_cols = JSON_ARRAY_APPEND(v_cols, '$', {string(c)}); END IF;"
        for w, c in zip(want, allow, strict=True))
    header = "\n".join(
        f"            IF {w} THEN SET v_doc = CONCAT(v_doc, ',', "
        f"{qname(layer, 'csv_cell')}({string(c)})); END IF;"
        for w, c in zip(want, allow, strict=True))
    cells = "\n".join(
        f"                IF {w} THEN SET v_line = CONCAT(v_line, ',', "
        f"{qname(layer, 'csv_cell')}({v})); END IF;"
        for w, v in zip(want, var, strict=True))
    values = "\n".join(
        f"                IF {w} AND r_relation = {string(c.rsplit('.', 1)[0])} THEN "
        f"SET v_vals = JSON_INSERT(v_vals, {string('$.' + json.dumps(c.rsplit('.', 1)[1]))}, "
        f"{v}); END IF;"
        for w, v, c in zip(want, var, allow, strict=True))
    lf = "CHAR(10 USING utf8mb4)"
    body = f"""BEGIN
    DECLARE v_me VARCHAR(400) DEFAULT {qname(layer, 'caller_account')}();
    DECLARE v_now DATETIME(6) DEFAULT {qname(layer, 'clock_utc')}();
    DECLARE v_ok BOOLEAN;
    DECLARE v_reason VARCHAR(500);
    DECLARE v_basis VARCHAR(16);
    DECLARE v_columns LONGTEXT;
    DECLARE v_patrons LONGTEXT;
    DECLARE v_seq BIGINT;
    DECLARE v_cols LONGTEXT DEFAULT '[]';
    DECLARE v_doc LONGTEXT DEFAULT '';
    DECLARE v_records LONGTEXT DEFAULT '[]';
    DECLARE v_line LONGTEXT;
    DECLARE v_vals LONGTEXT;
    DECLARE v_manifest LONGTEXT;
    DECLARE v_rows INT DEFAULT 0;
    DECLARE v_npat INT DEFAULT 0;
    DECLARE v_last BIGINT DEFAULT NULL;
    DECLARE v_done INT DEFAULT 0;
    DECLARE r_patron BIGINT;
    DECLARE r_order INT;
    DECLARE r_relation VARCHAR(300);
    DECLARE r_key VARCHAR(300);
{decl}
    DECLARE cur CURSOR FOR
        SELECT * FROM (
            {union}
        ) x ORDER BY x.patron_id, x.rel_order, CHAR_LENGTH(x.row_key), x.row_key;
    DECLARE CONTINUE HANDLER FOR NOT FOUND SET v_done = 1;
    CALL {qname(layer, 'export_check')}(p_request, v_ok, v_reason, v_basis, v_columns, v_patrons);
    IF v_ok AND NOT ({base_tables_sql(rules, catalog)}) THEN
        SET v_ok = FALSE, v_reason = {string(NOT_BASE_TABLE)};
    END IF;
    IF NOT v_ok THEN
        CALL {qname(layer, 'audit_append')}('export.refused', p_request,
            JSON_OBJECT('reason', v_reason, 'format', p_format), v_seq);
        SELECT v_seq AS audit_seq, NULL AS document, JSON_OBJECT('refused', v_reason) AS manifest;
    ELSEIF p_format IS NULL OR p_format NOT IN ('csv', 'json') THEN
        SIGNAL SQLSTATE '22023' SET MESSAGE_TEXT = 'format must be csv or json';
    ELSE
        -- the request's columns, in allow-list order
{wants}
        IF p_format = 'csv' THEN
            SET v_doc = 'patron_id,relation';
{header}
            SET v_doc = CONCAT(v_doc, {lf});
        END IF;
        OPEN cur;
        read_rows: LOOP
            FETCH cur INTO {fetch};
            IF v_done THEN
                LEAVE read_rows;
            END IF;
            SET v_rows = v_rows + 1;
            IF v_last IS NULL OR r_patron <> v_last THEN
                SET v_npat = v_npat + 1, v_last = r_patron;
            END IF;
            IF p_format = 'csv' THEN
                SET v_line = CONCAT(r_patron, ',', {qname(layer, 'csv_cell')}(r_relation));
{cells}
                SET v_doc = CONCAT(v_doc, v_line, {lf});
            ELSE
                SET v_vals = JSON_OBJECT();
{values}
                SET v_records = JSON_ARRAY_APPEND(v_records, '$', JSON_OBJECT(
                    'patron_id', r_patron + 0, 'relation', r_relation,
                    'values', JSON_EXTRACT(v_vals, '$')));
            END IF;
        END LOOP;
        CLOSE cur;
        IF p_format = 'json' THEN
            SET v_doc = CONCAT(JSON_DETAILED(JSON_OBJECT(
                'request', p_request + 0, 'basis', v_basis, 'columns', JSON_EXTRACT(v_cols, '$'),
                'records', JSON_EXTRACT(v_records, '$'))), {lf});
        END IF;
        SET v_manifest = JSON_OBJECT(
            'request', p_request + 0, 'basis', v_basis, 'format', p_format,
            'columns', JSON_EXTRACT(v_cols, '$'), 'rows', v_rows + 0, 'patrons', v_npat + 0,
            'sha256', SHA2(v_doc, 256), 'bytes', OCTET_LENGTH(v_doc),
            'exported_by', v_me,
            'exported_at', DATE_FORMAT(v_now, {ISO_UTC}));
        CALL {qname(layer, 'audit_append')}('export', p_request, v_manifest, v_seq);
        -- the durable trace, before the document leaves the server
        INSERT INTO {qname(layer, 'trace')} (at, account, action, request_id, patrons, detail,
                                             conn)
        VALUES (v_now, v_me, 'export', p_request, v_patrons,
                JSON_OBJECT('audit_seq', v_seq + 0, 'sha256', SHA2(v_doc, 256),
                            'format', p_format, 'rows', v_rows + 0), CONNECTION_ID());
        SELECT v_seq AS audit_seq, v_doc AS document, v_manifest AS manifest;
    END IF;
END"""
    create = (
        f"CREATE OR REPLACE DEFINER={{owner}} PROCEDURE {qname(layer, 'export')}"
        "(IN p_request BIGINT, IN p_format VARCHAR(8))\n"
        "    MODIFIES SQL DATA SQL SECURITY DEFINER\n"
        "    COMMENT 'ils-redact: the logged export of one approved request'\n" + body)
    return Generated("PROCEDURE", "export", "owner", create,
                     "the logged export: identity rows of one approved request's patrons")


def named_as_check(rules: Rules, catalog: Catalog, layer: str) -> Generated:
    """What a request records a patron as: its id, or a card of that very patron (the
    form the officer signs shows it).  Called by the ``request_patron`` trigger (layer 7)
    for every row, whoever inserts it."""
    b = rules.patron.barcode
    db, table = koha_table(rules, catalog, b.relation)
    create = (
        f"CREATE OR REPLACE DEFINER={{owner}} PROCEDURE {qname(layer, 'named_as_check')}"
        "(IN p_patron BIGINT, IN p_named VARCHAR(400))\n"
        "    READS SQL DATA SQL SECURITY DEFINER\n"
        "    COMMENT 'ils-redact: a patron is named by its id or its own card (internal)'\n"
        "BEGIN\n"
        "    DECLARE v_msg VARCHAR(600);\n"
        f"{base_tables_guard(rules, catalog)}"
        "    IF p_named IS NOT NULL AND p_named <> CAST(p_patron AS CHAR)\n"
        f"       AND NOT EXISTS (SELECT 1 FROM {qname(db, table)} c\n"
        f"                       WHERE c.{ident(b.column)} = p_named\n"
        f"                         AND c.{ident(b.patron_key)} = p_patron) THEN\n"
        "        SET v_msg = CONCAT('patron ', p_patron, ' is named as \"', LEFT(p_named, 40),\n"
        "                           '\", which is neither its id nor a card of that patron: ',\n"
        "                           'name patrons by id, or by the card the lookup resolved');\n"
        "        SIGNAL SQLSTATE '22023' SET MESSAGE_TEXT = v_msg;\n"
        "    END IF;\n"
        "END")
    return Generated("PROCEDURE", "named_as_check", "owner", create,
                     "checks that a request names each patron by its id or its own card")


def grantee_check(rules: Rules, catalog: Catalog, layer: str) -> Generated:
    """Whom a request may disclose to: a login that holds the exporter or the disclosure
    role (granted to it directly, as ``staff grant`` does).  Called by the request table's
    triggers (layer 8) when a request is recorded and when it is approved, whoever writes
    it; as on PostgreSQL (layer 7), where the Koha application's account, say, cannot be
    a grantee."""
    roles = rules.roles(catalog.database or "")
    allowed = ", ".join(string(roles[k]) for k in ("exporter", "disclosure"))
    create = (
        f"CREATE OR REPLACE DEFINER={{owner}} PROCEDURE {qname(layer, 'grantee_check')}"
        "(IN p_grantee VARCHAR(400))\n"
        "    READS SQL DATA SQL SECURITY DEFINER\n"
        "    COMMENT 'ils-redact: a request discloses to an exporter or disclosure login "
        "(internal)'\n"
        "BEGIN\n"
        "    DECLARE v_msg VARCHAR(700);\n"
        "    DECLARE v_host VARCHAR(255) DEFAULT SUBSTRING_INDEX(p_grantee, '@', -1);\n"
        "    DECLARE v_user VARCHAR(400)\n"
        "        DEFAULT LEFT(p_grantee, CHAR_LENGTH(p_grantee) - CHAR_LENGTH(v_host) - 1);\n"
        "    IF p_grantee IS NULL OR LOCATE('@', p_grantee) = 0 OR NOT EXISTS (\n"
        "            SELECT 1 FROM mysql.roles_mapping m WHERE m.User = v_user\n"
        f"              AND m.Host = v_host AND m.Role IN ({allowed})) THEN\n"
        "        SET v_msg = CONCAT('the login ', LEFT(COALESCE(p_grantee, '(none)'), 400),\n"
        "                           ' holds neither the exporter nor the disclosure role: a ',\n"
        "                           'request discloses only to such a login (ils-redact ',\n"
        "                           'staff grant LOGIN --role disclosure)');\n"
        "        SIGNAL SQLSTATE '22023' SET MESSAGE_TEXT = v_msg;\n"
        "    END IF;\n"
        "END")
    return Generated("PROCEDURE", "grantee_check", "owner", create,
                     "checks that a request's grantee is an exporter or disclosure login")


def generated_objects(rules: Rules, catalog: Catalog, layer: str) -> list[Generated]:
    out = [identity_view(rules, catalog, layer, t.relation) for t in rules.identity]
    out += [identity_lookup(rules, catalog, layer, t.relation) for t in rules.identity]
    out += [patron_unknown(rules, catalog, layer), patron_lookup(rules, catalog, layer),
            export_procedure(rules, catalog, layer), named_as_check(rules, catalog, layer),
            grantee_check(rules, catalog, layer)]
    return out
