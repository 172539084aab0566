"""`FocusedServer`: what a focused MCP server declares (its tools, its state, its settings).

A server module creates one, declares tools with `@server.tool(...)`, and names its
state (pools, clients) as an async context manager. A declaration runs nothing: `apps.kit.run`
wraps it in the kit's production layer (`create_app`) and serves it under uvicorn (`serve`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, TypeVar

from apps.kit.declare.config import KitSettings
from apps.kit.declare.manifest import manifest
from apps.kit.declare.needs import Needs
from apps.kit.declare.policy import On
from apps.kit.declare.telemetry import DashboardRow, ServerAlert, Telemetry
from apps.kit.declare.tools import Handler, ToolHints, ToolSpec, spec_from_handler
from apps.kit.declare.version import __version__

StateT = TypeVar("StateT")
SettingsT = TypeVar("SettingsT", bound=KitSettings)
# Opens a server's state (pools, clients) for its lifetime; `Telemetry` lets it register its own metrics and spans.
StateFactory = Callable[[SettingsT, Telemetry], AbstractAsyncContextManager[StateT]]


class FocusedServer(Generic[StateT, SettingsT]):
    def __init__(
        self,
        name: str,
        settings_cls: type[SettingsT],
        state: StateFactory[SettingsT, StateT],
        instructions: str | None = None,
        needs: Needs | None = None,
        dashboard: DashboardRow | None = None,
        alerts: tuple[ServerAlert, ...] = (),
        version: str = __version__,
        read_only_when: Callable[[SettingsT], bool] | None = None,
        offers: Callable[[SettingsT, str], bool] | None = None,
        pages: tuple[str, ...] = (),
    ):
        self.name = name
        self.needs = needs or Needs()
        self.dashboard = dashboard  # its row in the fleet dashboard, for series only it exports
        self.alerts = alerts  # alerts on those series; their runbooks are in the server's folder
        self.settings_cls = settings_cls
        self.state_factory = state
        self.instructions = instructions
        self.version = version
        # Settings under which the server offers only its read-only tools: the others are not registered,
        # so no client can list or call them (a configuration switch, not a per-call check).
        self.read_only_when = read_only_when
        # Which tools these settings offer, by name (toolsets a setting enables); the others are not registered.
        self.offers = offers
        self.specs: dict[str, ToolSpec[StateT]] = {}
        # Browser pages beside `/mcp` (a connect page, `apps.kit.identity.linking`), by path: the platform routes
        # them with `/mcp`; the state serves them (`PageSource`), and a path it does not serve answers 404.
        self.pages = pages

    def tool(
        self,
        *,
        scopes: set[str],
        read_only: bool,
        open_world: bool = False,
        destructive: bool = False,
        idempotent: bool = False,
        acts_on: On | None = None,
    ) -> Callable[[Handler[StateT]], Handler[StateT]]:
        """Declare a tool: `async def name(args: SomeToolArgs, state) -> dict`, its scopes and honest hints.

        `open_world`: it reaches beyond this server's own resources (an external API, people).
        `destructive` and `idempotent` describe a tool that is not read-only.
        `acts_on`: what its policies see as the resource (`On("Table", "{table}")`); else the server itself.
        """
        if read_only and (destructive or idempotent):
            raise ValueError("destructive and idempotent describe tools that are not read-only")
        hints = ToolHints(read_only, open_world, destructive, idempotent)

        def register(handler: Handler[StateT]) -> Handler[StateT]:
            spec = spec_from_handler(handler, scopes, hints, acts_on)
            if spec.name in self.specs:
                raise ValueError(f"tool {spec.name} declared twice")
            self.specs[spec.name] = spec
            return handler

        return register

    @property
    def scopes(self) -> list[str]:
        """Every scope some tool of this server needs: what its tokens may carry."""
        return sorted({scope for spec in self.specs.values() for scope in spec.scopes})

    def offered(self, settings: SettingsT) -> dict[str, ToolSpec[StateT]]:
        """The tools these settings register: all of them, or only the read-only ones in read-only mode, and of
        those the ones `offers` keeps."""
        specs = dict(self.specs)
        if self.read_only_when is not None and self.read_only_when(settings):
            specs = {name: spec for name, spec in specs.items() if spec.hints.read_only}
        if self.offers is not None:
            specs = {name: spec for name, spec in specs.items() if self.offers(settings, name)}
        return specs

    def manifest(self, settings: SettingsT | None = None) -> dict[str, Any]:
        """Every tool's digest and definition, and the server's digest (see `apps.kit.declare.manifest`); with
        settings, of the tools those settings register."""
        specs = self.specs if settings is None else self.offered(settings)
        return manifest(self.name, [spec.definition for spec in specs.values()])


def load_server(module: str) -> FocusedServer[Any, Any]:
    """The `FocusedServer` an app module declares: `server` in `<module>.server` (`apps.db` -> apps/db/server.py)."""
    server = importlib.import_module(f"{module}.server").server
    if not isinstance(server, FocusedServer):
        raise TypeError(f"{module}.server.server is not a FocusedServer")
    return server
