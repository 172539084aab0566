"""The ASGI app of one focused server: `/mcp`, the RFC 9728 metadata, `/health`, `/ready`, `/metrics`.

The pieces (token verifier, rate limiter, metrics, readiness, state) are built once here
and wired together; the lifespan opens the server's state, warms the signing keys, keeps
readiness fresh, and on shutdown closes everything and flushes the last spans.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from apps.kit.auth import JwtVerifier
from apps.kit.config import KitSettings, RedisFailureMode
from apps.kit.endpoint import McpEndpoint
from apps.kit.logs import configure_logging, log_event
from apps.kit.metrics import KitMetrics
from apps.kit.probes import Readiness, ReadinessSource
from apps.kit.ratelimit import Limiter, MemoryLimiter, RedisLimiter
from apps.kit.telemetry import Telemetry
from apps.kit.tracing import flush_traces, setup_tracing

if TYPE_CHECKING:
    from apps.kit.server import FocusedServer


def resource_metadata_path(resource_url: str) -> str:
    """RFC 9728 §3.1: the well-known path, followed by the resource's own path."""
    return "/.well-known/oauth-protected-resource" + urlsplit(resource_url).path


def _limiter(settings: KitSettings, metrics: KitMetrics) -> tuple[Limiter, Redis | None]:
    if settings.redis_url is None:
        return MemoryLimiter(settings.rate_limit_per_minute), None
    redis = Redis.from_url(settings.redis_url.get_secret_value(), socket_timeout=1.0, socket_connect_timeout=1.0)
    return RedisLimiter(redis, settings.rate_limit_per_minute, settings.rate_limit_redis_failure, metrics), redis


def build_app(server: FocusedServer[Any, Any], settings: KitSettings) -> Starlette:
    configure_logging(settings.log_level)
    tracer_provider = setup_tracing(settings, server.name)
    metrics = KitMetrics(server.name)
    telemetry = Telemetry(metrics.registry, tracer_provider)
    verifier = JwtVerifier(settings, metrics)
    limiter, redis = _limiter(settings, metrics)
    readiness = Readiness(metrics)
    if redis is not None:
        readiness.add("redis", redis.ping, soft=settings.rate_limit_redis_failure is not RedisFailureMode.CLOSED)
    if verifier.jwks is not None:
        readiness.add("jwks", verifier.jwks.check)
    metadata_path = resource_metadata_path(settings.resource_url)
    base = settings.resource_url.removesuffix(urlsplit(settings.resource_url).path)
    metadata = {
        "resource": settings.resource_url,
        "authorization_servers": [settings.mcp_issuer],
        "scopes_supported": server.scopes,
        "bearer_methods_supported": ["header"],
    }
    endpoint = McpEndpoint(
        name=server.name,
        version=server.version,
        instructions=server.instructions,
        settings=settings,
        specs=server.specs,
        verifier=verifier,
        limiter=limiter,
        metrics=metrics,
        state=lambda: app.state.server_state,
        resource_metadata_url=base + metadata_path,
    )

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            stack.push_async_callback(asyncio.to_thread, flush_traces)  # last: after everything that makes spans
            app.state.server_state = await stack.enter_async_context(server.state_factory(settings, telemetry))
            if isinstance(app.state.server_state, ReadinessSource):
                for name, check in app.state.server_state.readiness_checks().items():
                    readiness.add(name, check)
            if redis is not None:
                stack.push_async_callback(redis.aclose)
            if verifier.jwks is not None:
                await verifier.jwks.refresh_if_due()  # warm the keys before the first token arrives
            readiness.started = True
            refresher = asyncio.create_task(readiness.keep_fresh())
            stack.callback(refresher.cancel)
            log_event("server_started", server=server.name, port=settings.port, tools=sorted(server.specs))
            yield
            log_event("server_stopping", server=server.name)
        log_event("server_stopped", server=server.name)

    async def health(_: Request) -> Response:
        """Liveness: the process serves requests. Deliberately checks no dependency."""
        return JSONResponse({"status": "ok"})

    async def ready(_: Request) -> Response:
        """Readiness: every dependency answered within the timeout."""
        ok, status = await readiness.run()
        return JSONResponse({"status": "ready" if ok else "not_ready", "checks": status}, 200 if ok else 503)

    async def prometheus_metrics(_: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def resource_metadata(_: Request) -> Response:
        return JSONResponse(metadata)

    app = Starlette(
        routes=[
            Route("/mcp", endpoint, methods=None),
            Route(metadata_path, resource_metadata, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/ready", ready, methods=["GET"]),
            Route("/metrics", prometheus_metrics, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    app.state.settings = settings
    app.state.endpoint = endpoint
    return app
