"""The collector around start-up (`apps.collector`): paused by the entry points, frozen and resumed once built."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from apps import collector

APPS = Path(collector.__file__).parent


@pytest.fixture
def restored() -> Iterator[None]:
    was = gc.isenabled()
    yield
    gc.unfreeze()
    (gc.enable if was else gc.disable)()


def test_a_paused_collector_resumes_once_start_up_is_frozen(restored):
    gc.enable()
    collector.pause()
    assert not gc.isenabled()
    built = [object() for _ in range(10)]  # what start-up builds
    collector.settle()
    assert gc.isenabled() and gc.get_freeze_count() >= len(built)


def test_a_host_that_runs_without_a_collector_keeps_it_off(restored):
    gc.disable()  # a host application's own choice, before the server is mounted
    collector.pause()
    collector.settle()
    assert not gc.isenabled()


ENTRY = """
import gc, runpy, sys
from apps import collector
pause, kit_loaded = collector.pause, []
def watched():
    kit_loaded.append("apps.kit" in sys.modules)
    pause()
collector.pause = watched
try:
    runpy.run_module(sys.argv[1], run_name="__main__")
except BaseException as error:  # no settings here: the server stops at its configuration, after the pause
    print(type(error).__name__, kit_loaded, gc.isenabled())
"""


SERVERS = sorted(f"apps.{main.parent.name}" for main in APPS.glob("*/__main__.py"))


@pytest.mark.parametrize("entry", [*SERVERS, "apps.lambda_main"])
def test_every_entry_point_pauses_the_collector_before_the_kit_loads(entry):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_", "DB_"))} | {"MCP_SERVER": "apps.db"}
    run = subprocess.run([sys.executable, "-c", ENTRY, entry], env=env, capture_output=True, text=True, timeout=120)
    assert run.stdout.splitlines()[-1:] == ["ConfigError [False] False"], run.stdout[-500:] + run.stderr[-1500:]
