"""The story, end to end, on the composed platform that `./scripts/up` starts (compose.yaml, the dev stack).

Forged tokens against the db server fire McpAuthFailureBurst through the composition's own Prometheus and
Alertmanager, which notify its webhook sink; the on-call server lists the alert with its runbook and
silences it; the notify server previews and sends to the sink, which verifies the signature; the file
server writes a note to its volume and reads it back; Postgres restarts under a stream of inserts and no
acknowledged insert is lost. Grafana, Loki and the collector are left out here (the `observability`
profile): they have no offline stand-in (tests/infra/test_compose.py checks their wiring statically).
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from onebox import runbooks
from onebox.machine import SECRETS_FILE, compose_command, read_env_file
from tests.conftest import requirement_missing
from tests.support.raw import post, rpc, tool_call
from tests.support.stack import wait_until

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def scripts(*command: str, checkout: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(checkout / "scripts" / command[0]), *command[1:]], capture_output=True, text=True, cwd=checkout
    )


def containers_of(project: str) -> str:
    listed = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"],
        capture_output=True,
        text=True,
    )
    return listed.stdout.strip()


@pytest.fixture(scope="module")
def platform() -> Iterator[dict[str, Any]]:
    try:
        compose_command()
    except SystemExit as missing:
        requirement_missing(str(missing))
    scripts("down", "--volumes")
    started = time.monotonic()
    cold = scripts("up", "--json", "--no-observability")
    cold_seconds = time.monotonic() - started
    assert cold.returncode == 0, cold.stderr[-3000:]
    started = time.monotonic()
    warm = scripts("up", "--json", "--no-observability")
    warm_seconds = time.monotonic() - started
    assert warm.returncode == 0, warm.stderr[-3000:]
    result = json.loads(warm.stdout)
    print(f"\nscripts/up: cold (empty volumes) {cold_seconds:.1f} s, warm (already up) {warm_seconds:.1f} s")
    project = read_env_file(SECRETS_FILE)["COMPOSE_PROJECT_NAME"]
    try:
        yield result
    finally:
        stopped = scripts("down", "--volumes")
        assert stopped.returncode == 0, stopped.stderr[-2000:]
        assert containers_of(project) == "", "scripts/down left containers behind"


def call(platform: dict[str, Any], app: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    entry = platform["apps"][app]
    response = post(entry["url"], tool_call(tool, arguments), entry["token"])
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["result"]
    assert not result.get("isError"), result
    return result["structuredContent"]  # type: ignore[no-any-return]


def test_every_app_answers_with_the_token_it_was_given(platform):
    assert set(platform["apps"]) == {"mcp-db", "mcp-files", "mcp-oncall", "mcp-notify"}
    for name, entry in platform["apps"].items():
        listed = post(entry["url"], rpc("tools/list"), entry["token"]).json()["result"]["tools"]
        assert listed and entry["scopes"], name
    assert platform["grafana"] is None  # the observability profile is left out here (see the module docstring)


@pytest.fixture(scope="module")
def drills(platform: dict[str, Any]) -> Iterator[dict[str, subprocess.Popen[str]]]:
    """`scripts/drill`, two at once, started by the test that asks first and left running beside it:
    McpServerDown (mcp-notify's container stops) and McpAuthFailureBurst (forged tokens to mcp-files)."""
    started = {
        alert: subprocess.Popen(
            [str(REPO / "scripts" / "drill"), alert, "--app", app, "--timeout", "360"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        )
        for alert, app in (("McpServerDown", "mcp-notify"), ("McpAuthFailureBurst", "mcp-files"))
    }  # fmt: skip
    yield started
    for process in started.values():
        if process.poll() is None:
            process.kill()


def test_forged_tokens_page_the_on_call_who_finds_the_runbook_and_silences_it(platform, drills):
    db = platform["apps"]["mcp-db"]["url"]
    forged = platform["apps"]["mcp-db"]["token"][:-4] + "AAAA"
    since = time.time()
    stop = threading.Event()

    def forge() -> None:  # more than 10 failures a minute for as long as it takes the alert to fire
        while not stop.is_set():
            post(db, tool_call("list_tables"), forged)
            stop.wait(1)

    threading.Thread(target=forge, daemon=True).start()
    try:

        def paged() -> dict[str, Any] | None:
            for entry in httpx.get(platform["sink"], timeout=5).json():
                notification = entry["notification"]
                if entry["path"] == "/alerts" and entry["received_at"] >= since and isinstance(notification, dict):
                    for alert in notification["alerts"]:
                        labels = alert["labels"]
                        if labels["alertname"] == "McpAuthFailureBurst" and labels.get("app") == "mcp-db":
                            return alert  # type: ignore[no-any-return]
            return None

        try:
            alert = wait_until(paged, 240, 2, "McpAuthFailureBurst delivered to the sink")
        except TimeoutError as late:  # say what Alertmanager and Prometheus held
            held = httpx.get(f"{platform['alertmanager']}/api/v2/alerts", timeout=5).json()
            rules = httpx.get(f"{platform['prometheus']}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
            raise AssertionError(f"{late}; Alertmanager: {held}; Prometheus: {rules}") from None
        print(f"\nMcpAuthFailureBurst reached the sink {time.time() - since:.0f} s after the first forged token")
        assert "runbook_url" in alert["annotations"]
    finally:
        stop.set()
    firing = call(platform, "mcp-oncall", "list_firing_alerts", {"app": "mcp-db"})
    [burst] = [a for a in firing["alerts"] if a["alertname"] == "McpAuthFailureBurst"]
    assert burst["runbook"] and "## Mitigation" in firing["runbooks"][burst["runbook"]]
    silence = call(
        platform,
        "mcp-oncall",
        "create_silence",
        {
            "alertname": "McpAuthFailureBurst",
            "matchers": {"app": "mcp-db"},
            "duration_minutes": 30,
            "comment": "forged tokens from the end-to-end test, nothing to fix",
        },
    )
    assert silence["created_by"] == "writer via mcp-oncall"  # the dev login the token was issued to
    after = call(platform, "mcp-oncall", "list_firing_alerts", {"app": "mcp-db"})
    assert "McpAuthFailureBurst" not in [a["alertname"] for a in after["alerts"]]


def test_drills_bring_alerts_to_the_sink_with_their_runbooks_and_resolve_them(platform, drills):
    """Each drill's page reaches the sink with its runbook link, the runbook's one-machine steps are printed for that
    server, the condition ends and the resolve arrives. (They ran beside the forged-token test: mcp-db's page is
    silenced there, so the auth drill is on mcp-files.) McpNotReady's drill (7 minutes: its `for:` is 5) is run by
    hand."""
    outputs = {}
    for alert, process in drills.items():
        out, err = process.communicate(timeout=900)
        assert process.returncode == 0, (alert, out[-2000:], err[-2000:])
        assert "[drill] firing after" in out and f"runbooks/{alert}.md" in out, out
        assert "[drill] resolved after" in out, out
        outputs[alert] = out
        print(f"\nscripts/drill {alert}: " + " ".join(line for line in out.splitlines() if "after" in line))
    # the pages' one-machine steps, for the server each drill was about
    assert "docker compose ps mcp-notify" in outputs["McpServerDown"]
    assert "$(docker compose ps -q mcp-files) 2>&1 | grep auth_failure" in outputs["McpAuthFailureBurst"]
    assert httpx.get(platform["apps"]["mcp-notify"]["url"].replace("/mcp", "/health"), timeout=5).status_code == 200


def test_each_app_runs_within_the_stacks_limits_so_the_saturation_alerts_can_fire(platform):
    """compose.yaml sets the stack's CPU and memory limits; each app reads them from its cgroup and Prometheus records
    usage over limit, the series McpHighCpu and McpHighMemory compare (as on the cluster, where cAdvisor gives it)."""

    def series(query: str) -> dict[str, float]:
        answer = httpx.get(f"{platform['prometheus']}/api/v1/query", params={"query": query}, timeout=10).json()
        return {r["metric"].get("app", ""): float(r["value"][1]) for r in answer["data"]["result"]}

    apps = set(platform["apps"])
    limits = wait_until(
        lambda: (found := series("mcp_process_memory_limit_bytes")) and set(found) >= apps and found,
        60, 2, "every app's memory limit scraped",
    )  # fmt: skip
    assert {app: limits[app] for app in apps} == {app: 512 * 2**20 for app in apps}
    cores = series("mcp_process_cpu_limit_cores")
    assert {app: cores[app] for app in apps} == {app: 0.5 for app in apps}
    ratios = wait_until(
        lambda: (found := series("mcp:memory_usage:ratio_limit")) and set(found) >= apps and found,
        60, 2, "the memory saturation series of every app",
    )  # fmt: skip
    assert all(0 < ratios[app] < 1 for app in apps), ratios


# `docker compose` for the runbooks' steps: Compose v2 where it is installed, else this machine's docker-compose 1.29
COMPOSE_SHIM = """
if ! command docker compose version >/dev/null 2>&1; then
  docker() { if [ "$1" = compose ]; then shift; docker-compose "$@"; else command docker "$@"; fi; }
fi
"""


def test_every_runbook_step_runs_on_one_machine(platform):
    """Each page's one-machine diagnosis blocks run from the checkout against the composed stack, as pasted (the
    page's APP filled in), and every PromQL of every page is a query the composed Prometheus answers."""
    ran = 0
    for name, page in sorted(runbooks.pages().items()):
        if name in runbooks.CLUSTER_ONLY:
            continue
        for step in runbooks.one_machine_steps(name, page):
            result = subprocess.run(
                ["bash", "-e", "-c", COMPOSE_SHIM + step], capture_output=True, text=True, cwd=REPO, timeout=60
            )
            assert result.returncode == 0, (name, step, result.stdout[-1000:], result.stderr[-1000:])
            assert "requires at least 1 argument" not in result.stderr, (name, step)  # a service with no container
            ran += 1
        for query in runbooks.promql_queries(name, page):
            answer = httpx.get(f"{platform['prometheus']}/api/v1/query", params={"query": query}, timeout=10).json()
            assert answer["status"] == "success", (name, query, answer)
    assert ran >= 25


def test_a_notification_reaches_the_sink_signed(platform):
    made = call(
        platform,
        "mcp-notify",
        "preview_notification",
        {"target": "local-sink", "subject": "Deploy finished", "body": "Release 1.4.2 is live.", "severity": "info"},
    )
    sent = call(platform, "mcp-notify", "send_notification", {"preview_id": made["preview_id"]})
    assert sent["sent"] is True
    [arrived] = [e for e in httpx.get(platform["sink"], timeout=5).json() if e["path"] == "/notify"]
    assert arrived["signature_ok"] is True and arrived["notification"] == made["rendered"]["json"]


def test_a_note_written_to_the_file_servers_volume_reads_back(platform):
    text = f"on-call handover {uuid.uuid4()}\n"
    call(platform, "mcp-files", "create_directory", {"path": "notes"})
    call(platform, "mcp-files", "write_file", {"path": "notes/handover.md", "content": text})
    assert call(platform, "mcp-files", "read_file", {"path": "notes/handover.md"})["text"] == text


def test_postgres_restarts_and_no_acknowledged_insert_is_lost(platform):
    run = f"restart-{uuid.uuid4().hex[:8]}"
    acknowledged: list[str] = []
    stop = threading.Event()

    def insert() -> None:
        entry = platform["apps"]["mcp-db"]
        with httpx.Client(timeout=15) as client:
            for n in range(100_000):
                if stop.is_set():
                    return
                email = f"{run}-{n}@example.test"
                arguments = {"table": "customers", "values": {"email": email, "name": run}}
                response = post(entry["url"], tool_call("insert", arguments), entry["token"], client=client)
                if response.status_code == 200 and not response.json()["result"].get("isError"):
                    acknowledged.append(email)
                time.sleep(0.02)

    writer = threading.Thread(target=insert, daemon=True)
    writer.start()
    wait_until(lambda: len(acknowledged) >= 20, 30, 0.1, "inserts before the restart")
    restarted = subprocess.run(
        [*compose_command(), "--project-directory", str(REPO), "restart", "postgres"], capture_output=True, text=True
    )
    assert restarted.returncode == 0, restarted.stderr
    before = len(acknowledged)
    wait_until(lambda: len(acknowledged) >= before + 20, 60, 0.2, "inserts after the restart")
    stop.set()
    writer.join(30)
    stored = call(platform, "mcp-db", "query", {"table": "customers", "filters": {"name": run}, "limit": 1000})
    emails = {row["email"] for row in stored["rows"]}
    missing = [email for email in acknowledged if email not in emails]
    print(f"\npostgres restart: {len(acknowledged)} inserts acknowledged, {len(missing)} missing afterwards")
    assert missing == []


def readme_blocks() -> list[tuple[str, str]]:
    """Every `sh` block of the READMEs and docs/ that runs against the one-machine stack (not the Kubernetes ones,
    which need a cluster, nor scripts/up and scripts/down, which the fixture runs)."""
    blocks = []
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "apps").glob("*/README.md"))]
    for path in pages:
        for block in re.findall(r"```sh\n(.*?)```", path.read_text(), re.S):
            if "pulumi" in block or block.strip().startswith(("./scripts/up", "./scripts/down")):
                continue
            blocks.append((str(path.relative_to(REPO)), block))
    return blocks


