"""The garbage collector around a server's start-up: paused before the first import, frozen once the server is
built, the pattern Python's `gc` documentation gives for long-lived processes (`gc.freeze`).

Loading the SDK, pydantic and OpenTelemetry builds about 160,000 tracked objects. With the collector running,
its passes rescan them again and again while they load, and one full collection before freezing scans them
all once more (~0.1 s) to find about 1,000 unreachable objects: together a fifth of a cold start. Paused, then
frozen without that collection, start-up pays neither; the few objects it dropped stay frozen, a fixed cost.
Once frozen, the start-up objects are never scanned again (each full pass over them stalled the event loop for
~100 ms, the whole p99 tail), and what requests allocate is collected as usual.

This module sits outside `apps.kit` so that an entry point can pause the collector before the kit loads.
"""

from __future__ import annotations

import gc

_paused = False


def pause() -> None:
    """The first call of a server process (`apps.entry.serve`, `apps.lambda_main`)."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def settle() -> None:
    """Freeze everything start-up built, and collect again if `pause` stopped the collector (a host application
    that runs without one, having disabled it itself, keeps it off)."""
    global _paused
    gc.freeze()
    if _paused:
        _paused = False
        gc.enable()
