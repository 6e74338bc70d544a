-- ils-redact layer for MariaDB, version 8: lists the caller cannot cut short, and every
-- name a request checks is a traced, bounded lookup (the fourth adversarial review).
--
-- Placeholders as in 0001-0007 ({layer}, {owner}).  Idempotent, as every file.
--
-- 1. JSON_ARRAYAGG and GROUP_CONCAT stop at the session's group_concat_max_len, which any
--    login sets (down to 4), and a routine runs with its caller's session value.
--    patron_lookup's list of resolved patrons was cut to two ids, so its trace row and
--    audit entry named two patrons while it returned ten, and the hourly bound never
--    grew: an administrator read every patron's name and birth date, "traced" as two.
--    export_check's list of a request's patrons, cut short, could even name a patron the
--    request does not (`[300,301]` cut to `[300,3]`).  Both raise the limit while they
--    build a list, put it back, and check the list's length against a count.
-- 2. request_create answered, inside a transaction its caller rolls back, whether an id
--    is a patron ("unknown patron ids") and whether a card is that patron's (the named-as
--    check): an untraced oracle.  Checking the ids a request names is a lookup now
--    (patron_unknown, generated, calls lookup_trace): a trace row that survives the
--    rollback, under the same hourly bound as patron_lookup.
-- 3. Whom a request may disclose to: below.

