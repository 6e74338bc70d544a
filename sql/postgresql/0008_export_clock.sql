-- ils-redact layer for PostgreSQL, version 8: an export is judged by the clock when it
-- reads, not when the caller's statement began.
--
-- Rendered by psycopg.sql (role placeholders in braces; literal braces doubled).
--
-- Until version 7 export_check, export_record, log_query and request_patron_ids compared a
-- request's expiry with statement_timestamp(): the start of the caller's statement.  One
-- statement begun before the expiry that calls the export late (a lateral join after
-- pg_sleep, or after waiting for an advisory lock the grantee holds) disclosed after the
-- request had expired, and the manifest's exported_at was the statement's start, a time
-- before the expiry (the fourth adversarial review).  These four now read clock_timestamp(),
-- the time the check runs, and the manifest says when the document was made.  The row
-- policies of access: role still compare with the statement's start (their scope is one
-- value per statement): docs/threat-model.md, known limits.

SET LOCAL ROLE {owner};

CREATE OR REPLACE FUNCTION ils_redact.export_check(p_request bigint,
        OUT ok boolean, OUT reason text, OUT basis text, OUT columns text[],
        OUT patrons bigint[])
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
BEGIN
    PERFORM ils_redact.sweep_expired();
    ok := false;
    SELECT * INTO r FROM ils_redact.request WHERE id = p_request;
    IF NOT FOUND THEN
        reason := 'no such request';
    ELSIF r.status <> 'approved' THEN
        reason := format('request is %s, not approved', r.status);
    ELSIF r.expires_at <= clock_timestamp() THEN
        reason := 'request has expired';
    ELSIF r.grantee <> session_user THEN
        reason := format('request was approved for %s, not %s', r.grantee, session_user);
    ELSE
        ok := true;
        basis := r.basis;
        columns := r.columns;
        SELECT array_agg(rp.patron_id ORDER BY rp.patron_id) INTO patrons
        FROM ils_redact.request_patron rp WHERE rp.request_id = r.id;
    END IF;
END
$fn$;

CREATE OR REPLACE FUNCTION ils_redact.export_record(p_request bigint, p_format text, p_columns text[],
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
    IF NOT FOUND OR r.status <> 'approved' OR r.expires_at <= clock_timestamp()
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
        'exported_by', session_user, 'exported_at', clock_timestamp());
    seq := ils_redact.audit_record('export', p_request, manifest, v_ids);
END
$fn$;

CREATE OR REPLACE FUNCTION ils_redact.log_query(p_action text, p_request bigint, p_detail jsonb)
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
            r.status <> 'approved' OR r.expires_at <= clock_timestamp())) THEN
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

CREATE OR REPLACE FUNCTION ils_redact.request_patron_ids(p_request bigint) RETURNS bigint[]
    LANGUAGE sql STABLE SECURITY DEFINER
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
    SELECT coalesce(array_agg(rp.patron_id ORDER BY rp.patron_id), '{{}}'::bigint[])
    FROM ils_redact.request r JOIN ils_redact.request_patron rp ON rp.request_id = r.id
    WHERE r.id = p_request AND r.status = 'approved'
      AND r.expires_at > clock_timestamp() AND r.grantee = session_user
$fn$;

RESET ROLE;

UPDATE ils_redact.meta SET value = '8' WHERE key = 'layer_version';
