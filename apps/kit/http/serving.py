"""How a focused server runs under uvicorn: one configuration for `serve()` and for tests.

uvicorn's httptools protocol, with two additions made where they cost least, before the app:
- **A deadline on request headers.** uvicorn closes idle keep-alive connections, but a connection whose request
  headers never complete (a byte now and then, or nothing after the first line) is kept open as long as its
  client likes, and the app never hears of it. Any connection whose request headers have not all arrived
  `MCP_HEADER_READ_SECONDS` after the connection opened or the request began is closed.
- **Shedding.** When the process already serves `MCP_MAX_CONCURRENT_REQUESTS` calls, a request to `/mcp` is
  answered 503 with `Retry-After` as soon as its headers are parsed, without a task or the app
  (`apps.kit.http.shedding`). Left to the endpoint: a pipelined request (answers keep their order) and a browser's
  (it needs CORS headers).
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from apps.kit.declare.config import KitSettings
from apps.kit.http.shedding import Shedder


class _Answered:
    """Stands in for uvicorn's request cycle once the protocol has answered a request itself: as for any finished
    cycle, uvicorn ignores the rest of that request's body."""

    response_complete = True

    class message_event:  # uvicorn sets it when the connection is lost
        @staticmethod
        def set() -> None:
            pass


ANSWERED: Any = _Answered()


def http_protocol(seconds: float, shedder: Shedder | None) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol, with a deadline on reading each request's headers and early shedding."""

    class McpHttpProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(seconds, self._headers_too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            if shedder is not None and shedder.full and self._sheddable():
                self._shed(shedder)
                return
            super().on_headers_complete()

        def _sheddable(self) -> bool:
            """A request to /mcp, not behind another on this connection, from a client that is not a browser."""
            idle = self.cycle is None or self.cycle.response_complete
            browser = any(name == b"origin" for name, _ in self.headers)
            return idle and not browser and self.url.split(b"?", 1)[0] == b"/mcp" and not self.parser.should_upgrade()

        def _shed(self, shedder: Shedder) -> None:
            keep_alive = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
            self.cycle = ANSWERED
            self.transport.write(shedder.shed())
            if keep_alive:
                self.on_response_complete()  # counts it, re-arms the keep-alive timeout
            else:
                self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return McpHttpProtocol


def uvicorn_config(app: Any, settings: KitSettings, host: str | None = None, port: int | None = None) -> uvicorn.Config:
    shedder: Shedder | None = getattr(app, "shedder", None)  # a KitApp's; another ASGI app sheds nothing early
    return uvicorn.Config(
        app,
        host=host or settings.host,
        port=port or settings.port,
        http=http_protocol(settings.mcp_header_read_seconds, shedder),
        log_config=None,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
        lifespan="on",
    )
