"""Space on the volumes a server declares (`Needs.volumes`), read at scrape time for every app alike.

`McpVolumeFilling` alerts on these gauges, so a new app with a volume is covered without a rule of its
own. The path is where the platform mounted the volume (`<NAME>_PATH`), else the declared mount path.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from apps.kit.declare.needs import Volume


def volume_paths(volumes: Iterable[Volume]) -> dict[str, str]:
    return {v.name: os.environ.get(f"{v.env_prefix}_PATH", v.mount_path) for v in volumes}


class VolumeCollector(Collector):
    def __init__(self, paths: dict[str, str]):
        self._paths = paths

    def collect(self) -> Iterator[GaugeMetricFamily]:
        size = GaugeMetricFamily("mcp_volume_size_bytes", "Size of a volume the server declares", labels=["volume"])
        free = GaugeMetricFamily(
            "mcp_volume_available_bytes", "Bytes the server may still write on the volume", labels=["volume"]
        )
        for name, path in self._paths.items():
            try:
                info = os.statvfs(path)
            except OSError:
                continue  # not mounted (yet): no sample, rather than a false zero
            size.add_metric([name], info.f_blocks * info.f_frsize)
            free.add_metric([name], info.f_bavail * info.f_frsize)
        yield from (size, free)
