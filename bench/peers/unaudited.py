"""The db server as shipped but with its audit trail silenced: only so `python -m bench` can show what the trail
costs as a same-run ratio (`mcpfleet` against this). Never a way to run a server: the platform has no such switch."""

from __future__ import annotations

import runpy

from apps.kit.observe.audit import AuditTrail


def _unrecorded(self: AuditTrail, **_: object) -> None:
    return None


AuditTrail.record = _unrecorded  # type: ignore[method-assign]
runpy.run_module("apps.db", run_name="__main__", alter_sys=True)
