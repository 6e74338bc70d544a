-- ils-redact layer for PostgreSQL, version 1: bookkeeping and the patron scope.
--
-- Rendered by psycopg.sql before it runs: the role placeholders in braces are filled
-- with sql.Identifier, never string-formatted, so literal braces are doubled.  Runs
-- inside the install transaction, as a superuser.
--
-- Ownership: everything here belongs to the owner role, NOLOGIN and never granted to
-- a person.  Staff act through functions; owning a table would let a member disable its
-- triggers or rewrite its rows, so no staff role owns anything.

CREATE SCHEMA ils_redact AUTHORIZATION {owner};
COMMENT ON SCHEMA ils_redact IS
  'ils-redact: bookkeeping, patron scope, disclosure requests and the audit log. Created by "ils-redact install", removed by "ils-redact uninstall".';

SET LOCAL ROLE {owner};

-- What install created or changed, with the prior state of everything it touched, so
-- that uninstall undoes exactly that.
CREATE TABLE ils_redact.installed_object (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        text NOT NULL,
    object      text NOT NULL UNIQUE,
    detail      jsonb NOT NULL DEFAULT '{{}}',
    prior       jsonb,
    installed_by name NOT NULL DEFAULT session_user,
    installed_at timestamptz NOT NULL DEFAULT statement_timestamp()
);

CREATE TABLE ils_redact.meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

-- One row per install, upgrade or uninstall that changed something.
CREATE TABLE ils_redact.install_log (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    action        text NOT NULL,
    tool_version  text NOT NULL,
    layer_version integer NOT NULL,
    rules_sha256  text NOT NULL,
    changes       integer NOT NULL,
    by_user       name NOT NULL DEFAULT session_user,
    at            timestamptz NOT NULL DEFAULT statement_timestamp()
);

-- The patrons a login may currently see through the disclosure role.  Written only by
-- the layer's SECURITY DEFINER functions (request approval, revocation, expiry); no
-- restricted role has any privilege on it.
CREATE TABLE ils_redact.scope (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    patron_id   bigint NOT NULL,
    grantee     name NOT NULL,
    expires_at  timestamptz NOT NULL,
    request_id  bigint,
    created_by  name NOT NULL DEFAULT session_user,
    created_at  timestamptz NOT NULL DEFAULT statement_timestamp()
);
CREATE INDEX scope_grantee_idx ON ils_redact.scope (grantee, expires_at);

-- Patrons in the caller's active scope.  The row-level policies call it once per query,
-- as an InitPlan: `key = ANY ((SELECT ils_redact.scope_patron_ids())::bigint[])` (the
-- cast keeps PostgreSQL from reading it as `= ANY (subquery)`), so the scan of
-- a patron table is an index scan on the handful of ids, not a function call per row.
-- session_user, not current_user: inside a SECURITY DEFINER function current_user is
-- the definer (and the export function runs as the disclosure role).
CREATE FUNCTION ils_redact.scope_patron_ids() RETURNS bigint[]
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT coalesce(array_agg(DISTINCT s.patron_id ORDER BY s.patron_id), '{{}}'::bigint[])
    FROM ils_redact.scope s
    WHERE s.grantee = session_user
      AND s.expires_at > statement_timestamp()
$fn$;

RESET ROLE;

-- New functions are executable by PUBLIC: revoke, then grant to exactly who needs it.
REVOKE ALL ON FUNCTION ils_redact.scope_patron_ids() FROM PUBLIC;
GRANT USAGE ON SCHEMA ils_redact TO {admin}, {disclosure};
GRANT EXECUTE ON FUNCTION ils_redact.scope_patron_ids() TO {disclosure};

-- The ILS owner's nightly pg_dump must keep working and must include this schema (and,
-- later, the audit trail): it reads, never writes.
GRANT USAGE ON SCHEMA ils_redact TO {ils_owner};
GRANT SELECT ON ALL TABLES IN SCHEMA ils_redact TO {ils_owner};
GRANT SELECT ON ALL SEQUENCES IN SCHEMA ils_redact TO {ils_owner};

INSERT INTO ils_redact.meta (key, value) VALUES ('layer_version', '1');
