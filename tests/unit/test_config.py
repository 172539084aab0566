from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from apps.db.config import DbSettings
from apps.kit.declare.config import ConfigError, KitSettings, RedisFailureMode, load_settings
from tests.conftest import ISSUER, SECRET

REPO = Path(__file__).resolve().parents[2]


def test_valid_config_has_seed_defaults(make_settings):
    settings = make_settings()
    assert settings.rate_limit_per_minute == 100
    assert settings.port == 8080
    assert settings.mcp_jwt_algorithms == ["HS256"]
    assert settings.rate_limit_redis_failure is RedisFailureMode.LOCAL
    assert settings.resource_url == "http://127.0.0.1:9/mcp"


def test_every_bad_field_is_named_in_one_message(set_env, capsys):
    set_env(MCP_RESOURCE_URL="not a url", MCP_ISSUER=None, PORT="70000", RATE_LIMIT_PER_MINUTE="0")
    with pytest.raises(ConfigError) as raised:
        load_settings(KitSettings)
    message = str(raised.value)
    for field in ("MCP_RESOURCE_URL", "MCP_ISSUER", "PORT", "RATE_LIMIT_PER_MINUTE"):
        assert field in message
    assert message in capsys.readouterr().err


def test_db_settings_name_missing_dsns(set_env):
    set_env()
    with pytest.raises(ConfigError) as raised:
        load_settings(DbSettings)
    assert "DB_READ_URL" in str(raised.value) and "DB_WRITE_URL" in str(raised.value)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"MCP_JWT_SECRET": "too-short"}, "at least 32 bytes"),
        ({"MCP_JWT_SECRET": None}, "MCP_JWT_SECRET"),
        ({"MCP_JWKS_URL": "https://idp.test/jwks"}, "only one of"),
        ({"MCP_JWT_ALGORITHMS": "RS256"}, "only HS* algorithms"),
        ({"MCP_JWT_ALGORITHMS": "none"}, "unsupported algorithm"),
        (
            {"MCP_JWT_SECRET": None, "MCP_JWKS_URL": "https://idp.test/jwks", "MCP_JWT_ALGORITHMS": "RS256 HS256"},
            "only asymmetric",
        ),
        ({"RATE_LIMIT_REDIS_FAILURE": "sometimes"}, "RATE_LIMIT_REDIS_FAILURE"),
        ({"MCP_ISSUER": "not-a-url"}, "MCP_ISSUER"),
    ],
)
def test_bad_auth_config_is_refused(set_env, overrides, expected):
    set_env(**overrides)
    with pytest.raises(ConfigError) as raised:
        load_settings(KitSettings)
    assert expected in str(raised.value)


def test_secret_values_never_appear_in_errors(set_env):
    dsn = "postgresql://reader:hunter2-password@db:5432/app"
    set_env(MCP_JWT_SECRET="short-secret-value", DB_READ_URL=dsn, DB_WRITE_URL="nonsense", PORT="x")
    with pytest.raises(ConfigError) as raised:
        load_settings(DbSettings)
    assert "short-secret-value" not in str(raised.value)
    assert "hunter2" not in str(raised.value)


def test_algorithm_list_accepts_spaces_or_commas(make_settings):
    settings = make_settings(MCP_JWT_SECRET=SECRET, MCP_JWT_ALGORITHMS="HS256, HS512")
    assert settings.mcp_jwt_algorithms == ["HS256", "HS512"]


def test_bad_config_exits_2_with_the_message_printed_once():
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "apps.db"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"MCP_RESOURCE_URL": "x", "PATH": ""},
    )
    assert result.returncode == 2
    assert result.stderr.count("invalid configuration for DbSettings") == 1
    assert "DB_READ_URL" in result.stderr


