from __future__ import annotations

import shutil

import pytest

from tests.conftest import requirement_missing


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        requirement_missing(f"{name} is not installed (Debian package {package}; scripts/test unpacks it)")
    return path


@pytest.fixture(scope="session")
def promtool() -> str:
    return _tool("promtool", "prometheus")


@pytest.fixture(scope="session")
def amtool() -> str:
    return _tool("amtool", "prometheus-alertmanager")
