-- ils-redact layer for PostgreSQL, version 2: disclosure requests, two-person approval,
-- expiring scope, and the append-only, hash-chained audit log.
--
-- Rendered by psycopg.sql (role placeholders in braces; literal braces doubled).
-- Everything is owned by the owner role; staff reach it only through SECURITY DEFINER
-- functions with a pinned search_path, EXECUTE revoked from PUBLIC and granted to the
-- one role that needs each.  session_user, never current_user, names the person: inside
-- a SECURITY DEFINER function current_user is the definer.

SET LOCAL ROLE {owner};

-- Settings the database enforces (written by the planner from the rules file).
CREATE TABLE ils_redact.setting (
    key   text PRIMARY KEY,
    value jsonb NOT NULL
);

CREATE TABLE ils_redact.request (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    basis            text NOT NULL CHECK (basis IN ('court-order', 'emergency')),
    agency           text NOT NULL CHECK (btrim(agency) <> ''),
    officer_name     text NOT NULL CHECK (btrim(officer_name) <> ''),
    officer_badge    text NOT NULL CHECK (btrim(officer_badge) <> ''),
    case_number      text NOT NULL CHECK (btrim(case_number) <> ''),
    emergency_reason text,
    court            text,
    order_reference  text,
    order_date       date,
    columns          text[] NOT NULL,
    grantee          name NOT NULL,
    status           text NOT NULL DEFAULT 'draft'
                     CHECK (status IN ('draft', 'approved', 'expired', 'revoked', 'closed')),
    expires_at       timestamptz NOT NULL,
    created_by       name NOT NULL DEFAULT session_user,
    created_at       timestamptz NOT NULL DEFAULT statement_timestamp(),
    approved_by      name,
    approved_at      timestamptz,
    ended_by         name,
    ended_at         timestamptz,
    end_reason       text,
    CHECK (basis <> 'emergency' OR btrim(coalesce(emergency_reason, '')) <> ''),
    CHECK (basis <> 'court-order' OR (btrim(coalesce(court, '')) <> ''
                                      AND btrim(coalesce(order_reference, '')) <> ''
                                      AND order_date IS NOT NULL)),
    CHECK (approved_by IS NULL OR approved_by <> created_by)
);

CREATE TABLE ils_redact.request_patron (
    request_id bigint NOT NULL REFERENCES ils_redact.request (id),
    patron_id  bigint NOT NULL,
    named_as   text NOT NULL,   -- the barcode or id the request named
    PRIMARY KEY (request_id, patron_id)
);

-- Append-only and hash-chained: each row's hash covers its fields and the previous
-- row's hash, so `ils-redact audit verify` finds an altered, deleted, inserted or
-- reordered row even when a superuser did it.
CREATE TABLE ils_redact.audit_log (
    seq        bigint PRIMARY KEY,
    at         timestamptz NOT NULL,
    actor      name NOT NULL,
    action     text NOT NULL,
    request_id bigint,
    detail     jsonb NOT NULL,
    prev_hash  text NOT NULL,
    hash       text NOT NULL
);

CREATE FUNCTION ils_redact.audit_log_is_append_only() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    RAISE EXCEPTION 'ils_redact.audit_log is append-only: % refused', TG_OP
        USING ERRCODE = '42501';
END
$fn$;
CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON ils_redact.audit_log
    FOR EACH ROW EXECUTE FUNCTION ils_redact.audit_log_is_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON ils_redact.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION ils_redact.audit_log_is_append_only();

-- The text a row's hash covers.  `ils-redact audit verify` rebuilds it in Python from the
-- columns, so a replaced copy of this function cannot hide a change.  (No SET clause: it
-- is not SECURITY DEFINER, only called from functions with a pinned search_path, and a
-- SET clause would stop PostgreSQL from inlining it.)
CREATE FUNCTION ils_redact.audit_canonical(p_seq bigint, p_at timestamptz, p_actor name,
                                           p_action text, p_request bigint, p_detail jsonb,
                                           p_prev text) RETURNS text
    LANGUAGE sql STABLE  -- to_char is STABLE: declaring less would stop the inlining
