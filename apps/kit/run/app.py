"""The ASGI app of one focused server: `/mcp`, the RFC 9728 metadata, the tool manifest, `/health`,
`/ready` and `/metrics`.

`Runtime` builds the production layer once (token verifier, rate limiter, metrics, readiness). Its shell is a
FastAPI application: the probes, metrics, manifest and metadata are FastAPI routes with an OpenAPI document, while
`/mcp` stays a raw ASGI route that `KitApp` reaches before any routing, so a tool call pays nothing for the shell.
The shell is built on its first request: importing FastAPI (146 ms under `python -X importtime` here) and building
its routes is a cost that a serverless instance whose requests are all tool calls (Lambda) never pays on its cold
start. `mount` adds a focused server to a FastAPI application a team already runs. The lifespan opens the server's
state, warms the signing keys, keeps readiness fresh, and on shutdown closes everything and flushes the last spans.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, Router
from starlette.types import Receive, Scope, Send

from apps import collector
from apps.kit.call.asking import Answers
from apps.kit.call.policy import Policies
from apps.kit.call.ratelimit.memory import Limiter, MemoryLimiter
from apps.kit.declare.config import KitSettings, RedisFailureMode, load_settings
from apps.kit.declare.manifest import MANIFEST_PATH
from apps.kit.declare.telemetry import Telemetry
from apps.kit.http.endpoint import McpEndpoint
from apps.kit.http.shedding import Shedder
from apps.kit.identity.tokens import JwtVerifier
from apps.kit.observe.audit import AuditTrail
from apps.kit.observe.logs import configure_logging, log_event
from apps.kit.observe.metrics import KitMetrics
from apps.kit.observe.probes import PageSource, Readiness, ReadinessSource
from apps.kit.observe.push import push_registry, stop_metrics
from apps.kit.observe.tracing import flush_traces, setup_tracing
from apps.kit.observe.volumes import VolumeCollector, volume_paths

if TYPE_CHECKING:
    from fastapi import FastAPI
    from redis.asyncio import Redis

    from apps.kit.declare.server import FocusedServer


def resource_metadata_path(resource_url: str) -> str:
    """RFC 9728 §3.1: the well-known path, followed by the resource's own path."""
    return "/.well-known/oauth-protected-resource" + urlsplit(resource_url).path


def _limiter(settings: KitSettings, metrics: KitMetrics, server: str) -> tuple[Limiter, Redis | None]:
    if settings.redis_url is None:
        return MemoryLimiter(settings.rate_limit_per_minute), None
    from redis.asyncio import Redis  # only with REDIS_URL: a server without Redis does not import its client

    from apps.kit.call.ratelimit.redis import RedisLimiter

    redis = Redis.from_url(settings.redis_url.get_secret_value(), socket_timeout=1.0, socket_connect_timeout=1.0)
    # One window per principal per server: servers sharing a Redis do not spend each other's limits.
    prefix = f"{settings.redis_key_prefix}ratelimit:{server}:"
    limiter = RedisLimiter(
        redis, settings.rate_limit_per_minute, settings.rate_limit_redis_failure, metrics, prefix=prefix
    )
    return limiter, redis


