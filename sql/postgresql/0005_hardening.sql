-- ils-redact layer for PostgreSQL, version 5: hardening after an adversarial review.
--
-- Rendered by psycopg.sql (role placeholders in braces; literal braces doubled).  Files
-- 0001-0004 are installed in libraries as they are: what changes is redefined here
-- (CREATE OR REPLACE keeps owners and grants; ALTER FUNCTION ... SET pins settings).
--
-- 1. Settings pinned on every SECURITY DEFINER function (threat model row 17): any login
--    may SET debug_print_plan / _parse / _rewritten and client_min_messages = log, and
--    the plan trees then sent to the client carry every constant of every query a
--    function plans, including values the caller may not see.  Each function enters
--    with those off, client messages at WARNING or above, and generic plans (parameters
--    stay parameters instead of being folded into constants).  And the settings that
--    change how the function's SQL is read or its values written as text are pinned too
--    (standard_conforming_strings = off read a backslash-dot in a pattern as any character
--    and the JSON export lost every field name; DateStyle, IntervalStyle,
--    extra_float_digits, bytea_output).
-- 2. No staff role appends to the audit log directly: audit_record (and version 2's
--    audit_append) are called only by the layer's functions, each with fixed actions (export_record, log_query,
--    log_refusal with a fixed set of actions and a bounded reason).
-- 3. Every patron lookup, export and logged query writes a line to the server log,
--    which survives a rolled-back transaction, naming the login, the patrons and the
--    audit entry (seq and hash): `ils-redact audit reconcile` matches the two.
-- 4. Lookups are bounded per call and per transaction (disclosure.max_patrons), refused
--    inside a subtransaction, and request_create records only names the database
--    resolved itself.
-- 5. The audit chain is serialised on a row of a layer table (no stranger can lock it,
--    unlike an advisory lock key), the wait for it is bounded, and a transaction that
--    wrote an entry may not sit idle holding it for long.  Entry times are taken after
--    the lock and never decrease.
-- 6. Request text fields refuse control characters (escape codes reach terminals).
-- 7. access: role refuses requests narrower than all identity fields: row security
--    cannot limit columns per request (threat model row 23).

SET LOCAL ROLE {owner};

-- The audit chain's lock: one row, locked FOR UPDATE by audit_record until the end of
-- its transaction.  Row locks need UPDATE on the table: only the owner role has it.
CREATE TABLE ils_redact.audit_chain_lock (
    id integer PRIMARY KEY CHECK (id = 1)
);
INSERT INTO ils_redact.audit_chain_lock (id) VALUES (1);

-- What patron_lookup resolved, per transaction and login: it bounds the lookups of one
-- transaction, and is what request_create accepts as the name of a patron (resolved for
-- the same login in the same transaction or, committed, within the hour: the CLI commits
-- the lookup before it asks the clerk to confirm).  The next lookup removes rows older
-- than an hour.
CREATE TABLE ils_redact.patron_lookup_tx (
    xid       xid8 NOT NULL DEFAULT pg_current_xact_id(),
    login     name NOT NULL DEFAULT session_user,
    named_as  text NOT NULL,
    patron_id bigint,
    at        timestamptz NOT NULL DEFAULT statement_timestamp()
);
CREATE INDEX patron_lookup_tx_xid_idx ON ils_redact.patron_lookup_tx (xid);

-- Text staff see later in terminals and forms: no control characters (a newline and a
-- tab are allowed in the two free-text reasons), no bidirectional overrides.  NOT VALID:
-- rows written before this version are printed escaped, not refused.
ALTER TABLE ils_redact.request ADD CONSTRAINT request_text_printable CHECK (
    (coalesce(agency, '') || coalesce(officer_name, '') || coalesce(officer_badge, '')
     || coalesce(case_number, '') || coalesce(court, '') || coalesce(order_reference, '')
     || coalesce(grantee::text, ''))
        !~ '[\u0001-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]'
    AND (coalesce(emergency_reason, '') || coalesce(end_reason, ''))
        !~ '[\u0001-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]'
) NOT VALID;
ALTER TABLE ils_redact.request_patron ADD CONSTRAINT request_patron_named_as_printable
    CHECK (named_as !~ '[\u0001-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]')
    NOT VALID;

-- The field's name when its value holds a character refused above (NULL: none).
CREATE FUNCTION ils_redact.unprintable_field(p_names text[], p_values text[],
                                             p_multiline boolean)
    RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
    SET client_min_messages = warning
    SET debug_print_parse = off
    SET debug_print_rewritten = off
    SET debug_print_plan = off
    SET plan_cache_mode = force_generic_plan
    SET standard_conforming_strings = on
    SET DateStyle = 'ISO, MDY'
    SET IntervalStyle = postgres
    SET extra_float_digits = 1
    SET bytea_output = hex
AS $fn$
    SELECT min(n) FROM unnest(p_names, p_values) u(n, v)
    WHERE v ~ CASE WHEN p_multiline
                   THEN '[\u0001-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]'
                   ELSE '[\u0001-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]' END
