-- ils-redact layer for PostgreSQL, version 6: statistics are published once per month.
--
-- Rendered by psycopg.sql (role placeholders in braces; literal braces doubled).
--
-- Until version 5 each report function counted and suppressed on every call, so a month
-- whose records changed later (a late check-in, a deleted patron), or a change of k,
-- gave a second, different page for the same month, and the difference between the two
-- concerned the patrons who changed.  From version 6 an administrator publishes a month
-- (`ils-redact stats publish REPORT --month YYYY-MM`): the counts are taken as the
-- statistics owner, the minimum-loss suppression pattern is solved and checked against
-- the attacker's linear programs (plugin/ils_redact/stats/solve.py), and only the
-- released values are written here.  The report functions return what is written here
-- and nothing else, so every later run of that month returns the very same page.
--
-- Both tables belong to the statistics owner (NOLOGIN, granted to nobody).  No staff
-- role holds any privilege on them: the statistics role reads them only through the
-- report functions.  The ILS owner may SELECT them for its pg_dump (below).  A
-- suppressed entry is stored without its value.

SET LOCAL ROLE {stats_owner};

-- one row per (report, month) published; period '-infinity' for a report over all time
CREATE TABLE ils_redact_stats.publication (
    report       text NOT NULL,
    period       date NOT NULL,
    k            integer NOT NULL CHECK (k >= 3),
    protection   integer NOT NULL CHECK (protection >= 1),
    cost         text NOT NULL,
    method       text NOT NULL,
    released     integer NOT NULL,
    primary_suppressed    integer NOT NULL,
    complement_suppressed integer NOT NULL,
    shared_suppressed     integer NOT NULL,
    published_at timestamptz NOT NULL DEFAULT statement_timestamp(),
    published_by text NOT NULL DEFAULT session_user,
    PRIMARY KEY (report, period)
);

-- the entries of each published page: value NULL where suppressed.  shared_key names
-- the number an entry shows (the same source, grouping and group in another report is
-- the same number): a later report of the month keeps it as published.
CREATE TABLE ils_redact_stats.published (
    report     text NOT NULL,
    period     date NOT NULL,
    measure    text NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('cell', 'row_total', 'col_total', 'total')),
    row_value  text,
    col_value  text,
    value      bigint,
    suppressed boolean NOT NULL,
    reason     text NOT NULL CHECK (reason IN ('', 'primary', 'complement', 'shared')),
    shared_key text NOT NULL,
    CHECK ((value IS NULL) = suppressed),
    FOREIGN KEY (report, period) REFERENCES ils_redact_stats.publication (report, period)
);
CREATE INDEX published_report_period ON ils_redact_stats.published (report, period);
CREATE INDEX published_shared ON ils_redact_stats.published (period, shared_key);

-- what has been published (months, k, method, how much was suppressed and why): for
-- `ils-redact stats run`, which says which months a run covers
CREATE FUNCTION ils_redact_stats.publications()
    RETURNS TABLE (report text, period date, k integer, protection integer, cost text,
                   method text, released integer, primary_suppressed integer,
                   complement_suppressed integer, shared_suppressed integer,
                   published_at timestamptz)
    LANGUAGE sql STABLE SECURITY DEFINER
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
    SELECT p.report, CASE WHEN p.period = '-infinity' THEN NULL ELSE p.period END, p.k,
           p.protection, p.cost, p.method, p.released, p.primary_suppressed,
           p.complement_suppressed, p.shared_suppressed, p.published_at
    FROM ils_redact_stats.publication p
    ORDER BY p.report, p.period
$fn$;

RESET ROLE;

REVOKE ALL ON TABLE ils_redact_stats.publication FROM PUBLIC;
REVOKE ALL ON TABLE ils_redact_stats.published FROM PUBLIC;
REVOKE ALL ON FUNCTION ils_redact_stats.publications() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ils_redact_stats.publications() TO {stats};

-- the ILS owner's pg_dump (it locks every table it dumps; the publications must be in the
-- backup): the ILS owner already reads every record these counts come from
GRANT USAGE ON SCHEMA ils_redact_stats TO {ils_owner};
GRANT SELECT ON TABLE ils_redact_stats.publication, ils_redact_stats.published TO {ils_owner};

UPDATE ils_redact.meta SET value = '6' WHERE key = 'layer_version';
