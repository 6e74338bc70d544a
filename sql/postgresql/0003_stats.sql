-- ils-redact layer for PostgreSQL, version 3: the statistics role's schema and the
-- suppression every report goes through.
--
-- Rendered by psycopg.sql (role placeholders in braces; literal braces doubled).
--
-- Schema ils_redact_stats belongs to the stats_owner role: NOLOGIN, never granted to a
-- person, and holding only the column grants the reports need (see the plan).  The
-- reports themselves are written from the rules by the planner (one SECURITY DEFINER
-- function per report, EXECUTE granted to the stats role only); the functions here are
-- the part that is the same for every library.  The stats role may call the reports and
-- nothing else: not these helpers, not a table, not a base relation of the ILS.
--
-- Why the algorithm is what it is: see plugin/ils_redact/stats/__init__.py.
--
-- The helpers are PARALLEL SAFE (pure computation, no table, no write): a parallel-unsafe
-- function anywhere in a report's query would keep PostgreSQL from scanning the
-- circulation table with parallel workers, as the owner's own GROUP BY does (measured:
-- 1.35x the owner's time at 4 million circulations, 0.92x with it).

CREATE SCHEMA ils_redact_stats AUTHORIZATION {stats_owner};
COMMENT ON SCHEMA ils_redact_stats IS
  'ils-redact: aggregate-only statistics reports (k distinct patrons, complementary suppression). Created by "ils-redact install", removed by "ils-redact uninstall".';

SET LOCAL ROLE {stats_owner};

-- The bounds of a report's period: whole months in the report's time zone, never the
-- current (incomplete) month.  p_to is exclusive; NULL means "from the beginning" and
-- "up to the current month".
CREATE FUNCTION ils_redact_stats.period_bounds(p_from date, p_to date, p_tz text,
                                               OUT lo timestamptz, OUT hi timestamptz)
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    this_month date := date_trunc('month', statement_timestamp() AT TIME ZONE p_tz)::date;
BEGIN
    IF p_from IS NOT NULL AND extract(day FROM p_from) <> 1 THEN
        RAISE EXCEPTION 'reports cover whole months: the start % is not the first day of a month', p_from
            USING ERRCODE = '22023';
    END IF;
    IF p_to IS NOT NULL AND extract(day FROM p_to) <> 1 THEN
        RAISE EXCEPTION 'reports cover whole months: the end % is not the first day of a month', p_to
            USING ERRCODE = '22023';
    END IF;
    p_to := coalesce(p_to, this_month);
    IF p_to > this_month THEN
        RAISE EXCEPTION 'reports cover complete months only: the end % is after %', p_to, this_month
            USING ERRCODE = '22023';
    END IF;
    IF p_from IS NOT NULL AND p_from >= p_to THEN
        RAISE EXCEPTION 'the start % is not before the end %', p_from, p_to
            USING ERRCODE = '22023';
    END IF;
    lo := CASE WHEN p_from IS NULL THEN '-infinity'::timestamptz
               ELSE p_from::timestamp AT TIME ZONE p_tz END;
    hi := p_to::timestamp AT TIME ZONE p_tz;
END
$fn$;

-- The first bridge (by index) of an undirected multigraph on vertices 1..p_nv with edges
-- (p_u[i], p_v[i]): an edge on no cycle.  A suppressed entry that is a bridge of the
-- graph of suppressed entries can be recomputed from the table's totals; one on a cycle
-- cannot (the alternating +1/-1 along the cycle changes it and keeps every total).
-- Iterative Tarjan over an adjacency array: O(vertices + edges).  0: no bridge.
CREATE FUNCTION ils_redact_stats.first_bridge(p_nv integer, p_u integer[], p_v integer[])
    RETURNS integer
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    m integer := coalesce(array_length(p_u, 1), 0);
    deg integer[];
    start integer[];
    pos integer[];
    ptr integer[];
    adj_e integer[];
    adj_w integer[];
    disc integer[];
    low integer[];
    pe integer[];
    stack integer[];
    sp integer;
    timer integer := 0;
    best integer := 0;
    i integer;
    v integer;
    w integer;
    x integer;
    root integer;
