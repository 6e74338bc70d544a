-- ils-redact layer for MariaDB, version 7: a revoke reaches a transaction that was
-- already open; request text refuses NUL and invisible characters; a patron is named
-- by its id or its own card; request changes run inside a transaction.
--
-- Placeholders as in 0001-0006 ({layer}, {owner}).  Idempotent, as every file.
--
-- InnoDB's plain SELECT is a consistent read: in a transaction begun before a revoke
-- (START TRANSACTION WITH CONSISTENT SNAPSHOT, or any REPEATABLE READ transaction that
-- has read something), export_check still saw the request approved and its patrons, so
-- the grantee's export in that transaction disclosed them after the revoke (the third
-- adversarial review).  MariaDB gives a routine no way to end another session (as
-- PostgreSQL's layer does), so export_check reads the request and its patrons with a
-- locking read, which reads the latest committed row whatever the snapshot (and waits
-- for a revoke in progress).  The export and the query gate both ask export_check.
-- What a locking read cannot reach: the role-mode views and lookup procedures read the
-- scope in the caller's snapshot (docs/threat-model.md, known limits).

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
    ELSE
        SET p_ok = TRUE;
        SELECT JSON_ARRAYAGG(rp.patron_id ORDER BY rp.patron_id) INTO p_patrons
        FROM {layer}.request_patron rp WHERE rp.request_id = p_request LOCK IN SHARE MODE;
    END IF;
    IF NOT p_ok THEN
        SET p_basis = NULL, p_columns = NULL;
    END IF;
END$$
DELIMITER ;

-- Request text refuses NUL and the characters that hide themselves on a printed form
-- (Unicode's default-ignorable code points: bidirectional marks, zero-width characters,
-- the soft hyphen, blank fillers, variation selectors, the byte-order mark, tags; and
-- interlinear annotation) besides version 4's controls and overrides: the form the
-- officer signs and the court reads must say what the database holds.
DELIMITER $$
CREATE OR REPLACE DEFINER={owner} FUNCTION {layer}.unprintable(
        p_text LONGTEXT CHARACTER SET utf8mb4, p_multiline BOOLEAN) RETURNS BOOLEAN
    DETERMINISTIC NO SQL SQL SECURITY DEFINER
    COMMENT 'ils-redact: whether request text holds a character staff must not be shown'
BEGIN
    RETURN COALESCE(p_text REGEXP IF(p_multiline,
        '[\\x{00}-\\x{08}\\x{0b}-\\x{1f}\\x{7f}-\\x{9f}\\x{00ad}\\x{034f}\\x{061c}\\x{115f}\\x{1160}\\x{17b4}\\x{17b5}\\x{180b}-\\x{180f}\\x{200b}-\\x{200f}\\x{2028}-\\x{202e}\\x{2060}-\\x{206f}\\x{3164}\\x{fe00}-\\x{fe0f}\\x{feff}\\x{ffa0}\\x{fff0}-\\x{ffff}\\x{13430}-\\x{1343f}\\x{1bca0}-\\x{1bca3}\\x{1d173}-\\x{1d17a}\\x{e0000}-\\x{e0fff}]',
        '[\\x{00}-\\x{1f}\\x{7f}-\\x{9f}\\x{00ad}\\x{034f}\\x{061c}\\x{115f}\\x{1160}\\x{17b4}\\x{17b5}\\x{180b}-\\x{180f}\\x{200b}-\\x{200f}\\x{2028}-\\x{202e}\\x{2060}-\\x{206f}\\x{3164}\\x{fe00}-\\x{fe0f}\\x{feff}\\x{ffa0}\\x{fff0}-\\x{ffff}\\x{13430}-\\x{1343f}\\x{1bca0}-\\x{1bca3}\\x{1d173}-\\x{1d17a}\\x{e0000}-\\x{e0fff}]'),
        FALSE);
END$$
DELIMITER ;

-- What a request records a patron as ("named as", printed on the officer's form): its
-- id, or a card of that very patron.  request_create took any text there, so a form
-- could name another patron's card, or a person, while the export disclosed this one
-- (the third review).  The check needs the Koha card table, which the rules name: it is
-- the generated procedure named_as_check; this trigger calls it for every row, whoever
-- inserts it.
DELIMITER $$
CREATE OR REPLACE DEFINER={owner} TRIGGER {layer}.request_patron_named_as
    BEFORE INSERT ON {layer}.request_patron FOR EACH ROW
BEGIN
    CALL {layer}.named_as_check(NEW.patron_id, NEW.named_as);
END$$
DELIMITER ;

-- A request is recorded, approved, revoked or closed inside a transaction, never alone in
-- autocommit.  With autocommit on (the `mariadb` client's default) every statement of a
-- procedure commits by itself: a procedure that changed the request and then could not
-- append its audit entry (the audit log's lock held by another session) left the change
-- committed without its entry (the third review).  In a transaction the failed append
-- undoes the change.  The expiry sweep is not held to this (an expiry follows the clock).
DELIMITER $$
CREATE OR REPLACE DEFINER={owner} TRIGGER {layer}.request_in_transaction
    BEFORE INSERT ON {layer}.request FOR EACH ROW
BEGIN
    IF @@autocommit = 1 AND @@in_transaction = 0 THEN
        SIGNAL SQLSTATE '25000' SET MESSAGE_TEXT = 'a request is recorded inside a transaction (START TRANSACTION ... COMMIT), so that it never stays without its audit entry: autocommit is on';
    END IF;
END$$
DELIMITER ;

DELIMITER $$
CREATE OR REPLACE DEFINER={owner} TRIGGER {layer}.request_change_in_transaction
    BEFORE UPDATE ON {layer}.request FOR EACH ROW
BEGIN
    IF NEW.status <> OLD.status AND NEW.status IN ('approved', 'revoked', 'closed')
       AND @@autocommit = 1 AND @@in_transaction = 0 THEN
        SIGNAL SQLSTATE '25000' SET MESSAGE_TEXT = 'a request is approved, revoked or closed inside a transaction (START TRANSACTION ... COMMIT), so that it never stays without its audit entry: autocommit is on';
    END IF;
END$$
DELIMITER ;

INSERT INTO {layer}.meta (`key`, value) VALUES ('layer_version', '7')
ON DUPLICATE KEY UPDATE value = '7';
