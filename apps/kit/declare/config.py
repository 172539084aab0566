"""Kit configuration from the environment, validated once at start-up.

A bad value stops the server with one message that names every bad field and
never echoes a value, because the values include secrets.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import sys
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AnyHttpUrl, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

ALLOWED_ALGORITHMS = frozenset({"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "PS256"})
SYMMETRIC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})


# How an identity provider shapes its access tokens (`apps.kit.identity.profiles`).
TokenProfileName = Literal["rfc9068", "keycloak", "entra", "okta", "auth0", "cognito"]


class RedisFailureMode(StrEnum):
    """What the rate limiter does when Redis does not answer."""

    LOCAL = "local"  # fall back to this replica's in-memory window (bounded, default)
    OPEN = "open"  # admit every call
    CLOSED = "closed"  # refuse every call with 429 (and /ready fails)


def split_list(value: Any) -> Any:
    """A list setting from the environment: comma- or space-separated (a list passes as it is)."""
    if isinstance(value, str):
        return [part for part in value.replace(",", " ").split() if part]
    return value


class KitSettings(BaseSettings):
    """Settings every focused server shares; a server adds its own by subclassing."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    mcp_resource_url: AnyHttpUrl
    mcp_issuer: str = Field(min_length=1)
    mcp_jwt_secret: SecretStr | None = None
    mcp_jwks_url: AnyHttpUrl | None = None
    mcp_jwt_algorithms: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["HS256"])
    mcp_jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)
    mcp_jwks_min_refresh_seconds: float = Field(default=60.0, ge=1.0)
    # A server whose pages sign the person in at the issuer (linking an upstream account, `apps.kit.identity.signin`):
    # its client id there (a public client, PKCE), and where it reaches the issuer from inside when the issuer's
    # public URL is not reachable there (the discovery document and the token endpoint; the browser uses the public).
    mcp_signin_client_id: str | None = Field(default=None, pattern=r"^[\x21-\x7e]{1,200}$")
    mcp_issuer_internal_url: AnyHttpUrl | None = None
    # The organisation's Cedar policies for this server (`*.cedar`), beside its defaults (`apps.kit.call.policy`).
    mcp_policy_dir: Path | None = None
    # The platform's egress proxy (this app's own port on it): every outbound HTTP(S) call to a host outside
    # the cluster goes through it, explicitly; proxies from the environment (HTTPS_PROXY) are ignored.
    mcp_egress_proxy: AnyHttpUrl | None = None
    mcp_jwt_require_at_typ: bool = False  # RFC 9068: refuse tokens whose header `typ` is not at+jwt
    # Where the identity provider puts audience, client, scopes and groups (`apps.kit.identity.profiles`), and
    # what else than the resource URL it writes as the audience (Entra's application ID URI, Cognito's app
    # client ids): only what is named here is accepted.
    mcp_token_profile: TokenProfileName = "rfc9068"  # noqa: S105 - a profile name, not a secret
    mcp_accepted_audiences: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Browser origins allowed to call /mcp. A request with an Origin header not listed is refused (403);
    # requests without one (every non-browser client) are unaffected.
    mcp_allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # The largest JSON-RPC body /mcp reads (413 above it); parsed on the event loop, so kept small.
    mcp_max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024, le=64 * 1024 * 1024)
    # What requests may hold while they are read (apps.kit.http.intake). Unset budgets follow the body cap:
    # per principal twice the cap, per process four times it (at least 32 MiB).
    mcp_max_body_bytes_per_principal: int | None = Field(default=None, ge=64 * 1024, le=1024 * 1024 * 1024)
    mcp_max_body_bytes_in_flight: int | None = Field(default=None, ge=64 * 1024, le=4 * 1024 * 1024 * 1024)
    mcp_body_read_seconds: float = Field(default=15.0, gt=0, le=300)
    # A body must keep this rate (after a second's grace): one declared and never sent is refused in about a second.
    mcp_body_min_bytes_per_second: int = Field(default=8192, ge=1, le=1024 * 1024 * 1024)
    # Bodies one principal may have still arriving once half the request slots are taken (unset: 1/16 of
    # MCP_MAX_CONCURRENT_REQUESTS, at least 1): a caller holding bodies half-sent takes its share, never everyone's.
    mcp_max_bodies_reading_per_principal: int | None = Field(default=None, ge=1, le=100_000)
    mcp_header_read_seconds: float = Field(default=5.0, gt=0, le=60)  # a connection's request headers
    # Per process; more get a fast 503 with Retry-After (apps.kit.http.shedding). About the calls one core serves in a
    # third of a second: 256 connections are served without a refusal, and at 1,024 admitted calls kept a p99
    # under 1 s where 512 let it reach 2 s (`python -m bench`, the overload run).
    mcp_max_concurrent_requests: int = Field(default=256, ge=1, le=100_000)

    redis_url: SecretStr | None = None
    # Every key this server writes starts with it; the platform gives each app its own, and a Redis ACL user that
    # may touch nothing else (infra/redis_acl.py).
    redis_key_prefix: str = Field(default="mcpfleet:", pattern=r"^[a-z0-9][a-z0-9._:-]{0,62}:$")
    rate_limit_per_minute: int = Field(default=100, ge=1, le=1_000_000)
    rate_limit_redis_failure: RedisFailureMode = RedisFailureMode.LOCAL

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=1, le=65535)
    # Where /metrics is served: unset, on `port` beside /mcp (one process on a laptop); set, on this port alone
    # (the platform sets it, and admits only Prometheus there, so a route to /mcp can never expose metrics).
    mcp_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    shutdown_grace_seconds: float = Field(default=25.0, ge=0, le=600)
    # Serverless (Cloud Run, Lambda): the platform may freeze the CPU between requests, so nothing is left to
    # run between them: readiness is checked when /ready is asked, not kept fresh by a background task.
    mcp_serverless: bool = False

    otel_service_name: str | None = None
    otel_exporter_otlp_endpoint: str | None = None

    @field_validator("mcp_jwt_algorithms", "mcp_allowed_origins", "mcp_accepted_audiences", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        return split_list(value)

    @field_validator("mcp_jwt_algorithms")
    @classmethod
    def _known_algorithms(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one algorithm is required")
        unknown = sorted(set(value) - ALLOWED_ALGORITHMS)
        if unknown:
            raise ValueError(f"unsupported algorithm(s) {unknown}; allowed: {sorted(ALLOWED_ALGORITHMS)}")
        return value

    @field_validator("mcp_allowed_origins")
    @classmethod
    def _origins_are_origins(cls, value: list[str]) -> list[str]:
        """An origin is scheme://host[:port], compared exactly (case-folded) with the browser's header."""
        for origin in value:
            if not re.fullmatch(r"https?://[^/\s]+", origin):
                raise ValueError(f"{origin!r} is not an origin (scheme://host[:port], no path)")
        return [origin.lower() for origin in value]

    @field_validator("mcp_issuer")
    @classmethod
    def _issuer_is_url(cls, value: str) -> str:
        """Kept as the exact string (compared to `iss` verbatim), but it must be an http(s) URL."""
        AnyHttpUrl(value)
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_key_source(self) -> KitSettings:
        secret = self.mcp_jwt_secret.get_secret_value() if self.mcp_jwt_secret else None
        if secret is None and self.mcp_jwks_url is None:
            raise ValueError("set MCP_JWT_SECRET (HS*) or MCP_JWKS_URL (RS*/ES*)")
        if secret is not None and self.mcp_jwks_url is not None:
            raise ValueError("set only one of MCP_JWT_SECRET and MCP_JWKS_URL")
        symmetric = set(self.mcp_jwt_algorithms) & SYMMETRIC_ALGORITHMS
        if secret is not None:
            if len(secret.encode()) < 32:
                raise ValueError("MCP_JWT_SECRET must be at least 32 bytes")
            if symmetric != set(self.mcp_jwt_algorithms):
                raise ValueError("MCP_JWT_SECRET allows only HS* algorithms in MCP_JWT_ALGORITHMS")
        elif symmetric:
            # A public key used as an HMAC secret is the classic alg-confusion attack.
            raise ValueError("MCP_JWKS_URL allows only asymmetric algorithms in MCP_JWT_ALGORITHMS")
        if self.mcp_token_profile == "cognito" and not self.mcp_accepted_audiences:  # noqa: S105 - a name
            raise ValueError(
                "MCP_TOKEN_PROFILE=cognito: Cognito access tokens carry no aud; name the app client ids this "
                "server accepts in MCP_ACCEPTED_AUDIENCES"
            )
        return self

    def secret_values(self) -> list[str]:
        """Every configured secret, for the logs to mask: each SecretStr, and the strings inside one that is
        a JSON object (per-target webhook URLs and keys)."""
        values: list[str] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                text = value.get_secret_value()
                values.append(text)
                values += _json_strings(text)
        return values

    @property
    def body_bytes_per_principal(self) -> int:
        return self.mcp_max_body_bytes_per_principal or 2 * self.mcp_max_body_bytes

    @property
    def bodies_reading_per_principal(self) -> int:
        return self.mcp_max_bodies_reading_per_principal or max(1, self.mcp_max_concurrent_requests // 16)

    @property
    def body_bytes_in_flight(self) -> int:
        return self.mcp_max_body_bytes_in_flight or max(4 * self.mcp_max_body_bytes, 32 * 1024 * 1024)

    @property
    def resource_url(self) -> str:
        """The canonical audience, without a trailing slash."""
        return str(self.mcp_resource_url).rstrip("/")


def _json_strings(text: str) -> list[str]:
    if not text.startswith("{"):
        return []
    try:
        parsed = json.loads(text)
    except ValueError:
        return []
    found: list[str] = []
    stack = [parsed]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            found.append(node)
        elif isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


class ConfigError(SystemExit):
    """Exits with status 2 when configuration is invalid; the message names fields only.

    The message is printed once by `load_settings`; the exit carries only the status, so the
    interpreter does not print it a second time.
    """

    def __init__(self, message: str):
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def describe_errors(error: ValidationError) -> str:
    """One line per bad field, with pydantic's reason but never the rejected value."""
    lines = []
    for err in error.errors(include_input=False, include_url=False):
        field = ".".join(str(part) for part in err["loc"]).upper() or "(settings)"
        reason = err["msg"].removeprefix("Value error, ")
        lines.append(f"  {field}: {reason}")
    return "\n".join(lines)


# Segments of setting names that are not a server's own: `HOST`, `PORT` and `LOG_LEVEL` are everyone's, and the
# OpenTelemetry SDK reads many `OTEL_*` variables of its own.
SHARED_SEGMENTS = frozenset({"HOST", "PORT", "LOG", "OTEL"})
# Read by the platform's entry points, not settings: the server the Lambda handler serves (apps/lambda_main.py).
NOT_SETTINGS = frozenset({"MCP_SERVER"})
# What Kubernetes adds for each Service of the namespace (`MCP_DB_SERVICE_HOST`, `MCP_DB_PORT_8080_TCP_ADDR`).
SERVICE_LINK = re.compile(r"[A-Z0-9_]+_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_\d+_(TCP|UDP|SCTP)(_[A-Z]+)?)?)")


def unknown_settings(settings_cls: type[BaseSettings], env: Mapping[str, str]) -> list[str]:
    """Variables that look like this server's settings (they start as some of its settings do: `MCP_`, `RATE_`,
    `FILES_` ...) but are none of them, each with the closest setting: a misspelt setting is an error, never a
    silent default (`FILES_ROOT` for `FILES_ROOTS` once left the default read-write root in place)."""
    fields = {name.upper() for name in settings_cls.model_fields}
    owned = {name.split("_")[0] + "_" for name in fields} - {f"{segment}_" for segment in SHARED_SEGMENTS}
    problems = []
    for variable in sorted(env):
        name = variable.upper()
        if name in fields or name in NOT_SETTINGS or not name.startswith(tuple(owned)) or SERVICE_LINK.fullmatch(name):
            continue
        close = difflib.get_close_matches(name, fields, n=1, cutoff=0.6)
        problems.append(f"  {name}: not a setting of this server" + (f"; did you mean {close[0]}?" if close else ""))
    return problems


def load_settings(settings_cls: type[SettingsT]) -> SettingsT:
    """Build settings from the environment or exit with a message naming every bad field and every variable that
    looks like a setting but is none."""
    if unknown := unknown_settings(settings_cls, os.environ):
        message = f"invalid configuration for {settings_cls.__name__}:\n" + "\n".join(unknown)
        print(message, file=sys.stderr)
        raise ConfigError(message)
    try:
        return settings_cls()
    except ValidationError as error:
        message = f"invalid configuration for {settings_cls.__name__}:\n{describe_errors(error)}"
    except SettingsError as error:  # a JSON setting that is not JSON: pydantic-settings names the field
        message = f"invalid configuration for {settings_cls.__name__}:\n  {_unparsable(error)}"
    print(message, file=sys.stderr)
    raise ConfigError(message)


def _unparsable(error: SettingsError) -> str:
    """`FILES_ROOTS: not valid JSON (Expecting value: line 1 column 8)`, never the value itself."""
    field = re.search(r'field "([^"]+)"', str(error))
    cause = error.__cause__
    reason = f"{type(cause).__name__}: {cause}" if isinstance(cause, ValueError) else "not valid JSON"
    if isinstance(cause, json.JSONDecodeError):
        reason = f"not valid JSON ({cause.msg}: line {cause.lineno} column {cause.colno})"
    return f"{field[1].upper() if field else '(settings)'}: {reason}"


def settings_from_env(settings_cls: type[SettingsT], env: Mapping[str, str]) -> SettingsT:
    """Settings from these variables alone, parsed exactly as from the environment (lists and objects as
    JSON): how the platform checks an app's stack settings before it deploys them. Raises ValidationError."""

    class FromMapping(EnvSettingsSource):
        def _load_env_vars(self) -> Mapping[str, str | None]:
            return {key.lower(): value for key, value in env.items()}

    class Isolated(settings_cls):  # type: ignore[valid-type,misc]
        @classmethod
        def settings_customise_sources(
            cls, settings_cls: type[BaseSettings], **sources: PydanticBaseSettingsSource
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (FromMapping(settings_cls),)

    return Isolated()
