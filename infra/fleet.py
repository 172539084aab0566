"""The apps of a stack, read from their own declarations: `server` in `<module>.server`.

A stack entry names the module; the server module says which tools (hence scopes) it serves and
what it needs. This checks that the entry configures only what the app declared, naming the key.
"""

from __future__ import annotations

from typing import Any

from apps.kit.server import FocusedServer
from apps.kit.server import load_server as kit_load_server
from infra.config import NAMESPACE, AppConfig, StackConfigError


def load_server(module: str) -> FocusedServer[Any, Any]:
    """The `FocusedServer` of an app module (`apps.db` -> `apps.db.server.server`)."""
    try:
        return kit_load_server(module)
    except (ImportError, AttributeError, TypeError) as error:
        raise StackConfigError(f"module {module!r}: no FocusedServer `server` in {module}.server ({error})") from None


def check(name: str, app: AppConfig, server: FocusedServer[Any, Any]) -> None:
    """The stack entry may size and address only what the app declares."""
    key = f"{NAMESPACE}:apps.{name}"
    declared = {volume.name for volume in server.needs.volumes}
    problems = [
        f"  {key}.volumes.{volume}: {server.name} declares no such volume (declared: {sorted(declared)})"
        for volume in app.volumes
        if volume not in declared
    ]
    problems += [
        f"  {key}.volumes.{volume}: {server.name} mounts this volume; give its size"
        for volume in sorted(declared - set(app.volumes))
    ]
    if app.egress and not server.needs.external_egress:
        problems.append(f"  {key}.egress: {server.name} declares no external egress")
    if problems:
        raise StackConfigError("invalid stack configuration:\n" + "\n".join(problems))