@pytest.mark.parametrize(
    ("module", "setting", "value"),
    [
        ("apps.files", "FILES_ROOTS", '{"notes": '),
        ("apps.notify", "NOTIFY_TARGETS", '{"a": {"kind": "webhook",}}'),
        ("apps.files", "FILES_ROOTS", "notes=rw"),
    ],
)
def test_a_malformed_json_setting_stops_the_server_naming_it_without_a_traceback(module, setting, value):
    import subprocess
    import sys

    base = {"MCP_RESOURCE_URL": "http://127.0.0.1:9/mcp", "MCP_ISSUER": ISSUER, "MCP_JWT_SECRET": SECRET, "PATH": ""}
    extra = {"REDIS_URL": "redis://localhost", "NOTIFY_SIGNING_KEY": "k" * 40}
    result = subprocess.run(
        [sys.executable, "-m", module],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **extra, setting: value},
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [header, line] = result.stderr.strip().splitlines()
    assert header.startswith("invalid configuration for ")
    assert line.strip().startswith(f"{setting}: not valid JSON (") and value not in line


def test_unreachable_dependencies_at_start_are_named_and_the_server_waits_not_ready(tmp_path):
    """A database and a Redis that cannot be reached: one warning line each naming the host and why; the
    server keeps running with /ready 503, and a tool call says the database is unavailable."""
    import httpx

    from tests.support.running import start_process

    server = start_process(
        "apps.db",
        DB_READ_URL="postgresql://reader:pw@db-that-does-not-exist.invalid:5432/app",
        DB_WRITE_URL="postgresql://writer:pw@127.0.0.1:1/app",
        REDIS_URL="redis://:pw@redis-that-does-not-exist.invalid:6379/0",
        DB_ACQUIRE_TIMEOUT_SECONDS="1",
    )
    try:
        base = server.url.removesuffix("/mcp")
        assert httpx.get(base + "/ready", timeout=10).status_code == 503
        from tests.support.raw import post, tool_call

        answer = post(server.url, tool_call("list_tables"), server.token("db:read")).json()["result"]
        assert answer["isError"] and answer["content"][0]["text"].startswith("database unavailable")
    finally:
        server.process.terminate()
        server.process.wait(timeout=30)
        output = server.output().decode()
    warnings = [json.loads(line) for line in output.splitlines() if '"dependency_unavailable"' in line]
    named = {w["dependency"]: w["reason"] for w in warnings}
    assert "db-that-does-not-exist.invalid:5432" in named["db_read"]
    assert "127.0.0.1:1" in named["db_write"] and "refused" in named["db_write"]
    assert "redis-that-does-not-exist.invalid:6379" in named["redis"]
    assert "pw@" not in output  # the DSNs' passwords are never written


def test_a_misspelt_setting_stops_the_server_naming_the_closest_one(tmp_path):
    """`FILES_ROOT` for `FILES_ROOTS` was ignored and the server started with its default read-write root."""
    import subprocess
    import sys

    env = {
        "PATH": os.environ["PATH"],
        "MCP_RESOURCE_URL": "http://127.0.0.1:1/mcp",
        "MCP_ISSUER": "https://issuer.test",
        "MCP_JWT_SECRET": "s" * 32,
        "FILES_ROOT": str(tmp_path),
        "RATE_LIMIT_PER_MINUT": "5",
        "MCP_DB_SERVICE_HOST": "10.0.0.1",  # Kubernetes' service links, and the shared names, are not settings
        "MCP_DB_PORT_8080_TCP_ADDR": "10.0.0.1",
        "OTEL_SERVICE_VERSION": "1",
        "HOSTNAME": "pod-1",
    }
    started = subprocess.run(
        [sys.executable, "-m", "apps.files"], env=env, capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert started.returncode == 2, started.stderr
    assert "FILES_ROOT: not a setting of this server; did you mean FILES_ROOTS?" in started.stderr
    assert "RATE_LIMIT_PER_MINUT: not a setting of this server; did you mean RATE_LIMIT_PER_MINUTE?" in started.stderr
    assert "SERVICE_HOST" not in started.stderr and "OTEL" not in started.stderr and "HOSTNAME" not in started.stderr