BEGIN
    IF m = 0 THEN
        RETURN 0;
    END IF;
    deg := array_fill(0, ARRAY[p_nv + 1]);
    FOR i IN 1..m LOOP
        deg[p_u[i]] := deg[p_u[i]] + 1;
        deg[p_v[i]] := deg[p_v[i]] + 1;
    END LOOP;
    start := array_fill(0, ARRAY[p_nv + 1]);
    start[1] := 1;
    FOR v IN 2..p_nv + 1 LOOP
        start[v] := start[v - 1] + deg[v - 1];
    END LOOP;
    pos := start;
    adj_e := array_fill(0, ARRAY[2 * m]);
    adj_w := array_fill(0, ARRAY[2 * m]);
    FOR i IN 1..m LOOP
        adj_e[pos[p_u[i]]] := i;
        adj_w[pos[p_u[i]]] := p_v[i];
        pos[p_u[i]] := pos[p_u[i]] + 1;
        adj_e[pos[p_v[i]]] := i;
        adj_w[pos[p_v[i]]] := p_u[i];
        pos[p_v[i]] := pos[p_v[i]] + 1;
    END LOOP;
    ptr := start;
    disc := array_fill(0, ARRAY[p_nv]);
    low := array_fill(0, ARRAY[p_nv]);
    pe := array_fill(0, ARRAY[p_nv]);
    stack := array_fill(0, ARRAY[p_nv]);
    FOR root IN 1..p_nv LOOP
        CONTINUE WHEN disc[root] <> 0 OR deg[root] = 0;
        timer := timer + 1;
        disc[root] := timer;
        low[root] := timer;
        sp := 1;
        stack[1] := root;
        WHILE sp > 0 LOOP
            v := stack[sp];
            IF ptr[v] < start[v + 1] THEN
                x := ptr[v];
                ptr[v] := x + 1;
                CONTINUE WHEN adj_e[x] = pe[v];   -- the edge we came in by (not a parallel one)
                w := adj_w[x];
                IF disc[w] = 0 THEN
                    timer := timer + 1;
                    disc[w] := timer;
                    low[w] := timer;
                    pe[w] := adj_e[x];
                    sp := sp + 1;
                    stack[sp] := w;
                ELSIF disc[w] < low[v] THEN
                    low[v] := disc[w];
                END IF;
            ELSE
                sp := sp - 1;
                IF sp > 0 THEN
                    w := stack[sp];
                    IF low[v] < low[w] THEN
                        low[w] := low[v];
                    END IF;
                    IF low[v] > disc[w] AND (best = 0 OR pe[v] < best) THEN
                        best := pe[v];
                    END IF;
                END IF;
            END IF;
        END LOOP;
    END LOOP;
    RETURN best;
END
$fn$;

-- Vertices reachable from p_start without edge p_skip.
CREATE FUNCTION ils_redact_stats.reachable(p_nv integer, p_u integer[], p_v integer[],
                                           p_skip integer, p_start integer)
    RETURNS boolean[]
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    m integer := coalesce(array_length(p_u, 1), 0);
    seen boolean[] := array_fill(false, ARRAY[p_nv]);
    changed boolean := true;
    i integer;
BEGIN
    seen[p_start] := true;
    WHILE changed LOOP
        changed := false;
        FOR i IN 1..m LOOP
            CONTINUE WHEN i = p_skip OR seen[p_u[i]] = seen[p_v[i]];
            seen[p_u[i]] := true;
            seen[p_v[i]] := true;
            changed := true;
        END LOOP;
    END LOOP;
    RETURN seen;
END
$fn$;

-- One page of a report (one month, one measure): the cells (row, column, count of
-- records, count of distinct patrons), completed with the totals and suppressed so that
--   1. every released entry counts at least p_k distinct patrons (a total counts at least
--      as many as its largest cell: that lower bound is what is compared with p_k), and
--   2. no suppressed entry can be recomputed from the released ones: in a table with
--      totals, each suppressed entry lies on a cycle of suppressed entries (rows and
--      columns, totals included, alternating), so adding +1/-1 along the cycle gives
--      another table with the same released entries.
-- Complements are chosen smallest first (least information lost), deterministically:
-- the same cells always give the same page, whatever period the page was run in.
-- Counts are NULL where suppressed.
CREATE FUNCTION ils_redact_stats.suppress_page(
        p_k integer, p_period date, p_measure text, p_rows text[], p_cols text[],
        p_values bigint[], p_patrons bigint[])
    RETURNS TABLE (period date, measure text, kind text, row_value text, col_value text,
                   value bigint, suppressed boolean)
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    rv text[];
    cv text[];
    nr integer;
    nc integer;
    w integer;          -- grid width: nc + 1
    grid integer[];     -- (r - 1) * w + c -> entry, 0 where the count is zero
    er integer[] := '{{}}';
    ec integer[] := '{{}}';
    ev bigint[] := '{{}}';
    ep bigint[] := '{{}}';
    es boolean[] := '{{}}';
    ne integer := 0;
    n integer := coalesce(array_length(p_values, 1), 0);
    mode integer;
    i integer;
    j integer;
    r integer;
    c integer;
    x integer;
    cnt integer;
    best integer;
    changed boolean;
    rsum bigint[];
    rmax bigint[];
    csum bigint[];
    cmax bigint[];
    eu integer[];
    evx integer[];
    idx integer[];
    b integer;
    side_a boolean[];
    side_b boolean[];
    nv integer;
    ur integer;
    uc integer;