$fn$;

-- Append one entry and, when it discloses (p_patrons not NULL), trace it in the server
-- log.  Called only by the layer's own functions, which choose the action and build the
-- detail; no role but the owner may execute it.  SECURITY INVOKER: its callers are the
-- owner's SECURITY DEFINER functions (their pinned settings stay in force while it runs).
--
-- The trace is a server-log line (RAISE LOG is written when it is raised and survives a
-- rollback) with the database, seq, hash, action, login, time, request and patrons, as
-- one JSON object after the marker; `ils-redact audit reconcile` matches it with the
-- entry.  Client messages are held at WARNING inside the layer's functions, so the caller
-- never sees it.
CREATE FUNCTION ils_redact.audit_record(p_action text, p_request bigint, p_detail jsonb,
                                        p_patrons bigint[])
    RETURNS bigint
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '5s'
AS $fn$
DECLARE
    v_seq     bigint;
    v_prev    text;
    v_last_at timestamptz;
    v_at      timestamptz;
    v_hash    text;
    v_detail  jsonb := coalesce(p_detail, '{{}}');
    v_holder  text;
    v_pid     integer;
    v_login   text;
    v_since   timestamptz;
    v_ended   jsonb;
    v_locked  boolean := false;
    v_idle    text := current_setting('idle_in_transaction_session_timeout');
