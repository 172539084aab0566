"""Load shedding: a call over the process's in-flight cap is refused with 503 and `Retry-After`, for as little
CPU as possible.

Under overload a refusal must cost far less than a call, or the refusals become the load: through the ASGI stack
(a task, the middleware, the endpoint) each refusal paid for most of a request's path, and at 1,024 connections
the admitted calls waited behind thousands of them. `Shedder` counts the MCP requests in flight (the endpoint
holds a slot per request); uvicorn's protocol (`apps.kit.http.serving`) asks it as soon as a request's headers are
parsed and, when the process is full, writes the answer itself: no task, no app. The endpoint checks the same cap
for what the protocol leaves to it (a pipelined request, a browser's request that needs CORS headers, a mounted
app).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from apps.kit.wire.encoding import dumps
from apps.kit.wire.outcomes import RefusalReason
from apps.kit.wire.refusal import Refusal, overloaded


class Shedder:
    def __init__(self, cap: int, on_shed: Callable[[], None]):
        self.cap, self.on_shed = cap, on_shed
        self.in_flight = 0
        self.refusal = overloaded(503, RefusalReason.BUSY, f"Server busy: {cap} requests in flight")
        body = dumps(self.refusal.body)
        headers = b"".join(b"%s: %s\r\n" % pair for pair in self.refusal.headers)
        # The same status, headers and body the endpoint sends, as bytes on the wire.
        self.answer = (
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n%scontent-length: %d\r\n\r\n%s"
            % (headers, len(body), body)
        )

    @property
    def full(self) -> bool:
        return self.in_flight >= self.cap

    @property
    def crowded(self) -> bool:
        """Half the places or more are taken: from here on, each principal keeps to its share of bodies arriving."""
        return 2 * self.in_flight >= self.cap

    def shed(self) -> bytes:
        """Count a refusal made outside the app, and return its bytes."""
        self.on_shed()
        return self.answer

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one place while a request is served; over the cap, raise the refusal for the endpoint to send."""
        self.in_flight += 1
        try:
            if self.in_flight > self.cap:
                raise Refusal(self.refusal.status, self.refusal.body, self.refusal.reason, list(self.refusal.headers))
            yield
        finally:
            self.in_flight -= 1
