-- ils-redact layer for MariaDB, version 6: `stats publish` counts as the statistics owner.
--
-- Placeholders as in 0001-0005 ({layer}, {stats_owner}).  Idempotent, as every file.
--
-- Version 5's `stats publish` ran its GROUP BY over the Koha tables in the
-- administrator's own session (root).  The Koha application account (ALL on the Koha
-- database) can replace a table the reports read with an SQL SECURITY INVOKER view
-- calling an INVOKER function of its own: that function then ran with root's
-- privileges (the third adversarial review: it read mysql.user and could have written
-- the layer's request and audit tables).  MariaDB has no way for a session to drop its
-- own privileges, so the counting moves into this SQL SECURITY DEFINER procedure: it
-- runs the statement `stats publish` wrote from the rules as the statistics owner, a
-- role granted to nobody that holds SELECT on exactly the Koha columns the reports count
-- and EXECUTE on nothing of the Koha account's, so a planted view's function fails
-- instead of running (ERROR 1356 or 1370) and nothing is published.
--
-- EXECUTE on it is granted to nobody: only an administrator with global privileges (the
-- install DSN) can call it, and such an account reads every table anyway.  `verify`
-- reports any grant on it as drift, as for every layer routine.

DELIMITER $$
CREATE OR REPLACE DEFINER={stats_owner} PROCEDURE {layer}.stats_count(IN p_sql LONGTEXT)
    READS SQL DATA SQL SECURITY DEFINER
    COMMENT 'ils-redact: stats publish counts as the statistics owner (administrators only)'
BEGIN
    EXECUTE IMMEDIATE p_sql;
END$$
DELIMITER ;

INSERT INTO {layer}.meta (`key`, value) VALUES ('layer_version', '6')
ON DUPLICATE KEY UPDATE value = '6';
