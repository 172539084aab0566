"""The organisation's policies in a stack: `mcpfleet:policies` names a folder of this project with `<app>/*.cedar`;
each app's are checked against its tools before anything is created (a bad one stops `pulumi up`, naming file
and line), and mounted read-only for it, with `MCP_POLICY_DIR` pointing there."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest

from infra.config import REPO
from infra.mocked import kubernetes_objects
from tests.infra.conftest import Declared, run_program

APPS = "mcp-apps"


def test_each_apps_policies_are_mounted_for_it_alone():
    result = run_program("dev", {"mcpfleet:policies": "policies/examples"})
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(result.stdout)
    stack = Declared("dev", data["resources"], kubernetes_objects(data["resources"]), data["outputs"])
    config_map = stack.one("ConfigMap", "mcp-db-policies", APPS)
    assert config_map["data"] == {
        "contractors.cedar": (REPO / "policies/examples/mcp-db/contractors.cedar").read_text()
    }
    pod = stack.one("Deployment", "mcp-db", APPS)["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert {"name": "MCP_POLICY_DIR", "value": "/etc/mcpfleet/policies"} in container["env"]
    assert {"name": "policies", "mountPath": "/etc/mcpfleet/policies", "readOnly": True} in container["volumeMounts"]
    assert {"name": "policies", "configMap": {"name": "mcp-db-policies"}} in pod["volumes"]
    files = stack.one("Deployment", "mcp-files", APPS)["spec"]["template"]["spec"]["containers"][0]
    assert "MCP_POLICY_DIR" not in {e["name"] for e in files["env"]}  # no policies of its own: none mounted


@pytest.fixture
def bad_policies() -> Path:
    folder = REPO / ".pytest-policies" / uuid.uuid4().hex
    (folder / "mcp-db").mkdir(parents=True)
    (folder / "mcp-db" / "typo.cedar").write_text('permit (principal, action == Action::"drop_table", resource);\n')
    yield folder
    shutil.rmtree(folder.parent, ignore_errors=True)


def test_a_policy_naming_an_unknown_tool_stops_pulumi_up_with_its_file_and_line(bad_policies):
    result = run_program("dev", {"mcpfleet:policies": str(bad_policies.relative_to(REPO))})
    assert result.returncode != 0
    assert "mcp-db: policies that do not fit" in result.stderr
    assert 'typo.cedar: line 1: unrecognized action `Action::"drop_table"`' in result.stderr


def test_a_policy_folder_outside_the_project_is_refused():
    result = run_program("dev", {"mcpfleet:policies": "../elsewhere"})
    assert result.returncode != 0 and "is not a folder of this project" in result.stderr


def test_the_policy_pack_refuses_policies_that_do_not_fit_their_servers_tools(dev):
    from infra.policy.checks import check_resource

    config_map = dev.one("ConfigMap", "mcp-db-policies", APPS)
    assert config_map["metadata"]["annotations"] == {"mcpfleet.dev/policies-for": "apps.db"}
    assert check_resource("kubernetes:core/v1:ConfigMap", config_map) == []
    broken = {
        **config_map,
        "data": {**config_map["data"], "typo.cedar": "forbid (principal, action, resource is Row);"},
    }
    problems = check_resource("kubernetes:core/v1:ConfigMap", broken)
    assert "ConfigMap mcp-db-policies: typo.cedar: line 1: unrecognized entity type `Row`" in problems
