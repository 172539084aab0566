"""A minimal OTLP/HTTP receiver on loopback: keeps the protobuf bodies the exporters post."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class OtlpReceiver:
    """Accepts OTLP/HTTP protobuf posts on loopback and keeps their bodies."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        """On loopback, or on a test network's gateway for containers to reach it."""
        self.bodies: list[tuple[str, bytes]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                owner.bodies.append((self.path, self.rfile.read(int(self.headers["content-length"]))))
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def gauges(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        """The gauge points of every metrics export received, by metric name (as `apps.kit.observe.push` sends)."""
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

        points: dict[str, list[tuple[dict[str, str], float]]] = {}
        for path, body in list(self.bodies):
            if path != "/v1/metrics":
                continue
            for resource in ExportMetricsServiceRequest.FromString(body).resource_metrics:
                for scope in resource.scope_metrics:
                    for metric in scope.metrics:
                        for point in metric.gauge.data_points:
                            labels = {a.key: a.value.string_value for a in point.attributes}
                            points.setdefault(metric.name, []).append((labels, point.as_double))
        return points