AS $fn$
    SELECT p_seq::text || E'\n'
        || to_char(p_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || E'\n'
        || p_actor::text || E'\n' || p_action || E'\n'
        || coalesce(p_request::text, '') || E'\n' || p_detail::text || E'\n' || p_prev
$fn$;

CREATE FUNCTION ils_redact.audit_append(p_action text, p_request bigint, p_detail jsonb)
    RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_seq  bigint;
    v_prev text;
    v_at   timestamptz := clock_timestamp();
BEGIN
    -- one writer at a time, until commit: the chain has no forks
    PERFORM pg_advisory_xact_lock(29674115650905188);
    SELECT a.seq, a.hash INTO v_seq, v_prev
    FROM ils_redact.audit_log a ORDER BY a.seq DESC LIMIT 1;
    v_seq := coalesce(v_seq, 0) + 1;
    v_prev := coalesce(v_prev, repeat('0', 64));
    INSERT INTO ils_redact.audit_log (seq, at, actor, action, request_id, detail, prev_hash, hash)
    VALUES (v_seq, v_at, session_user, p_action, p_request, coalesce(p_detail, '{{}}'), v_prev,
            encode(sha256(convert_to(ils_redact.audit_canonical(
                v_seq, v_at, session_user, p_action, p_request, coalesce(p_detail, '{{}}'),
                v_prev), 'UTF8')), 'hex'));
    RETURN v_seq;
END
$fn$;

-- A refusal the CLI or the gate made before anything reached a table.
CREATE FUNCTION ils_redact.log_refusal(p_action text, p_request bigint, p_reason text)
    RETURNS bigint
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT ils_redact.audit_append(p_action || '.refused', p_request,
                                   jsonb_build_object('reason', p_reason));
$fn$;

CREATE FUNCTION ils_redact.setting_int(p_key text) RETURNS integer
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT (value #>> '{{}}')::integer FROM ils_redact.setting WHERE key = p_key
$fn$;

-- Access ends at expiry by itself (the row policies compare expires_at with the clock);
-- this only records it: status 'expired', scope rows removed, an audit entry.  Called by
-- the other functions, so no job has to run.
CREATE FUNCTION ils_redact.sweep_expired() RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    r record;
    n integer := 0;
BEGIN
    FOR r IN SELECT id, expires_at FROM ils_redact.request
             WHERE status = 'approved' AND expires_at <= statement_timestamp()
             ORDER BY id FOR UPDATE
    LOOP
        UPDATE ils_redact.request SET status = 'expired', ended_at = r.expires_at
        WHERE id = r.id;
        DELETE FROM ils_redact.scope WHERE request_id = r.id;
        PERFORM ils_redact.audit_append('request.expired', r.id,
                                        jsonb_build_object('expired_at', r.expires_at));
        n := n + 1;
    END LOOP;
    RETURN n;
END
$fn$;

CREATE FUNCTION ils_redact.request_create(
        p_basis text, p_agency text, p_officer_name text, p_officer_badge text,
        p_case_number text, p_emergency_reason text, p_court text, p_order_reference text,
        p_order_date date, p_patrons bigint[], p_named_as text[], p_columns text[],
        p_expires_at timestamptz, p_grantee name)
    RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_id      bigint;
    v_allowed text[];
    v_cap     interval;
    v_bad     text[];
    v_unknown bigint[];
BEGIN
    PERFORM ils_redact.sweep_expired();
    IF p_basis IS NULL OR p_basis NOT IN ('court-order', 'emergency') THEN
        RAISE EXCEPTION 'unknown basis %: court-order or emergency', coalesce(p_basis, '(none)')
            USING ERRCODE = '22023';
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
    SELECT array_agg(c) INTO v_bad FROM unnest(p_columns) c WHERE NOT c = ANY (v_allowed);
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'not identity columns (never disclosed): %', v_bad
            USING ERRCODE = '42501';
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
    SELECT v_id, p, coalesce(p_named_as[i], p::text)
    FROM unnest(p_patrons) WITH ORDINALITY u(p, i);
    PERFORM ils_redact.audit_append('request.created', v_id, (
        SELECT jsonb_build_object(
            'basis', r.basis, 'agency', r.agency, 'officer_name', r.officer_name,
            'officer_badge', r.officer_badge, 'case_number', r.case_number,
            'emergency_reason', r.emergency_reason, 'court', r.court,
            'order_reference', r.order_reference, 'order_date', r.order_date,
            'columns', to_jsonb(r.columns), 'grantee', r.grantee,
            'expires_at', r.expires_at, 'patrons', to_jsonb(p_patrons))
        FROM ils_redact.request r WHERE r.id = v_id));
    RETURN v_id;
END
$fn$;

-- Two-person rule: the login that created a request cannot approve it.  A refusal is
-- returned (and logged), not raised, so that the log entry survives.
CREATE FUNCTION ils_redact.request_approve(p_request bigint) RETURNS text
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
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
    ELSIF r.status <> 'draft' THEN
        v_reason := format('request is %s, not draft', r.status);
    ELSIF r.expires_at <= statement_timestamp() THEN
        v_reason := 'request has expired';
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

-- revoked: ended early by the library; closed: the matter is finished.
CREATE FUNCTION ils_redact.request_end(p_request bigint, p_status text, p_reason text)
    RETURNS text
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    r ils_redact.request;
    v_reason text;
BEGIN
    IF p_status NOT IN ('revoked', 'closed') THEN
        RAISE EXCEPTION 'status must be revoked or closed' USING ERRCODE = '22023';
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
    PERFORM ils_redact.audit_append('request.' || p_status, p_request,
                                    jsonb_build_object('reason', p_reason,
                                                       'previous_status', r.status));
    RETURN NULL;
END
$fn$;

-- What the export function may read for one request: only when it is approved, not
-- expired, and the caller is the login it was approved for.
CREATE FUNCTION ils_redact.export_check(p_request bigint,
        OUT ok boolean, OUT reason text, OUT basis text, OUT columns text[],
        OUT patrons bigint[])
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
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
    ELSIF r.expires_at <= statement_timestamp() THEN
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

-- Patrons of one request, for the query gate's explicit scope predicate: empty unless the
-- request is approved, unexpired and approved for the caller.  The row policies still
-- apply underneath.
CREATE FUNCTION ils_redact.request_patron_ids(p_request bigint) RETURNS bigint[]
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT coalesce(array_agg(rp.patron_id ORDER BY rp.patron_id), '{{}}'::bigint[])
    FROM ils_redact.request r JOIN ils_redact.request_patron rp ON rp.request_id = r.id
    WHERE r.id = p_request AND r.status = 'approved'
      AND r.expires_at > statement_timestamp() AND r.grantee = session_user
$fn$;

-- CSV cell: always quoted; a leading = + - @ tab or CR gets an apostrophe so that a
-- spreadsheet shows the value instead of running it.  (Inlinable: no SET clause, see
-- audit_canonical.)
CREATE FUNCTION ils_redact.csv_cell(p text) RETURNS text
    LANGUAGE sql IMMUTABLE
AS $fn$
    SELECT CASE WHEN p IS NULL THEN ''
                ELSE '"' || replace(CASE WHEN p ~ '^[=+\-@\t\r]' THEN '''' || p ELSE p END,
                                    '"', '""') || '"' END
$fn$;

RESET ROLE;

REVOKE ALL ON FUNCTION ils_redact.audit_log_is_append_only() FROM PUBLIC;
REVOKE ALL ON FUNCTION ils_redact.audit_canonical(bigint, timestamptz, name, text, bigint, jsonb, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ils_redact.audit_append(text, bigint, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION ils_redact.log_refusal(text, bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ils_redact.setting_int(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ils_redact.sweep_expired() FROM PUBLIC;
REVOKE ALL ON FUNCTION ils_redact.request_create(text, text, text, text, text, text, text, text, date, bigint[], text[], text[], timestamptz, name) FROM PUBLIC;
REVOKE ALL ON FUNCTION ils_redact.request_approve(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION ils_redact.request_end(bigint, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ils_redact.export_check(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION ils_redact.request_patron_ids(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION ils_redact.csv_cell(text) FROM PUBLIC;

-- admin: the staff who create, approve, revoke and close requests, and read the record
GRANT EXECUTE ON FUNCTION ils_redact.request_create(text, text, text, text, text, text, text, text, date, bigint[], text[], text[], timestamptz, name) TO {admin};
GRANT EXECUTE ON FUNCTION ils_redact.request_approve(bigint) TO {admin};
GRANT EXECUTE ON FUNCTION ils_redact.request_end(bigint, text, text) TO {admin};
GRANT EXECUTE ON FUNCTION ils_redact.sweep_expired() TO {admin};
GRANT EXECUTE ON FUNCTION ils_redact.log_refusal(text, bigint, text) TO {admin}, {disclosure}, {exporter};
GRANT SELECT ON ils_redact.request, ils_redact.request_patron, ils_redact.audit_log,
               ils_redact.setting TO {admin};

-- disclosure: what its own export function calls (it owns that function; see the plan)
GRANT EXECUTE ON FUNCTION ils_redact.export_check(bigint) TO {disclosure};
GRANT EXECUTE ON FUNCTION ils_redact.audit_append(text, bigint, jsonb) TO {disclosure};
GRANT EXECUTE ON FUNCTION ils_redact.request_patron_ids(bigint) TO {disclosure};
GRANT EXECUTE ON FUNCTION ils_redact.csv_cell(text) TO {disclosure};
GRANT USAGE ON SCHEMA ils_redact TO {exporter};

-- the ILS owner's pg_dump
GRANT SELECT ON ALL TABLES IN SCHEMA ils_redact TO {ils_owner};
GRANT SELECT ON ALL SEQUENCES IN SCHEMA ils_redact TO {ils_owner};

UPDATE ils_redact.meta SET value = '2' WHERE key = 'layer_version';
