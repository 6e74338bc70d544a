-- ils-redact layer for PostgreSQL, version 7: whom a request may disclose to, and audit
-- entries no transaction can carry into PREPARE TRANSACTION.
--
-- Rendered by psycopg.sql (role placeholders in braces, ``{{exporter_name}}`` that role
-- as a string literal; literal braces doubled).
--
-- 1. Until version 6 a request's grantee could be any login.  Ending an approved request
--    ends its grantee's sessions (version 5, so that an open snapshot stops reading), so
--    a request recorded "for" the ILS application's login, once approved and revoked,
--    ended the application's sessions.  A grantee must now be a login in the exporter or
--    the disclosure role, and neither a superuser, a BYPASSRLS or REPLICATION login, nor
--    the ILS owner, the database's owner or a member of either: checked when a request is
--    recorded and again when it is approved (a trigger on the request table, so every
--    path is covered); and end_sessions_of ends the sessions of such a login only.
-- 2. A prepared transaction (servers with max_prepared_transactions > 0) outlives its
--    session and has no backend to end: one that had appended to the audit log held the
--    chain's lock until a superuser ran ROLLBACK PREPARED, stopping every approval,
--    export and revoke (version 5 ends a stale holder's session, which a prepared
--    transaction does not have).  Every entry now also queues a notification, and
--    PostgreSQL refuses to PREPARE a transaction that has notified.  The channel's name
--    is random per database and kept in a table only the owner reads, so no other
--    login can LISTEN for it and learn when entries are written.
-- 3. Request text refuses Unicode's default-ignorable characters too (bidi marks,
--    zero-width characters, the soft hyphen, blank fillers, variation selectors, tags).

SET LOCAL ROLE {owner};

CREATE FUNCTION ils_redact.grantee_refusal(p_login name) RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    r pg_catalog.pg_roles;
    v_dba oid;
BEGIN
    SELECT * INTO r FROM pg_catalog.pg_roles WHERE rolname = p_login;
    IF NOT FOUND THEN
        RETURN 'there is no such login';
    ELSIF NOT r.rolcanlogin THEN
        RETURN 'it is not a login';
    ELSIF r.rolsuper OR r.rolbypassrls OR r.rolreplication THEN
        RETURN 'it is a superuser, BYPASSRLS or REPLICATION login';
    END IF;
    SELECT d.datdba INTO v_dba FROM pg_catalog.pg_database d
    WHERE d.datname = current_database();
    IF pg_has_role(r.oid, v_dba, 'MEMBER') THEN
        RETURN 'it is the database owner or a member of it';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = {ils_owner_name}) THEN
        IF pg_has_role(r.oid, {ils_owner_name}, 'MEMBER') THEN
            RETURN 'it is the ILS owner or a member of it';
        END IF;
    END IF;
    IF NOT (pg_has_role(r.oid, {exporter_name}, 'MEMBER')
               OR pg_has_role(r.oid, {disclosure_name}, 'MEMBER')) THEN
        RETURN 'it is in neither the exporter nor the disclosure role';
    END IF;
    RETURN NULL;
END
$fn$;

CREATE FUNCTION ils_redact.request_grantee_check() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_why text;
BEGIN
    IF TG_OP = 'INSERT' OR (NEW.status = 'approved' AND OLD.status <> 'approved') THEN
        v_why := ils_redact.grantee_refusal(NEW.grantee);
        IF v_why IS NOT NULL THEN
            RAISE EXCEPTION 'a request discloses only to a login in the exporter or disclosure role, and % cannot be its grantee: %',
                left(regexp_replace(NEW.grantee::text, '[^[:print:]]', '?', 'g'), 80), v_why
                USING ERRCODE = '42501';
        END IF;
    END IF;
    RETURN NEW;
END
$fn$;

CREATE TRIGGER request_grantee_check BEFORE INSERT OR UPDATE OF status ON ils_redact.request
    FOR EACH ROW EXECUTE FUNCTION ils_redact.request_grantee_check();

-- As in version 5, for a login that may be a grantee only.
CREATE OR REPLACE FUNCTION ils_redact.end_sessions_of(p_login name) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_pid   integer;
    v_ended integer[] := '{{}}';
    v_kept  integer[] := '{{}}';
    v_why   text := ils_redact.grantee_refusal(p_login);
BEGIN
    IF v_why IS NOT NULL THEN
        RETURN jsonb_build_object('pids', '[]'::jsonb, 'not_ended', '[]'::jsonb,
                                  'refused', v_why);
    END IF;
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

-- the audit log's notification channel: one row, read by the owner only
CREATE TABLE ils_redact.audit_channel (
    id integer PRIMARY KEY CHECK (id = 1),
    name text NOT NULL
);
INSERT INTO ils_redact.audit_channel (id, name)
VALUES (1, 'ils_redact_' || replace(gen_random_uuid()::text, '-', ''));

CREATE FUNCTION ils_redact.audit_log_notify() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    PERFORM pg_notify(coalesce((SELECT c.name FROM ils_redact.audit_channel c WHERE c.id = 1),
                               'ils_redact_audit'), '');
    RETURN NULL;
END
$fn$;

CREATE TRIGGER audit_log_no_prepare AFTER INSERT ON ils_redact.audit_log
    FOR EACH ROW EXECUTE FUNCTION ils_redact.audit_log_notify();

-- 3. Request text refuses the characters that hide themselves on a printed form
--    (bidirectional marks, zero-width characters, the byte-order mark, interlinear
--    annotation, tag characters) besides version 5's controls and overrides.
CREATE OR REPLACE FUNCTION ils_redact.unprintable_field(p_names text[], p_values text[],
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
                   THEN '[\u0001-\u0008\u000b-\u001f\u007f-\u009f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u2028-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\uffff\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]'
                   ELSE '[\u0001-\u001f\u007f-\u009f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u2028-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\uffff\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]' END
$fn$;

REVOKE ALL ON FUNCTION ils_redact.grantee_refusal(name) FROM PUBLIC;
REVOKE ALL ON FUNCTION ils_redact.request_grantee_check() FROM PUBLIC;
REVOKE ALL ON FUNCTION ils_redact.audit_log_notify() FROM PUBLIC;

-- the ILS owner's pg_dump (it reads every table of the database anyway)
GRANT SELECT ON TABLE ils_redact.audit_channel TO {ils_owner};

RESET ROLE;

UPDATE ils_redact.meta SET value = '7' WHERE key = 'layer_version';
