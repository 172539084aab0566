"""`weather`: the last reading of a station, and how old it is. A server with a series, an alert and a
runbook of its own, all in this folder."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from prometheus_client import Gauge

from apps.kit import AlertCase, Chart, DashboardRow, FocusedServer, KitSettings, Needs, ServerAlert, Telemetry, ToolArgs


@dataclass
class Station:
    age: Gauge
    read_at: float = field(default_factory=time.time)


@asynccontextmanager
async def open_station(settings: KitSettings, telemetry: Telemetry) -> AsyncIterator[Station]:
    yield Station(Gauge("mcp_weather_reading_age_seconds", "Age of the last reading", registry=telemetry.registry))


AGE = 'mcp_weather_reading_age_seconds{app="mcp-weather", job="{job}", instance="weather-1:8080"}'

server: FocusedServer[Station, KitSettings] = FocusedServer(
    "mcpfleet-weather",
    KitSettings,
    open_station,
    needs=Needs(),
    dashboard=DashboardRow(
        "Weather server: readings",
        (Chart("Age of the last reading", (("max by (app) (mcp_weather_reading_age_seconds{{{sel}}})", "{{app}}"),)),),
    ),
    alerts=(
        ServerAlert(
            "McpWeatherReadingStale",
            'max by (app) (mcp_weather_reading_age_seconds{job="{job}"}) > 900',
            "5m",
            "warning",
            "{{ $labels.app }}: the last reading is {{ $value | humanizeDuration }} old",
            "{{ $labels.app }} has had no new reading for more than 15 minutes.",
            cases=(
                AlertCase(
                    {AGE: "1000x10"},
                    at="8m",
                    fires={"app": "mcp-weather"},
                    summary="mcp-weather: the last reading is 16m 40s old",
                ),
                AlertCase({AGE: "600x10"}, at="8m"),
            ),
        ),
    ),
)


class NoArgs(ToolArgs):
    pass


@server.tool(scopes={"weather:read"}, read_only=True)
async def reading(args: NoArgs, station: Station) -> dict[str, object]:
    """The station's last reading and its age in seconds."""
    age = time.time() - station.read_at
    station.age.set(age)
    return {"celsius": 11.5, "age_seconds": round(age)}
