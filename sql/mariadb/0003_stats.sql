-- ils-redact layer for MariaDB, version 3: the suppression every statistics report goes
-- through.
--
-- Placeholders in braces are filled with quoted names before this runs: {layer} the
-- layer database, {stats_owner} the role that is the definer of every statistics
-- routine.  That role is never granted to anybody (nobody can act as it), and holds
-- exactly: SELECT on the Koha columns the reports count, the work tables below, and
-- EXECUTE on these routines and the reports; the planner computes those grants.  The
-- stats role holds EXECUTE on the report procedures and on stats_reports, nothing else.
--
-- The reports themselves are written from the rules by the planner
-- (ils_redact.backends.mariadb.stats): each aggregates the Koha tables into the work
-- table, calls stats_suppress, and returns stats_emit's rows.  Why the algorithm is what
-- it is: plugin/ils_redact/stats/__init__.py.  How it is made safe on MariaDB:
--
-- * Work tables, not temporary tables.  A temporary table created inside a definer
--   routine belongs to the caller's session, and once it exists the server checks no
--   privilege on it: a report stopped half-way (KILL QUERY, max_statement_time, which no
--   handler catches) would leave the raw counts readable by the caller.  These are
--   ordinary tables the stats role holds nothing on; rows carry the caller's
--   CONNECTION_ID() and are deleted at the end of every run (and by the next run of the
--   same connection, if one was stopped).  They are Aria, not InnoDB: scratch rows need
--   no transaction, and InnoDB's gap locks on the (conn, ...) key made two reports run
--   in callers' open transactions deadlock; Aria locks per statement.
-- * No raw value in the caller's session: only DECLAREd variables (never @user
--   variables), and every run ends with a DELETE, which clears the diagnostics area, so
--   SHOW WARNINGS after CALL shows nothing of what the routines computed.
-- * No locks on the ILS: an INSERT ... SELECT from the Koha tables would take shared
--   locks on every row it reads (REPEATABLE READ) and stall checkouts for the length of
--   the report; the reports read them with a plain SELECT ... INTO (a consistent read)
--   and insert from that.

CREATE TABLE IF NOT EXISTS {layer}.stats_cell (
    conn       BIGINT UNSIGNED NOT NULL,   -- CONNECTION_ID() of the run
    page       INT NOT NULL,               -- one per month and measure
    r          INT NOT NULL,               -- 1..nr: a row (by label); 0: the totals row
    c          INT NOT NULL,               -- 1..nc: a column (by label); 0: the totals column
    period     DATE NULL,
    measure    VARCHAR(100) NOT NULL,
    row_value  VARCHAR(200) NULL,
    col_value  VARCHAR(200) NULL,
    v          BIGINT NOT NULL,            -- records
    np         BIGINT NOT NULL,            -- distinct patrons (a lower bound for totals)
    s          TINYINT NOT NULL DEFAULT 0, -- suppressed
    PRIMARY KEY (conn, page, r, c)
) ENGINE=Aria TRANSACTIONAL=0;

CREATE TABLE IF NOT EXISTS {layer}.stats_page (
    conn  BIGINT UNSIGNED NOT NULL,
    page  INT NOT NULL,
    nr    INT NOT NULL,
    nc    INT NOT NULL,
    -- 0: a single cell, 1: one row or one column (cells and their total),
    -- 2: a table with row totals, column totals and the grand total
    mode  TINYINT NOT NULL,
    PRIMARY KEY (conn, page)
) ENGINE=Aria TRANSACTIONAL=0;

-- Arrays for the graph routines: fixed-width strings of six-digit numbers, 1-based.
CREATE OR REPLACE DEFINER={stats_owner} FUNCTION {layer}.stats_at(p_a LONGTEXT, p_i INT)
    RETURNS INT
    DETERMINISTIC NO SQL SQL SECURITY INVOKER
    COMMENT 'ils-redact: element i of a six-digit array (internal)'
    RETURN CAST(SUBSTRING(p_a, p_i * 6 - 5, 6) AS UNSIGNED);

