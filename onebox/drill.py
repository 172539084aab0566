"""Practise an alert on the one-machine stack: bring about its condition, wait until its notification reaches the
sink with its runbook link, print the runbook's one-machine steps, end the condition, wait for the resolve.

    scripts/drill --list                    # the drills, each with how long it takes
    scripts/drill McpServerDown             # on mcp-db; --app mcp-notify for another server
    scripts/drill McpAuthFailureBurst --app mcp-files

The stack must be up (`scripts/up`). A drill touches only this checkout's Compose project and sends traffic only
to its loopback ports. Alertmanager on one machine groups for 5 s and flushes every 30 s (the cluster: 30 s and 5
minutes), so a drill ends in minutes; the rules, `for:` durations and runbooks are the cluster's own.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from infra.config import load_stack
from onebox import runbooks
from onebox.compose import default_ports, local_apps
from onebox.machine import SECRETS_FILE, compose, published_url, read_env_file, with_ports

POLL_SECONDS = 2


@dataclass(frozen=True)
class Drill:
    alert: str
    what: str  # the condition, as a person reads it
    minutes: str  # how long it takes here, from start to resolve
    start: Callable[[str, dict[str, Any]], Callable[[], None]]  # (app, stack) -> the stop


def _stopped(service: Callable[[str], str]) -> Callable[[str, dict[str, Any]], Callable[[], None]]:
    def start(app: str, stack: dict[str, Any]) -> Callable[[], None]:
        compose("stop", service(app), quiet=True, timeout=120)
        return lambda: compose("start", service(app), quiet=True, timeout=120)

    return start


def _forged_tokens(app: str, stack: dict[str, Any]) -> Callable[[], None]:
    """More than 10 refused tokens a minute, from this machine, until stopped."""
    stop = threading.Event()
    url = stack["apps"][app]
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Authorization": "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJkcmlsbCJ9.forged", "Accept": "application/json"}

    def forge() -> None:
        with httpx.Client(timeout=5) as client:
            while not stop.is_set():
                try:
                    client.post(url, json=body, headers=headers)
                except httpx.HTTPError:
                    pass
                stop.wait(1)

    threading.Thread(target=forge, daemon=True).start()
    return stop.set


DRILLS = {
    drill.alert: drill
    for drill in (
        Drill("McpServerDown", "the app's container stopped", "2", _stopped(lambda app: app)),
        Drill("McpAuthFailureBurst", "a forged token a second", "5", _forged_tokens),
        Drill(
            "McpNotReady",
            "PostgreSQL stopped: the db server's readiness fails",
            "7",
            _stopped(lambda app: "postgres"),
        ),
    )
}


def notifications(sink: str, alert: str, app: str, since: float) -> list[dict[str, Any]]:
    """The alert's notifications for this app that reached the sink since `since`, oldest first."""
    found = []
    for entry in httpx.get(sink, timeout=5).json():
        notification = entry["notification"]
        if entry["path"] != "/alerts" or entry["received_at"] < since or not isinstance(notification, dict):
            continue
        for each in notification["alerts"]:
            if each["labels"].get("alertname") == alert and each["labels"].get("app") == app:
                found.append(each)
    return found


def wait_for(status: str, sink: str, alert: str, app: str, since: float, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for each in notifications(sink, alert, app, since):
            if each["status"] == status:
                return each
        time.sleep(POLL_SECONDS)
    raise SystemExit(f"{alert} for {app} did not reach the sink {status} within {timeout:.0f} s")


def run(alert: str, app: str, timeout: float, stack_name: str = "dev") -> int:
    drill = DRILLS[alert]
    values = read_env_file(SECRETS_FILE)
    if not values:
        raise SystemExit("the one-machine stack is not up here: run scripts/up first")
    stack = load_stack(stack_name)
    apps = with_ports(local_apps(stack), values)
    urls = {each.name: each.url for each in apps}
    if app not in urls:
        raise SystemExit(f"{app} is not in the one-machine stack: {', '.join(sorted(urls))}")
    sink = published_url(values, "alert-receiver", default_ports(apps)["alert-receiver"], "/received")
    since = time.time()
    print(f"[drill] {alert} on {app}: {drill.what} (about {drill.minutes} minutes)", flush=True)
    stop = drill.start(app, {"apps": urls})
    try:
        firing = wait_for("firing", sink, alert, app, since, timeout)
        print(f"[drill] firing after {time.time() - since:.0f} s: {firing['annotations'].get('summary', '')}")
        print(f"[drill] runbook: {firing['annotations']['runbook_url']}")
        for step in runbooks.one_machine_steps(alert, runbooks.pages()[alert], app):
            print("[drill] on this machine:\n" + "\n".join(f"    {line}" for line in step.splitlines()))
    finally:
        stop()
        print("[drill] condition ended; waiting for the resolve", flush=True)
    resolved = wait_for("resolved", sink, alert, app, since, timeout)
    print(f"[drill] resolved after {time.time() - since:.0f} s ({resolved['endsAt']})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/drill", description=__doc__.splitlines()[0])
    parser.add_argument("alert", nargs="?", choices=sorted(DRILLS), help="the alert to practise")
    parser.add_argument("--app", default="mcp-db", help="the server it fires for (default mcp-db)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the fire, and the resolve")
    parser.add_argument("--list", action="store_true", help="the drills, and how long each takes")
    parser.add_argument("--stack", default="dev")
    args = parser.parse_args(argv)
    if args.list or args.alert is None:
        for drill in DRILLS.values():
            print(f"{drill.alert:22s} {drill.what} (about {drill.minutes} minutes)")
        return 0
    return run(args.alert, args.app, args.timeout, args.stack)


if __name__ == "__main__":
    sys.exit(main())
