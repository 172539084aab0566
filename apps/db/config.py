"""Database server settings: two DSNs for two roles, pool bounds and timeouts."""

from __future__ import annotations

from pydantic import Field, SecretStr

from apps.kit import KitSettings


class DbSettings(KitSettings):
    db_read_url: SecretStr  # role with SELECT only
    db_write_url: SecretStr  # role with SELECT, INSERT, UPDATE only
    db_schema: str = Field(default="sales", pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")
    db_pool_min: int = Field(default=0, ge=0, le=100)
    db_pool_max: int = Field(default=20, ge=1, le=200)
    db_acquire_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    db_statement_timeout_ms: int = Field(default=5000, ge=100, le=600_000)
    db_connect_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