CREATE OR REPLACE DEFINER={stats_owner} FUNCTION {layer}.stats_put(p_a LONGTEXT, p_i INT,
                                                                   p_x INT)
    RETURNS LONGTEXT
    DETERMINISTIC NO SQL SQL SECURITY INVOKER
    COMMENT 'ils-redact: a six-digit array with element i set (internal)'
    RETURN INSERT(p_a, p_i * 6 - 5, 6, LPAD(p_x, 6, '0'));

-- The first bridge (by index) of an undirected multigraph on vertices 1..p_nv with p_m
-- edges (p_u[i], p_v[i]): an edge on no cycle.  A suppressed entry that is a bridge of
-- the graph of suppressed entries can be recomputed from the table's totals; one on a
-- cycle cannot (the alternating +1/-1 along the cycle changes it and keeps every total).
-- Iterative Tarjan over an adjacency array: O(vertices + edges).  0: no bridge.
DELIMITER $$
CREATE OR REPLACE DEFINER={stats_owner} FUNCTION {layer}.stats_first_bridge(
        p_nv INT, p_m INT, p_u LONGTEXT, p_v LONGTEXT)
    RETURNS INT
    DETERMINISTIC NO SQL SQL SECURITY INVOKER
    COMMENT 'ils-redact: first bridge of a graph (internal)'
