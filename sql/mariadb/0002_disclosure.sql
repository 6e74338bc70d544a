-- ils-redact layer for MariaDB, version 2: disclosure requests, two-person approval,
-- expiring scope, and the append-only, hash-chained audit log.
--
-- The procedures have the names and arguments of the PostgreSQL functions in
-- sql/postgresql/0002_disclosure.sql (arrays travel as JSON text; times are UTC
-- DATETIME(6)).  Every routine runs as {owner}, a locked account nobody logs in as, with
-- SQL SECURITY DEFINER; the planner grants EXECUTE on each to the one role that needs it.
-- USER() (the login, as the client authenticated it) names the person, never
-- CURRENT_USER(), which inside a definer routine is the definer.  UTC_TIMESTAMP(), not
-- NOW(): the result must not depend on the session's time zone.
--
-- A refusal is returned (and logged), not raised, so that its audit entry survives; input
-- errors SIGNAL SQLSTATE 22023 (or 42000 for a column that is not an identity column).
-- Routines that other routines call return through OUT parameters and produce no result
-- set; the ones the client calls produce exactly one.

-- Settings the database enforces (written by the planner from the rules file).
CREATE TABLE IF NOT EXISTS {layer}.setting (
    `key`  VARCHAR(64) NOT NULL PRIMARY KEY,
    value  JSON NOT NULL
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS {layer}.request (
    id               BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    basis            VARCHAR(16) NOT NULL,
    agency           VARCHAR(255) NOT NULL,
    officer_name     VARCHAR(255) NOT NULL,
    officer_badge    VARCHAR(255) NOT NULL,
    case_number      VARCHAR(255) NOT NULL,
    emergency_reason TEXT NULL,
    court            VARCHAR(255) NULL,
    order_reference  VARCHAR(255) NULL,
    order_date       DATE NULL,
    columns          JSON NOT NULL,
    grantee          VARCHAR(128) NOT NULL,
    status           VARCHAR(10) NOT NULL DEFAULT 'draft',
    expires_at       DATETIME(6) NOT NULL,
    created_by       VARCHAR(128) NOT NULL,
    created_at       DATETIME(6) NOT NULL,
    approved_by      VARCHAR(128) NULL,
    approved_at      DATETIME(6) NULL,
    ended_by         VARCHAR(128) NULL,
    ended_at         DATETIME(6) NULL,
    end_reason       TEXT NULL,
    KEY request_status (status, expires_at),
    CONSTRAINT request_basis CHECK (basis IN ('court-order', 'emergency')),
    CONSTRAINT request_status_valid
        CHECK (status IN ('draft', 'approved', 'expired', 'revoked', 'closed')),
    CONSTRAINT request_agency CHECK (TRIM(agency) <> ''),
    CONSTRAINT request_officer CHECK (TRIM(officer_name) <> '' AND TRIM(officer_badge) <> ''),
    CONSTRAINT request_case CHECK (TRIM(case_number) <> ''),
    CONSTRAINT request_emergency
        CHECK (basis <> 'emergency' OR TRIM(COALESCE(emergency_reason, '')) <> ''),
    CONSTRAINT request_court_order
        CHECK (basis <> 'court-order' OR (TRIM(COALESCE(court, '')) <> ''
                                          AND TRIM(COALESCE(order_reference, '')) <> ''
                                          AND order_date IS NOT NULL)),
    CONSTRAINT request_two_person CHECK (approved_by IS NULL OR approved_by <> created_by)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS {layer}.request_patron (
    request_id BIGINT NOT NULL,
    patron_id  BIGINT NOT NULL,
    named_as   VARCHAR(255) NOT NULL,   -- the barcode or id the request named
    PRIMARY KEY (request_id, patron_id),
    CONSTRAINT request_patron_request FOREIGN KEY (request_id) REFERENCES {layer}.request (id)
) ENGINE=InnoDB;

-- Append-only and hash-chained: each row's hash covers its fields and the previous
-- row's hash, so `ils-redact audit verify` finds an altered, deleted, inserted or
-- reordered row even when root did it.  The triggers refuse UPDATE and DELETE; MariaDB
-- fires no trigger on TRUNCATE or DROP, which need the DROP privilege: no account or
-- role ils-redact creates holds DROP on this database (verify checks it).
CREATE TABLE IF NOT EXISTS {layer}.audit_log (
    seq        BIGINT NOT NULL PRIMARY KEY,
    at         DATETIME(6) NOT NULL,
    actor      VARCHAR(128) NOT NULL,
    action     VARCHAR(64) NOT NULL,
    request_id BIGINT NULL,
    detail     JSON NOT NULL,
    prev_hash  CHAR(64) NOT NULL,
    hash       CHAR(64) NOT NULL,
    KEY audit_log_request (request_id)
) ENGINE=InnoDB;

CREATE OR REPLACE DEFINER={owner} TRIGGER {layer}.audit_log_no_update
    BEFORE UPDATE ON {layer}.audit_log FOR EACH ROW
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'audit_log is append-only: UPDATE refused';

CREATE OR REPLACE DEFINER={owner} TRIGGER {layer}.audit_log_no_delete
    BEFORE DELETE ON {layer}.audit_log FOR EACH ROW
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'audit_log is append-only: DELETE refused';

-- The hash covers: seq, at (UTC, microseconds, ISO 8601 with Z), actor, action,
-- request id (empty when none), the detail JSON text as stored, and the previous hash,
-- joined by newlines: the canonical text of the PostgreSQL layer, so one verifier
-- (ils_redact.disclosure.audit) checks both.
DELIMITER $$
CREATE OR REPLACE DEFINER={owner} PROCEDURE {layer}.audit_append(
        IN p_action VARCHAR(64), IN p_request BIGINT, IN p_detail LONGTEXT, OUT p_seq BIGINT)
    MODIFIES SQL DATA SQL SECURITY DEFINER
    COMMENT 'ils-redact: append one entry to the hash-chained audit log'
BEGIN
    DECLARE v_lock BIGINT;
    DECLARE v_prev CHAR(64);
    DECLARE v_at DATETIME(6) DEFAULT UTC_TIMESTAMP(6);
    DECLARE v_actor VARCHAR(128) DEFAULT SUBSTRING_INDEX(USER(), '@', 1);
    DECLARE v_detail LONGTEXT DEFAULT COALESCE(p_detail, '{}');
    -- one writer at a time, until commit: the chain has no forks
    SELECT n INTO v_lock FROM {layer}.audit_lock WHERE id = 1 FOR UPDATE;
    -- locking reads see the latest committed head, whatever this transaction read before
    SELECT COALESCE(MAX(seq), 0) INTO p_seq FROM {layer}.audit_log LOCK IN SHARE MODE;
    SELECT COALESCE(MAX(hash), REPEAT('0', 64)) INTO v_prev
    FROM {layer}.audit_log WHERE seq = p_seq LOCK IN SHARE MODE;
    SET p_seq = p_seq + 1;
    INSERT INTO {layer}.audit_log (seq, at, actor, action, request_id, detail, prev_hash, hash)
    VALUES (p_seq, v_at, v_actor, p_action, p_request, v_detail, v_prev,
            SHA2(CONVERT(CONCAT_WS(CHAR(10 USING utf8mb4), p_seq,
                                   DATE_FORMAT(v_at, '%Y-%m-%dT%H:%i:%s.%fZ'), v_actor,
                                   p_action, COALESCE(p_request, ''), v_detail, v_prev)
                         USING utf8mb4), 256));
END$$
DELIMITER ;

-- A refusal the CLI or the gate made before anything reached a table.
DELIMITER $$
CREATE OR REPLACE DEFINER={owner} PROCEDURE {layer}.log_refusal(
        IN p_action VARCHAR(60), IN p_request BIGINT, IN p_reason TEXT)
    MODIFIES SQL DATA SQL SECURITY DEFINER
    COMMENT 'ils-redact: log a refusal made outside the database'
BEGIN
    DECLARE v_seq BIGINT;
    CALL {layer}.audit_append(CONCAT(p_action, '.refused'), p_request,
                              JSON_OBJECT('reason', p_reason), v_seq);
    SELECT v_seq AS seq;
END$$
DELIMITER ;

CREATE OR REPLACE DEFINER={owner} FUNCTION {layer}.setting_int(p_key VARCHAR(64)) RETURNS BIGINT
    READS SQL DATA SQL SECURITY DEFINER
    COMMENT 'ils-redact: an integer setting from the rules'
    RETURN (SELECT CAST(JSON_VALUE(s.value, '$') AS SIGNED) FROM {layer}.setting s
            WHERE s.`key` = p_key);

-- Access ends at expiry by itself (the identity views compare expires_at with the clock);
-- this only records it: status 'expired', scope rows removed, an audit entry.  Called by
-- the other procedures, so no event has to run.  Rows are found without locking, then
-- locked one at a time by key and checked again, so concurrent callers do not lock the
-- whole request table.
DELIMITER $$
CREATE OR REPLACE DEFINER={owner} PROCEDURE {layer}.sweep_run(OUT p_n INT)
    MODIFIES SQL DATA SQL SECURITY DEFINER
    COMMENT 'ils-redact: record the expiry of approved requests (internal)'
BEGIN
    DECLARE v_id BIGINT DEFAULT 0;
    DECLARE v_found INT;
    DECLARE v_exp DATETIME(6);
    DECLARE v_seq BIGINT;
    SET p_n = 0;
    sweep: LOOP
        SELECT MIN(r.id) INTO v_id FROM {layer}.request r
        WHERE r.id > v_id AND r.status = 'approved' AND r.expires_at <= UTC_TIMESTAMP(6);
        IF v_id IS NULL THEN
            LEAVE sweep;
        END IF;
        SELECT COUNT(*), MAX(r.expires_at) INTO v_found, v_exp FROM {layer}.request r
        WHERE r.id = v_id AND r.status = 'approved' AND r.expires_at <= UTC_TIMESTAMP(6)
        FOR UPDATE;
        IF v_found = 1 THEN
            UPDATE {layer}.request SET status = 'expired', ended_at = v_exp WHERE id = v_id;
            DELETE FROM {layer}.scope WHERE request_id = v_id;
            CALL {layer}.audit_append('request.expired', v_id,
                JSON_OBJECT('expired_at', DATE_FORMAT(v_exp, '%Y-%m-%dT%H:%i:%s.%fZ')), v_seq);
            SET p_n = p_n + 1;
        END IF;
    END LOOP;
END$$
DELIMITER ;

DELIMITER $$
CREATE OR REPLACE DEFINER={owner} PROCEDURE {layer}.sweep_expired()
    MODIFIES SQL DATA SQL SECURITY DEFINER
    COMMENT 'ils-redact: record the expiry of approved requests'
BEGIN
    DECLARE v_n INT;
    CALL {layer}.sweep_run(v_n);
    SELECT v_n AS expired;
END$$
DELIMITER ;

DELIMITER $$
CREATE OR REPLACE DEFINER={owner} PROCEDURE {layer}.request_create(
        IN p_basis VARCHAR(16), IN p_agency VARCHAR(255), IN p_officer_name VARCHAR(255),
        IN p_officer_badge VARCHAR(255), IN p_case_number VARCHAR(255),
        IN p_emergency_reason TEXT, IN p_court VARCHAR(255), IN p_order_reference VARCHAR(255),
        IN p_order_date DATE, IN p_patrons LONGTEXT, IN p_named_as LONGTEXT,
        IN p_columns LONGTEXT, IN p_expires_at DATETIME(6), IN p_grantee VARCHAR(128))
    MODIFIES SQL DATA SQL SECURITY DEFINER
    COMMENT 'ils-redact: record a disclosure request (a draft until another login approves it)'
BEGIN
    DECLARE v_id BIGINT;
    DECLARE v_n INT;
    DECLARE v_max BIGINT;
    DECLARE v_cap_hours BIGINT;
    DECLARE v_unknown LONGTEXT;
    DECLARE v_bad LONGTEXT;
    DECLARE v_seq BIGINT;
    DECLARE v_msg VARCHAR(500);
    DECLARE v_now DATETIME(6) DEFAULT UTC_TIMESTAMP(6);
    DECLARE v_user VARCHAR(128) DEFAULT SUBSTRING_INDEX(USER(), '@', 1);
    CALL {layer}.sweep_run(v_n);
    IF p_basis IS NULL OR p_basis NOT IN ('court-order', 'emergency') THEN
        SET v_msg = CONCAT('unknown basis ', COALESCE(p_basis, '(none)'),
                           ': court-order or emergency');
        SIGNAL SQLSTATE '22023' SET MESSAGE_TEXT = v_msg;
    END IF;
    IF p_patrons IS NULL OR NOT JSON_VALID(p_patrons) OR JSON_TYPE(p_patrons) <> 'ARRAY'
       OR JSON_LENGTH(p_patrons) = 0 THEN
        SIGNAL SQLSTATE '22023' SET MESSAGE_TEXT = 'a request names at least one patron';
    END IF;
    SET v_max = {layer}.setting_int('max_patrons');
    IF JSON_LENGTH(p_patrons) > v_max THEN
        SET v_msg = CONCAT('a request may name at most ', v_max,
                           ' patrons (rules: disclosure.max_patrons); ',
                           JSON_LENGTH(p_patrons), ' named');
        SIGNAL SQLSTATE '22023' SET MESSAGE_TEXT = v_msg;
    END IF;
    IF (SELECT COUNT(DISTINCT j.p) FROM JSON_TABLE(p_patrons, '$[*]'
            COLUMNS (p BIGINT PATH '$')) j) <> JSON_LENGTH(p_patrons) THEN
        SIGNAL SQLSTATE '22023' SET MESSAGE_TEXT = 'a patron is named twice';
    END IF;
    CALL {layer}.patron_unknown(p_patrons, v_unknown);
    IF v_unknown IS NOT NULL THEN
        SET v_msg = CONCAT('unknown patron ids: ', v_unknown);
        SIGNAL SQLSTATE '22023' SET MESSAGE_TEXT = v_msg;
    END IF;
    IF p_expires_at IS NULL OR p_expires_at <= v_now THEN
        SET v_msg = CONCAT('expiry ', COALESCE(p_expires_at, '(none)'), ' is not in the future');
        SIGNAL SQLSTATE '22023' SET MESSAGE_TEXT = v_msg;
    END IF;
    SET v_cap_hours = IF(p_basis = 'emergency', {layer}.setting_int('emergency_hours'),
                         {layer}.setting_int('court_order_max_days') * 24);
    IF p_expires_at > v_now + INTERVAL v_cap_hours HOUR THEN
        SET v_msg = CONCAT('expiry ', p_expires_at, ' is later than the rules allow for a ',
                           p_basis, ' request (', v_cap_hours, ' hours)');
        SIGNAL SQLSTATE '22023' SET MESSAGE_TEXT = v_msg;
    END IF;
    IF p_columns IS NULL OR NOT JSON_VALID(p_columns) OR JSON_TYPE(p_columns) <> 'ARRAY'
       OR JSON_LENGTH(p_columns) = 0 THEN
        SIGNAL SQLSTATE '22023'
            SET MESSAGE_TEXT = 'a request names the identity columns it covers';
    END IF;
    SELECT JSON_ARRAYAGG(j.c) INTO v_bad
    FROM JSON_TABLE(p_columns, '$[*]' COLUMNS (c VARCHAR(300) PATH '$')) j
    WHERE j.c IS NULL OR NOT JSON_CONTAINS(
        (SELECT s.value FROM {layer}.setting s WHERE s.`key` = 'identity_columns'),
        JSON_QUOTE(j.c));
    IF v_bad IS NOT NULL THEN
        SET v_msg = CONCAT('not identity columns (never disclosed): ', v_bad);
        SIGNAL SQLSTATE '42000' SET MESSAGE_TEXT = v_msg;
    END IF;
    INSERT INTO {layer}.request (basis, agency, officer_name, officer_badge, case_number,
                                 emergency_reason, court, order_reference, order_date,
                                 columns, grantee, status, expires_at, created_by, created_at)
    VALUES (p_basis, p_agency, p_officer_name, p_officer_badge, p_case_number,
            p_emergency_reason, p_court, p_order_reference, p_order_date,
            (SELECT JSON_ARRAYAGG(DISTINCT j.c ORDER BY j.c)
             FROM JSON_TABLE(p_columns, '$[*]' COLUMNS (c VARCHAR(300) PATH '$')) j),
            COALESCE(p_grantee, v_user), 'draft', p_expires_at, v_user, v_now);
    SET v_id = LAST_INSERT_ID();
    INSERT INTO {layer}.request_patron (request_id, patron_id, named_as)
    SELECT v_id, j.p,
           COALESCE(JSON_UNQUOTE(JSON_EXTRACT(p_named_as, CONCAT('$[', j.i - 1, ']'))), j.p)
    FROM JSON_TABLE(p_patrons, '$[*]' COLUMNS (i FOR ORDINALITY, p BIGINT PATH '$')) j;
    CALL {layer}.audit_append('request.created', v_id, (
        SELECT JSON_OBJECT(
            'basis', r.basis, 'agency', r.agency, 'officer_name', r.officer_name,
            'officer_badge', r.officer_badge, 'case_number', r.case_number,
            'emergency_reason', r.emergency_reason, 'court', r.court,
            'order_reference', r.order_reference, 'order_date', r.order_date,
            'columns', JSON_EXTRACT(r.columns, '$'), 'grantee', r.grantee,
            'expires_at', DATE_FORMAT(r.expires_at, '%Y-%m-%dT%H:%i:%s.%fZ'),
            'patrons', JSON_EXTRACT(p_patrons, '$'))
        FROM {layer}.request r WHERE r.id = v_id), v_seq);
    SELECT v_id AS request_id;
END$$
DELIMITER ;

-- Two-person rule: the login that created a request cannot approve it.
DELIMITER $$
CREATE OR REPLACE DEFINER={owner} PROCEDURE {layer}.request_approve(IN p_request BIGINT)
    MODIFIES SQL DATA SQL SECURITY DEFINER
    COMMENT 'ils-redact: approve a draft request (two-person rule); returns the refusal or NULL'
BEGIN
    DECLARE v_n INT;
    DECLARE v_seq BIGINT;
    DECLARE v_found INT;
    DECLARE v_reason VARCHAR(500) DEFAULT NULL;
    DECLARE v_created_by VARCHAR(128);
    DECLARE v_status VARCHAR(10);
    DECLARE v_grantee VARCHAR(128);
    DECLARE v_expires DATETIME(6);
    DECLARE v_user VARCHAR(128) DEFAULT SUBSTRING_INDEX(USER(), '@', 1);
    CALL {layer}.sweep_run(v_n);
    SELECT COUNT(*), MAX(r.created_by), MAX(r.status), MAX(r.grantee), MAX(r.expires_at)
    INTO v_found, v_created_by, v_status, v_grantee, v_expires
    FROM {layer}.request r WHERE r.id = p_request FOR UPDATE;
    IF v_found = 0 THEN
        SET v_reason = 'no such request';
    ELSEIF v_created_by = v_user THEN
        SET v_reason = 'the login that created a request cannot approve it (two-person rule)';
    ELSEIF v_status <> 'draft' THEN
        SET v_reason = CONCAT('request is ', v_status, ', not draft');
    ELSEIF v_expires <= UTC_TIMESTAMP(6) THEN
        SET v_reason = 'request has expired';
    END IF;
    IF v_reason IS NOT NULL THEN
        CALL {layer}.audit_append('request.approve.refused', p_request,
                                  JSON_OBJECT('reason', v_reason), v_seq);
    ELSE
        UPDATE {layer}.request SET status = 'approved', approved_by = v_user,
               approved_at = UTC_TIMESTAMP(6)
        WHERE id = p_request;
        INSERT INTO {layer}.scope (patron_id, grantee, expires_at, request_id, created_by,
                                   created_at)
        SELECT rp.patron_id, v_grantee, v_expires, p_request, v_user, UTC_TIMESTAMP(6)
        FROM {layer}.request_patron rp WHERE rp.request_id = p_request;
        CALL {layer}.audit_append('request.approved', p_request,
            JSON_OBJECT('grantee', v_grantee,
                        'expires_at', DATE_FORMAT(v_expires, '%Y-%m-%dT%H:%i:%s.%fZ'),
                        'created_by', v_created_by), v_seq);
    END IF;
    SELECT v_reason AS refusal;
END$$
DELIMITER ;

-- revoked: ended early by the library; closed: the matter is finished.
DELIMITER $$
CREATE OR REPLACE DEFINER={owner} PROCEDURE {layer}.request_end(
        IN p_request BIGINT, IN p_status VARCHAR(10), IN p_reason TEXT)
    MODIFIES SQL DATA SQL SECURITY DEFINER
    COMMENT 'ils-redact: revoke or close a request; returns the refusal or NULL'
BEGIN
    DECLARE v_n INT;
    DECLARE v_seq BIGINT;
    DECLARE v_found INT;
    DECLARE v_reason VARCHAR(500) DEFAULT NULL;
    DECLARE v_status VARCHAR(10);
    DECLARE v_user VARCHAR(128) DEFAULT SUBSTRING_INDEX(USER(), '@', 1);
    IF p_status IS NULL OR p_status NOT IN ('revoked', 'closed') THEN
        SIGNAL SQLSTATE '22023' SET MESSAGE_TEXT = 'status must be revoked or closed';
    END IF;
    CALL {layer}.sweep_run(v_n);
    SELECT COUNT(*), MAX(r.status) INTO v_found, v_status
    FROM {layer}.request r WHERE r.id = p_request FOR UPDATE;
    IF v_found = 0 THEN
        SET v_reason = 'no such request';
    ELSEIF v_status IN ('revoked', 'closed') THEN
        SET v_reason = CONCAT('request is already ', v_status);
    ELSEIF p_status = 'revoked' AND v_status NOT IN ('draft', 'approved') THEN
        SET v_reason = CONCAT('request is ', v_status,
                              '; only a draft or approved request can be revoked');
    END IF;
    IF v_reason IS NOT NULL THEN
        CALL {layer}.audit_append(
            CONCAT('request.', IF(p_status = 'revoked', 'revoke', 'close'), '.refused'),
            p_request, JSON_OBJECT('reason', v_reason), v_seq);
    ELSE
        UPDATE {layer}.request SET status = p_status, ended_by = v_user,
               ended_at = UTC_TIMESTAMP(6), end_reason = p_reason
        WHERE id = p_request;
        DELETE FROM {layer}.scope WHERE request_id = p_request;
        CALL {layer}.audit_append(CONCAT('request.', p_status), p_request,
            JSON_OBJECT('reason', p_reason, 'previous_status', v_status), v_seq);
    END IF;
    SELECT v_reason AS refusal;
END$$
DELIMITER ;

-- What the export procedure may read for one request: only when it is approved, not
-- expired, and the caller is the login it was approved for.
DELIMITER $$
CREATE OR REPLACE DEFINER={owner} PROCEDURE {layer}.export_check(
        IN p_request BIGINT, OUT p_ok BOOLEAN, OUT p_reason VARCHAR(500),
        OUT p_basis VARCHAR(16), OUT p_columns LONGTEXT, OUT p_patrons LONGTEXT)
    MODIFIES SQL DATA SQL SECURITY DEFINER
    COMMENT 'ils-redact: may the caller export this request now? (internal)'
BEGIN
    DECLARE v_n INT;
    DECLARE v_found INT;
    DECLARE v_status VARCHAR(10);
    DECLARE v_expires DATETIME(6);
    DECLARE v_grantee VARCHAR(128);
    DECLARE v_user VARCHAR(128) DEFAULT SUBSTRING_INDEX(USER(), '@', 1);
    CALL {layer}.sweep_run(v_n);
    SET p_ok = FALSE, p_reason = NULL, p_basis = NULL, p_columns = NULL, p_patrons = NULL;
    SELECT COUNT(*), MAX(r.status), MAX(r.expires_at), MAX(r.grantee), MAX(r.basis),
           MAX(r.columns)
    INTO v_found, v_status, v_expires, v_grantee, p_basis, p_columns
    FROM {layer}.request r WHERE r.id = p_request;
    IF v_found = 0 THEN
        SET p_reason = 'no such request';
    ELSEIF v_status <> 'approved' THEN
        SET p_reason = CONCAT('request is ', v_status, ', not approved');
    ELSEIF v_expires <= UTC_TIMESTAMP(6) THEN
        SET p_reason = 'request has expired';
    ELSEIF v_grantee <> v_user THEN
        SET p_reason = CONCAT('request was approved for ', v_grantee, ', not ', v_user);
    ELSE
        SET p_ok = TRUE;
        SELECT JSON_ARRAYAGG(rp.patron_id ORDER BY rp.patron_id) INTO p_patrons
        FROM {layer}.request_patron rp WHERE rp.request_id = p_request;
    END IF;
    IF NOT p_ok THEN
        SET p_basis = NULL, p_columns = NULL;
    END IF;
END$$
DELIMITER ;

-- CSV cell: always quoted; a leading = + - @ tab or CR gets an apostrophe so that a
-- spreadsheet shows the value instead of running it.
CREATE OR REPLACE DEFINER={owner} FUNCTION {layer}.csv_cell(p LONGTEXT) RETURNS LONGTEXT
    DETERMINISTIC NO SQL SQL SECURITY INVOKER
    COMMENT 'ils-redact: one CSV cell, quoted, formula-safe'
    RETURN CASE WHEN p IS NULL THEN ''
                ELSE CONCAT('"', REPLACE(IF(LEFT(p, 1) IN ('=', '+', '-', '@',
                                                           CHAR(9 USING utf8mb4),
                                                           CHAR(13 USING utf8mb4)),
                                            CONCAT('''', p), p), '"', '""'), '"') END;

INSERT INTO {layer}.meta (`key`, value) VALUES ('layer_version', '2')
ON DUPLICATE KEY UPDATE value = '2';
