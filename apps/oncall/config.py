"""On-call server settings: where Prometheus and Alertmanager are, how to authenticate to them, and the
guards on every query and silence. All of it is configuration; no argument a caller sends changes it.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AnyHttpUrl, Field, SecretStr

from apps.kit import KitSettings

# The fleet's runbooks/ (the image copies it to /app/runbooks, beside /app/apps); servers' own pages come
# from their folders (apps.fleet.runbook_dirs).
DEFAULT_RUNBOOKS = Path(__file__).resolve().parents[2] / "runbooks"


class OncallSettings(KitSettings):
    prometheus_url: AnyHttpUrl  # e.g. http://prometheus.mcp-observability.svc:9090 (set by the platform)
    alertmanager_url: AnyHttpUrl  # e.g. http://alertmanager.mcp-observability.svc:9093
    # A multi-tenant backend's tenant (sent as `oncall_tenant_header`), and bearer tokens for either API.
    oncall_tenant: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]{1,128}$")
    oncall_tenant_header: str = Field(default="X-Scope-OrgID", pattern=r"^[A-Za-z0-9-]{1,64}$")
    prometheus_bearer_token: SecretStr | None = None
    alertmanager_bearer_token: SecretStr | None = None

    oncall_runbooks_dir: Path = DEFAULT_RUNBOOKS
    oncall_max_range_hours: float = Field(default=24, gt=0, le=24 * 31)
    oncall_max_series: int = Field(default=50, ge=1, le=1000)
    oncall_max_raw_points: int = Field(default=60, ge=2, le=11_000)  # per series, when raw points are asked for
    oncall_query_timeout_seconds: float = Field(default=10, gt=0, le=120)  # Prometheus stops the query itself
    oncall_max_answer_bytes: int = Field(default=24 * 1024, ge=2048, le=1024 * 1024)  # per tool answer
    oncall_max_upstream_bytes: int = Field(default=8 * 1024 * 1024, ge=64 * 1024, le=256 * 1024 * 1024)
    oncall_max_silence_hours: float = Field(default=4, gt=0, le=24 * 7)
    oncall_max_silences_per_caller: int = Field(default=5, ge=1, le=100)  # active or pending, made through us
    oncall_max_queries_per_caller: int = Field(default=2, ge=1, le=20)  # PromQL queries in flight, per replica
    # One deadline for a whole upstream request, retries included (not only per read).
    oncall_upstream_timeout_seconds: float = Field(default=15, gt=0, le=120)
    oncall_read_retries: int = Field(default=2, ge=0, le=5)  # idempotent reads only
