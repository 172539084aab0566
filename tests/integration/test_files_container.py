"""The file server's image as the platform runs it: read-only root file system, the volume mounted read-write.

The attack corpus runs against the container too, and a restart keeps what was written.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from testcontainers.core.container import DockerContainer

from apps.kit.cli.token import mint
from tests.conftest import ISSUER, SECRET
from tests.integration.conftest import measured
from tests.support.files_corpus import ATTACKS, INSIDE, build_tree, outside_state
from tests.support.files_corpus import SECRET as OUTSIDE_SECRET
from tests.support.raw import post, tool_call
from tests.support.stack import APP_PORT, wait_until

pytestmark = pytest.mark.integration
RESOURCE_URL = "http://mcp-files.mcpfleet.test/mcp"
MOUNT = "/srv/files"
APP_UID = 10001


@dataclass
class FilesContainer:
    container: DockerContainer
    volume: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.container.get_exposed_port(APP_PORT)}/mcp"

    def call(self, tool: str, arguments: dict) -> dict:
        token = mint(SECRET, issuer=ISSUER, audience=RESOURCE_URL, subject="ops", scopes="files:read files:write")
        response = post(self.url, tool_call(tool, arguments), token)
        assert response.status_code == 200, response.text
        return response.json()["result"]

    def wait_ready(self) -> None:
        ready = self.url.removesuffix("/mcp") + "/ready"
        wait_until(lambda: httpx.get(ready, timeout=2).status_code == 200, 60, 0.2, "files container ready")


def give_to_the_app_user(volume: Path, path: Path) -> None:
    """The image runs as uid 10001; on Kubernetes fsGroup does this for the volume. What lies outside the
    root stays readable to that user, so a refusal there is the sandbox's doing, not a permission error."""
    os.chmod(volume, 0o755)  # noqa: S103 - the volume root, as a fresh PVC is
    for directory, names, files in os.walk(path):
        os.chown(directory, APP_UID, APP_UID)
        for name in names + files:
            os.chown(os.path.join(directory, name), APP_UID, APP_UID, follow_symlinks=False)


@pytest.fixture
def files_container(apps_image: str, tmp_path: Path) -> Iterator[FilesContainer]:
    if os.geteuid() != 0:
        pytest.skip("the volume is handed to the image's user (uid 10001) with chown, which needs root")
    build_tree(tmp_path)
    give_to_the_app_user(tmp_path, tmp_path / "data")
    container = DockerContainer(apps_image).with_command("apps.files").with_exposed_ports(APP_PORT)
    container.with_name("files-" + uuid.uuid4().hex[:6])
    container.with_volume_mapping(str(tmp_path), MOUNT, "rw")
    container.with_kwargs(read_only=True).with_tmpfs_mount("/tmp", "size=16m")
    settings = {
        "MCP_RESOURCE_URL": RESOURCE_URL,
        "MCP_ISSUER": ISSUER,
        "MCP_JWT_SECRET": SECRET,
        "FILES_PATH": MOUNT,
        "FILES_ROOTS": '{"data": "rw"}',
    }
    for key, value in settings.items():
        container.with_env(key, value)
    container.start()
    running = FilesContainer(container, tmp_path)
    try:
        running.wait_ready()
        yield running
    finally:
        container.stop()


def test_the_image_serves_files_from_its_volume_on_a_read_only_root(files_container):
    inspected = files_container.container.get_wrapped_container()
    inspected.reload()
    assert inspected.attrs["HostConfig"]["ReadonlyRootfs"] is True
    assert inspected.attrs["Config"]["User"] == f"{APP_UID}:{APP_UID}"
    written = files_container.call("write_file", {"path": "reports/today.md", "content": "# today"})
    assert written["isError"] and written["content"][0]["text"] == "reports: not found"  # no implicit parents
    assert not files_container.call("create_directory", {"path": "reports"})["isError"]
    assert not files_container.call("write_file", {"path": "reports/today.md", "content": "# today"})["isError"]
    read = files_container.call("read_file", {"path": f"{MOUNT}/data/reports/today.md"})["structuredContent"]
    assert read["text"] == "# today"
    assert (files_container.volume / "data" / "reports" / "today.md").stat().st_uid == APP_UID


def test_the_attack_corpus_is_refused_by_the_container(files_container):
    before = outside_state(files_container.volume)
    accepted = [
        attack.name
        for attack in ATTACKS
        if not (result := files_container.call(attack.tool, attack.resolved(f"{MOUNT}/data"))).get("isError")
        or OUTSIDE_SECRET in result["content"][0]["text"]
    ]
    measured(f"files container: {len(ATTACKS)} corpus attacks, {len(accepted)} accepted")
    assert accepted == []
    assert outside_state(files_container.volume) == before
    assert (files_container.volume / "data" / "ok.txt").read_text() == INSIDE


def test_a_restart_keeps_written_files(files_container):
    files_container.call("write_file", {"path": "kept.txt", "content": "still here"})
    files_container.container.get_wrapped_container().restart(timeout=10)
    files_container.wait_ready()
    assert files_container.call("read_file", {"path": "kept.txt"})["structuredContent"]["text"] == "still here"
