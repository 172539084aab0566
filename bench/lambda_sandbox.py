"""Lambda cold starts of the db server, under the runtime client the image runs (awslambdaric) and the loopback
Runtime API of the tests (`tests/support/lambda_runtime.py`), on the server core like every other variant.

- `lambda`: process start to the first answered `tools/call`: the sandbox's init (the modules, the app, its
  lifespan) and its first invocation, as Lambda runs a function without SnapStart.
- `lambda-snapstart`: the same sandbox with `AWS_LAMBDA_INITIALIZATION_TYPE=snap-start`. Its init ends when the
  runtime client asks for `/restore/next` (where Lambda takes the snapshot); what is timed is the restore to
  the first answered call: the app built, its lifespan entered, the call served (`apps.kit.serverless`). Lambda's
  own restore of the snapshot comes on top and cannot be measured here.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from apps.kit.token import mint
from tests.support.lambda_runtime import DOMAIN, RuntimeApi, http_api_event
from tests.support.raw import BASE_HEADERS, tool_call

RESOURCE = f"https://{DOMAIN}/mcp"  # the HTTP API's URL: the audience tokens name


def one_start(app_env: dict[str, str], core: str, token: str, snap_start: bool) -> float:
    api = RuntimeApi()
    env = {
        **os.environ,
        **app_env,
        "AWS_LAMBDA_RUNTIME_API": api.address,
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
        "MCP_SERVER": "apps.db",
        "MCP_RESOURCE_URL": RESOURCE,
    }
    if snap_start:
        env["AWS_LAMBDA_INITIALIZATION_TYPE"] = "snap-start"
    root = Path(__file__).resolve().parents[1]
    headers = dict(BASE_HEADERS) | {"Authorization": f"Bearer {token}"}
    event = http_api_event("POST", "/mcp", headers, json.dumps(tool_call("list_tables")))
    started = time.monotonic()
    process = subprocess.Popen(
        ["taskset", "-c", core, sys.executable, "-m", "awslambdaric", "apps.lambda_main.handler"],
        env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        if snap_start:
            if not api.snapshot_taken.wait(60):
                raise SystemExit("the SnapStart sandbox never reached /restore/next")
            started = time.monotonic()
            api.restore.set()
        kind, answer = api.invoke(event, timeout=60)
        if kind != "response" or answer.get("statusCode") != 200:
            raise SystemExit(f"the Lambda sandbox did not answer the tool call: {str(answer)[:300]}")
        return time.monotonic() - started
    finally:
        process.kill()
        process.wait(30)
        api.stop()


def lambda_cold_starts(app_env: dict[str, str], core: str, secret: str, issuer: str, times: int) -> dict[str, float]:
    """The median of each, interleaved."""
    token = mint(secret, issuer=issuer, audience=RESOURCE, subject="bench", scopes="db:read")
    seconds: dict[str, list[float]] = {"lambda": [], "lambda-snapstart": []}
    for _ in range(times):
        for name in seconds:
            seconds[name].append(one_start(app_env, core, token, snap_start=name == "lambda-snapstart"))
    return {name: statistics.median(values) for name, values in seconds.items()}


def describe(cold: dict[str, Any]) -> list[str]:
    return [
        f"  lambda           {cold['lambda'] * 1000:7.0f} ms  (init and the first invocation)",
        f"  lambda-snapstart {cold['lambda-snapstart'] * 1000:7.0f} ms  (after the restore, which Lambda adds to)",
    ]
