"""The file server on Kubernetes: its volume, mounted read-write only where a root is `rw`, and nothing else."""

from __future__ import annotations

import pytest

from infra.config import StackConfigError, parse
from infra.fleet import check, load_server, read_only_volumes, volume_env
from tests.infra.conftest import Declared, authz_config

APPS = "mcp-apps"
FILES = {
    "module": "apps.files",
    "resourceUrl": "http://mcp-files.mcp-apps.svc/mcp",
    "replicas": 1,
    "maxReplicas": 1,
    "volumes": {"files": {"size": "1Gi"}},
}


def app(**changes):
    return parse(
        {"issuer": "https://issuer.test", "jwksUrl": "https://issuer.test/jwks", "apps": {"f": {**FILES, **changes}}}
    ).apps["f"]


@pytest.fixture(scope="module")
def files_server():
    return load_server("apps.files")


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_files_app_mounts_its_volume_and_is_configured_by_its_stack_entry(request, stack):
    declared: Declared = request.getfixturevalue(stack)
    pod = declared.one("Deployment", "mcp-files", APPS)["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert {"name": "files", "mountPath": "/srv/files", "readOnly": False} in container["volumeMounts"]
    assert env["FILES_PATH"] == "/srv/files" and "FILES_READ_ONLY" not in env
    assert env["FILES_ROOTS"] == ('{"workspace": "rw"}' if stack == "dev" else '{"handbook": "ro", "scratch": "rw"}')
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["fsGroup"] == 10001
    claim = declared.one("PersistentVolumeClaim", "mcp-files-files", APPS)["spec"]
    assert claim["accessModes"] == (["ReadWriteOnce"] if stack == "dev" else ["ReadWriteMany"])
    secret = declared.one("Secret", "mcp-files-secrets", APPS)["stringData"]
    assert "DB_READ_URL" not in secret and "DB_WRITE_URL" not in secret  # no database: it declared none
    ports = {p["port"] for r in declared.one("NetworkPolicy", "mcp-files", APPS)["spec"]["egress"] for p in r["ports"]}
    assert 5432 not in ports  # never Postgres: it declared no database
    # Redis for the rate limit only where it may run as more than one replica (prod; dev has one)
    assert (6379 in ports) == (stack == "prod") and ("REDIS_URL" in secret) == (stack == "prod")
    if stack == "dev":  # the local authorization server issues tokens for it, for the scopes its tools declare
        files = authz_config(declared)["resources"]["https://mcp-files.localhost/mcp"]
        assert files == {"name": "mcp-files", "scopes": ["files:read", "files:write"]}


@pytest.mark.parametrize(
    ("changes", "read_only"),
    [
        ({"settings": {"FILES_ROOTS": '{"a": "rw", "b": "ro"}'}}, False),
        ({"settings": {"FILES_ROOTS": '{"a": "ro", "b": "ro"}'}}, True),  # nothing writes: mounted read-only
        ({"settings": {"FILES_READ_ONLY": "true"}}, True),
        ({"volumes": {"files": {"size": "1Gi", "readOnly": True}}}, True),  # the stack's own switch
    ],
)
def test_the_volume_is_mounted_read_write_only_where_a_root_is_rw(files_server, changes, read_only):
    entry = app(**changes)
    check("f", entry, files_server)
    mounted = read_only_volumes("f", entry, files_server)
    assert mounted == ({"files"} if read_only else set())
    env = volume_env(files_server, mounted)
    assert (env.get("FILES_READ_ONLY") == "true") is read_only  # the server then registers no write tool


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"FILES_ROOTZ": "{}"}, r"settings.FILES_ROOTZ: not a setting of mcpfleet-files"),
        ({"MCP_JWT_SECRET": "x"}, r"settings.MCP_JWT_SECRET: not a setting"),  # platform settings are not the app's
        ({"FILES_ROOTS": '{"Bad Name": "rw"}'}, r"settings.FILES_ROOTS"),
        ({"FILES_MAX_READ_BYTES": "0"}, r"settings.FILES_MAX_READ_BYTES: Input should be greater than or equal to 1"),
    ],
)
def test_bad_app_settings_stop_the_program_naming_the_key(files_server, settings, message):
    with pytest.raises(StackConfigError, match=message):
        check("f", app(settings=settings), files_server)
