"""Readiness: every dependency a server names answers within a timeout, kept fresh between probes.

`/health` (liveness) checks nothing: a replica whose database is down is alive and must not
be restarted. `/ready` runs every check; a failing "soft" check (Redis, when its failure does
not close the rate limiter) is reported but keeps the replica in the Service.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol, runtime_checkable

from apps.kit.metrics import KitMetrics

Check = Callable[[], Awaitable[object]]
READY_CHECK_TIMEOUT = 2.0
READY_REFRESH_SECONDS = 10.0


@runtime_checkable
class ReadinessSource(Protocol):
    """State that can say whether its dependencies answer (e.g. a DB pool running SELECT 1)."""

    def readiness_checks(self) -> Mapping[str, Check]: ...


class Readiness:
    def __init__(self, metrics: KitMetrics):
        self.metrics = metrics
        self.checks: dict[str, Check] = {}
        self.soft: set[str] = set()
        self.started = False

    def add(self, name: str, check: Check, soft: bool = False) -> None:
        self.checks[name] = check
        if soft:
            self.soft.add(name)

    async def run(self) -> tuple[bool, dict[str, str]]:
        """Run every check at once; export `mcp_ready` and `mcp_dependency_up`."""
        results = await asyncio.gather(*(_probe(check) for check in self.checks.values()))
        status = dict(zip(self.checks, results, strict=True))
        ok = self.started and all(result == "ok" for name, result in status.items() if name not in self.soft)
        self.metrics.ready.set(1 if ok else 0)
        for name, result in status.items():
            self.metrics.dependency_up.labels(dependency=name).set(1 if result == "ok" else 0)
        return ok, status

    async def keep_fresh(self) -> None:
        """Keep `mcp_ready` current between probes, so alerts never read a stale gauge."""
        while True:
            await self.run()
            await asyncio.sleep(READY_REFRESH_SECONDS)


async def _probe(check: Check) -> str:
    try:
        await asyncio.wait_for(check(), READY_CHECK_TIMEOUT)
    except Exception as error:  # noqa: BLE001 - any failure means not ready; the type is the diagnosis
        return f"failed: {type(error).__name__}"
    return "ok"
