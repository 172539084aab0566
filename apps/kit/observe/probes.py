"""Readiness: every dependency a server names answers within a timeout, kept fresh between probes.

`/health` (liveness) checks nothing: a replica whose database is down is alive and must not
be restarted. `/ready` runs every check; a failing "soft" check (Redis, when its failure does
not close the rate limiter) is reported but keeps the replica in the Service.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from apps.kit.observe.logs import bounded, log_event
from apps.kit.observe.metrics import KitMetrics

Check = Callable[[], Awaitable[object]]
READY_CHECK_TIMEOUT = 2.0
READY_REFRESH_SECONDS = 10.0


@runtime_checkable
class ReadinessSource(Protocol):
    """State that can say whether its dependencies answer (e.g. a DB pool running SELECT 1)."""

    def readiness_checks(self) -> Mapping[str, Check]: ...


@runtime_checkable
class PageSource(Protocol):
    """State that serves the server's declared pages (`FocusedServer.pages`): path -> handler."""

    def pages(self) -> Mapping[str, Callable[[Any], Awaitable[Any]]]: ...


class Readiness:
    def __init__(self, metrics: KitMetrics):
        self.metrics = metrics
        self.checks: dict[str, Check] = {}
        self.soft: set[str] = set()
        self.started = False
        self.reasons: dict[str, str] = {}  # why each failing check failed, at its last run

    def add(self, name: str, check: Check, soft: bool = False) -> None:
        self.checks[name] = check
        if soft:
            self.soft.add(name)

    async def run(self) -> tuple[bool, dict[str, str]]:
        """Run every check at once; export `mcp_ready` and `mcp_dependency_up`."""
        results = await asyncio.gather(*(_probe(check) for check in self.checks.values()))
        status = {name: result for name, (result, _) in zip(self.checks, results, strict=True)}
        self.reasons = {name: reason for name, (_, reason) in zip(self.checks, results, strict=True) if reason}
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

    async def report_at_start(self) -> None:
        """One warning line per dependency that does not answer at start, naming it and why; the server keeps
        running (not ready) and recovers by itself when the dependency comes (Kubernetes-friendly)."""
        await self.run()
        for name, reason in self.reasons.items():
            log_event("dependency_unavailable", logging.WARNING, dependency=name, reason=reason)


async def _probe(check: Check) -> tuple[str, str]:
    """("ok", "") or ("failed: <type>", "<type>: <message>"); /ready shows the first, the log the second."""
    try:
        await asyncio.wait_for(check(), READY_CHECK_TIMEOUT)
    except TimeoutError:
        return "failed: TimeoutError", f"no answer within {READY_CHECK_TIMEOUT:g} s"
    except Exception as error:  # noqa: BLE001 - any failure means not ready; the type is the diagnosis
        return f"failed: {type(error).__name__}", bounded(f"{type(error).__name__}: {error}", 300)
    return "ok", ""
