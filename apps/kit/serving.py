"""How a focused server runs under uvicorn: one configuration for `serve()` and for tests.

uvicorn closes idle keep-alive connections, but a connection whose request headers never complete
(a byte now and then, or nothing after the first line) is kept open as long as its client likes, and
the app never hears of it. `HeaderDeadline` closes any connection whose request headers have not all
arrived `MCP_HEADER_READ_SECONDS` after the connection opened or the request began.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from apps.kit.config import KitSettings


def header_deadline_protocol(seconds: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol, with a deadline on reading each request's headers."""

    class HeaderDeadline(HttpToolsProtocol):
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
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderDeadline


def uvicorn_config(app: Any, settings: KitSettings, host: str | None = None, port: int | None = None) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host or settings.host,
        port=port or settings.port,
        http=header_deadline_protocol(settings.mcp_header_read_seconds),
        log_config=None,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
        lifespan="on",
    )
