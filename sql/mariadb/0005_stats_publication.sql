-- ils-redact layer for MariaDB, version 5: statistics are published once per month.
--
-- Placeholders in braces are filled with quoted names before this runs: {layer} the
-- layer database, {stats_owner} the definer of every statistics routine (granted to
-- nobody).
--
-- Until version 4 each report procedure counted and suppressed on every call, so a month
-- whose records changed later, or a change of k, gave a second, different page for the
-- same month.  From version 5 an administrator publishes a month (`ils-redact stats
-- publish REPORT --month YYYY-MM`): the counts are taken, the minimum-loss suppression
-- pattern is solved and checked against the attacker's linear programs
-- (plugin/ils_redact/stats/solve.py), and only the released values are written here.
-- The report procedures return what is written here and nothing else.
--
-- The statistics owner holds SELECT on these tables (the planner's grants); the stats
-- role holds nothing on them.  A suppressed entry is stored without its value.  InnoDB:
-- a publication is written in one transaction.

CREATE TABLE IF NOT EXISTS {layer}.stats_publication (
    report       VARCHAR(64) NOT NULL,
    period       DATE NOT NULL,              -- 1000-01-01: a report over all time
    k            INT NOT NULL,
    protection   INT NOT NULL,
    cost         VARCHAR(32) NOT NULL,
    method       VARCHAR(500) NOT NULL,
    released     INT NOT NULL,
    primary_suppressed    INT NOT NULL,
    complement_suppressed INT NOT NULL,
    shared_suppressed     INT NOT NULL,
    published_at DATETIME(6) NOT NULL,
    published_by VARCHAR(300) NOT NULL,
    PRIMARY KEY (report, period),
    CONSTRAINT stats_publication_k CHECK (k >= 3)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS {layer}.stats_published (
    report     VARCHAR(64) NOT NULL,
    period     DATE NOT NULL,
    measure    VARCHAR(100) NOT NULL,
    kind       VARCHAR(10) NOT NULL,
    row_value  VARCHAR(200) NULL,
    col_value  VARCHAR(200) NULL,
    value      BIGINT NULL,
    suppressed TINYINT NOT NULL,
    reason     VARCHAR(10) NOT NULL,
    shared_key CHAR(32) NOT NULL,
    KEY stats_published_report (report, period),
    KEY stats_published_shared (period, shared_key),
    CONSTRAINT stats_published_value CHECK ((value IS NULL) = (suppressed = 1)),
    CONSTRAINT stats_published_page FOREIGN KEY (report, period)
        REFERENCES {layer}.stats_publication (report, period)
) ENGINE=InnoDB;

-- what has been published, for `ils-redact stats run` (which months a run covers)
CREATE OR REPLACE DEFINER={stats_owner} PROCEDURE {layer}.stats_publications()
    READS SQL DATA SQL SECURITY DEFINER
    COMMENT 'ils-redact: the published months of every report'
    SELECT p.report, IF(p.period = '1000-01-01', NULL, p.period) AS period, p.k,
           p.protection, p.cost, p.method, p.released, p.primary_suppressed,
           p.complement_suppressed, p.shared_suppressed,
           DATE_FORMAT(p.published_at, '%Y-%m-%d %H:%i:%s') AS published_at
    FROM {layer}.stats_publication p
    ORDER BY p.report, p.period;

INSERT INTO {layer}.meta (`key`, value) VALUES ('layer_version', '5')
ON DUPLICATE KEY UPDATE value = '5';