BEGIN
    IF p_k IS NULL OR p_k < 3 THEN
        RAISE EXCEPTION 'k must be at least 3' USING ERRCODE = '22023';
    END IF;
    IF n = 0 THEN
        RETURN;
    END IF;
    rv := ARRAY(SELECT DISTINCT t FROM unnest(p_rows) t ORDER BY 1);
    cv := ARRAY(SELECT DISTINCT t FROM unnest(p_cols) t ORDER BY 1);
    nr := array_length(rv, 1);
    nc := array_length(cv, 1);
    w := nc + 1;
    grid := array_fill(0, ARRAY[(nr + 1) * w]);
    rsum := array_fill(0::bigint, ARRAY[nr]);
    rmax := array_fill(0::bigint, ARRAY[nr]);
    csum := array_fill(0::bigint, ARRAY[nc]);
    cmax := array_fill(0::bigint, ARRAY[nc]);
    FOR i IN 1..n LOOP
        CONTINUE WHEN coalesce(p_values[i], 0) = 0;
        r := array_position(rv, p_rows[i]);
        c := array_position(cv, p_cols[i]);
        IF grid[(r - 1) * w + c] <> 0 THEN
            RAISE EXCEPTION 'two cells for row % and column %', p_rows[i], p_cols[i];
        END IF;
        ne := ne + 1;
        er[ne] := r; ec[ne] := c; ev[ne] := p_values[i]; ep[ne] := p_patrons[i];
        grid[(r - 1) * w + c] := ne;
        rsum[r] := rsum[r] + p_values[i];
        rmax[r] := greatest(rmax[r], p_patrons[i]);
        csum[c] := csum[c] + p_values[i];
        cmax[c] := greatest(cmax[c], p_patrons[i]);
    END LOOP;
    IF ne = 0 THEN
        RETURN;
    END IF;
    -- 0: a single cell; 1: one row or one column (cells and their total);
    -- 2: a table with row totals, column totals and the grand total
    mode := CASE WHEN nr > 1 AND nc > 1 THEN 2 WHEN nr > 1 OR nc > 1 THEN 1 ELSE 0 END;
    IF mode = 2 THEN
        FOR r IN 1..nr LOOP
            CONTINUE WHEN rsum[r] = 0;
            ne := ne + 1;
            er[ne] := r; ec[ne] := nc + 1; ev[ne] := rsum[r]; ep[ne] := rmax[r];
            grid[(r - 1) * w + nc + 1] := ne;
        END LOOP;
        FOR c IN 1..nc LOOP
            CONTINUE WHEN csum[c] = 0;
            ne := ne + 1;
            er[ne] := nr + 1; ec[ne] := c; ev[ne] := csum[c]; ep[ne] := cmax[c];
            grid[nr * w + c] := ne;
        END LOOP;
    END IF;
    IF mode >= 1 THEN
        ne := ne + 1;
        er[ne] := nr + 1; ec[ne] := nc + 1;
        ev[ne] := (SELECT sum(t) FROM unnest(rsum) t);
        ep[ne] := (SELECT max(t) FROM unnest(rmax) t);
        grid[nr * w + nc + 1] := ne;
    END IF;

    -- primary suppression: fewer than k distinct patrons
    FOR i IN 1..ne LOOP
        es[i] := ep[i] < p_k;
    END LOOP;

    IF mode = 1 THEN
        -- one equation (cells add up to the total): one unknown is solvable, two are not
        cnt := 0;
        best := 0;
        FOR i IN 1..ne LOOP
            IF es[i] THEN
                cnt := cnt + 1;
            ELSIF best = 0 OR ev[i] < ev[best] THEN
                best := i;
            END IF;
        END LOOP;
        IF cnt = 1 AND best > 0 THEN
            es[best] := true;
        END IF;
    ELSIF mode = 2 THEN
        -- fast first pass: no row or column (totals included) with exactly one
        -- suppressed entry
        LOOP
            changed := false;
            FOR r IN 1..nr + 1 LOOP
                cnt := 0; best := 0;
                FOR c IN 1..nc + 1 LOOP
                    x := grid[(r - 1) * w + c];
                    CONTINUE WHEN x = 0;
                    IF es[x] THEN
                        cnt := cnt + 1;
                    ELSIF best = 0 OR ev[x] < ev[best] THEN
                        best := x;
                    END IF;
                END LOOP;
                IF cnt = 1 AND best > 0 THEN
                    es[best] := true;
                    changed := true;
                END IF;
            END LOOP;
            FOR c IN 1..nc + 1 LOOP
                cnt := 0; best := 0;
                FOR r IN 1..nr + 1 LOOP
                    x := grid[(r - 1) * w + c];
                    CONTINUE WHEN x = 0;
                    IF es[x] THEN
                        cnt := cnt + 1;
                    ELSIF best = 0 OR ev[x] < ev[best] THEN
                        best := x;
                    END IF;
                END LOOP;
                IF cnt = 1 AND best > 0 THEN
                    es[best] := true;
                    changed := true;
                END IF;
            END LOOP;
            EXIT WHEN NOT changed;
        END LOOP;
        -- then: until no suppressed entry is a bridge.  Vertices: rows 1..nr+1 (nr+1:
        -- the totals row), columns nr+2..nr+nc+2; an entry (r, c) is the edge r - nr+1+c.
        nv := nr + nc + 2;
        LOOP
            eu := '{{}}'; evx := '{{}}'; idx := '{{}}';
            j := 0;
            FOR i IN 1..ne LOOP
                CONTINUE WHEN NOT es[i];
                j := j + 1;
                eu[j] := er[i]; evx[j] := nr + 1 + ec[i]; idx[j] := i;
            END LOOP;
            b := ils_redact_stats.first_bridge(nv, eu, evx);
            EXIT WHEN b = 0;
            side_a := ils_redact_stats.reachable(nv, eu, evx, b, eu[b]);
            side_b := ils_redact_stats.reachable(nv, eu, evx, b, evx[b]);
            -- the cheapest released entry joining the two sides closes a cycle through b
            best := 0;
            FOR i IN 1..ne LOOP
                CONTINUE WHEN es[i];
                ur := er[i]; uc := nr + 1 + ec[i];
                IF (side_a[ur] AND side_b[uc]) OR (side_b[ur] AND side_a[uc]) THEN
                    IF best = 0 OR ev[i] < ev[best] THEN
                        best := i;
                    END IF;
                END IF;
            END LOOP;
            IF best > 0 THEN
                es[best] := true;
            ELSE
                -- no such entry: suppress the rest of a rectangle through the totals
                -- (r, c), (r, total), (total, c), (total, total), all present
                x := idx[b];
                r := er[x]; c := ec[x];
                IF r > nr OR c > nc THEN
                    -- a total: pair it with the cheapest cell of its row or column
                    best := 0;
                    FOR i IN 1..ne LOOP
                        CONTINUE WHEN er[i] > nr OR ec[i] > nc;
                        CONTINUE WHEN NOT ((r <= nr AND er[i] = r) OR (c <= nc AND ec[i] = c)
                                           OR (r > nr AND c > nc));
                        IF best = 0 OR ev[i] < ev[best] THEN
                            best := i;
                        END IF;
                    END LOOP;
                    r := er[best]; c := ec[best];
                END IF;
                FOREACH x IN ARRAY ARRAY[grid[(r - 1) * w + c], grid[(r - 1) * w + nc + 1],
                                         grid[nr * w + c], grid[nr * w + nc + 1]] LOOP
                    es[x] := true;
                END LOOP;
            END IF;
        END LOOP;
    END IF;

    FOR i IN 1..ne LOOP
        period := p_period;
        measure := p_measure;
        kind := CASE WHEN er[i] <= nr AND ec[i] <= nc THEN 'cell'
                     WHEN er[i] <= nr THEN 'row_total'
                     WHEN ec[i] <= nc THEN 'col_total'
                     ELSE 'total' END;
        row_value := CASE WHEN er[i] <= nr THEN rv[er[i]] END;
        col_value := CASE WHEN ec[i] <= nc THEN cv[ec[i]] END;
        value := CASE WHEN es[i] THEN NULL ELSE ev[i] END;
        suppressed := es[i];
        RETURN NEXT;
    END LOOP;
END
$fn$;

RESET ROLE;

REVOKE ALL ON FUNCTION ils_redact_stats.period_bounds(date, date, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ils_redact_stats.first_bridge(integer, integer[], integer[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION ils_redact_stats.reachable(integer, integer[], integer[], integer, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION ils_redact_stats.suppress_page(integer, date, text, text[], text[], bigint[], bigint[]) FROM PUBLIC;

-- the stats role may look up names in the schema; what it may call is granted per
-- report by the plan
GRANT USAGE ON SCHEMA ils_redact_stats TO {stats};

UPDATE ils_redact.meta SET value = '3' WHERE key = 'layer_version';
