"""The fleet: every focused server in this repository, one per folder of `apps/` with a `__main__.py`.

The one registry the dashboards, the alert rules, the runbooks the on-call server ships, the pin test and
`pulumi up` read; adding a server is adding its folder. Fleet-wide runbooks are in `runbooks/`, a
server's own beside it in `apps/<name>/runbooks/` (the image copies both).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from apps.kit import FocusedServer, load_server

APPS_DIR = Path(__file__).resolve().parent
FLEET_RUNBOOKS = APPS_DIR.parent / "runbooks"


def modules() -> list[str]:
    """`apps.<name>` for every server folder, sorted."""
    return sorted(f"apps.{path.parent.name}" for path in APPS_DIR.glob("*/__main__.py"))


def servers() -> dict[str, FocusedServer[Any, Any]]:
    return {module: load_server(module) for module in modules()}


def folder(module: str) -> Path:
    return APPS_DIR / module.removeprefix("apps.")


def runbook_dirs() -> list[Path]:
    """Where runbook pages are: the fleet's, then each server's own."""
    own = [folder(module) / "runbooks" for module in modules() if (folder(module) / "runbooks").is_dir()]
    return [FLEET_RUNBOOKS, *own]
