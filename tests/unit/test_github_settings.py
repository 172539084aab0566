"""The GitHub server's two identities as settings: user mode says what it lacks, and its vault's tables are the
kit's, word for word."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from apps.github.config import GithubSettings
from apps.github.server import server
from apps.kit import VAULT_TABLE_SQL, Keyring, settings_from_env

BASE = {
    "MCP_RESOURCE_URL": "https://gh.example/mcp",
    "MCP_ISSUER": "https://auth.example",
    "MCP_JWKS_URL": "https://auth.example/jwks",
    "MCP_JWT_ALGORITHMS": "RS256",
    "GITHUB_CREDENTIAL": "client-secret",
    "GITHUB_REPOSITORIES": "octo/hello",
}
USER = BASE | {
    "GITHUB_IDENTITY": "user",
    "GITHUB_APP_CLIENT_ID": "Iv23liAbc",
    "GITHUB_VAULT_URL": "postgresql://mcp_github_vault@db/mcp",
    "GITHUB_VAULT_KEYS": Keyring.new_key("k1"),
    "MCP_SIGNIN_CLIENT_ID": "mcp-github-pages",
}


def test_user_mode_has_what_it_needs_and_reaches_githubs_web_host():
    settings = settings_from_env(GithubSettings, USER)
    assert [str(host) for host in settings.outside_hosts()] == ["api.github.com:443", "github.com:443"]
    assert sorted(server.offered(settings)) == sorted([*server.specs])  # disconnect too
    installation = settings_from_env(GithubSettings, BASE)
    assert "disconnect" not in server.offered(installation)
    assert [str(host) for host in installation.outside_hosts()] == ["api.github.com:443"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"GITHUB_VAULT_KEYS": None}, "GITHUB_IDENTITY=user needs GITHUB_VAULT_KEYS"),
        (
            {"MCP_SIGNIN_CLIENT_ID": None, "GITHUB_APP_CLIENT_ID": None},
            "needs GITHUB_APP_CLIENT_ID, MCP_SIGNIN_CLIENT_ID",
        ),
        ({"GITHUB_VAULT_KEYS": "k1:short"}, "a vault key is `id:base64` of 32 random bytes"),
        ({"GITHUB_APP_ID": "1", "GITHUB_APP_INSTALLATION_ID": "2"}, "acts as each person, not as an installation"),
        ({"GITHUB_IDENTITY": "users"}, "GITHUB_IDENTITY"),
    ],
)
def test_a_user_mode_that_cannot_work_is_refused_naming_what_is_wrong(change, message):
    values = {key: value for key, value in (USER | change).items() if value is not None}
    with pytest.raises(ValidationError) as refused:
        settings_from_env(GithubSettings, values)
    assert message in str(refused.value) or message.lower() in str(refused.value).lower()


def test_the_vault_schema_holds_the_kits_tables_word_for_word():
    [sql] = sorted(Path(server.needs.schema or "").glob("*.sql"))
    assert VAULT_TABLE_SQL.format(schema="github_vault").strip() in sql.read_text()


def test_the_vault_keyring_takes_a_generated_secret_as_a_key_of_its_own():
    """A dev stack generates `vault-keys` as a bare 40-character secret: it becomes key `k0`, derived; a new key put
    first (`id:base64`) becomes the primary, the bare one still opening old rows."""
    generated = "A" * 40
    assert Keyring(generated).primary == "k0"
    rotated = Keyring(f"{Keyring.new_key('k1')} {generated}")
    key_id, sealed = Keyring(generated).seal(b"token", b"github\0ada")
    assert rotated.primary == "k1" and rotated.open(key_id, sealed, b"github\0ada") == b"token"
    with pytest.raises(ValueError, match="at least 32 characters"):
        Keyring("short")
