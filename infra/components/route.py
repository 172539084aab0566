"""What enters: one Ingress per app reached from outside the cluster, for the host of its resourceUrl, with TLS,
routing exactly the app's own paths to its MCP port: `/mcp`, its RFC 9728 metadata path, and the pages it declares
(a connect page, under `/connect/`). Probes stay for the
kubelet and `/metrics` is on another port, so neither can be routed. The policy pack holds every Ingress to
this shape (`infra.policy.checks.route_problems`)."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlsplit

from apps.kit import resource_metadata_path
from infra.config import RoutesConfig

MIB = 1024 * 1024


def routed_paths(resource_url: str, pages: tuple[str, ...] = ()) -> list[str]:
    """The only paths a route sends to an app: its MCP endpoint, where RFC 9728 puts its metadata, and the pages it
    declares (`FocusedServer.pages`: a connect page), each exactly."""
    base = urlsplit(resource_url).path.removesuffix("/mcp")
    return [urlsplit(resource_url).path, resource_metadata_path(resource_url), *(base + page for page in pages)]


def ingress_spec(
    app: str, resource_url: str, routes: RoutesConfig, max_body_bytes: int, pages: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The Ingress's metadata annotations and spec for one app (its Service `app`, port `http`)."""
    host = urlsplit(resource_url).hostname or ""
    annotations: dict[str, str] = {}
    if routes.cluster_issuer:
        annotations["cert-manager.io/cluster-issuer"] = routes.cluster_issuer
    if routes.class_name == "nginx":
        annotations |= {
            # nginx's 1 MiB default would refuse what the app accepts; the app still enforces its own cap
            "nginx.ingress.kubernetes.io/proxy-body-size": f"{math.ceil(max_body_bytes / MIB)}m",
            "nginx.ingress.kubernetes.io/proxy-buffering": "off",  # a streamed (SSE) reply is not held back
            "nginx.ingress.kubernetes.io/proxy-read-timeout": "60",
        }
    if routes.class_name == "traefik":  # Traefik streams and sets no body cap by default; HTTPS entry point only
        annotations["traefik.ingress.kubernetes.io/router.entrypoints"] = "websecure"
    backend = {"service": {"name": app, "port": {"name": "http"}}}
    return {
        "annotations": annotations,
        "spec": {
            "ingressClassName": routes.class_name,
            "tls": [{"hosts": [host], "secretName": routes.secret_name or f"{app}-tls"}],
            "rules": [
                {
                    "host": host,
                    "http": {
                        "paths": [
                            {"path": path, "pathType": "Exact", "backend": backend}
                            for path in routed_paths(resource_url, pages)
                        ]
                    },
                }
            ],
        },
    }
