"""The layout's two rules, read from the code's own imports:

- everything outside the kit (servers, the platform, alerts, dashboards, the benchmark, sidecars) imports what
  `apps.kit` exports and no kit module deeper, so the kit's rooms can move without touching them;
- inside the kit, a family imports only the families below it (no upward arrow, hence no cycle);
- the platform (`infra/`, `onebox/`) imports no server: it derives every app from its declaration.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KIT = ROOT / "apps" / "kit"
# Bottom up: a module may import its own family and the families before it in this list.
FAMILIES = ["declare", "wire", "observe", "upstream", "identity", "call", "http", "run", "cli"]
OUTSIDE = ["apps", "infra", "onebox", "alerts", "dashboards", "bench", "sidecars", "scripts"]


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports, absolute, with its line (`from x import y` may name the module x.y)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


# The profiler that times the kit's path with one part left out at a time reaches into those parts by design.
WHITE_BOX = {ROOT / "bench" / "parts.py"}


def python_files(top: Path) -> list[Path]:
    return sorted(
        p for p in top.rglob("*.py") if "peers" not in p.parts and "__pycache__" not in p.parts and p not in WHITE_BOX
    )


def family(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["apps", "kit"] and parts[2] in FAMILIES else None


def test_nothing_outside_the_kit_imports_a_kit_module_deeper_than_the_package():
    offending = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for top in OUTSIDE
        for path in python_files(ROOT / top)
        if KIT not in path.parents
        for line, module in imported_modules(path)
        if family(module) is not None
    ]
    assert offending == []


def test_kit_families_import_only_the_families_below_them():
    upward = []
    for path in python_files(KIT):
        own = family("apps.kit." + ".".join(path.relative_to(KIT).with_suffix("").parts))
        if own is None:
            continue  # the package's face, which imports every family to export it
        for line, module in imported_modules(path):
            theirs = family(module)
            if theirs is not None and FAMILIES.index(theirs) > FAMILIES.index(own):
                upward.append(f"{path.relative_to(ROOT)}:{line}: {own} -> {module}")
    assert upward == []


@pytest.mark.parametrize("top", ["infra", "onebox"])
def test_the_platform_imports_no_server(top):
    servers = {p.parent.name for p in (ROOT / "apps").glob("*/__main__.py")}
    assert servers, "the fleet has servers"
    named = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in python_files(ROOT / top)
        for line, module in imported_modules(path)
        if module.split(".")[:2] in (["apps", name] for name in servers)
    ]
    assert named == []


def test_the_rules_can_fail(tmp_path):
    """The checks read what they claim to: an import of a deep kit module and an upward one are both seen."""
    sample = tmp_path / "sample.py"
    sample.write_text("from apps.kit.http.gate import HttpGate\nimport apps.kit.run.app\nfrom apps.kit import mint\n")
    seen = {family(module) for _, module in imported_modules(sample)}
    assert seen == {"http", "run", None}
    assert FAMILIES.index("http") > FAMILIES.index("call")


@pytest.mark.parametrize("top", ["alerts", "dashboards"])
def test_monitoring_code_imports_nothing_of_the_platform(top):
    """The rules and dashboards are below the platform that renders them: no arrow runs back up."""
    upward = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in python_files(ROOT / top)
        for line, module in imported_modules(path)
        if module.split(".")[0] in ("infra", "onebox")
    ]
    assert upward == []


def test_a_server_without_a_database_loads_neither_the_schema_command_nor_the_lambda_adapter():
    """What only the platform or a Lambda entry uses is exported on first use: not at a server's start-up (nor the
    Cedar engine, which only the organisation's policies need)."""
    import subprocess
    import sys

    probe = (
        "import sys, apps.files.server; print(sorted(m for m in ('asyncpg', 'mangum', 'cedarpy') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    assert loaded.stdout.strip() == "[]"
    both = "from apps.kit import LAMBDA_HANDLER, apply_schema; import sys; print('asyncpg' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", both], capture_output=True, text=True, cwd=ROOT).stdout.strip() == "True"
    )
