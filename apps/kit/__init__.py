"""The production layer every focused MCP server gets by composition.

A server needs only what this package exports: `FocusedServer` to declare itself and its
tools, `ToolArgs` for strict argument models, `CallerError` / `ServerError` to say whose
fault a failed call was, and `Check` / `ReadinessSource` to name its dependencies.
"""

from apps.kit.config import KitSettings, load_settings
from apps.kit.metrics import KitMetrics
from apps.kit.probes import Check, ReadinessSource
from apps.kit.server import FocusedServer
from apps.kit.tools import CallerError, ServerError, ToolArgs

__all__ = [
    "CallerError",
    "Check",
    "FocusedServer",
    "KitMetrics",
    "KitSettings",
    "ReadinessSource",
    "ServerError",
    "ToolArgs",
    "load_settings",
]
