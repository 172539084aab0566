"""A loopback Lambda Runtime API (the `2018-06-01` interface the real runtime client polls): tests queue events,
the runtime client under test takes them from `/invocation/next`, and each answer or error is kept by request id.
A SnapStart init ends with `/restore/next`, which is answered (the snapshot "restored") when the test says so.
Events are checked against AWS Lambda Powertools' model of an API Gateway HTTP API (payload 2.0) event before
they are queued, so a test cannot send an event Lambda would never deliver."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aws_lambda_powertools.utilities.parser.models import APIGatewayProxyEventV2Model

from apps.kit.run.serverless import LAMBDA_HANDLER

PREFIX = "/2018-06-01/runtime"
DOMAIN = "abc123.execute-api.eu-west-1.amazonaws.com"
RESOURCE = f"https://{DOMAIN}/mcp"  # the HTTP API's URL: the audience tokens name
REPO = Path(__file__).resolve().parents[2]


def http_api_event(method: str, path: str, headers: dict[str, str], body: str | None = None) -> dict[str, Any]:
    """An API Gateway HTTP API event (payload 2.0, `$default` stage and route), validated by Powertools."""
    now = time.time()
    event = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"host": DOMAIN, **{k.lower(): v for k, v in headers.items()}},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": DOMAIN,
            "domainPrefix": "abc123",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7",
                     "userAgent": "mcpfleet-test"},
            "requestId": uuid.uuid4().hex,
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }  # fmt: skip
    if body is not None:
        event["body"] = body
    APIGatewayProxyEventV2Model.model_validate(event)
    return event


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a sandbox stopped while it polled: expected
            super().handle_error(request, client_address)


class RuntimeApi:
    def __init__(self) -> None:
        self.events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self.answers: dict[str, queue.Queue[tuple[str, Any]]] = {}
        self.init_errors: list[Any] = []
        self.restore_errors: list[Any] = []
        self.snapshot_taken = threading.Event()  # init is done: Lambda would snapshot the sandbox now
        self.restore = threading.Event()  # set by the test: the sandbox resumes
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if self.path == f"{PREFIX}/restore/next":
                    api.snapshot_taken.set()
                    api.restore.wait(60)
                    return self._reply(200, {})
                if self.path != f"{PREFIX}/invocation/next":
                    return self._reply(404, {"message": "unknown"})
                request_id, event = api.events.get()
                body = json.dumps(event).encode()
                self.send_response(200)
                for name, value in {
                    "Lambda-Runtime-Aws-Request-Id": request_id,
                    "Lambda-Runtime-Deadline-Ms": str(int((time.time() + 30) * 1000)),
                    "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:eu-west-1:123456789012:function:mcp-db",
                    "Lambda-Runtime-Trace-Id": "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0",
                    "Content-Type": "application/json",
                    "Content-Length": str(len(body)),
                }.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                parts = self.path.removeprefix(PREFIX).strip("/").split("/")
                payload = json.loads(raw) if raw else None
                if parts == ["init", "error"]:
                    api.init_errors.append(payload)
                elif parts == ["restore", "error"]:
                    api.restore_errors.append(payload)
                elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                    api.answers.setdefault(parts[1], queue.Queue()).put((parts[2], payload))
                else:
                    return self._reply(404, {"message": "unknown"})
                self._reply(202, {"status": "OK"})

            def _reply(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.httpd.server_port}"

    def invoke(self, event: dict[str, Any], timeout: float = 30) -> tuple[str, Any]:
        """Deliver one event; ("response", the handler's answer) or ("error", Lambda's error document)."""
        request_id = uuid.uuid4().hex
        answers = self.answers.setdefault(request_id, queue.Queue())
        self.events.put((request_id, event))
        return answers.get(timeout=timeout)

    def stop(self) -> None:
        self.restore.set()
        self.httpd.shutdown()


def start_sandbox(
    api: RuntimeApi, env: dict[str, str], prefix: tuple[str, ...] = (), **popen: Any
) -> subprocess.Popen[bytes]:
    """The db server as the image runs it on Lambda (`LAMBDA_HANDLER`), polling `api`, with `env` added."""
    sandbox_env = {
        **os.environ,
        "AWS_LAMBDA_RUNTIME_API": api.address,
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",  # the runtime client polls on a thread: SIGTERM is heard
        "LAMBDA_TASK_ROOT": str(REPO),
        "MCP_SERVER": "apps.db",
        "MCP_RESOURCE_URL": RESOURCE,
        **env,
    }
    return subprocess.Popen([*prefix, sys.executable, "-m", *LAMBDA_HANDLER], env=sandbox_env, cwd=REPO, **popen)