def test_the_readme_blocks_run_as_written(platform):
    """Pasted into a fresh shell in the repository: the root README's `mcp` helper, then each block."""
    blocks = readme_blocks()
    helper = next(block for path, block in blocks if path == "README.md" and "mcp() {" in block)
    assert {path for path, _ in blocks} >= {f"apps/{name}/README.md" for name in ("db", "files", "oncall", "notify")}
    policies_before = set((REPO / "policies").rglob("*"))
    try:
        _run_blocks(blocks, helper)
    finally:  # a block that stops halfway must not leave its policy change to the tests after it
        for left in set((REPO / "policies").rglob("*")) - policies_before:
            left.unlink()


def _run_blocks(blocks: list[tuple[str, str]], helper: str) -> None:
    for path, block in blocks:
        script = block if block is helper else helper + "\n" + block
        result = subprocess.run(["bash", "-e", "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
        assert result.returncode == 0, (path, block, result.stderr[-2000:])
        answers = [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{"jsonrpc"')]
        assert answers, (path, result.stdout[-500:])
        failed = [a for a in answers if "error" in a or a["result"].get("isError")]
        # a block may show a refusal on purpose, saying so where the call is: `# Forbidden: <the answer's text>`
        expected = re.findall(r"# (Forbidden: .*)$", block, re.M)
        assert [a["result"]["content"][0]["text"] for a in failed] == expected, (path, failed)


def test_a_second_checkout_runs_beside_the_first_and_recovers_when_its_env_is_lost(platform, tmp_path):
    """Before: a second checkout shared the first one's Compose project, reused its database volume with new
    passwords, and scripts/up hung while the roles job failed its login. Now each checkout is its own project on
    free ports, and secrets made afresh never meet an old database volume."""
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", str(REPO), str(other)], check=True)
    try:
        up = scripts("up", "--json", "--no-observability", checkout=other)
        assert up.returncode == 0, up.stderr[-3000:]
        second = json.loads(up.stdout)
        mine, theirs = platform["apps"]["mcp-db"], second["apps"]["mcp-db"]
        assert mine["url"] != theirs["url"] and platform["prometheus"] != second["prometheus"]
        assert (
            read_env_file(other / ".env")["COMPOSE_PROJECT_NAME"] != read_env_file(SECRETS_FILE)["COMPOSE_PROJECT_NAME"]
        )
        for stack in (platform, second):
            assert "rows" in call(stack, "mcp-db", "query", {"table": "customers", "limit": 1})
        (other / ".env").unlink()  # the secrets are lost; the database volume is not
        again = scripts("up", "--json", "--no-observability", checkout=other)
        assert again.returncode == 0, again.stderr[-3000:]
        assert "was made with older ones: removing it" in again.stderr
        assert "rows" in call(json.loads(again.stdout), "mcp-db", "query", {"table": "customers", "limit": 1})
    finally:
        stopped = scripts("down", "--volumes", checkout=other)
        assert stopped.returncode == 0, stopped.stderr[-2000:]
