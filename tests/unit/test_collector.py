"""The collector around start-up (`apps.collector`): paused by the entry points, frozen and resumed once built."""

from __future__ import annotations

import ast
import gc
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


@pytest.mark.parametrize(
    "entry", [*sorted(APPS.glob("*/__main__.py")), APPS / "lambda_main.py"], ids=lambda p: str(p.relative_to(APPS))
)
def test_every_entry_point_pauses_the_collector_before_the_kit_loads(entry):
    statements = ast.parse(entry.read_text()).body
    pause = next(i for i, s in enumerate(statements) if "collector.pause()" in ast.unparse(s))
    kit_imports = [
        i
        for i, s in enumerate(statements)
        if isinstance(s, ast.ImportFrom) and (s.module or "").startswith("apps.")  # `from apps import collector` is not
    ]
    assert kit_imports and pause < min(kit_imports)
