"""GitHub server settings: the server's own credential, the repositories it may touch, the toolsets it offers,
and the bounds on every upstream call. All of it is configuration; no argument a caller sends changes it."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pydantic import AnyHttpUrl, Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from apps.kit import Keyring, KitSettings, OutsideHost, split_list

Toolset = Literal["repos", "issues", "pulls"]
TOOLSETS: tuple[Toolset, ...] = ("repos", "issues", "pulls")
NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,99})"  # an owner or repository name as GitHub allows it
REPOSITORY_PATTERN = re.compile(rf"^({NAME})/({NAME}|\*)$")


def app_key(pem: str) -> RSAPrivateKey:
    """A GitHub App's private key; GitHub signs App JWTs with RS256 only."""
    key = load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, RSAPrivateKey):
        raise ValueError("a GitHub App's private key is an RSA key")
    return key


class GithubSettings(KitSettings):
    github_api_url: AnyHttpUrl = AnyHttpUrl("https://api.github.com")
    # Who GitHub sees. `installation`: the server itself for every caller (a service deployment). `user`: each
    # person, with their own GitHub App user access token, linked once through the server's connect page
    # (`apps.kit.identity.linking`) and kept sealed in the server's vault; GitHub then limits each write by both
    # the App's and the person's permissions, names the person in its audit log, and counts each person's budget.
    github_identity: Literal["installation", "user"] = "installation"
    # The server's own credential, never the caller's (an MCP token for this server, never forwarded): a
    # fine-grained token, or with GITHUB_APP_ID the App's private key (PEM), which the server exchanges for
    # installation tokens (`apps/github/credential.py`); in user mode, the App's client secret (the web flow's).
    github_credential: SecretStr
    github_app_client_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,100}$")  # user mode
    github_web_url: AnyHttpUrl = AnyHttpUrl("https://github.com")  # the web flow's host: authorize, token exchange
    # User mode's vault: the DSN of the server's own role (the platform's), its keyring (`apps.kit.Keyring`), and
    # the connections it may hold.
    github_vault_url: SecretStr | None = None
    github_vault_keys: SecretStr | None = None
    github_vault_pool_max: int = Field(default=2, ge=1, le=50)  # one short query per call holds one
    github_app_id: int | None = Field(default=None, ge=1)
    github_app_installation_id: int | None = Field(default=None, ge=1)
    # What it may touch: `owner/repo` or `owner/*`, comma separated. A call naming anything else is refused
    # before GitHub is asked.
    github_repositories: Annotated[list[str], NoDecode] = Field(min_length=1)
    github_toolsets: Annotated[list[Toolset], NoDecode] = Field(default_factory=lambda: list(TOOLSETS))
    github_read_only: bool = False  # only the read tools are registered
    # Bodies written by authors without push access, in public repositories, are withheld; and a write after
    # reading untrusted content is refused instead of previewed.
    github_lockdown: bool = False
    github_max_items: int = Field(default=30, ge=1, le=100)  # per list call (one page)
    github_max_text_chars: int = Field(default=4000, ge=200, le=100_000)  # per body or file, then cut
    github_timeout_seconds: float = Field(default=10, gt=0, le=60)  # one deadline per upstream call, retries in
    github_max_upstream_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024, le=64 * 1024 * 1024)
    # Calls are refused (with the reset time) while fewer than this many remain of the credential's hourly budget.
    github_budget_reserve: int = Field(default=100, ge=0, le=10_000)
    # What one caller may spend of each budget window (GitHub's limit for it), so one cannot spend everyone's.
    github_budget_share_percent: int = Field(default=20, ge=1, le=100)
    # A write by a principal who read untrusted content within this window is refused: no model may confirm it.
    github_untrusted_window_seconds: int = Field(default=900, ge=0, le=86_400)
    github_cache_seconds: int = Field(default=3600, ge=0, le=86_400)  # how long an ETag and its answer are kept
    # The conditional-read cache of each replica, in bytes (apps/github/cache.py).
    github_cache_max_bytes: int = Field(default=32 * 1024 * 1024, ge=1024 * 1024, le=1024 * 1024 * 1024)

    @field_validator("github_repositories", "github_toolsets", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return split_list(value)

    @field_validator("github_repositories")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for entry in value:
            if not REPOSITORY_PATTERN.fullmatch(entry):
                raise ValueError(f"{entry!r} is not owner/repo or owner/*")
        return [entry.lower() for entry in value]

    @model_validator(mode="after")
    def _user_mode(self) -> GithubSettings:
        if self.github_identity != "user":
            return self
        missing = [
            name
            for name, value in (
                ("GITHUB_APP_CLIENT_ID", self.github_app_client_id),
                ("GITHUB_VAULT_URL", self.github_vault_url),
                ("GITHUB_VAULT_KEYS", self.github_vault_keys),
                ("MCP_SIGNIN_CLIENT_ID", self.mcp_signin_client_id),
                ("MCP_JWKS_URL", self.mcp_jwks_url),
            )
            if value is None
        ]
        if missing:
            raise ValueError(f"GITHUB_IDENTITY=user needs {', '.join(missing)}")
        if self.github_app_id is not None or self.github_app_installation_id is not None:
            raise ValueError(
                "GITHUB_IDENTITY=user acts as each person, not as an installation: unset GITHUB_APP_ID and "
                "GITHUB_APP_INSTALLATION_ID (GITHUB_CREDENTIAL is the App's client secret)"
            )
        assert self.github_vault_keys is not None
        Keyring(self.github_vault_keys.get_secret_value())  # a bad keyring stops the start, naming what is wrong
        return self

    @model_validator(mode="after")
    def _app_credential(self) -> GithubSettings:
        if (self.github_app_id is None) != (self.github_app_installation_id is None):
            raise ValueError("set both GITHUB_APP_ID and GITHUB_APP_INSTALLATION_ID (a GitHub App), or neither")
        if self.github_app_id is not None:
            try:
                app_key(self.github_credential.get_secret_value())
            except (ValueError, TypeError) as error:
                raise ValueError(
                    f"with GITHUB_APP_ID, GITHUB_CREDENTIAL is the App's private key (PEM): {error}"
                ) from None
        return self

    def allows(self, owner: str, repo: str) -> bool:
        """GitHub names are case-insensitive; `owner/*` allows every repository of that owner."""
        owner, repo = owner.lower(), repo.lower()
        return f"{owner}/{repo}" in self.github_repositories or f"{owner}/*" in self.github_repositories

    def outside_hosts(self) -> list[OutsideHost]:
        hosts = [OutsideHost.of_url(str(self.github_api_url))]
        if self.github_identity == "user":  # the token exchange and refresh are on GitHub's web host
            hosts.append(OutsideHost.of_url(str(self.github_web_url)))
        return hosts
