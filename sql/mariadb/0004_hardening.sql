-- ils-redact layer for MariaDB, version 4: the caller's account, the real clock, bounded
-- and traced patron lookups, fixed audit actions, field limits, the recorded catalog.
--
-- Placeholders as in 0001-0003 ({layer}, {owner}, {stats_owner}).  Every statement is
-- idempotent (MariaDB commits DDL statement by statement; an interrupted install runs
-- this file again from the top).  What each part closes:
--
-- * The account, not the name before the first '@'.  A MariaDB user name may contain
--   '@' (USER() of 'victim@x'@'%' is 'victim@x@host'); the host part never does.  Who a
--   session is: caller_account(), the account the server matched, found as the server
--   finds it (the most specific host pattern, an anonymous account losing to a named
--   one on the same host; NULL when that cannot be told).  It reads mysql.global_priv
--   (User and Host only), which costs a table open: the scoped views and lookups, the
--   fast path, compare the user name (split at the LAST '@') and the client host
--   against the grantee's host pattern instead, and approval refuses a grantee whose
--   user name another account shares (`verify` reports such names appearing later) or
--   whose host is an address/mask.
-- * The real clock.  SET timestamp moves NOW(), UTC_TIMESTAMP() and CURRENT_TIMESTAMP
--   for the session that sets it; SYSDATE() follows the server's clock (install refuses
--   a server started with --sysdate-is-now, which makes SYSDATE() an alias of NOW()).
--   clock_utc() reads SYSDATE() with the session's time zone pinned to UTC (no DST
--   ambiguity, whatever time_zone the caller set) and puts the zone back.  Expiry,
--   scope, audit times and statistics periods read it; audit times never decrease.
-- * Lookups leave a durable trace.  patron_lookup resolves at most
--   disclosure.max_patrons patrons per call, and an account may have at most that many
--   looked up in the last hour that no request of its own names; each lookup (and each
--   export) writes a row to `trace` BEFORE it returns data.  `trace` is Aria, which
--   ROLLBACK does not undo, append-only (triggers), written only by the definer's
--   routines; `verify` reconciles it with the audit log.
-- * Only the layer's routines append to the audit log, with fixed actions: no role
--   holds EXECUTE on audit_append; log_refusal takes a fixed set of actions and at most
--   500 characters of reason; query_log the three entries of a gated query.
-- * Field limits.  A scope row remembers whether its request covers every identity
--   field (all_fields).  The identity views and lookups return only such rows; the
--   export, which renders only the request's fields, reads the others.  In access mode
--   `role` a request for fewer fields is refused (the disclosure role reads whole rows).

-- -- the clock -------------------------------------------------------------------------

DELIMITER $$
CREATE OR REPLACE DEFINER={owner} FUNCTION {layer}.clock_utc() RETURNS DATETIME(6)
    NOT DETERMINISTIC NO SQL SQL SECURITY INVOKER
    COMMENT 'ils-redact: the server clock in UTC (SYSDATE), whatever the session set'
BEGIN
    DECLARE v_tz VARCHAR(64) DEFAULT @@session.time_zone;
    DECLARE v_now DATETIME(6);
    SET @@session.time_zone = '+00:00';
    SET v_now = SYSDATE(6);
    SET @@session.time_zone = v_tz;
    RETURN v_now;
END$$
DELIMITER ;

-- -- accounts ------------------------------------------------------------------------