BEGIN
    DECLARE v_deg LONGTEXT;
    DECLARE v_start LONGTEXT;
    DECLARE v_pos LONGTEXT;
    DECLARE v_ptr LONGTEXT;
    DECLARE v_adj_e LONGTEXT;
    DECLARE v_adj_w LONGTEXT;
    DECLARE v_disc LONGTEXT;
    DECLARE v_low LONGTEXT;
    DECLARE v_pe LONGTEXT;
    DECLARE v_stack LONGTEXT;
    DECLARE v_sp INT DEFAULT 0;
    DECLARE v_timer INT DEFAULT 0;
    DECLARE v_best INT DEFAULT 0;
    DECLARE v_i INT;
    DECLARE v_a INT;
    DECLARE v_b INT;
    DECLARE v_x INT;
    DECLARE v_e INT;
    DECLARE v_root INT;
    IF p_m = 0 THEN
        RETURN 0;
    END IF;
    IF p_nv + 1 > 999999 OR 2 * p_m > 999999 THEN
        SIGNAL SQLSTATE '54000' SET MESSAGE_TEXT = 'report page too large to suppress';
    END IF;
    SET v_deg = REPEAT('000000', p_nv + 1), v_i = 1;
    WHILE v_i <= p_m DO
        SET v_a = {layer}.stats_at(p_u, v_i), v_b = {layer}.stats_at(p_v, v_i);
        SET v_deg = {layer}.stats_put(v_deg, v_a, {layer}.stats_at(v_deg, v_a) + 1);
        SET v_deg = {layer}.stats_put(v_deg, v_b, {layer}.stats_at(v_deg, v_b) + 1);
        SET v_i = v_i + 1;
    END WHILE;
    SET v_start = {layer}.stats_put(REPEAT('000000', p_nv + 1), 1, 1), v_i = 2;
    WHILE v_i <= p_nv + 1 DO
        SET v_start = {layer}.stats_put(v_start, v_i, {layer}.stats_at(v_start, v_i - 1)
                                                      + {layer}.stats_at(v_deg, v_i - 1));
        SET v_i = v_i + 1;
    END WHILE;
    SET v_pos = v_start, v_adj_e = REPEAT('000000', 2 * p_m),
        v_adj_w = REPEAT('000000', 2 * p_m), v_i = 1;
    WHILE v_i <= p_m DO
        SET v_a = {layer}.stats_at(p_u, v_i), v_b = {layer}.stats_at(p_v, v_i);
        SET v_x = {layer}.stats_at(v_pos, v_a);
        SET v_adj_e = {layer}.stats_put(v_adj_e, v_x, v_i),
            v_adj_w = {layer}.stats_put(v_adj_w, v_x, v_b),
            v_pos = {layer}.stats_put(v_pos, v_a, v_x + 1);
        SET v_x = {layer}.stats_at(v_pos, v_b);
        SET v_adj_e = {layer}.stats_put(v_adj_e, v_x, v_i),
            v_adj_w = {layer}.stats_put(v_adj_w, v_x, v_a),
            v_pos = {layer}.stats_put(v_pos, v_b, v_x + 1);
        SET v_i = v_i + 1;
    END WHILE;
    SET v_ptr = v_start, v_disc = REPEAT('000000', p_nv), v_low = REPEAT('000000', p_nv),
        v_pe = REPEAT('000000', p_nv), v_stack = REPEAT('000000', p_nv), v_root = 1;
    WHILE v_root <= p_nv DO
        IF {layer}.stats_at(v_disc, v_root) = 0 AND {layer}.stats_at(v_deg, v_root) > 0 THEN
            SET v_timer = v_timer + 1;
            SET v_disc = {layer}.stats_put(v_disc, v_root, v_timer),
                v_low = {layer}.stats_put(v_low, v_root, v_timer),
                v_sp = 1, v_stack = {layer}.stats_put(v_stack, 1, v_root);
            WHILE v_sp > 0 DO
                SET v_a = {layer}.stats_at(v_stack, v_sp);
                SET v_x = {layer}.stats_at(v_ptr, v_a);
                IF v_x < {layer}.stats_at(v_start, v_a + 1) THEN
                    SET v_ptr = {layer}.stats_put(v_ptr, v_a, v_x + 1);
                    SET v_e = {layer}.stats_at(v_adj_e, v_x);
                    -- the edge we came in by is skipped (by index: a parallel edge is not)
                    IF v_e <> {layer}.stats_at(v_pe, v_a) THEN
                        SET v_b = {layer}.stats_at(v_adj_w, v_x);
                        IF {layer}.stats_at(v_disc, v_b) = 0 THEN
                            SET v_timer = v_timer + 1;
                            SET v_disc = {layer}.stats_put(v_disc, v_b, v_timer),
                                v_low = {layer}.stats_put(v_low, v_b, v_timer),
                                v_pe = {layer}.stats_put(v_pe, v_b, v_e),
                                v_sp = v_sp + 1;
                            SET v_stack = {layer}.stats_put(v_stack, v_sp, v_b);
                        ELSEIF {layer}.stats_at(v_disc, v_b) < {layer}.stats_at(v_low, v_a) THEN
                            SET v_low = {layer}.stats_put(v_low, v_a,
                                                          {layer}.stats_at(v_disc, v_b));
                        END IF;
                    END IF;
                ELSE
                    SET v_sp = v_sp - 1;
                    IF v_sp > 0 THEN
                        SET v_b = {layer}.stats_at(v_stack, v_sp);
                        IF {layer}.stats_at(v_low, v_a) < {layer}.stats_at(v_low, v_b) THEN
                            SET v_low = {layer}.stats_put(v_low, v_b,
                                                          {layer}.stats_at(v_low, v_a));
                        END IF;
                        IF {layer}.stats_at(v_low, v_a) > {layer}.stats_at(v_disc, v_b)
                           AND (v_best = 0 OR {layer}.stats_at(v_pe, v_a) < v_best) THEN
                            SET v_best = {layer}.stats_at(v_pe, v_a);
                        END IF;
                    END IF;
                END IF;
            END WHILE;
        END IF;
        SET v_root = v_root + 1;
    END WHILE;
    RETURN v_best;
END$$
DELIMITER ;

-- Vertices reachable from p_start without edge p_skip: a string of '0'/'1', one
-- character per vertex.
DELIMITER $$
CREATE OR REPLACE DEFINER={stats_owner} FUNCTION {layer}.stats_reachable(
        p_nv INT, p_m INT, p_u LONGTEXT, p_v LONGTEXT, p_skip INT, p_start INT)
    RETURNS LONGTEXT
    DETERMINISTIC NO SQL SQL SECURITY INVOKER
    COMMENT 'ils-redact: vertices reachable without one edge (internal)'
BEGIN
    DECLARE v_seen LONGTEXT DEFAULT INSERT(REPEAT('0', p_nv), p_start, 1, '1');
    DECLARE v_changed INT DEFAULT 1;
    DECLARE v_i INT;
    DECLARE v_a INT;
    DECLARE v_b INT;
    WHILE v_changed DO
        SET v_changed = 0, v_i = 1;
        WHILE v_i <= p_m DO
            IF v_i <> p_skip THEN
                SET v_a = {layer}.stats_at(p_u, v_i), v_b = {layer}.stats_at(p_v, v_i);
                IF SUBSTRING(v_seen, v_a, 1) <> SUBSTRING(v_seen, v_b, 1) THEN
                    SET v_seen = INSERT(INSERT(v_seen, v_a, 1, '1'), v_b, 1, '1'),
                        v_changed = 1;
                END IF;
            END IF;
            SET v_i = v_i + 1;
        END WHILE;
    END WHILE;
    RETURN v_seen;
