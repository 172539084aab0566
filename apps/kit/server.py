"""`FocusedServer`: a focused MCP server's tools plus the kit's production layer.

A server module creates one, declares tools with `@server.tool(scopes=...)`,
and names its state (pools, clients) as an async context manager. The kit
builds the FastAPI app: `/mcp` (Streamable HTTP, stateless, OAuth-protected,
rate-limited), the RFC 9728 metadata, `/health`, `/ready` and `/metrics`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import Redis
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from apps.kit.auth import JwtVerifier
from apps.kit.config import KitSettings, RedisFailureMode, load_settings
from apps.kit.guard import ToolGuard
from apps.kit.logs import configure_logging, log_event
from apps.kit.metrics import KitMetrics
from apps.kit.ratelimit import Limiter, MemoryLimiter, RateLimitGate, RedisLimiter
from apps.kit.tools import Handler, ToolSpec, sdk_tool, spec_from_handler
from apps.kit.tracing import setup_tracing

StateT = TypeVar("StateT")
SettingsT = TypeVar("SettingsT", bound=KitSettings)
Check = Callable[[], Awaitable[object]]
READY_CHECK_TIMEOUT = 2.0
READY_REFRESH_SECONDS = 10.0


@runtime_checkable
class ReadinessSource(Protocol):
    """State that can say whether its dependencies answer (e.g. a DB pool running SELECT 1)."""

    def readiness_checks(self) -> Mapping[str, Check]: ...


class FocusedServer(Generic[StateT, SettingsT]):
    def __init__(
        self,
        name: str,
        settings_cls: type[SettingsT],
        state: Callable[[SettingsT, KitMetrics], AbstractAsyncContextManager[StateT]],
        instructions: str | None = None,
    ):
        self.name = name
        self.settings_cls = settings_cls
        self._state_factory = state
        self.instructions = instructions
        self.specs: dict[str, ToolSpec[StateT]] = {}

    def tool(self, *, scopes: set[str], read_only: bool = False) -> Callable[[Handler[StateT]], Handler[StateT]]:
        """Declare a tool: `async def name(args: SomeToolArgs, state) -> dict`, with its scopes."""

        def register(handler: Handler[StateT]) -> Handler[StateT]:
            spec = spec_from_handler(handler, scopes, read_only)
            if spec.name in self.specs:
                raise ValueError(f"tool {spec.name} declared twice")
            self.specs[spec.name] = spec
            return handler

        return register

    def create_app(self, settings: SettingsT | None = None) -> FastAPI:
        """Build the ASGI app; each call is independent (own metrics, own MCP server)."""
        settings = settings or load_settings(self.settings_cls)
        configure_logging(settings.log_level)
        setup_tracing(settings, self.name)
        metrics = KitMetrics(self.name)
        verifier = JwtVerifier(settings, metrics)

        mcp = MCPServer(
            name=self.name,
            instructions=self.instructions,
            token_verifier=verifier,
            auth=AuthSettings(
                issuer_url=settings.mcp_issuer,  # strings keep their exact form (no added slash)
                resource_server_url=settings.resource_url,
                required_scopes=[],
                validate_token_resource=False,  # JwtVerifier checks `aud` itself, list-valued or not
            ),
            tools=[sdk_tool(spec, lambda: app.state.server_state) for spec in self.specs.values()],
            middleware=[ToolGuard(self.specs, metrics)],
            log_level=settings.log_level,
        )
        configure_logging(settings.log_level)  # the SDK installs its own handler; ours wins
        mcp_app = mcp.streamable_http_app(
            streamable_http_path="/mcp",
            stateless_http=True,
            json_response=True,
            # Every request carries a bearer token bound to this server's audience, so the
            # browser DNS-rebinding defence (which protects ambient local credentials) is off;
            # the Host header in a cluster is whatever Service name a client used.
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        redis: Redis | None = (
            Redis.from_url(settings.redis_url.get_secret_value(), socket_timeout=1.0, socket_connect_timeout=1.0)
            if settings.redis_url
            else None
        )
        limiter: Limiter = (
            RedisLimiter(redis, settings.rate_limit_per_minute, settings.rate_limit_redis_failure, metrics)
            if redis is not None
            else MemoryLimiter(settings.rate_limit_per_minute)
        )
        _wrap_mcp_route(
            mcp_app.routes, lambda inner: MissingTokenCounter(RateLimitGate(inner, limiter, metrics), verifier)
        )

        async def readiness() -> tuple[bool, dict[str, str]]:
            """Run every dependency check; Redis counts only when its failure closes the limiter."""
            checks: dict[str, Check] = {}
            state = getattr(app.state, "server_state", None)
            if isinstance(state, ReadinessSource):
                checks.update(state.readiness_checks())
            if redis is not None:
                checks["redis"] = redis.ping
            results = await asyncio.gather(*(_probe(check) for check in checks.values()))
            status = dict(zip(checks, results, strict=True))
            soft = {"redis"} if settings.rate_limit_redis_failure is not RedisFailureMode.CLOSED else set()
            ok = state is not None and all(v == "ok" for k, v in status.items() if k not in soft)
            metrics.ready.set(1 if ok else 0)
            for name, result in status.items():
                metrics.dependency_up.labels(dependency=name).set(1 if result == "ok" else 0)
            return ok, status

        async def refresh_readiness() -> None:
            """Keep `mcp_ready` current between probes, so alerts never read a stale gauge."""
            while True:
                await readiness()
                await asyncio.sleep(READY_REFRESH_SECONDS)

        @asynccontextmanager
        async def lifespan(_: FastAPI) -> AsyncIterator[None]:
            async with AsyncExitStack() as stack:
                app.state.server_state = await stack.enter_async_context(self._state_factory(settings, metrics))
                if redis is not None:
                    stack.push_async_callback(redis.aclose)
                await stack.enter_async_context(mcp.session_manager.run())
                refresher = asyncio.create_task(refresh_readiness())
                stack.callback(refresher.cancel)
                log_event("server_started", server=self.name, port=settings.port, tools=sorted(self.specs))
                yield
                log_event("server_stopping", server=self.name)
            log_event("server_stopped", server=self.name)

        app = FastAPI(title=self.name, lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

        @app.get("/health")
        async def health() -> dict[str, str]:
            """Liveness: the process serves requests. Deliberately checks no dependency."""
            return {"status": "ok"}

        @app.get("/ready")
        async def ready() -> JSONResponse:
            """Readiness: every dependency answered within the timeout."""
            ok, status = await readiness()
            return JSONResponse(
                {"status": "ready" if ok else "not_ready", "checks": status}, status_code=200 if ok else 503
            )

        @app.get("/metrics")
        async def prometheus_metrics() -> PlainTextResponse:
            return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

        app.mount("/", mcp_app)
        app.state.metrics = metrics
        app.state.settings = settings
        return app

    def serve(self) -> None:
        """Run under uvicorn; SIGTERM stops accepting, drains in-flight calls, then closes pools."""
        settings = load_settings(self.settings_cls)
        app = self.create_app(settings)
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_config=None,
            timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
            lifespan="on",
        )
        uvicorn.Server(config).run()


async def _probe(check: Check) -> str:
    try:
        await asyncio.wait_for(check(), READY_CHECK_TIMEOUT)
    except Exception as error:  # noqa: BLE001 - any failure means not ready; the type is the diagnosis
        return f"failed: {type(error).__name__}"
    return "ok"


def _wrap_mcp_route(routes: list[Any], wrap: Callable[[ASGIApp], ASGIApp]) -> None:
    """Insert our gates between the SDK's authentication middleware and its transport.

    The SDK authenticates in a Starlette middleware and guards `/mcp` with
    `RequireAuthMiddleware`; the rate limit needs the authenticated principal, so it
    wraps the route's app (which sits after authentication).
    """
    for route in routes:
        if isinstance(route, Route) and route.path == "/mcp":
            route.app = wrap(route.app)
            return
    raise RuntimeError("the MCP SDK no longer exposes /mcp as a Route; update apps.kit.server")


class MissingTokenCounter:
    """Count and log requests to `/mcp` that carry no bearer token (the SDK answers them 401)."""

    def __init__(self, app: ASGIApp, verifier: JwtVerifier):
        self.app = app
        self.verifier = verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            if not headers.get(b"authorization", b"").lower().startswith(b"bearer "):
                self.verifier.record_failure("missing_token")
        await self.app(scope, receive, send)