-- The account this session authenticated as ('user@host', host as in the grant
-- tables), or NULL when it cannot be told: several accounts rank first, the best match
-- is anonymous, a host pattern escapes a wildcard, or the server resolves host names
-- and the name is not unique (the client's address is then unknown).
DELIMITER $$
CREATE OR REPLACE DEFINER={owner} FUNCTION {layer}.caller_account() RETURNS VARCHAR(400)
    NOT DETERMINISTIC READS SQL DATA SQL SECURITY DEFINER
    COMMENT 'ils-redact: the account this session logged in as (user@host), or NULL'
BEGIN
    DECLARE v_u VARCHAR(400) DEFAULT USER();
    DECLARE v_host VARCHAR(255) DEFAULT SUBSTRING_INDEX(v_u, '@', -1);
    DECLARE v_name VARCHAR(400) DEFAULT LEFT(v_u, CHAR_LENGTH(v_u) - CHAR_LENGTH(v_host) - 1);
    DECLARE v_ip BIGINT DEFAULT INET_ATON(v_host);
    DECLARE v_blind BOOLEAN DEFAULT (@@skip_name_resolve = 0 AND v_ip IS NULL
                                     AND v_host <> 'localhost');
    DECLARE v_n INT;
    DECLARE v_user VARCHAR(400);
    DECLARE v_h VARCHAR(255);
    -- the matching accounts, ranked as MariaDB ranks them (host pattern first: exact,
    -- then by the position of its first wildcard, '%' last; then a named user before
    -- the anonymous one); the best rank must hold exactly one named account
    SELECT COUNT(*), MAX(m.u), MAX(m.h) INTO v_n, v_user, v_h
    FROM (SELECT IF(g.Host LIKE '%\\\\%', '', g.User) AS u, g.Host AS h,
                 IF(v_blind, 0,
                    IF(g.Host LIKE '%\\\\%', 1073741824,
                       256 * IF(LOCATE('%', g.Host) = 0 AND LOCATE('_', g.Host) = 0, 128,
                                LEAST(127, LEAST(IF(LOCATE('%', g.Host) = 0, 999,
                                                    LOCATE('%', g.Host)),
                                                 IF(LOCATE('_', g.Host) = 0, 999,
                                                    LOCATE('_', g.Host)))
                                           + IF(g.Host = '%', 0, 1)))
                       + IF(g.User = '', 0, 128))) AS rnk
          FROM mysql.global_priv g
          WHERE g.User IN (v_name, '') AND g.Host <> ''
            AND (v_blind OR IF(LOCATE('/', g.Host) > 0,
                               v_ip & INET_ATON(SUBSTRING_INDEX(g.Host, '/', -1))
                               = INET_ATON(SUBSTRING_INDEX(g.Host, '/', 1)),
                               v_host LIKE g.Host))) m
    GROUP BY m.rnk ORDER BY m.rnk DESC LIMIT 1;
    IF v_n IS NULL OR v_n <> 1 OR v_user IS NULL OR v_user = '' THEN
        RETURN NULL;
    END IF;
    RETURN CONCAT(v_user, '@', v_h);
END$$
DELIMITER ;

-- The one account a login names: 'user' (the only account of that name) or
-- 'user@host' exactly as in the grant tables; NULL if none or several.
DELIMITER $$
CREATE OR REPLACE DEFINER={owner} FUNCTION {layer}.resolve_account(p_login VARCHAR(400))
    RETURNS VARCHAR(400)
    NOT DETERMINISTIC READS SQL DATA SQL SECURITY DEFINER
    COMMENT 'ils-redact: the account a login names (user or user@host), or NULL'
BEGIN
    DECLARE v_host VARCHAR(255) DEFAULT SUBSTRING_INDEX(p_login, '@', -1);
    DECLARE v_name VARCHAR(400) DEFAULT
        IF(LOCATE('@', p_login) > 0, LEFT(p_login, CHAR_LENGTH(p_login) - CHAR_LENGTH(v_host) - 1),
           NULL);
    DECLARE v_n INT;
    DECLARE v_found VARCHAR(400);
    SELECT COUNT(*), MAX(CONCAT(g.User, '@', g.Host)) INTO v_n, v_found
    FROM mysql.global_priv g
    WHERE g.Host <> '' AND (g.User = p_login OR (g.User = v_name AND g.Host = v_host));
    RETURN IF(v_n = 1, v_found, NULL);
END$$
DELIMITER ;

-- How many other accounts share the user name of an account ('user@host').
DELIMITER $$
CREATE OR REPLACE DEFINER={owner} FUNCTION {layer}.account_namesakes(p_account VARCHAR(400))
    RETURNS INT
    NOT DETERMINISTIC READS SQL DATA SQL SECURITY DEFINER
    COMMENT 'ils-redact: accounts other than this one with the same user name'
BEGIN
    DECLARE v_host VARCHAR(255) DEFAULT SUBSTRING_INDEX(p_account, '@', -1);
    DECLARE v_name VARCHAR(400) DEFAULT
        LEFT(p_account, CHAR_LENGTH(p_account) - CHAR_LENGTH(v_host) - 1);
    RETURN (SELECT COUNT(*) FROM mysql.global_priv g
            WHERE g.User = v_name AND g.Host <> '' AND g.Host <> v_host);
END$$
DELIMITER ;

-- The account a routine acts for: the caller's, or a refusal that says why not.
DELIMITER $$
CREATE OR REPLACE DEFINER={owner} PROCEDURE {layer}.caller_required(OUT p_account VARCHAR(400))
    READS SQL DATA SQL SECURITY DEFINER
    COMMENT 'ils-redact: the caller''s account, or SIGNAL (internal)'
BEGIN
    DECLARE v_msg VARCHAR(600);
    SET p_account = {layer}.caller_account();
    IF p_account IS NULL THEN
        SET v_msg = CONCAT('ils-redact cannot tell which account ', USER(), ' logged in as ',
                           '(another account has the same user name, or an anonymous account ',
                           'matches): ask the administrator to rename one');
        SIGNAL SQLSTATE '28000' SET MESSAGE_TEXT = v_msg;
    END IF;
END$$
DELIMITER ;

-- Requests, scope rows and the audit log name accounts ('user@host', up to 128 + 1 + 255
-- characters), not user names.
ALTER TABLE {layer}.request
    MODIFY grantee VARCHAR(400) NOT NULL,
    MODIFY created_by VARCHAR(400) NOT NULL,
    MODIFY approved_by VARCHAR(400) NULL,
    MODIFY ended_by VARCHAR(400) NULL;

ALTER TABLE {layer}.audit_log MODIFY actor VARCHAR(400) NOT NULL;

ALTER TABLE {layer}.scope
    MODIFY grantee VARCHAR(400) NOT NULL,
    MODIFY created_by VARCHAR(400) NOT NULL,
    ADD COLUMN IF NOT EXISTS grantee_user VARCHAR(128) NOT NULL DEFAULT '' AFTER grantee,
    ADD COLUMN IF NOT EXISTS grantee_host VARCHAR(255) NOT NULL DEFAULT '' AFTER grantee_user,
    ADD COLUMN IF NOT EXISTS all_fields TINYINT NOT NULL DEFAULT 0,
    ADD KEY IF NOT EXISTS scope_account (grantee_user, all_fields, expires_at, grantee_host,
                                         patron_id);

ALTER TABLE {layer}.scope DROP KEY IF EXISTS scope_grantee;

-- Rows written before version 4 name a user; the account is the only one of that name
-- (a name several accounts share keeps no scope: nothing matches it).
UPDATE {layer}.request r
JOIN (SELECT g.User AS u, MAX(g.Host) AS h FROM mysql.global_priv g WHERE g.Host <> ''
      GROUP BY g.User HAVING COUNT(*) = 1) a ON a.u = r.grantee
SET r.grantee = CONCAT(a.u, '@', a.h)
WHERE LOCATE('@', r.grantee) = 0;

UPDATE {layer}.request r
JOIN (SELECT g.User AS u, MAX(g.Host) AS h FROM mysql.global_priv g WHERE g.Host <> ''
      GROUP BY g.User HAVING COUNT(*) = 1) a ON a.u = r.created_by
SET r.created_by = CONCAT(a.u, '@', a.h)
WHERE LOCATE('@', r.created_by) = 0;

UPDATE {layer}.request r
JOIN (SELECT g.User AS u, MAX(g.Host) AS h FROM mysql.global_priv g WHERE g.Host <> ''
      GROUP BY g.User HAVING COUNT(*) = 1) a ON a.u = r.approved_by
SET r.approved_by = CONCAT(a.u, '@', a.h)
WHERE LOCATE('@', r.approved_by) = 0;

UPDATE {layer}.scope s
JOIN (SELECT g.User AS u, MAX(g.Host) AS h FROM mysql.global_priv g WHERE g.Host <> ''
      GROUP BY g.User HAVING COUNT(*) = 1) a ON a.u = s.grantee
SET s.grantee = CONCAT(a.u, '@', a.h)
WHERE s.grantee_user = '' AND LOCATE('@', s.grantee) = 0;

UPDATE {layer}.scope s
SET s.grantee_host = SUBSTRING_INDEX(s.grantee, '@', -1),
    s.grantee_user = LEFT(s.grantee, CHAR_LENGTH(s.grantee)
                                     - CHAR_LENGTH(SUBSTRING_INDEX(s.grantee, '@', -1)) - 1)
WHERE s.grantee_user = '' AND LOCATE('@', s.grantee) > 0;

-- -- settings and field limits ---------------------------------------------------------

CREATE OR REPLACE DEFINER={owner} FUNCTION {layer}.setting_text(p_key VARCHAR(64))
    RETURNS VARCHAR(255)
    READS SQL DATA SQL SECURITY DEFINER
    COMMENT 'ils-redact: a text setting from the rules'
    RETURN (SELECT JSON_VALUE(s.value, '$') FROM {layer}.setting s WHERE s.`key` = p_key);

-- Whether a request's columns (a JSON array) are every identity column of the rules.
CREATE OR REPLACE DEFINER={owner} FUNCTION {layer}.covers_all(p_columns LONGTEXT)
    RETURNS BOOLEAN
    READS SQL DATA SQL SECURITY DEFINER
    COMMENT 'ils-redact: does a column list cover every identity column? (internal)'
    RETURN p_columns IS NOT NULL AND JSON_VALID(p_columns) AND NOT EXISTS (
        SELECT 1 FROM {layer}.setting s,
               JSON_TABLE(s.value, '$[*]' COLUMNS (c VARCHAR(300) PATH '$')) j
        WHERE s.`key` = 'identity_columns' AND NOT JSON_CONTAINS(p_columns, JSON_QUOTE(j.c)));

UPDATE {layer}.scope s JOIN {layer}.request r ON r.id = s.request_id
SET s.all_fields = {layer}.covers_all(r.columns)
WHERE s.all_fields <> {layer}.covers_all(r.columns);

-- -- the trace ---------------------------------------------------------------------------

-- Every patron lookup and export, written before data is returned.  Aria: a ROLLBACK
-- of the caller's transaction leaves the row (crash-safe with TRANSACTIONAL=1).
CREATE TABLE IF NOT EXISTS {layer}.trace (
    seq        BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    at         DATETIME(6) NOT NULL,
    account    VARCHAR(400) NOT NULL,
    action     VARCHAR(32) NOT NULL,   -- lookup | lookup.refused | export
    request_id BIGINT NULL,
    patrons    LONGTEXT NOT NULL,      -- JSON array of patron ids
    detail     LONGTEXT NOT NULL,      -- JSON object
    conn       BIGINT UNSIGNED NOT NULL,
    KEY trace_account (account, at)
) ENGINE=Aria TRANSACTIONAL=1;

CREATE OR REPLACE DEFINER={owner} TRIGGER {layer}.trace_no_update
    BEFORE UPDATE ON {layer}.trace FOR EACH ROW
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'trace is append-only: UPDATE refused';

CREATE OR REPLACE DEFINER={owner} TRIGGER {layer}.trace_no_delete
    BEFORE DELETE ON {layer}.trace FOR EACH ROW
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'trace is append-only: DELETE refused';

-- -- the recorded catalog --------------------------------------------------------------

-- The Koha catalog as install read it (tables, columns, keys, views, routines), for the
-- query gate of staff logins, which cannot read the Koha tables' information_schema
-- rows.  Refreshed by every install that finds the catalog changed.
CREATE TABLE IF NOT EXISTS {layer}.catalog_snapshot (
    id             TINYINT NOT NULL PRIMARY KEY,
    sha256         CHAR(64) NOT NULL,
    taken_at       DATETIME(6) NOT NULL,
    server_version VARCHAR(100) NOT NULL,
    doc            LONGTEXT NOT NULL
) ENGINE=InnoDB;

-- -- the audit log -----------------------------------------------------------------------

-- As in version 2, with the actor's account and a time from the real clock, taken
-- after the lock and never earlier than the entry before (a stepped-back server clock
-- cannot make the chain's times decrease).
DELIMITER $$
CREATE OR REPLACE DEFINER={owner} PROCEDURE {layer}.audit_append(
        IN p_action VARCHAR(64), IN p_request BIGINT, IN p_detail LONGTEXT, OUT p_seq BIGINT)
    MODIFIES SQL DATA SQL SECURITY DEFINER
    COMMENT 'ils-redact: append one entry to the hash-chained audit log (internal)'
BEGIN
    DECLARE v_lock BIGINT;
    DECLARE v_prev CHAR(64);
    DECLARE v_last DATETIME(6);
    DECLARE v_at DATETIME(6);
    DECLARE v_actor VARCHAR(400) DEFAULT COALESCE({layer}.caller_account(),
                                                   CONCAT(USER(), ' (account unresolved)'));
    DECLARE v_detail LONGTEXT DEFAULT COALESCE(p_detail, '{}');
    DECLARE v_wait BIGINT DEFAULT @@SESSION.innodb_lock_wait_timeout;
    -- Another transaction holds the audit lock (an open transaction that appended, an
    -- admin's SELECT ... FOR UPDATE on the log, a prepared XA transaction, which outlives
    -- its session): give up after a few seconds, naming the holder when the definer may
    -- see it (INNODB_TRX needs PROCESS, which the definer is not given).
    DECLARE EXIT HANDLER FOR 1205
    BEGIN
        DECLARE v_holder VARCHAR(1000) DEFAULT NULL;
        DECLARE v_msg VARCHAR(1500);
        BEGIN
            DECLARE CONTINUE HANDLER FOR SQLEXCEPTION SET v_holder = NULL;
            SELECT GROUP_CONCAT(IF(t.trx_mysql_thread_id = 0,
                                   CONCAT('a prepared XA transaction started ', t.trx_started),
                                   CONCAT('connection ', t.trx_mysql_thread_id, ' (',
                                          COALESCE(p.USER, '?'), ') in a transaction since ',
                                          t.trx_started))
                                ORDER BY t.trx_started SEPARATOR '; ')
            INTO v_holder
            FROM information_schema.INNODB_TRX t
            LEFT JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id
            WHERE t.trx_mysql_thread_id <> CONNECTION_ID() AND t.trx_rows_locked > 0
              AND t.trx_state <> 'LOCK WAIT';
        END;
        SET SESSION innodb_lock_wait_timeout = v_wait;
        SET v_msg = CONCAT('the audit log is locked by another transaction (waited ',
                           5, ' s): ',
                           COALESCE(CONCAT('held by ', v_holder),
                                    'ils-redact verify names the holder (an open transaction '
                                    'or a prepared XA transaction: XA RECOVER as root, then '
                                    'XA ROLLBACK ''xid'')'));
        SIGNAL SQLSTATE 'HY000' SET MYSQL_ERRNO = 1205, MESSAGE_TEXT = v_msg;
    END;
    -- any other error: the caller's session keeps its own lock wait
    DECLARE EXIT HANDLER FOR SQLEXCEPTION
    BEGIN
        SET SESSION innodb_lock_wait_timeout = v_wait;
        RESIGNAL;
    END;
    SET SESSION innodb_lock_wait_timeout = LEAST(v_wait, 5);
    SELECT n INTO v_lock FROM {layer}.audit_lock WHERE id = 1 FOR UPDATE;
    SELECT COALESCE(MAX(seq), 0) INTO p_seq FROM {layer}.audit_log LOCK IN SHARE MODE;
    SELECT COALESCE(MAX(hash), REPEAT('0', 64)), MAX(at) INTO v_prev, v_last
    FROM {layer}.audit_log WHERE seq = p_seq LOCK IN SHARE MODE;
    SET v_at = GREATEST({layer}.clock_utc(), COALESCE(v_last, '1000-01-01'));
    SET p_seq = p_seq + 1;
    INSERT INTO {layer}.audit_log (seq, at, actor, action, request_id, detail, prev_hash, hash)
    VALUES (p_seq, v_at, v_actor, p_action, p_request, v_detail, v_prev,
            SHA2(CONVERT(CONCAT_WS(CHAR(10 USING utf8mb4), p_seq,
                                   DATE_FORMAT(v_at, '%Y-%m-%dT%H:%i:%s.%fZ'), v_actor,
                                   p_action, COALESCE(p_request, ''), v_detail, v_prev)
                         USING utf8mb4), 256));
    SET SESSION innodb_lock_wait_timeout = v_wait;
END$$
DELIMITER ;

-- A refusal the CLI or the gate made before anything reached a table: one of a fixed set
-- of actions, and a reason of at most 500 characters.
DELIMITER $$
CREATE OR REPLACE DEFINER={owner} PROCEDURE {layer}.log_refusal(
        IN p_action VARCHAR(60), IN p_request BIGINT, IN p_reason LONGTEXT)
    MODIFIES SQL DATA SQL SECURITY DEFINER
    COMMENT 'ils-redact: log a refusal made outside the database'
BEGIN
    DECLARE v_seq BIGINT;
    DECLARE v_me VARCHAR(400);
    DECLARE v_msg VARCHAR(200);
    IF p_action IS NULL OR p_action NOT IN ('request.create', 'export', 'query') THEN
        SET v_msg = CONCAT('not a refusal ils-redact logs: ', LEFT(COALESCE(p_action, '(none)'), 60),
                           ' (request.create, export or query)');
        SIGNAL SQLSTATE '22023' SET MESSAGE_TEXT = v_msg;
    END IF;
    CALL {layer}.caller_required(v_me);
    CALL {layer}.audit_append(CONCAT(p_action, '.refused'), p_request,
                              JSON_OBJECT('reason', LEFT(COALESCE(p_reason, ''), 500)), v_seq);
    SELECT v_seq AS seq;
END$$
DELIMITER ;

-- The three entries of a query through the gate (access: role): before any row is read
-- (`query`, for an approved and unexpired request), and after (`query.finished` or
-- `query.failed`), for a request of the caller's.  The detail is a JSON object of at
-- most 64 KiB.
DELIMITER $$
CREATE OR REPLACE DEFINER={owner} PROCEDURE {layer}.query_log(
        IN p_action VARCHAR(32), IN p_request BIGINT, IN p_detail LONGTEXT)
    MODIFIES SQL DATA SQL SECURITY DEFINER
    COMMENT 'ils-redact: log a gated query of a request (query, query.finished, query.failed)'
BEGIN
    DECLARE v_seq BIGINT;
    DECLARE v_me VARCHAR(400);
    DECLARE v_grantee VARCHAR(400);
    DECLARE v_status VARCHAR(10);
    DECLARE v_expires DATETIME(6);
    IF p_action IS NULL OR p_action NOT IN ('query', 'query.finished', 'query.failed') THEN
        SIGNAL SQLSTATE '22023'
            SET MESSAGE_TEXT = 'query_log records query, query.finished or query.failed';
    END IF;
    IF p_detail IS NULL OR NOT JSON_VALID(p_detail) OR JSON_TYPE(p_detail) <> 'OBJECT'
       OR OCTET_LENGTH(p_detail) > 65536 THEN
        SIGNAL SQLSTATE '22023'
            SET MESSAGE_TEXT = 'query_log detail: a JSON object of at most 64 KiB';
    END IF;
    CALL {layer}.caller_required(v_me);
    SELECT MAX(r.grantee), MAX(r.status), MAX(r.expires_at) INTO v_grantee, v_status, v_expires
    FROM {layer}.request r WHERE r.id = p_request;
    IF v_grantee IS NULL OR v_grantee <> v_me
       OR (p_action = 'query' AND (v_status <> 'approved' OR v_expires <= {layer}.clock_utc())) THEN
        SIGNAL SQLSTATE '42000'
            SET MESSAGE_TEXT = 'query_log: not an approved, unexpired request of this login';
    END IF;
    CALL {layer}.audit_append(p_action, p_request, p_detail, v_seq);
    SELECT v_seq AS seq;
END$$
DELIMITER ;

-- -- requests --------------------------------------------------------------------------

DELIMITER $$
CREATE OR REPLACE DEFINER={owner} PROCEDURE {layer}.sweep_run(OUT p_n INT)
    MODIFIES SQL DATA SQL SECURITY DEFINER
    COMMENT 'ils-redact: record the expiry of approved requests (internal)'
BEGIN
    DECLARE v_id BIGINT DEFAULT 0;
    DECLARE v_found INT;
    DECLARE v_exp DATETIME(6);
    DECLARE v_seq BIGINT;
    DECLARE v_now DATETIME(6) DEFAULT {layer}.clock_utc();
    SET p_n = 0;
    sweep: LOOP
        SELECT MIN(r.id) INTO v_id FROM {layer}.request r
        WHERE r.id > v_id AND r.status = 'approved' AND r.expires_at <= v_now;
        IF v_id IS NULL THEN
            LEAVE sweep;
        END IF;
        SELECT COUNT(*), MAX(r.expires_at) INTO v_found, v_exp FROM {layer}.request r
        WHERE r.id = v_id AND r.status = 'approved' AND r.expires_at <= v_now
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

-- Text staff see later in terminals and forms (request list, audit log, the form, audit
-- export): no control characters (a newline and a tab are allowed in the free-text
-- reasons), no bidirectional overrides or line/paragraph separators, as on PostgreSQL.
DELIMITER $$
CREATE OR REPLACE DEFINER={owner} FUNCTION {layer}.unprintable(
        p_text LONGTEXT CHARACTER SET utf8mb4, p_multiline BOOLEAN) RETURNS BOOLEAN
    DETERMINISTIC NO SQL SQL SECURITY DEFINER
    COMMENT 'ils-redact: whether request text holds a character staff must not be shown'
BEGIN
    RETURN COALESCE(p_text REGEXP IF(p_multiline,
        '[\\x{01}-\\x{08}\\x{0b}-\\x{1f}\\x{7f}-\\x{9f}\\x{2028}\\x{2029}\\x{202a}-\\x{202e}\\x{2066}-\\x{2069}]',
        '[\\x{01}-\\x{1f}\\x{7f}-\\x{9f}\\x{2028}\\x{2029}\\x{202a}-\\x{202e}\\x{2066}-\\x{2069}]'),
        FALSE);
END$$
DELIMITER ;

-- How many requests a login may create in an hour that nobody has approved yet: a clerk
-- makes a few; more is a login naming patrons to excuse lookups (atk-koha B2).
DELIMITER $$
CREATE OR REPLACE DEFINER={owner} FUNCTION {layer}.max_drafts_per_hour() RETURNS INT
    DETERMINISTIC NO SQL SQL SECURITY DEFINER
    COMMENT 'ils-redact: unapproved requests a login may create per hour'
BEGIN
    RETURN 5;
END$$
DELIMITER ;

DELIMITER $$
CREATE OR REPLACE DEFINER={owner} PROCEDURE {layer}.request_create(
        IN p_basis VARCHAR(16), IN p_agency VARCHAR(255), IN p_officer_name VARCHAR(255),
        IN p_officer_badge VARCHAR(255), IN p_case_number VARCHAR(255),
        IN p_emergency_reason TEXT, IN p_court VARCHAR(255), IN p_order_reference VARCHAR(255),
        IN p_order_date DATE, IN p_patrons LONGTEXT, IN p_named_as LONGTEXT,
        IN p_columns LONGTEXT, IN p_expires_at DATETIME(6), IN p_grantee VARCHAR(400))
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
    DECLARE v_msg VARCHAR(600);
    DECLARE v_me VARCHAR(400);
    DECLARE v_grantee VARCHAR(400);
    DECLARE v_field VARCHAR(40);
    DECLARE v_now DATETIME(6) DEFAULT {layer}.clock_utc();
    CALL {layer}.caller_required(v_me);
    CALL {layer}.sweep_run(v_n);
    IF p_basis IS NULL OR p_basis NOT IN ('court-order', 'emergency') THEN
        SET v_msg = CONCAT('unknown basis ', LEFT(REGEXP_REPLACE(COALESCE(p_basis, '(none)'),
                                                                 '[^[:print:]]', '?'), 40),
                           ': court-order or emergency');
        SIGNAL SQLSTATE '22023' SET MESSAGE_TEXT = v_msg;
    END IF;
    SET v_field = CASE
        WHEN {layer}.unprintable(p_agency, FALSE) THEN 'agency'
        WHEN {layer}.unprintable(p_officer_name, FALSE) THEN 'officer name'
        WHEN {layer}.unprintable(p_officer_badge, FALSE) THEN 'officer badge'
        WHEN {layer}.unprintable(p_case_number, FALSE) THEN 'case number'
        WHEN {layer}.unprintable(p_court, FALSE) THEN 'court'
        WHEN {layer}.unprintable(p_order_reference, FALSE) THEN 'order reference'
        WHEN {layer}.unprintable(p_grantee, FALSE) THEN 'login'
        WHEN {layer}.unprintable(p_emergency_reason, TRUE) THEN 'emergency reason'
        WHEN {layer}.unprintable(p_named_as, FALSE) THEN 'name a patron is known by'
        ELSE NULL END;
    IF v_field IS NOT NULL THEN
        SET v_msg = CONCAT('the ', v_field, ' contains control characters (escape codes, ',
                           'carriage returns, direction overrides): refused');
        SIGNAL SQLSTATE '22023' SET MESSAGE_TEXT = v_msg;
    END IF;
    -- A draft costs nothing and names patrons: a login that makes drafts nobody approves
    -- could otherwise name every patron it looked up (patron_lookup's hourly bound counts
    -- only patrons of approved requests, but a flood of drafts is still bounded here).
    IF (SELECT COUNT(*) FROM {layer}.request r WHERE r.created_by = v_me
          AND r.created_at > v_now - INTERVAL 1 HOUR AND r.approved_by IS NULL)
       >= {layer}.max_drafts_per_hour() THEN
        SET v_msg = CONCAT(v_me, ' has created ', {layer}.max_drafts_per_hour(),
                           ' requests in the last hour that nobody has approved: at most ',
                           {layer}.max_drafts_per_hour(), ' (ask an administrator to ',
                           'approve or revoke them first)');
        INSERT INTO {layer}.trace (at, account, action, request_id, patrons, detail, conn)
        VALUES (v_now, v_me, 'request.refused', NULL,
                IF(JSON_VALID(p_patrons), p_patrons, '[]'),
                JSON_OBJECT('reason', 'drafts per hour'), CONNECTION_ID());
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
    IF {layer}.setting_text('access') = 'role' AND NOT {layer}.covers_all(p_columns) THEN
        SIGNAL SQLSTATE '22023' SET MESSAGE_TEXT =
            'access: role cannot limit a request to some identity fields (the disclosure role reads every identity field of a patron in its scope); name every identity field, or use access: function, whose export discloses only the fields named';
    END IF;
    IF p_grantee IS NULL THEN
        SET v_grantee = v_me;
    ELSE
        SET v_grantee = {layer}.resolve_account(p_grantee);
        IF v_grantee IS NULL THEN
            SET v_msg = CONCAT('no single account ', LEFT(p_grantee, 400),
                               ' (name it as user@host, as in the grant tables)');
            SIGNAL SQLSTATE '22023' SET MESSAGE_TEXT = v_msg;
        END IF;
    END IF;
    IF {layer}.account_namesakes(v_grantee) > 0 THEN
        SET v_msg = CONCAT('the login ', v_grantee, ' shares its user name with another ',
                           'account; scope is keyed on the account: rename one first');
        SIGNAL SQLSTATE '22023' SET MESSAGE_TEXT = v_msg;
    END IF;
    IF LOCATE('/', SUBSTRING_INDEX(v_grantee, '@', -1)) > 0 THEN
        SET v_msg = CONCAT('the login ', v_grantee, ' has an address/mask host, which the ',
                           'identity views do not match: give it a host with wildcards ',
                           '(10.0.0.%)');
        SIGNAL SQLSTATE '22023' SET MESSAGE_TEXT = v_msg;
    END IF;
    INSERT INTO {layer}.request (basis, agency, officer_name, officer_badge, case_number,
                                 emergency_reason, court, order_reference, order_date,
                                 columns, grantee, status, expires_at, created_by, created_at)
    VALUES (p_basis, p_agency, p_officer_name, p_officer_badge, p_case_number,
            p_emergency_reason, p_court, p_order_reference, p_order_date,
            (SELECT JSON_ARRAYAGG(DISTINCT j.c ORDER BY j.c)
             FROM JSON_TABLE(p_columns, '$[*]' COLUMNS (c VARCHAR(300) PATH '$')) j),
            v_grantee, 'draft', p_expires_at, v_me, v_now);
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

-- Two-person rule: the account that created a request cannot approve it, nor the account
-- it discloses to (a director who is also an exporter would approve his own access).  In access mode
-- `role` a request for fewer than all identity fields is not approved.
DELIMITER $$
CREATE OR REPLACE DEFINER={owner} PROCEDURE {layer}.request_approve(IN p_request BIGINT)
    MODIFIES SQL DATA SQL SECURITY DEFINER
    COMMENT 'ils-redact: approve a draft request (two-person rule); returns the refusal or NULL'
BEGIN
    DECLARE v_n INT;
    DECLARE v_seq BIGINT;
    DECLARE v_found INT;
    DECLARE v_reason VARCHAR(500) DEFAULT NULL;
    DECLARE v_created_by VARCHAR(400);
    DECLARE v_status VARCHAR(10);
    DECLARE v_grantee VARCHAR(400);
    DECLARE v_expires DATETIME(6);
    DECLARE v_columns LONGTEXT;
    DECLARE v_me VARCHAR(400);
    DECLARE v_now DATETIME(6);
    CALL {layer}.caller_required(v_me);
    CALL {layer}.sweep_run(v_n);
    SET v_now = {layer}.clock_utc();
    SELECT COUNT(*), MAX(r.created_by), MAX(r.status), MAX(r.grantee), MAX(r.expires_at),
           MAX(r.columns)
    INTO v_found, v_created_by, v_status, v_grantee, v_expires, v_columns
    FROM {layer}.request r WHERE r.id = p_request FOR UPDATE;
    IF v_found = 0 THEN
        SET v_reason = 'no such request';
    ELSEIF v_created_by = v_me THEN
        SET v_reason = 'the login that created a request cannot approve it (two-person rule)';
    ELSEIF v_grantee = v_me THEN
        SET v_reason = 'the login a request discloses to cannot approve it (two-person rule)';
    ELSEIF v_status <> 'draft' THEN
        SET v_reason = CONCAT('request is ', v_status, ', not draft');
    ELSEIF v_expires <= v_now THEN
        SET v_reason = 'request has expired';
    ELSEIF {layer}.setting_text('access') = 'role' AND NOT {layer}.covers_all(v_columns) THEN
        SET v_reason = 'access: role cannot limit a request to some identity fields (the disclosure role reads every identity field of a patron in its scope)';
    ELSEIF LOCATE('@', v_grantee) = 0 OR {layer}.account_namesakes(v_grantee) > 0 THEN
        SET v_reason = CONCAT('the grantee ', v_grantee, ' is not one account (its user name ',
                              'is shared, or it predates version 4): scope is keyed on the account');
    ELSEIF LOCATE('/', SUBSTRING_INDEX(v_grantee, '@', -1)) > 0 THEN
        SET v_reason = CONCAT('the grantee ', v_grantee, ' has an address/mask host, which the ',
                              'identity views do not match: give it a host with wildcards');
    END IF;
    IF v_reason IS NOT NULL THEN
        CALL {layer}.audit_append('request.approve.refused', p_request,
                                  JSON_OBJECT('reason', v_reason), v_seq);
    ELSE
        UPDATE {layer}.request SET status = 'approved', approved_by = v_me, approved_at = v_now
        WHERE id = p_request;
        INSERT INTO {layer}.scope (patron_id, grantee, grantee_user, grantee_host, expires_at,
                                   request_id, created_by, created_at, all_fields)
        SELECT rp.patron_id, v_grantee,
               LEFT(v_grantee, CHAR_LENGTH(v_grantee)
                               - CHAR_LENGTH(SUBSTRING_INDEX(v_grantee, '@', -1)) - 1),
               SUBSTRING_INDEX(v_grantee, '@', -1), v_expires, p_request, v_me, v_now,
               {layer}.covers_all(v_columns)
        FROM {layer}.request_patron rp WHERE rp.request_id = p_request;
        CALL {layer}.audit_append('request.approved', p_request,
            JSON_OBJECT('grantee', v_grantee,
                        'expires_at', DATE_FORMAT(v_expires, '%Y-%m-%dT%H:%i:%s.%fZ'),
                        'created_by', v_created_by), v_seq);
    END IF;
    SELECT v_reason AS refusal;
END$$
DELIMITER ;

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
    DECLARE v_me VARCHAR(400);
    IF p_status IS NULL OR p_status NOT IN ('revoked', 'closed') THEN
        SIGNAL SQLSTATE '22023' SET MESSAGE_TEXT = 'status must be revoked or closed';
    END IF;
    IF {layer}.unprintable(p_reason, TRUE) THEN
        SIGNAL SQLSTATE '22023' SET MESSAGE_TEXT =
            'the reason contains control characters (escape codes, carriage returns, direction overrides): refused';
    END IF;
    CALL {layer}.caller_required(v_me);
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
        UPDATE {layer}.request SET status = p_status, ended_by = v_me,
               ended_at = {layer}.clock_utc(), end_reason = p_reason
        WHERE id = p_request;
        DELETE FROM {layer}.scope WHERE request_id = p_request;
        CALL {layer}.audit_append(CONCAT('request.', p_status), p_request,
            JSON_OBJECT('reason', p_reason, 'previous_status', v_status), v_seq);
    END IF;
    SELECT v_reason AS refusal;
END$$
DELIMITER ;

-- What the export procedure (and a gated query) may read for one request: only when it
-- is approved, not expired by the server's clock, and the caller is the account it was
-- approved for; in access mode `role`, only a request that covers every identity field.
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
    DECLARE v_grantee VARCHAR(400);
    DECLARE v_me VARCHAR(400) DEFAULT {layer}.caller_account();
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
    ELSEIF v_expires <= {layer}.clock_utc() THEN
        SET p_reason = 'request has expired';
    ELSEIF v_me IS NULL THEN
        SET p_reason = CONCAT('cannot tell which account ', USER(), ' logged in as ',
                              '(a user name shared by several accounts)');
    ELSEIF v_grantee <> v_me THEN
        SET p_reason = CONCAT('request was approved for ', v_grantee, ', not ', v_me);
    ELSEIF {layer}.setting_text('access') = 'role' AND NOT {layer}.covers_all(p_columns) THEN
        SET p_reason = 'access: role cannot limit a request to some identity fields';
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

-- The caller's active scope for the query gate's explicit scope predicate: the user
-- name split at the last '@', the client's host against the grantee's host pattern (%
-- and _; approval refuses an address/mask host), the real clock, and only requests
-- that cover every identity field.
CREATE OR REPLACE ALGORITHM=TEMPTABLE DEFINER={owner} SQL SECURITY DEFINER
VIEW {layer}.scope_patrons AS
SELECT s.patron_id, s.request_id, s.expires_at
FROM {layer}.scope s
JOIN (SELECT {layer}.clock_utc() AS now_utc LIMIT 1) k
WHERE s.grantee_user = LEFT(USER(), CHAR_LENGTH(USER())
                                    - CHAR_LENGTH(SUBSTRING_INDEX(USER(), '@', -1)) - 1)
  AND SUBSTRING_INDEX(USER(), '@', -1) LIKE s.grantee_host
  AND s.all_fields = 1
  AND s.expires_at > k.now_utc
LIMIT 1000000000;

-- -- statistics ------------------------------------------------------------------------

-- As in version 3, with the month from the server's clock (SYSDATE, in the time zone the
-- report pinned): SET timestamp cannot make the current, incomplete month a past one.
DELIMITER $$
CREATE OR REPLACE DEFINER={stats_owner} PROCEDURE {layer}.stats_period(
        IN p_from DATE, IN p_to DATE, OUT p_lo DATETIME, OUT p_hi DATETIME)
    NO SQL SQL SECURITY DEFINER
    COMMENT 'ils-redact: the bounds of a report period (internal)'
BEGIN
    DECLARE v_this_month DATE DEFAULT DATE_FORMAT(SYSDATE(), '%Y-%m-01');
    DECLARE v_msg VARCHAR(200);
    IF p_from IS NOT NULL AND DAYOFMONTH(p_from) <> 1 THEN
        SET v_msg = CONCAT('reports cover whole months: the start ', p_from,
                           ' is not the first day of a month');
        SIGNAL SQLSTATE '22023' SET MESSAGE_TEXT = v_msg;
    END IF;
    IF p_to IS NOT NULL AND DAYOFMONTH(p_to) <> 1 THEN
        SET v_msg = CONCAT('reports cover whole months: the end ', p_to,
                           ' is not the first day of a month');
        SIGNAL SQLSTATE '22023' SET MESSAGE_TEXT = v_msg;
    END IF;
    SET p_to = COALESCE(p_to, v_this_month);
    IF p_to > v_this_month THEN
        SET v_msg = CONCAT('reports cover complete months only: the end ', p_to,
                           ' is after ', v_this_month);
        SIGNAL SQLSTATE '22023' SET MESSAGE_TEXT = v_msg;
    END IF;
    IF p_from IS NOT NULL AND p_from >= p_to THEN
        SET v_msg = CONCAT('the start ', p_from, ' is not before the end ', p_to);
        SIGNAL SQLSTATE '22023' SET MESSAGE_TEXT = v_msg;
    END IF;
    SET p_lo = COALESCE(p_from, '1000-01-01'), p_hi = p_to;
END$$
DELIMITER ;

INSERT INTO {layer}.meta (`key`, value) VALUES ('layer_version', '4')
ON DUPLICATE KEY UPDATE value = '4';
