"""Lambda cold starts of the db server, under the runtime client the image runs (awslambdaric) and the loopback
Runtime API of the tests (`tests/support/lambda_runtime.py`), on the server core like every other variant.

- `lambda`: process start to the first answered `tools/call`: the sandbox's init (the modules, the app, its
  lifespan) and its first invocation, as Lambda runs a function without SnapStart.
- `lambda-snapstart`: the same sandbox with `AWS_LAMBDA_INITIALIZATION_TYPE=snap-start`. Its init ends when the
  runtime client asks for `/restore/next` (where Lambda takes the snapshot); what is timed is the restore to
  the first answered call: the app built, its lifespan entered, the call served (`apps.kit.run.serverless`). Lambda's
  own restore of the snapshot comes on top and cannot be measured here.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time

from apps.kit import mint
from tests.support.lambda_runtime import RESOURCE, RuntimeApi, http_api_event, start_sandbox
from tests.support.raw import BASE_HEADERS, tool_call


def one_start(app_env: dict[str, str], core: str, token: str, snap_start: bool) -> float:
    api = RuntimeApi()
    env = app_env | ({"AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start"} if snap_start else {})
    headers = dict(BASE_HEADERS) | {"Authorization": f"Bearer {token}"}
    event = http_api_event("POST", "/mcp", headers, json.dumps(tool_call("list_tables")))
    started = time.monotonic()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    process = start_sandbox(api, env, prefix=("taskset", "-c", core), **quiet)
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