-- 4. A request procedure wrote its rows first and its audit entry last; when the entry
--    could not be written (another session holding the audit lock: error 1205 after 5 s,
--    or the CALL interrupted by max_statement_time) MariaDB undid that statement only, and
--    the caller could COMMIT the rest: a request, or an approval with its scope, with no
--    entry (the fourth review's re-check).  request_approve now writes its entry first,
--    and refuses a request whose creation has no entry; export_check refuses a request
--    whose approval has none.

-- The hourly bound and the trace row of a lookup, shared by patron_lookup and the checks
-- of request_create: p_found is the JSON array of the patrons the lookup resolved (or
-- names); refused, with a 'lookup.refused' row, when this account's lookups in the last
-- hour name more patrons than max_patrons that no request of its own, approved by
-- another login, names.
DELIMITER $$
CREATE OR REPLACE DEFINER={owner} PROCEDURE {layer}.lookup_trace(
        IN p_me VARCHAR(400), IN p_now DATETIME(6), IN p_found LONGTEXT, IN p_detail LONGTEXT)
    MODIFIES SQL DATA SQL SECURITY DEFINER
    COMMENT 'ils-redact: bound and trace one patron lookup (internal)'
BEGIN
    DECLARE v_open INT;
    DECLARE v_max BIGINT DEFAULT {layer}.setting_int('max_patrons');
    DECLARE v_msg VARCHAR(500);
    SELECT COUNT(DISTINCT y.p) INTO v_open
    FROM (SELECT j.p FROM {layer}.trace t,
                 JSON_TABLE(t.patrons, '$[*]' COLUMNS (p BIGINT PATH '$')) j
          WHERE t.account = p_me AND t.action = 'lookup'
            AND t.at > p_now - INTERVAL 1 HOUR
          UNION
          SELECT j.p FROM JSON_TABLE(COALESCE(p_found, '[]'), '$[*]'
                                     COLUMNS (p BIGINT PATH '$')) j) y
    WHERE NOT EXISTS (
        SELECT 1 FROM {layer}.request r
        JOIN {layer}.request_patron rp ON rp.request_id = r.id
        WHERE r.created_by = p_me AND r.created_at > p_now - INTERVAL 1 HOUR
          AND r.approved_by IS NOT NULL AND r.approved_by <> p_me
          AND rp.patron_id = y.p);
    IF v_open > v_max THEN
        INSERT INTO {layer}.trace (at, account, action, request_id, patrons, detail, conn)
        VALUES (p_now, p_me, 'lookup.refused', NULL, COALESCE(p_found, '[]'),
                JSON_MERGE_PATCH(p_detail, JSON_OBJECT('open', v_open)), CONNECTION_ID());
        SET v_msg = CONCAT('lookup refused: ', v_open, ' patrons looked up in the last ',
                           '1 hour by ', p_me, ' are named by no approved request of ',
                           'theirs; at most ', v_max, ' (rules: disclosure.max_patrons)');
        SIGNAL SQLSTATE '22023' SET MESSAGE_TEXT = v_msg;
    END IF;
    INSERT INTO {layer}.trace (at, account, action, request_id, patrons, detail, conn)
    VALUES (p_now, p_me, 'lookup', NULL, COALESCE(p_found, '[]'), p_detail, CONNECTION_ID());
END$$
DELIMITER ;

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
    DECLARE v_gcl BIGINT UNSIGNED DEFAULT @@SESSION.group_concat_max_len;
    CALL {layer}.sweep_run(v_n);
    SET p_ok = FALSE, p_reason = NULL, p_basis = NULL, p_columns = NULL, p_patrons = NULL;
    SELECT COUNT(*), MAX(r.status), MAX(r.expires_at), MAX(r.grantee), MAX(r.basis),
           MAX(r.columns)
    INTO v_found, v_status, v_expires, v_grantee, p_basis, p_columns
    FROM {layer}.request r WHERE r.id = p_request LOCK IN SHARE MODE;
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
    ELSEIF NOT EXISTS (SELECT 1 FROM {layer}.audit_log a WHERE a.request_id = p_request
                       AND a.action = 'request.approved') THEN
        SET p_reason = 'the approval of this request has no audit entry';
    ELSE
        SET p_ok = TRUE;
        -- JSON_ARRAYAGG stops at the session's group_concat_max_len, which the caller
        -- sets: the list is built with the limit raised, and its length checked
        SET SESSION group_concat_max_len = 1073741824;
        SELECT JSON_ARRAYAGG(rp.patron_id ORDER BY rp.patron_id), COUNT(*)
        INTO p_patrons, v_n
        FROM {layer}.request_patron rp WHERE rp.request_id = p_request LOCK IN SHARE MODE;
        SET SESSION group_concat_max_len = v_gcl;
        IF COALESCE(JSON_LENGTH(p_patrons), 0) <> v_n THEN
            SET p_ok = FALSE, p_patrons = NULL,
                p_reason = 'the patrons of the request could not be listed whole';
        END IF;
    END IF;
    IF NOT p_ok THEN
        SET p_basis = NULL, p_columns = NULL;
    END IF;
END$$
DELIMITER ;

-- 3. Whom a request may disclose to (as on PostgreSQL, layer 7): a login that holds the
--    exporter or the disclosure role, checked when a request is recorded and again when
--    it is approved, whatever path writes the row (grantee_check is generated: it names
--    the roles).  A request "for" the Koha application's account was accepted and
--    approved.
DELIMITER $$
CREATE OR REPLACE DEFINER={owner} TRIGGER {layer}.request_grantee_recorded
    BEFORE INSERT ON {layer}.request FOR EACH ROW
BEGIN
    CALL {layer}.grantee_check(NEW.grantee);
END$$
DELIMITER ;

DELIMITER $$
CREATE OR REPLACE DEFINER={owner} TRIGGER {layer}.request_grantee_approved
    BEFORE UPDATE ON {layer}.request FOR EACH ROW
BEGIN
    IF NEW.status = 'approved' AND OLD.status <> 'approved' THEN
        CALL {layer}.grantee_check(NEW.grantee);
    END IF;
END$$
DELIMITER ;

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
    ELSEIF NOT EXISTS (SELECT 1 FROM {layer}.audit_log a WHERE a.request_id = p_request
                       AND a.action = 'request.created') THEN
        SET v_reason = 'the request has no audit entry of its creation (recorded by hand, or committed after its entry failed): record it again';
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
        -- the entry first: if it cannot be written (the audit lock held, the statement
        -- interrupted), nothing is approved, whatever the caller then commits
        CALL {layer}.audit_append('request.approved', p_request,
            JSON_OBJECT('grantee', v_grantee,
                        'expires_at', DATE_FORMAT(v_expires, '%Y-%m-%dT%H:%i:%s.%fZ'),
                        'created_by', v_created_by), v_seq);
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
    END IF;
    SELECT v_reason AS refusal;
END$$
DELIMITER ;

INSERT INTO {layer}.meta (`key`, value) VALUES ('layer_version', '8')
ON DUPLICATE KEY UPDATE value = '8';
