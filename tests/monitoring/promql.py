"""Parse PromQL offline: write each expression as a recording rule and let promtool check it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$app": "mcp-db"}


def grafana_to_promql(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def parse_errors(promtool: str, expressions: dict[str, str], workdir: Path) -> str:
    """promtool's output for the expressions that do not parse; empty when all parse."""
    rules = [{"record": f"check:expr_{i}", "expr": expr} for i, expr in enumerate(expressions.values())]
    path = workdir / "expressions.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "parse", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", "--lint=none", str(path)], capture_output=True, text=True)
    if result.returncode == 0:
        return ""
    names = list(expressions)
    return re.sub(r"check:expr_(\d+)", lambda m: names[int(m.group(1))], result.stdout + result.stderr)


def fenced_blocks(markdown: str, language: str) -> list[str]:
    return [block.strip() for block in re.findall(rf"```{language}\n(.*?)```", markdown, flags=re.S)]