END$$
DELIMITER ;

-- The work rows of this connection, gone (checked first: usually there are none).
DELIMITER $$
CREATE OR REPLACE DEFINER={stats_owner} PROCEDURE {layer}.stats_clear()
    MODIFIES SQL DATA SQL SECURITY DEFINER
    COMMENT 'ils-redact: remove this connection''s statistics work rows (internal)'
BEGIN
    DECLARE v_conn BIGINT UNSIGNED DEFAULT CONNECTION_ID();
    IF EXISTS (SELECT 1 FROM {layer}.stats_cell WHERE conn = v_conn) THEN
        DELETE FROM {layer}.stats_cell WHERE conn = v_conn;
    END IF;
    IF EXISTS (SELECT 1 FROM {layer}.stats_page WHERE conn = v_conn) THEN
        DELETE FROM {layer}.stats_page WHERE conn = v_conn;
    END IF;
END$$
DELIMITER ;

-- The bounds of a report's period: whole months, never the current (incomplete) month,
-- which is the month of NOW() in the session time zone the report pinned.  p_to is
-- exclusive; NULL means "from the beginning" and "up to the current month".  Dates
-- before 1000-01-01 (Koha's zero dates) are in no period.
DELIMITER $$
CREATE OR REPLACE DEFINER={stats_owner} PROCEDURE {layer}.stats_period(
        IN p_from DATE, IN p_to DATE, OUT p_lo DATETIME, OUT p_hi DATETIME)
    NO SQL SQL SECURITY DEFINER
    COMMENT 'ils-redact: the bounds of a report period (internal)'
BEGIN
    DECLARE v_this_month DATE DEFAULT DATE_FORMAT(NOW(), '%Y-%m-01');
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

-- Complementary suppression of the bridges of one page (mode 2): until no suppressed
-- entry is a bridge of the graph of suppressed entries, add the cheapest released entry
-- that closes a cycle through the first bridge; where there is none, suppress the rest of
-- a rectangle through the totals.  Vertices: rows 1..nr, the totals row nr + 1, columns
-- nr + 2 .. nr + nc + 1, the totals column nr + nc + 2.
DELIMITER $$
CREATE OR REPLACE DEFINER={stats_owner} PROCEDURE {layer}.stats_bridges(
        IN p_page INT, IN p_nr INT, IN p_nc INT)
    MODIFIES SQL DATA SQL SECURITY DEFINER
    COMMENT 'ils-redact: complementary suppression through cycles (internal)'
BEGIN
    DECLARE v_conn BIGINT UNSIGNED DEFAULT CONNECTION_ID();
    DECLARE v_nv INT DEFAULT p_nr + p_nc + 2;
    DECLARE v_len BIGINT UNSIGNED DEFAULT @@session.group_concat_max_len;
    DECLARE v_m INT;
    DECLARE v_b INT;
    DECLARE v_br INT;
    DECLARE v_bc INT;
    DECLARE v_r INT;
    DECLARE v_c INT;
    DECLARE v_u LONGTEXT;
    DECLARE v_v LONGTEXT;
    DECLARE v_side_a LONGTEXT;
    DECLARE v_side_b LONGTEXT;
    SET SESSION group_concat_max_len = 1073741824;
    bridges: LOOP
        SELECT COUNT(*),
               COALESCE(GROUP_CONCAT(LPAD(IF(r = 0, p_nr + 1, r), 6, '0')
                                     ORDER BY r = 0, r, c = 0, c SEPARATOR ''), ''),
               COALESCE(GROUP_CONCAT(LPAD(p_nr + 1 + IF(c = 0, p_nc + 1, c), 6, '0')
                                     ORDER BY r = 0, r, c = 0, c SEPARATOR ''), '')
        INTO v_m, v_u, v_v
        FROM {layer}.stats_cell WHERE conn = v_conn AND page = p_page AND s = 1;
        SET v_b = {layer}.stats_first_bridge(v_nv, v_m, v_u, v_v);
        IF v_b = 0 THEN
            LEAVE bridges;
        END IF;
        SET v_br = {layer}.stats_at(v_u, v_b), v_bc = {layer}.stats_at(v_v, v_b);
        SET v_side_a = {layer}.stats_reachable(v_nv, v_m, v_u, v_v, v_b, v_br),
            v_side_b = {layer}.stats_reachable(v_nv, v_m, v_u, v_v, v_b, v_bc);
        SET v_br = IF(v_br = p_nr + 1, 0, v_br),
            v_bc = IF(v_bc = p_nr + p_nc + 2, 0, v_bc - p_nr - 1);
        -- the cheapest released entry joining the two sides closes a cycle through it
        SELECT MAX(x.r), MAX(x.c) INTO v_r, v_c FROM (
            SELECT e.r, e.c FROM {layer}.stats_cell e
            WHERE e.conn = v_conn AND e.page = p_page AND e.s = 0
              AND ((SUBSTRING(v_side_a, IF(e.r = 0, p_nr + 1, e.r), 1) = '1'
                    AND SUBSTRING(v_side_b, p_nr + 1 + IF(e.c = 0, p_nc + 1, e.c), 1) = '1')
                OR (SUBSTRING(v_side_b, IF(e.r = 0, p_nr + 1, e.r), 1) = '1'
                    AND SUBSTRING(v_side_a, p_nr + 1 + IF(e.c = 0, p_nc + 1, e.c), 1) = '1'))
            ORDER BY e.v, e.r = 0, e.r, e.c = 0, e.c LIMIT 1) x;
        IF v_r IS NOT NULL THEN
            UPDATE {layer}.stats_cell SET s = 1
            WHERE conn = v_conn AND page = p_page AND r = v_r AND c = v_c AND s = 0;
        ELSE
            -- none: a rectangle (r, c), (r, total), (total, c), (total, total); for a
            -- bridge that is a total, through the cheapest cell of its row or column
            SET v_r = v_br, v_c = v_bc;
            IF v_br = 0 OR v_bc = 0 THEN
                SELECT MAX(x.r), MAX(x.c) INTO v_r, v_c FROM (
                    SELECT e.r, e.c FROM {layer}.stats_cell e
                    WHERE e.conn = v_conn AND e.page = p_page AND e.r > 0 AND e.c > 0
                      AND ((v_br > 0 AND e.r = v_br) OR (v_bc > 0 AND e.c = v_bc)
                           OR (v_br = 0 AND v_bc = 0))
                    ORDER BY e.v, e.r, e.c LIMIT 1) x;
            END IF;
            UPDATE {layer}.stats_cell SET s = 1
            WHERE conn = v_conn AND page = p_page AND s = 0
              AND ((r = v_r AND c = v_c) OR (r = v_r AND c = 0) OR (r = 0 AND c = v_c)
                   OR (r = 0 AND c = 0));
        END IF;
        IF ROW_COUNT() = 0 THEN
            -- cannot happen (a rectangle already suppressed is a cycle through the
            -- bridge); never loop forever in the database
            SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'suppression made no progress';
        END IF;
    END LOOP;
    SET SESSION group_concat_max_len = v_len;
END$$
DELIMITER ;

-- Every page of this connection's run (the cells are in stats_cell, r and c >= 1),
-- completed with its totals and suppressed so that
--   1. every released entry counts at least p_k distinct patrons (a total counts at least
--      as many as its largest cell: that lower bound is what is compared with p_k), and
--   2. no suppressed entry can be recomputed from the released ones (each lies on a cycle
--      of suppressed entries through rows and columns, totals included).
-- Complements are chosen smallest first, deterministically: the same cells always give
-- the same page, whatever period the page was run in.  Set-based over all pages at
-- once, except the bridge search, which runs per page over its suppressed entries.
DELIMITER $$
CREATE OR REPLACE DEFINER={stats_owner} PROCEDURE {layer}.stats_suppress(IN p_k INT)
    MODIFIES SQL DATA SQL SECURITY DEFINER
    COMMENT 'ils-redact: totals, primary and complementary suppression (internal)'
BEGIN
    DECLARE v_conn BIGINT UNSIGNED DEFAULT CONNECTION_ID();
    DECLARE v_n INT;
    DECLARE v_page INT DEFAULT 0;
    DECLARE v_nr INT;
    DECLARE v_nc INT;
    IF p_k IS NULL OR p_k < 3 THEN
        SIGNAL SQLSTATE '22023' SET MESSAGE_TEXT = 'k must be at least 3';
    END IF;
    INSERT INTO {layer}.stats_page (conn, page, nr, nc, mode)
    SELECT v_conn, page, MAX(r), MAX(c),
           CASE WHEN MAX(r) > 1 AND MAX(c) > 1 THEN 2 WHEN MAX(r) > 1 OR MAX(c) > 1 THEN 1
                ELSE 0 END
    FROM {layer}.stats_cell WHERE conn = v_conn GROUP BY page;
    -- totals: rows and columns of a table, and the grand total of a table or a line
    INSERT INTO {layer}.stats_cell (conn, page, r, c, period, measure, row_value, col_value,
                                    v, np)
    SELECT v_conn, x.page, x.r, 0, MIN(x.period), MIN(x.measure), MIN(x.row_value), NULL,
           SUM(x.v), MAX(x.np)
    FROM {layer}.stats_cell x
    JOIN {layer}.stats_page p ON p.conn = x.conn AND p.page = x.page AND p.mode = 2
    WHERE x.conn = v_conn AND x.r > 0 AND x.c > 0 GROUP BY x.page, x.r;
    INSERT INTO {layer}.stats_cell (conn, page, r, c, period, measure, row_value, col_value,
                                    v, np)
    SELECT v_conn, x.page, 0, x.c, MIN(x.period), MIN(x.measure), NULL, MIN(x.col_value),
           SUM(x.v), MAX(x.np)
    FROM {layer}.stats_cell x
    JOIN {layer}.stats_page p ON p.conn = x.conn AND p.page = x.page AND p.mode = 2
    WHERE x.conn = v_conn AND x.r > 0 AND x.c > 0 GROUP BY x.page, x.c;
    INSERT INTO {layer}.stats_cell (conn, page, r, c, period, measure, row_value, col_value,
                                    v, np)
    SELECT v_conn, x.page, 0, 0, MIN(x.period), MIN(x.measure), NULL, NULL,
           SUM(x.v), MAX(x.np)
    FROM {layer}.stats_cell x
    JOIN {layer}.stats_page p ON p.conn = x.conn AND p.page = x.page AND p.mode >= 1
    WHERE x.conn = v_conn AND x.r > 0 AND x.c > 0 GROUP BY x.page;

    -- primary suppression: fewer than k distinct patrons
    UPDATE {layer}.stats_cell SET s = (np < p_k) WHERE conn = v_conn;

    -- a line and its total: one equation; one unknown is solvable, two are not
    UPDATE {layer}.stats_cell t JOIN (
        SELECT y.page, y.r, y.c FROM (
            SELECT x.page, x.r, x.c,
                   ROW_NUMBER() OVER (PARTITION BY x.page
                                      ORDER BY x.v, x.r = 0, x.r, x.c = 0, x.c) AS rn
            FROM {layer}.stats_cell x
            JOIN (SELECT q.page FROM {layer}.stats_cell q
                  JOIN {layer}.stats_page p ON p.conn = q.conn AND p.page = q.page
                                           AND p.mode = 1
                  WHERE q.conn = v_conn GROUP BY q.page HAVING SUM(q.s) = 1) w
              ON w.page = x.page
            WHERE x.conn = v_conn AND x.s = 0) y
        WHERE y.rn = 1) z ON t.conn = v_conn AND t.page = z.page AND t.r = z.r AND t.c = z.c
    SET t.s = 1;

    -- tables, fast first pass: no row or column (totals included) with exactly one
    -- suppressed entry
    fast: LOOP
        UPDATE {layer}.stats_cell t JOIN (
            SELECT y.page, y.r, y.c FROM (
                SELECT x.page, x.r, x.c,
                       ROW_NUMBER() OVER (PARTITION BY x.page, x.r
                                          ORDER BY x.v, x.c = 0, x.c) AS rn
                FROM {layer}.stats_cell x
                JOIN (SELECT q.page, q.r FROM {layer}.stats_cell q
                      JOIN {layer}.stats_page p ON p.conn = q.conn AND p.page = q.page
                                               AND p.mode = 2
                      WHERE q.conn = v_conn GROUP BY q.page, q.r HAVING SUM(q.s) = 1) w
                  ON w.page = x.page AND w.r = x.r
                WHERE x.conn = v_conn AND x.s = 0) y
            WHERE y.rn = 1) z
          ON t.conn = v_conn AND t.page = z.page AND t.r = z.r AND t.c = z.c
        SET t.s = 1;
        SET v_n = ROW_COUNT();
        UPDATE {layer}.stats_cell t JOIN (
            SELECT y.page, y.r, y.c FROM (
                SELECT x.page, x.r, x.c,
                       ROW_NUMBER() OVER (PARTITION BY x.page, x.c
                                          ORDER BY x.v, x.r = 0, x.r) AS rn
                FROM {layer}.stats_cell x
                JOIN (SELECT q.page, q.c FROM {layer}.stats_cell q
                      JOIN {layer}.stats_page p ON p.conn = q.conn AND p.page = q.page
                                               AND p.mode = 2
                      WHERE q.conn = v_conn GROUP BY q.page, q.c HAVING SUM(q.s) = 1) w
                  ON w.page = x.page AND w.c = x.c
                WHERE x.conn = v_conn AND x.s = 0) y
            WHERE y.rn = 1) z
          ON t.conn = v_conn AND t.page = z.page AND t.r = z.r AND t.c = z.c
        SET t.s = 1;
        SET v_n = v_n + ROW_COUNT();
        IF v_n = 0 THEN
            LEAVE fast;
        END IF;
    END LOOP;

    -- then, page by page: until no suppressed entry is a bridge
    pages: LOOP
        SELECT MIN(p.page) INTO v_page FROM {layer}.stats_page p
        WHERE p.conn = v_conn AND p.mode = 2 AND p.page > v_page
          AND EXISTS (SELECT 1 FROM {layer}.stats_cell e
                      WHERE e.conn = v_conn AND e.page = p.page AND e.s = 1);
        IF v_page IS NULL THEN
            LEAVE pages;
        END IF;
        SELECT MAX(nr), MAX(nc) INTO v_nr, v_nc FROM {layer}.stats_page
        WHERE conn = v_conn AND page = v_page;
        CALL {layer}.stats_bridges(v_page, v_nr, v_nc);
    END LOOP;
END$$
DELIMITER ;

-- The run's entries, released or suppressed (value NULL), then nothing left behind.  The
-- DELETE is the last statement, so the caller's diagnostics area is its own.
DELIMITER $$
CREATE OR REPLACE DEFINER={stats_owner} PROCEDURE {layer}.stats_emit()
    MODIFIES SQL DATA SQL SECURITY DEFINER
    COMMENT 'ils-redact: the suppressed entries of this connection''s run (internal)'
BEGIN
    DECLARE v_conn BIGINT UNSIGNED DEFAULT CONNECTION_ID();
    SELECT e.period, e.measure, e.kind, e.row_value, e.col_value, e.value, e.suppressed
    FROM (SELECT period, measure,
                 CASE WHEN r > 0 AND c > 0 THEN 'cell' WHEN r > 0 THEN 'row_total'
                      WHEN c > 0 THEN 'col_total' ELSE 'total' END AS kind,
                 IF(r > 0, row_value, NULL) AS row_value,
                 IF(c > 0, col_value, NULL) AS col_value,
                 IF(s = 1, NULL, v) AS value, s AS suppressed
          FROM {layer}.stats_cell WHERE conn = v_conn) e
    ORDER BY e.period, e.measure, e.kind <> 'cell', e.kind, e.row_value, e.col_value;
    DELETE FROM {layer}.stats_cell WHERE conn = v_conn;
    DELETE FROM {layer}.stats_page WHERE conn = v_conn;
END$$
DELIMITER ;

INSERT INTO {layer}.meta (`key`, value) VALUES ('layer_version', '3')
ON DUPLICATE KEY UPDATE value = '3';
