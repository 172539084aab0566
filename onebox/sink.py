"""A webhook sink: records every POST it receives, for a platform with nowhere real to send.

The one-machine composition runs it as `alert-receiver` (where Alertmanager's webhook goes) and as the
notify server's `local-sink` target; the container tests run it for Alertmanager. POST to any path stores
the body with the time it arrived; with `NOTIFY_SIGNING_KEY` set, a notify webhook's signature is checked
as a real receiver must (HMAC-SHA256 over `<timestamp>.<body>`, timestamps within 5 minutes) and the
verdict stored with it. GET /received returns everything. Standard library only: it runs on any Python
image.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

RECEIVED: list[dict[str, Any]] = []
LOCK = threading.Lock()
KEY = os.environ.get("NOTIFY_SIGNING_KEY", "").encode()
MAX_BODY = 1024 * 1024
MAX_KEPT = 1000


def signature_ok(headers: dict[str, str], body: bytes) -> bool | None:
    """None when unsigned; else whether the signature is ours and fresh."""
    signature, timestamp = headers.get("x-mcpfleet-signature"), headers.get("x-mcpfleet-timestamp")
    if signature is None or timestamp is None or not KEY or not timestamp.isdigit():
        return None
    expected = "v1=" + hmac.new(KEY, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return abs(time.time() - int(timestamp)) < 300 and hmac.compare_digest(signature, expected)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = min(int(self.headers.get("content-length", 0) or 0), MAX_BODY)
        body = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            payload: Any = json.loads(body)
        except ValueError:
            payload = body.decode("utf-8", "replace")
        entry = {
            "received_at": time.time(),
            "path": self.path,
            "notification": payload,
            "signature_ok": signature_ok(headers, body),
        }
        with LOCK:
            RECEIVED.append(entry)
            del RECEIVED[:-MAX_KEPT]
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def do_GET(self) -> None:
        with LOCK:
            body = json.dumps(RECEIVED).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
