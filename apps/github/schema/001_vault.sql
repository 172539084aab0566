-- The GitHub server's token vault (user mode: each person's GitHub App user token, sealed): its own schema and
-- its own login role, which reaches nothing else. Idempotent. The tables are the kit's `VAULT_TABLE_SQL` for this
-- schema, word for word (a test holds them equal). The password arrives as a SCRAM verifier in a session setting.

CREATE SCHEMA IF NOT EXISTS github_vault;

CREATE TABLE IF NOT EXISTS github_vault.vault_tokens (
    provider text NOT NULL,
    principal text NOT NULL,
    key_id text NOT NULL,
    sealed bytea NOT NULL,
    access_expires_at timestamptz NOT NULL,
    refresh_expires_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, principal)
);
CREATE TABLE IF NOT EXISTS github_vault.vault_consents (
    provider text NOT NULL,
    principal text NOT NULL,
    client text NOT NULL,
    approved_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, principal, client)
);

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mcp_github_vault') THEN
        CREATE ROLE mcp_github_vault LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
    END IF;
    EXECUTE format('ALTER ROLE mcp_github_vault PASSWORD %L', current_setting('mcpfleet.mcp_github_vault_password'));
END
$$;

ALTER ROLE mcp_github_vault SET statement_timeout = '5s';
ALTER ROLE mcp_github_vault SET search_path = github_vault;
REVOKE ALL ON SCHEMA github_vault FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA github_vault FROM PUBLIC;
GRANT USAGE ON SCHEMA github_vault TO mcp_github_vault;
-- Rows only: no DDL, no TRUNCATE, nothing outside its schema.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA github_vault TO mcp_github_vault;
