-- Least-privilege login roles for the database MCP server. Idempotent.
-- Passwords are never in this file: `python -m apps.kit.cli.schema` passes SCRAM
-- verifiers (computed client-side) through the session settings read below.
--   mcp_db_reader: SELECT in `sales`, nothing else.
--   mcp_db_writer: SELECT, INSERT, UPDATE in `sales` (no DELETE, no DDL), nothing else.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mcp_db_reader') THEN
        CREATE ROLE mcp_db_reader LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mcp_db_writer') THEN
        CREATE ROLE mcp_db_writer LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
    END IF;
    EXECUTE format('ALTER ROLE mcp_db_reader PASSWORD %L', current_setting('mcpfleet.mcp_db_reader_password'));
    EXECUTE format('ALTER ROLE mcp_db_writer PASSWORD %L', current_setting('mcpfleet.mcp_db_writer_password'));
END
$$;

-- Runaway statements are cut off server-side even if a client forgets its own timeout.
ALTER ROLE mcp_db_reader SET statement_timeout = '10s';
ALTER ROLE mcp_db_writer SET statement_timeout = '10s';
ALTER ROLE mcp_db_reader SET search_path = sales;
ALTER ROLE mcp_db_writer SET search_path = sales;

-- Nobody gets anything by default: not in `public`, not in `sales`, not in `internal`.
REVOKE ALL ON SCHEMA public FROM PUBLIC;
REVOKE ALL ON SCHEMA sales FROM PUBLIC;
REVOKE ALL ON SCHEMA internal FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA sales FROM mcp_db_reader, mcp_db_writer;

GRANT USAGE ON SCHEMA sales TO mcp_db_reader, mcp_db_writer;
GRANT SELECT ON ALL TABLES IN SCHEMA sales TO mcp_db_reader;
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA sales TO mcp_db_writer;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA sales TO mcp_db_writer;

-- Tables created later in `sales` by the schema owner get the same grants.
ALTER DEFAULT PRIVILEGES IN SCHEMA sales GRANT SELECT ON TABLES TO mcp_db_reader;
ALTER DEFAULT PRIVILEGES IN SCHEMA sales GRANT SELECT, INSERT, UPDATE ON TABLES TO mcp_db_writer;
ALTER DEFAULT PRIVILEGES IN SCHEMA sales GRANT USAGE ON SEQUENCES TO mcp_db_writer;
