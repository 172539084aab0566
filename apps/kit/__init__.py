"""The production layer every focused MCP server gets by composition.

A server needs only what this package exports: `FocusedServer` to declare itself and its tools,
`Needs` for what it uses outside its process, `ToolArgs` for strict argument models, `CallerError`
and `ServerError` to say whose fault a failed call was, `Check` / `ReadinessSource` to name its
dependencies, `Telemetry` to add its own metrics and spans, and `current_principal` to name the
caller in its own audit events.
"""

from apps.kit.asking import ask_person, can_ask_person
from apps.kit.auth import Principal
from apps.kit.call import current_principal
from apps.kit.config import KitSettings, load_settings
from apps.kit.needs import Needs, OutsideHost, Volume
from apps.kit.probes import Check, ReadinessSource
from apps.kit.server import FocusedServer
from apps.kit.telemetry import AlertCase, Chart, DashboardRow, ServerAlert, Telemetry
from apps.kit.tools import CallerError, ServerError, ToolArgs, WithMeta

__all__ = [
    "AlertCase",
    "CallerError",
    "Chart",
    "Check",
    "DashboardRow",
    "FocusedServer",
    "KitSettings",
    "Needs",
    "OutsideHost",
    "Principal",
    "ReadinessSource",
    "ServerAlert",
    "ServerError",
    "Telemetry",
    "ToolArgs",
    "Volume",
    "WithMeta",
    "ask_person",
    "can_ask_person",
    "current_principal",
    "load_settings",
]