class Runtime:
    """One server's production layer, built once from its settings."""

    def __init__(self, server: FocusedServer[Any, Any], settings: KitSettings):
        configure_logging(settings.log_level, settings.secret_values())
        self.server, self.settings = server, settings
        self.specs = server.offered(settings)
        self.metrics = KitMetrics(server.name)
        self.telemetry = Telemetry(self.metrics.registry, setup_tracing(settings, server.name))
        if server.needs.volumes:
            self.telemetry.register(VolumeCollector(volume_paths(server.needs.volumes)))
        self.verifier = JwtVerifier(settings, self.metrics)
        self.limiter, self.redis = _limiter(settings, self.metrics, server.name)
        self.readiness = Readiness(self.metrics)
        if self.redis is not None:
            soft = settings.rate_limit_redis_failure is not RedisFailureMode.CLOSED
            self.readiness.add("redis", self.redis.ping, soft=soft)
        if self.verifier.jwks is not None:
            self.readiness.add("jwks", self.verifier.jwks.check)
        self.metadata_path = resource_metadata_path(settings.resource_url)
        self.metadata = {
            "resource": settings.resource_url,
            "authorization_servers": [settings.mcp_issuer],
            "scopes_supported": sorted({scope for spec in self.specs.values() for scope in spec.scopes}),
            "bearer_methods_supported": ["header"],
        }
        self.manifest = server.manifest(settings)
        base = settings.resource_url.removesuffix(urlsplit(settings.resource_url).path)
        self.endpoint = McpEndpoint(
            name=server.name,
            version=server.version,
            instructions=server.instructions,
            settings=settings,
            specs=self.specs,
            verifier=self.verifier,
            limiter=self.limiter,
            metrics=self.metrics,
            state=lambda: self.server_state,
            resource_metadata_url=base + self.metadata_path,
            answers=Answers(self.redis, settings.redis_key_prefix),
            policies=Policies(server, settings.mcp_policy_dir, settings.mcp_issuer),
            audit=AuditTrail(server.name, server.version, settings.mcp_issuer),
        )
        self.server_state: Any = None
        self.state = State()  # the app's state, shared with the shell once it is built
        self.state.metrics, self.state.settings, self.state.endpoint = self.metrics, settings, self.endpoint

    @cached_property
    def shell(self) -> FastAPI:
        """The FastAPI application that serves everything but `/mcp` and the lifespan, built on first use."""
        from fastapi import FastAPI

        app = FastAPI(title=self.server.name, version=self.server.version, docs_url=None, redoc_url=None)
        app.state = self.state
        self.install(app, "")
        return app

    def install(self, app: FastAPI, prefix: str) -> None:
        """Route this server in `app`: its probes, metrics and manifest under `prefix`, its RFC 9728 metadata at
        the root (where the RFC puts it, whatever the prefix), and `/mcp` as a raw ASGI route (no FastAPI layer)."""
        from fastapi import APIRouter

        router = APIRouter()
        router.add_api_route("/health", self.health, methods=["GET"], summary="Liveness (checks nothing)")
        router.add_api_route("/ready", self.ready, methods=["GET"], summary="Readiness of every dependency")
        if self.settings.mcp_metrics_port is None:  # else served on its own port (`FocusedServer.serve`)
            router.add_api_route("/metrics", self.prometheus_metrics, methods=["GET"], summary="Prometheus metrics")
        router.add_api_route(MANIFEST_PATH, self.tools_manifest, methods=["GET"], summary="Pinned tool manifest")
        app.include_router(router, prefix=prefix)
        app.add_api_route(self.metadata_path, self.resource_metadata, methods=["GET"], summary="RFC 9728 metadata")
        for path in self.server.pages:
            app.router.routes.append(Route(prefix + path, self._page(path), methods=["GET", "POST"]))
        app.router.routes.append(Route(prefix + "/mcp", self.endpoint, methods=None))

    def _page(self, path: str) -> Callable[[Request], Awaitable[Response]]:
        """A declared page, served by the state when it serves it (its settings may leave it out): else 404."""

        async def serve_page(request: Request) -> Response:
            pages = self.server_state.pages() if isinstance(self.server_state, PageSource) else {}
            handler = pages.get(path)
            if handler is None:
                return JSONResponse({"error": "not found"}, 404)
            response: Response = await handler(request)
            return response

        return serve_page

    @asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        name = self.server.name
        async with AsyncExitStack() as stack:
            stack.push_async_callback(asyncio.to_thread, flush_traces)  # last: after everything that makes spans
            state = await stack.enter_async_context(self.server.state_factory(self.settings, self.telemetry))
            self.server_state = self.state.server_state = state
            if isinstance(state, ReadinessSource):
                for check_name, check in state.readiness_checks().items():
                    self.readiness.add(check_name, check)
            # Serverless: the registry (the server's own series included, now registered) is pushed over OTLP.
            if push_registry(self.metrics.registry, self.settings, self.server.name) is not None:
                stack.push_async_callback(asyncio.to_thread, stop_metrics)
            if self.redis is not None:
                stack.push_async_callback(self.redis.aclose)
            stack.push_async_callback(self.limiter.close)  # before Redis closes: lent slots go back
            if self.verifier.jwks is not None:
                await self.verifier.jwks.refresh_if_due()  # warm the keys before the first token arrives
            self.readiness.started = True
            await self.readiness.report_at_start()
            collector.settle()  # start-up's objects out of the collector's reach
            if not self.settings.mcp_serverless:  # a frozen CPU runs no refresher: /ready checks when asked
                refresher = asyncio.create_task(self.readiness.keep_fresh())
                stack.callback(refresher.cancel)
            log_event("server_started", server=name, port=self.settings.port, tools=sorted(self.specs))
            yield
            log_event("server_stopping", server=name)
        log_event("server_stopped", server=name)

    async def health(self, _: Request) -> Response:
        """Liveness: the process serves requests. Deliberately checks no dependency."""
        return JSONResponse({"status": "ok"})

    async def ready(self, _: Request) -> Response:
        """Readiness: every dependency answered within the timeout."""
        ok, status = await self.readiness.run()
        return JSONResponse({"status": "ready" if ok else "not_ready", "checks": status}, 200 if ok else 503)

    async def prometheus_metrics(self, _: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def resource_metadata(self, _: Request) -> Response:
        return JSONResponse(self.metadata)

    async def tools_manifest(self, _: Request) -> Response:
        """The pinned tool manifest, for gateways and CI (`python -m apps.kit.cli.pin verify`); no secrets in it."""
        return JSONResponse(self.manifest)


class KitApp:
    """The server's ASGI app: `/mcp` goes straight to the endpoint (the hot path skips the router and the
    middleware stack), the lifespan to a route-less Starlette router (the ASGI lifespan protocol), everything
    else to the FastAPI shell."""

    def __init__(self, runtime: Runtime):
        self.runtime, self.endpoint = runtime, runtime.endpoint
        self.lifespan = Router(lifespan=runtime.lifespan)

    @property
    def state(self) -> State:
        return self.runtime.state

    @property
    def shedder(self) -> Shedder:
        """The in-flight cap on `/mcp`, which the server's protocol applies before the app (`apps.kit.http.serving`)."""
        return self.endpoint.shedder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/mcp":
            await self.endpoint(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.lifespan(scope, receive, send)
        else:
            await self.runtime.shell(scope, receive, send)


def create_app(server: FocusedServer[Any, Any], settings: KitSettings | None = None) -> KitApp:
    """The ASGI app of a declared server, with its settings read from the environment unless given; each call is
    independent (its own metrics, its own state)."""
    return KitApp(Runtime(server, settings or load_settings(server.settings_cls)))


def mount(host: FastAPI, server: FocusedServer[Any, Any], settings: KitSettings, prefix: str) -> Runtime:
    """Add a focused server to a FastAPI application a team already runs: its `/mcp`, probes, metrics and
    manifest under `prefix` (e.g. `/tools/db`), its RFC 9728 metadata at the host's root (as the RFC asks),
    and its lifespan inside the host's. `settings.mcp_resource_url` must be the mounted URL
    (`https://host/tools/db/mcp`): tokens are checked against it."""
    if not prefix.startswith("/") or prefix.endswith("/"):
        raise ValueError("prefix is a path like /tools/db (leading slash, none at the end)")
    if urlsplit(settings.resource_url).path != prefix + "/mcp":
        raise ValueError(f"MCP_RESOURCE_URL must end in {prefix}/mcp, the URL the server is mounted at")
    runtime = Runtime(server, settings)
    runtime.install(host, prefix)
    outer = host.router.lifespan_context

    @asynccontextmanager
    async def both(app: Any) -> AsyncIterator[Any]:
        async with outer(app) as state, runtime.lifespan(app):
            yield state

    host.router.lifespan_context = both
    return runtime