BEGIN
    -- one writer at a time, until commit, so the chain has no forks: a row only the
    -- layer can lock.  Free: no wait.  Held: wait at most lock_timeout, then say who.
    -- A holder whose transaction has been open longer than 30 s is not a layer call in
    -- progress (they commit within seconds) but a session sitting on the lock (its idle
    -- guard below is a setting the caller may undo): it is ended (the owner is a member
    -- of pg_signal_backend; a superuser's session cannot be), the wait is tried once
    -- more, and the entry's detail says whose session was ended.
    PERFORM 1 FROM ils_redact.audit_chain_lock WHERE id = 1 FOR UPDATE SKIP LOCKED;
    v_locked := FOUND;
    FOR v_try IN 1..2 LOOP
        EXIT WHEN v_locked;
        SELECT l.pid, a.usename::text, a.xact_start INTO v_pid, v_login, v_since
        FROM ils_redact.audit_chain_lock k
        JOIN pg_catalog.pg_locks l ON l.locktype = 'transactionid'
                                  AND l.transactionid = k.xmax AND l.granted
        LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
        WHERE k.id = 1 LIMIT 1;
        v_holder := CASE WHEN v_pid IS NULL THEN 'holder unknown'
                         ELSE format('pid %s, login %s', v_pid, coalesce(v_login, '?')) END;
        BEGIN
            PERFORM 1 FROM ils_redact.audit_chain_lock WHERE id = 1 FOR UPDATE;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'ils_redact.audit_chain_lock has lost its row: the audit log cannot be written'
                    USING ERRCODE = '55000';
            END IF;
            v_locked := true;
        EXCEPTION WHEN lock_not_available THEN
            IF v_try = 1 AND v_pid IS NOT NULL AND v_pid <> pg_backend_pid()
                    AND v_since < clock_timestamp() - interval '30 s' THEN
                BEGIN
                    IF pg_terminate_backend(v_pid, 5000) THEN
                        v_ended := jsonb_build_object(
                            'pid', v_pid, 'login', v_login, 'transaction_began', v_since,
                            'why', 'held the audit log''s lock in a transaction open longer than 30 s');
                    END IF;
                EXCEPTION WHEN insufficient_privilege THEN
                    NULL;  -- a superuser's session: named below
                END;
            END IF;
            IF v_ended IS NULL THEN
                RAISE EXCEPTION 'the audit log is locked by a transaction that has not ended (%): nothing was recorded; try again when it commits or rolls back, or end that session (pg_terminate_backend)',
                    v_holder USING ERRCODE = '55P03';
            END IF;
        END;
    END LOOP;
    IF NOT v_locked THEN
        RAISE EXCEPTION 'the audit log is locked by a transaction that has not ended (%): nothing was recorded; try again when it commits or rolls back, or end that session (pg_terminate_backend)',
            coalesce(v_holder, 'holder unknown') USING ERRCODE = '55P03';
    END IF;
    IF v_ended IS NOT NULL THEN
        v_detail := v_detail || jsonb_build_object('audit_lock_holder_ended', v_ended);
    END IF;
    -- a transaction holding the lock may not sit idle for long (it would stop every
    -- approval, export and refusal); see docs/disclosure.md for what the caller can undo
    IF v_idle = '0' OR v_idle::interval > interval '60s' THEN
        PERFORM set_config('idle_in_transaction_session_timeout', '60s', true);
    END IF;
    SELECT a.seq, a.hash, a.at INTO v_seq, v_prev, v_last_at
    FROM ils_redact.audit_log a ORDER BY a.seq DESC LIMIT 1;
    v_seq := coalesce(v_seq, 0) + 1;
    v_prev := coalesce(v_prev, repeat('0', 64));
    -- taken under the lock, and never before the previous entry (a clock stepped back)
    v_at := greatest(clock_timestamp(), v_last_at);
    v_hash := encode(sha256(convert_to(ils_redact.audit_canonical(
                  v_seq, v_at, session_user, p_action, p_request, v_detail, v_prev), 'UTF8')),
                  'hex');
    INSERT INTO ils_redact.audit_log (seq, at, actor, action, request_id, detail, prev_hash, hash)
    VALUES (v_seq, v_at, session_user, p_action, p_request, v_detail, v_prev, v_hash);
    IF p_patrons IS NOT NULL THEN
        RAISE LOG 'ils-redact audit-trace %', jsonb_build_object(
            'database', current_database(), 'seq', v_seq, 'hash', v_hash, 'action', p_action,
            'login', session_user,
            'at', to_char(v_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
            'request', p_request, 'patrons', to_jsonb(p_patrons), 'pid', pg_backend_pid());
    END IF;
    RETURN v_seq;
END
$fn$;

-- Version 2's entry point, kept for the request functions: no staff role may execute it.
CREATE OR REPLACE FUNCTION ils_redact.audit_append(p_action text, p_request bigint,
                                                   p_detail jsonb)
    RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET client_min_messages = warning
    SET debug_print_parse = off
    SET debug_print_rewritten = off
    SET debug_print_plan = off
    SET plan_cache_mode = force_generic_plan
    SET standard_conforming_strings = on
    SET DateStyle = 'ISO, MDY'
    SET IntervalStyle = postgres
    SET extra_float_digits = 1
    SET bytea_output = hex
AS $fn$
BEGIN
    RETURN ils_redact.audit_record(p_action, p_request, p_detail, NULL);
END
$fn$;

-- A refusal the CLI, the gate or the export function made: fixed actions, a bounded
-- reason with control characters replaced.
CREATE OR REPLACE FUNCTION ils_redact.log_refusal(p_action text, p_request bigint, p_reason text)
    RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET client_min_messages = warning
    SET debug_print_parse = off
    SET debug_print_rewritten = off
    SET debug_print_plan = off
    SET plan_cache_mode = force_generic_plan
    SET standard_conforming_strings = on
    SET DateStyle = 'ISO, MDY'
    SET IntervalStyle = postgres
    SET extra_float_digits = 1
    SET bytea_output = hex
AS $fn$
BEGIN
    IF p_action IS NULL OR p_action NOT IN ('request.create', 'request.approve',
            'request.revoke', 'request.close', 'export', 'query', 'patron.lookup') THEN
        RAISE EXCEPTION 'not an action whose refusal is logged: %', left(coalesce(p_action, '(none)'), 40)
            USING ERRCODE = '22023';
    END IF;
    RETURN ils_redact.audit_append(p_action || '.refused', p_request, jsonb_build_object(
        'reason', left(regexp_replace(coalesce(p_reason, ''),
                                      '[\u0001-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]',
                                      ' ', 'g'), 1000)));
END
$fn$;

-- The export function's manifest entry (action 'export'), built here from the document
-- it is about to hand over: the request must be one the caller may export now, the
-- fields within the request's, the counts within its patrons.  Executable by the role
-- that owns the export function only.
CREATE FUNCTION ils_redact.export_record(p_request bigint, p_format text, p_columns text[],
                                         p_document text, p_rows integer, p_patrons integer,
                                         OUT seq bigint, OUT manifest jsonb)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET client_min_messages = warning
    SET debug_print_parse = off
    SET debug_print_rewritten = off
    SET debug_print_plan = off
    SET plan_cache_mode = force_generic_plan
    SET standard_conforming_strings = on
    SET DateStyle = 'ISO, MDY'
    SET IntervalStyle = postgres
    SET extra_float_digits = 1
    SET bytea_output = hex
AS $fn$
DECLARE
    r     ils_redact.request;
    v_ids bigint[];
    v_doc bytea;
BEGIN
    SELECT * INTO r FROM ils_redact.request WHERE id = p_request;
    IF NOT FOUND OR r.status <> 'approved' OR r.expires_at <= statement_timestamp()
            OR r.grantee <> session_user THEN
        RAISE EXCEPTION 'request % is not approved for % now: no export to record',
            p_request, session_user USING ERRCODE = '42501';
    END IF;
    IF p_format IS NULL OR p_format NOT IN ('csv', 'json') THEN
        RAISE EXCEPTION 'format must be csv or json' USING ERRCODE = '22023';
    END IF;
    IF p_columns IS NULL OR cardinality(p_columns) = 0 OR NOT p_columns <@ r.columns THEN
        RAISE EXCEPTION 'the exported fields must be fields of request %', p_request
            USING ERRCODE = '22023';
    END IF;
    SELECT array_agg(rp.patron_id ORDER BY rp.patron_id) INTO v_ids
    FROM ils_redact.request_patron rp WHERE rp.request_id = r.id;
    IF p_document IS NULL OR p_rows IS NULL OR p_patrons IS NULL OR p_rows < 0
            OR p_patrons < 0 OR p_patrons > p_rows OR p_patrons > cardinality(v_ids) THEN
        RAISE EXCEPTION 'an export names its document, rows and patrons (at most the request''s)'
            USING ERRCODE = '22023';
    END IF;
    v_doc := convert_to(p_document, 'UTF8');
    manifest := jsonb_build_object(
        'request', p_request, 'basis', r.basis, 'format', p_format,
        'columns', to_jsonb(p_columns), 'rows', p_rows, 'patrons', p_patrons,
        'sha256', encode(sha256(v_doc), 'hex'), 'bytes', octet_length(v_doc),
        'exported_by', session_user, 'exported_at', statement_timestamp());
    seq := ils_redact.audit_record('export', p_request, manifest, v_ids);
END
$fn$;

-- What the query gate records around a gated read in access: role (fixed actions; the
-- request must be the caller's).  'query' is written before any row is read and is
-- traced in the server log like an export.
CREATE FUNCTION ils_redact.log_query(p_action text, p_request bigint, p_detail jsonb)
    RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET client_min_messages = warning
    SET debug_print_parse = off
    SET debug_print_rewritten = off
    SET debug_print_plan = off
    SET plan_cache_mode = force_generic_plan
    SET standard_conforming_strings = on
    SET DateStyle = 'ISO, MDY'
    SET IntervalStyle = postgres
    SET extra_float_digits = 1
    SET bytea_output = hex
AS $fn$
DECLARE
    r     ils_redact.request;
    v_ids bigint[];
BEGIN
    IF p_action IS NULL OR p_action NOT IN ('query', 'query.failed', 'query.finished') THEN
        RAISE EXCEPTION 'not a query action: %', left(coalesce(p_action, '(none)'), 40)
            USING ERRCODE = '22023';
    END IF;
    IF p_detail IS NULL OR jsonb_typeof(p_detail) <> 'object'
            OR octet_length(p_detail::text) > 200000 THEN
        RAISE EXCEPTION 'a query entry''s detail is a JSON object of at most 200000 bytes'
            USING ERRCODE = '22023';
    END IF;
    SELECT * INTO r FROM ils_redact.request WHERE id = p_request;
    IF NOT FOUND OR r.grantee <> session_user OR (p_action = 'query' AND (
            r.status <> 'approved' OR r.expires_at <= statement_timestamp())) THEN
        RAISE EXCEPTION 'request % is not approved for %', p_request, session_user
            USING ERRCODE = '42501';
    END IF;
    IF p_action = 'query' THEN  -- rows are read after this: traced like an export
        SELECT coalesce(array_agg(rp.patron_id ORDER BY rp.patron_id), '{{}}') INTO v_ids
        FROM ils_redact.request_patron rp WHERE rp.request_id = r.id;
    END IF;
    RETURN ils_redact.audit_record(p_action, p_request, p_detail, v_ids);
END
$fn$;

-- The row policies' scope.  In access: role a member of the disclosure role reads every
-- identity column of every patron in scope, so only requests that cover all identity
-- fields give scope there (a narrower request approved under access: function gives
-- none after a switch to role).
CREATE OR REPLACE FUNCTION ils_redact.scope_patron_ids() RETURNS bigint[]
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET client_min_messages = warning
    SET debug_print_parse = off
    SET debug_print_rewritten = off
    SET debug_print_plan = off
    SET plan_cache_mode = force_generic_plan
    SET standard_conforming_strings = on
    SET DateStyle = 'ISO, MDY'
    SET IntervalStyle = postgres
    SET extra_float_digits = 1
    SET bytea_output = hex
AS $fn$
BEGIN
    RETURN (SELECT coalesce(array_agg(DISTINCT s.patron_id ORDER BY s.patron_id),
                            '{{}}'::bigint[])
            FROM ils_redact.scope s
            WHERE s.grantee = session_user
              AND s.expires_at > statement_timestamp()
              AND (NOT EXISTS (SELECT 1 FROM ils_redact.setting
                               WHERE key = 'access' AND value = '"role"'::jsonb)
                   OR EXISTS (SELECT 1 FROM ils_redact.request r
                              WHERE r.id = s.request_id
                                AND r.columns @> ARRAY(SELECT jsonb_array_elements_text(
                                        (SELECT value FROM ils_redact.setting
                                         WHERE key = 'identity_columns'))))));
END
$fn$;

-- Why access: role cannot serve a request for some identity fields only (NULL: it can).
CREATE FUNCTION ils_redact.role_mode_refusal(p_columns text[]) RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    SET client_min_messages = warning
    SET debug_print_parse = off
    SET debug_print_rewritten = off
    SET debug_print_plan = off
    SET plan_cache_mode = force_generic_plan
    SET standard_conforming_strings = on
    SET DateStyle = 'ISO, MDY'
    SET IntervalStyle = postgres
    SET extra_float_digits = 1
    SET bytea_output = hex
AS $fn$
BEGIN
    IF (SELECT value #>> '{{}}' FROM ils_redact.setting WHERE key = 'access') = 'role'
       AND NOT coalesce(p_columns, '{{}}') @> ARRAY(SELECT jsonb_array_elements_text(
               (SELECT value FROM ils_redact.setting WHERE key = 'identity_columns'))) THEN
        RETURN 'with disclosure.access: role the database cannot limit a request to some '
            || 'identity fields (members of the disclosure role read every identity field of '
            || 'the patrons in scope): name all identity fields, or use disclosure.access: '
            || 'function, where the export discloses only the fields the request names';
    END IF;
    RETURN NULL;
END
$fn$;

CREATE OR REPLACE FUNCTION ils_redact.request_create(
        p_basis text, p_agency text, p_officer_name text, p_officer_badge text,
        p_case_number text, p_emergency_reason text, p_court text, p_order_reference text,
        p_order_date date, p_patrons bigint[], p_named_as text[], p_columns text[],
        p_expires_at timestamptz, p_grantee name)
    RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET client_min_messages = warning
    SET debug_print_parse = off
    SET debug_print_rewritten = off
    SET debug_print_plan = off
    SET plan_cache_mode = force_generic_plan
    SET standard_conforming_strings = on
    SET DateStyle = 'ISO, MDY'
    SET IntervalStyle = postgres
    SET extra_float_digits = 1
    SET bytea_output = hex
AS $fn$
DECLARE
    v_id      bigint;
    v_allowed text[];
    v_cap     interval;
    v_bad     text[];
    v_unknown bigint[];
    v_field   text;
    v_names   text[] := '{{}}';
    v_name    text;
    v_refusal text;
BEGIN
    PERFORM ils_redact.sweep_expired();
    IF p_basis IS NULL OR p_basis NOT IN ('court-order', 'emergency') THEN
        RAISE EXCEPTION 'unknown basis %: court-order or emergency',
            left(regexp_replace(coalesce(p_basis, '(none)'), '[^[:print:]]', '?', 'g'), 40)
            USING ERRCODE = '22023';
    END IF;
    v_field := coalesce(
        ils_redact.unprintable_field(
            ARRAY['agency', 'officer name', 'officer badge', 'case number', 'court',
                  'order reference', 'login'],
            ARRAY[p_agency, p_officer_name, p_officer_badge, p_case_number, p_court,
                  p_order_reference, p_grantee::text], false),
        ils_redact.unprintable_field(ARRAY['emergency reason'], ARRAY[p_emergency_reason],
                                     true));
    IF v_field IS NOT NULL THEN
        RAISE EXCEPTION 'the % contains control characters (escape codes, carriage returns, direction overrides): refused',
            v_field USING ERRCODE = '22023';
    END IF;
    IF p_patrons IS NULL OR cardinality(p_patrons) = 0 THEN
        RAISE EXCEPTION 'a request names at least one patron' USING ERRCODE = '22023';
    END IF;
    IF cardinality(p_patrons) > ils_redact.setting_int('max_patrons') THEN
        RAISE EXCEPTION 'a request may name at most % patrons (rules: disclosure.max_patrons); % named',
            ils_redact.setting_int('max_patrons'), cardinality(p_patrons) USING ERRCODE = '22023';
    END IF;
    IF (SELECT count(DISTINCT x) FROM unnest(p_patrons) x) <> cardinality(p_patrons) THEN
        RAISE EXCEPTION 'a patron is named twice' USING ERRCODE = '22023';
    END IF;
    SELECT array_agg(x) INTO v_unknown FROM unnest(p_patrons) x
    WHERE NOT x = ANY (ils_redact.patron_ids_known(p_patrons));
    IF v_unknown IS NOT NULL THEN
        RAISE EXCEPTION 'unknown patron ids: %', v_unknown USING ERRCODE = '22023';
    END IF;
    -- what "Patrons named" will show: the id itself, or the barcode that patron_lookup
    -- resolved to this very patron for this login (in this transaction, or committed
    -- within the hour)
    FOR i IN 1..cardinality(p_patrons) LOOP
        v_name := p_named_as[i];
        IF v_name IS NULL OR v_name = p_patrons[i]::text THEN
            v_name := p_patrons[i]::text;
        ELSIF NOT EXISTS (SELECT 1 FROM ils_redact.patron_lookup_tx t
                          WHERE t.login = session_user AND t.named_as = v_name
                            AND t.patron_id = p_patrons[i]
                            AND (t.xid = pg_current_xact_id()
                                 OR t.at > statement_timestamp() - interval '1 hour')) THEN
            RAISE EXCEPTION 'patron % is named as "%", which patron_lookup did not resolve to that patron for you in the last hour: look the patrons up first, or name them by id',
                p_patrons[i], left(regexp_replace(v_name, '[^[:print:]]', '?', 'g'), 40)
                USING ERRCODE = '22023';
        END IF;
        v_names := v_names || v_name;
    END LOOP;
    IF p_expires_at IS NULL OR p_expires_at <= statement_timestamp() THEN
        RAISE EXCEPTION 'expiry % is not in the future', coalesce(p_expires_at::text, '(none)')
            USING ERRCODE = '22023';
    END IF;
    v_cap := CASE p_basis
        WHEN 'emergency' THEN make_interval(hours => ils_redact.setting_int('emergency_hours'))
        ELSE make_interval(days => ils_redact.setting_int('court_order_max_days')) END;
    IF p_expires_at > statement_timestamp() + v_cap THEN
        RAISE EXCEPTION 'expiry % is later than the rules allow for a % request (%)',
            p_expires_at, p_basis, v_cap USING ERRCODE = '22023';
    END IF;
    SELECT array_agg(x ORDER BY x) INTO v_allowed
    FROM jsonb_array_elements_text((SELECT value FROM ils_redact.setting
                                    WHERE key = 'identity_columns')) x;
    IF p_columns IS NULL OR cardinality(p_columns) = 0 THEN
        RAISE EXCEPTION 'a request names the identity columns it covers' USING ERRCODE = '22023';
    END IF;
    SELECT array_agg(left(regexp_replace(c, '[^[:print:]]', '?', 'g'), 80)) INTO v_bad
    FROM unnest(p_columns) c WHERE c IS NULL OR NOT c = ANY (v_allowed);
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'not identity columns (never disclosed): %', v_bad
            USING ERRCODE = '42501';
    END IF;
    v_refusal := ils_redact.role_mode_refusal(p_columns);
    IF v_refusal IS NOT NULL THEN
        RAISE EXCEPTION '%', v_refusal USING ERRCODE = '22023';
    END IF;
    INSERT INTO ils_redact.request (basis, agency, officer_name, officer_badge, case_number,
                                    emergency_reason, court, order_reference, order_date,
                                    columns, grantee, expires_at)
    VALUES (p_basis, p_agency, p_officer_name, p_officer_badge, p_case_number,
            p_emergency_reason, p_court, p_order_reference, p_order_date,
            (SELECT array_agg(DISTINCT c ORDER BY c) FROM unnest(p_columns) c),
            coalesce(p_grantee, session_user), p_expires_at)
    RETURNING id INTO v_id;
    INSERT INTO ils_redact.request_patron (request_id, patron_id, named_as)
    SELECT v_id, p, v_names[i]
    FROM unnest(p_patrons) WITH ORDINALITY u(p, i);
    PERFORM ils_redact.audit_append('request.created', v_id, (
        SELECT jsonb_build_object(
            'basis', r.basis, 'agency', r.agency, 'officer_name', r.officer_name,
            'officer_badge', r.officer_badge, 'case_number', r.case_number,
            'emergency_reason', r.emergency_reason, 'court', r.court,
            'order_reference', r.order_reference, 'order_date', r.order_date,
            'columns', to_jsonb(r.columns), 'grantee', r.grantee,
            'expires_at', r.expires_at, 'patrons', to_jsonb(p_patrons),
            'named_as', to_jsonb(v_names))
        FROM ils_redact.request r WHERE r.id = v_id));
    RETURN v_id;
END
$fn$;

-- Two-person rule, as in version 2, and the login the request discloses to is not its
-- approver either (a director who is also an exporter would approve his own access); in
-- access: role only a request for all identity fields can be approved.
CREATE OR REPLACE FUNCTION ils_redact.request_approve(p_request bigint) RETURNS text
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET client_min_messages = warning
    SET debug_print_parse = off
    SET debug_print_rewritten = off
    SET debug_print_plan = off
    SET plan_cache_mode = force_generic_plan
    SET standard_conforming_strings = on
    SET DateStyle = 'ISO, MDY'
    SET IntervalStyle = postgres
    SET extra_float_digits = 1
    SET bytea_output = hex
AS $fn$
DECLARE
    r ils_redact.request;
    v_reason text;
BEGIN
    PERFORM ils_redact.sweep_expired();
    SELECT * INTO r FROM ils_redact.request WHERE id = p_request FOR UPDATE;
    IF NOT FOUND THEN
        v_reason := 'no such request';
    ELSIF r.created_by = session_user THEN
        v_reason := 'the login that created a request cannot approve it (two-person rule)';
    ELSIF r.grantee = session_user THEN
        v_reason := 'the login a request discloses to cannot approve it (two-person rule)';
    ELSIF r.status <> 'draft' THEN
        v_reason := format('request is %s, not draft', r.status);
    ELSIF r.expires_at <= statement_timestamp() THEN
        v_reason := 'request has expired';
    ELSE
        v_reason := ils_redact.role_mode_refusal(r.columns);
    END IF;
    IF v_reason IS NOT NULL THEN
        PERFORM ils_redact.audit_append('request.approve.refused', p_request,
                                        jsonb_build_object('reason', v_reason));
        RETURN v_reason;
    END IF;
    UPDATE ils_redact.request SET status = 'approved', approved_by = session_user,
           approved_at = statement_timestamp()
    WHERE id = p_request;
    INSERT INTO ils_redact.scope (patron_id, grantee, expires_at, request_id)
    SELECT rp.patron_id, r.grantee, r.expires_at, r.id
    FROM ils_redact.request_patron rp WHERE rp.request_id = r.id;
    PERFORM ils_redact.audit_append('request.approved', p_request,
        jsonb_build_object('grantee', r.grantee, 'expires_at', r.expires_at,
                           'created_by', r.created_by));
    RETURN NULL;
END
$fn$;

-- End every session of a login in this database (not the caller's own): what a revoke
-- does to its grantee.  Returns {{"pids": [...], "not_ended": [...]}} (a superuser's
-- session cannot be ended by the owner; none are expected: a superuser bypasses the
-- layer anyway).  Waits up to 5 s for each to exit, so the locks it held are free when
-- this returns.  SECURITY INVOKER: only the owner's functions call it.
CREATE FUNCTION ils_redact.end_sessions_of(p_login name) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_pid   integer;
    v_ended integer[] := '{{}}';
    v_kept  integer[] := '{{}}';
BEGIN
    FOR v_pid IN SELECT a.pid FROM pg_catalog.pg_stat_activity a
                 WHERE a.usename = p_login AND a.datname = current_database()
                   AND a.pid <> pg_backend_pid() ORDER BY a.pid LOOP
        BEGIN
            IF pg_terminate_backend(v_pid, 5000) THEN
                v_ended := v_ended || v_pid;
            ELSE
                v_kept := v_kept || v_pid;
            END IF;
        EXCEPTION WHEN insufficient_privilege THEN
            v_kept := v_kept || v_pid;
        END;
    END LOOP;
    RETURN jsonb_build_object('pids', to_jsonb(v_ended), 'not_ended', to_jsonb(v_kept));
END
$fn$;

-- As in version 2, with the reason's characters checked; an approved request's grantee
-- loses its sessions (see end_sessions_of).
CREATE OR REPLACE FUNCTION ils_redact.request_end(p_request bigint, p_status text, p_reason text)
    RETURNS text
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET client_min_messages = warning
    SET debug_print_parse = off
    SET debug_print_rewritten = off
    SET debug_print_plan = off
    SET plan_cache_mode = force_generic_plan
    SET standard_conforming_strings = on
    SET DateStyle = 'ISO, MDY'
    SET IntervalStyle = postgres
    SET extra_float_digits = 1
    SET bytea_output = hex
AS $fn$
DECLARE
    r ils_redact.request;
    v_reason text;
    v_ended jsonb;
BEGIN
    IF p_status IS NULL OR p_status NOT IN ('revoked', 'closed') THEN
        RAISE EXCEPTION 'status must be revoked or closed' USING ERRCODE = '22023';
    END IF;
    IF ils_redact.unprintable_field(ARRAY['reason'], ARRAY[p_reason], true) IS NOT NULL THEN
        RAISE EXCEPTION 'the reason contains control characters (escape codes, carriage returns, direction overrides): refused'
            USING ERRCODE = '22023';
    END IF;
    PERFORM ils_redact.sweep_expired();
    SELECT * INTO r FROM ils_redact.request WHERE id = p_request FOR UPDATE;
    IF NOT FOUND THEN
        v_reason := 'no such request';
    ELSIF r.status IN ('revoked', 'closed') THEN
        v_reason := format('request is already %s', r.status);
    ELSIF p_status = 'revoked' AND r.status NOT IN ('draft', 'approved') THEN
        v_reason := format('request is %s; only a draft or approved request can be revoked',
                           r.status);
    END IF;
    IF v_reason IS NOT NULL THEN
        PERFORM ils_redact.audit_append(
            'request.' || CASE p_status WHEN 'revoked' THEN 'revoke' ELSE 'close' END
            || '.refused', p_request, jsonb_build_object('reason', v_reason));
        RETURN v_reason;
    END IF;
    UPDATE ils_redact.request SET status = p_status, ended_by = session_user,
           ended_at = statement_timestamp(), end_reason = p_reason
    WHERE id = p_request;
    DELETE FROM ils_redact.scope WHERE request_id = p_request;
    -- An approved request's grantee may be reading: a REPEATABLE READ (or exported)
    -- snapshot taken before this commits keeps seeing the scope rows deleted above, and
    -- a session of the grantee holding the audit log's lock would stop the entry below
    -- (and with it this revoke).  Its sessions in this database are ended first (the
    -- owner is a member of pg_signal_backend), and once more after the entry for any
    -- that connected meanwhile.
    IF r.status = 'approved' THEN
        v_ended := ils_redact.end_sessions_of(r.grantee);
    END IF;
    PERFORM ils_redact.audit_append('request.' || p_status, p_request,
                                    jsonb_build_object('reason', p_reason,
                                                       'previous_status', r.status)
                                    || CASE WHEN v_ended IS NULL THEN '{{}}'::jsonb
                                            ELSE jsonb_build_object('grantee_sessions_ended',
                                                                    v_ended) END);
    IF r.status = 'approved' THEN
        PERFORM ils_redact.end_sessions_of(r.grantee);
    END IF;
    RETURN NULL;
END
$fn$;

-- The other SECURITY DEFINER functions keep their bodies; they get the same pins.
ALTER FUNCTION ils_redact.sweep_expired()
    SET client_min_messages = warning SET debug_print_parse = off
    SET debug_print_rewritten = off SET debug_print_plan = off
    SET plan_cache_mode = force_generic_plan
    SET standard_conforming_strings = on SET DateStyle = 'ISO, MDY'
    SET IntervalStyle = postgres SET extra_float_digits = 1 SET bytea_output = hex;
ALTER FUNCTION ils_redact.export_check(bigint)
    SET client_min_messages = warning SET debug_print_parse = off
    SET debug_print_rewritten = off SET debug_print_plan = off
    SET plan_cache_mode = force_generic_plan
    SET standard_conforming_strings = on SET DateStyle = 'ISO, MDY'
    SET IntervalStyle = postgres SET extra_float_digits = 1 SET bytea_output = hex;
ALTER FUNCTION ils_redact.request_patron_ids(bigint)
    SET client_min_messages = warning SET debug_print_parse = off
    SET debug_print_rewritten = off SET debug_print_plan = off
    SET plan_cache_mode = force_generic_plan
    SET standard_conforming_strings = on SET DateStyle = 'ISO, MDY'
    SET IntervalStyle = postgres SET extra_float_digits = 1 SET bytea_output = hex;
ALTER FUNCTION ils_redact.setting_int(text)
    SET client_min_messages = warning SET debug_print_parse = off
    SET debug_print_rewritten = off SET debug_print_plan = off
    SET plan_cache_mode = force_generic_plan
    SET standard_conforming_strings = on SET DateStyle = 'ISO, MDY'
    SET IntervalStyle = postgres SET extra_float_digits = 1 SET bytea_output = hex;

RESET ROLE;

-- The statistics helpers plan queries over the counts they suppress: the same pins
-- (the reports that call them have them too; see stats/pgsql.py).
ALTER FUNCTION ils_redact_stats.period_bounds(date, date, text)
    SET client_min_messages = warning SET debug_print_parse = off
    SET debug_print_rewritten = off SET debug_print_plan = off
    SET plan_cache_mode = force_generic_plan
    SET standard_conforming_strings = on SET DateStyle = 'ISO, MDY'
    SET IntervalStyle = postgres SET extra_float_digits = 1 SET bytea_output = hex;
ALTER FUNCTION ils_redact_stats.first_bridge(integer, integer[], integer[])
    SET client_min_messages = warning SET debug_print_parse = off
    SET debug_print_rewritten = off SET debug_print_plan = off
    SET plan_cache_mode = force_generic_plan
    SET standard_conforming_strings = on SET DateStyle = 'ISO, MDY'
    SET IntervalStyle = postgres SET extra_float_digits = 1 SET bytea_output = hex;
ALTER FUNCTION ils_redact_stats.reachable(integer, integer[], integer[], integer, integer)
    SET client_min_messages = warning SET debug_print_parse = off
    SET debug_print_rewritten = off SET debug_print_plan = off
    SET plan_cache_mode = force_generic_plan
    SET standard_conforming_strings = on SET DateStyle = 'ISO, MDY'
    SET IntervalStyle = postgres SET extra_float_digits = 1 SET bytea_output = hex;
ALTER FUNCTION ils_redact_stats.suppress_page(integer, date, text, text[], text[], bigint[], bigint[])
    SET client_min_messages = warning SET debug_print_parse = off
    SET debug_print_rewritten = off SET debug_print_plan = off
    SET plan_cache_mode = force_generic_plan
    SET standard_conforming_strings = on SET DateStyle = 'ISO, MDY'
    SET IntervalStyle = postgres SET extra_float_digits = 1 SET bytea_output = hex;

REVOKE ALL ON FUNCTION ils_redact.unprintable_field(text[], text[], boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION ils_redact.audit_record(text, bigint, jsonb, bigint[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION ils_redact.export_record(bigint, text, text[], text, integer, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION ils_redact.log_query(text, bigint, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION ils_redact.role_mode_refusal(text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION ils_redact.end_sessions_of(name) FROM PUBLIC;

-- no staff role appends to the audit log directly any more
REVOKE EXECUTE ON FUNCTION ils_redact.audit_append(text, bigint, jsonb) FROM {disclosure};
-- the export function (owned by export_owner: NOLOGIN, granted to nobody) records its
-- export; the query gate (a member of the disclosure role in access: role) records its
-- queries.  No staff role may call export_record: it would record an export of counts of
-- its choosing.
GRANT EXECUTE ON FUNCTION ils_redact.export_record(bigint, text, text[], text, integer, integer) TO {export_owner};
GRANT EXECUTE ON FUNCTION ils_redact.log_query(text, bigint, jsonb) TO {disclosure};

-- the ILS owner's pg_dump
GRANT SELECT ON ALL TABLES IN SCHEMA ils_redact TO {ils_owner};

UPDATE ils_redact.meta SET value = '5' WHERE key = 'layer_version';
