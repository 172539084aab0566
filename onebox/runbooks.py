"""The runbooks' diagnosis steps on one machine: each `kubectl` or LogQL block and the one-machine block after it.

`scripts/drill` prints a page's one-machine steps; the tests hold every page to having them and run them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from apps import fleet

ONE_MACHINE = "# one machine"
# Pages whose alert cannot fire on one machine, and why: no one-machine form is asked of them.
CLUSTER_ONLY = {
    "McpEgressDenied": "there is no egress proxy on one machine",
    "McpGithubBudgetLow": "the GitHub server needs a GitHub credential: not in the one-machine stack",
    "McpGithubUpstreamFailing": "the GitHub server needs a GitHub credential: not in the one-machine stack",
    "McpServerlessSaturated": "a serverless target's alert (the cloud's own metrics)",
    "McpServerlessServerErrors": "a serverless target's alert (the cloud's own metrics)",
}
# The one-machine app each page's steps run against (APP): the file server's volume, notify's deliveries.
APP_OF_PAGE = {"McpVolumeFilling": "mcp-files", "McpNotifyDeliveryFailing": "mcp-notify"}


@dataclass(frozen=True)
class Block:
    language: str
    text: str


def pages() -> dict[str, str]:
    return {p.stem: p.read_text() for d in fleet.runbook_dirs() for p in d.glob("*.md") if p.name != "README.md"}


def diagnosis_blocks(page: str) -> list[Block]:
    diagnosis = page.split("## Diagnosis")[1].split("## Mitigation")[0]
    return [Block(lang, re.sub(r"^ {3}", "", text, flags=re.M)) for lang, text in
            re.findall(r"```(\w+)\n(.*?)```", diagnosis, flags=re.S)]  # fmt: skip


def missing_one_machine_forms(page: str) -> list[str]:
    """Each `kubectl` or LogQL block of the diagnosis not followed by a one-machine block, by its first line."""
    blocks = diagnosis_blocks(page)
    missing = []
    for at, block in enumerate(blocks):
        needs = block.language == "logql" or (block.language == "sh" and "kubectl" in block.text)
        following = blocks[at + 1] if at + 1 < len(blocks) else None
        if needs and not (following and following.language == "sh" and following.text.startswith(ONE_MACHINE)):
            missing.append(block.text.splitlines()[0])
    return missing


def one_machine_steps(name: str, page: str, app: str | None = None) -> list[str]:
    """The page's one-machine blocks with its placeholders filled for the composed stack (APP: `app`, else the
    server the page is about)."""
    app = app or APP_OF_PAGE.get(name, "mcp-db")
    filled = {"APP": app, "SUBJECT": "writer", "HOST": "postgres.mcp-data.svc"}
    steps = []
    for block in diagnosis_blocks(page):
        if block.language == "sh" and block.text.startswith(ONE_MACHINE):
            steps.append(re.sub(r"\b(APP|SUBJECT|HOST)\b", lambda m: filled[m.group(1)], block.text))
    return steps


def promql_queries(name: str, page: str) -> list[str]:
    app = APP_OF_PAGE.get(name, "mcp-db")
    return [re.sub(r"\bAPP\b", app, b.text.strip()) for b in diagnosis_blocks(page) if b.language == "promql"]
