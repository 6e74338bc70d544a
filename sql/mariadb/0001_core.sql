-- ils-redact layer for MariaDB, version 1: the patron scope.
--
-- Placeholders in braces are filled with quoted names before this runs: {layer} the
-- layer database (ils_redact_<koha database>), {owner} the definer account
-- ('<prefix>owner'@'localhost', ACCOUNT LOCK: nobody logs in as it).  Every statement is
-- idempotent, because MariaDB commits DDL statement by statement: an interrupted install
-- runs this file again from the top.  No GRANT is written here: the planner computes
-- every privilege from the rules and diffs it against the grant tables.

-- The patrons a login may currently see through the identity views.  Written only by
-- the layer's SQL SECURITY DEFINER procedures (request approval, revocation, expiry); no
-- restricted role holds any privilege on it.  The grantee is the login name (the user
-- part of USER()), compared byte for byte (utf8mb4_bin: MariaDB user names are case
-- sensitive).
CREATE TABLE IF NOT EXISTS {layer}.scope (
    id          BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    patron_id   BIGINT NOT NULL,
    grantee     VARCHAR(128) NOT NULL,
    expires_at  DATETIME(6) NOT NULL,
    request_id  BIGINT NULL,
    created_by  VARCHAR(128) NOT NULL,
    created_at  DATETIME(6) NOT NULL,
    KEY scope_grantee (grantee, expires_at, patron_id),
    KEY scope_request (request_id)
) ENGINE=InnoDB;

-- One row: audit_append locks it (SELECT ... FOR UPDATE) until the transaction ends, so
-- two writers never read the same head of the hash chain.
CREATE TABLE IF NOT EXISTS {layer}.audit_lock (
    id  TINYINT NOT NULL PRIMARY KEY,
    n   BIGINT NOT NULL
) ENGINE=InnoDB;
INSERT IGNORE INTO {layer}.audit_lock (id, n) VALUES (1, 0);

-- The caller's active scope, for the query gate's explicit scope predicate
-- (`borrowernumber IN (SELECT patron_id FROM scope_patrons WHERE request_id = N)`).
-- USER(), not CURRENT_USER(): inside a definer view CURRENT_USER() is the definer.
-- UTC_TIMESTAMP(), not NOW(): expiry is stored in UTC whatever the session time zone.
CREATE OR REPLACE ALGORITHM=TEMPTABLE DEFINER={owner} SQL SECURITY DEFINER
VIEW {layer}.scope_patrons AS
SELECT s.patron_id, s.request_id, s.expires_at
FROM {layer}.scope s
WHERE s.grantee = SUBSTRING_INDEX(USER(), '@', 1)
  AND s.expires_at > UTC_TIMESTAMP(6)
LIMIT 1000000000;

INSERT INTO {layer}.meta (`key`, value) VALUES ('layer_version', '1')
ON DUPLICATE KEY UPDATE value = '1';
