"""The runbooks shipped with the server: the repository's `runbooks/` and each server's own
(`apps/<name>/runbooks/`, see `apps.fleet`), read once at start-up.

An alert's runbook is found by its `alertname` among the files loaded, never fetched from a URL the
alert carries (an alert's annotations are whatever its rule says; a URL there could point anywhere).
`APP` in a page stands for the alert's `app` label and is filled in when the app is known; the PromQL
blocks are returned too, ready for `query_metrics`.
"""

from __future__ import annotations

import re
from pathlib import Path

ALERT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,127}$")
_PROMQL_BLOCK = re.compile(r"```promql\n(.*?)```", re.DOTALL)
_APP = re.compile(r"\bAPP\b")


class Runbooks:
    def __init__(self, pages: dict[str, str]):
        self.pages = pages
        # Each page split once around its APP placeholders: filling one in is a join, not a regex pass over
        # the whole page for every alert of every list_firing_alerts call.
        self._pieces = {name: _APP.split(text) for name, text in pages.items()}

    @classmethod
    def load(cls, directories: list[Path]) -> Runbooks:
        """Every page in these directories (the fleet's `runbooks/`, then each server's own)."""
        pages = {
            path.stem: path.read_text(encoding="utf-8")
            for directory in directories
            for path in sorted(directory.glob("*.md"))
            if ALERT_NAME.fullmatch(path.stem)
        }
        if not pages:
            raise FileNotFoundError(f"no runbooks in {', '.join(map(str, directories))}")
        return cls(pages)

    def page(self, alert: str, app: str | None = None) -> str | None:
        text = self.pages.get(alert)
        if text is None or app is None:
            return text
        return app.join(self._pieces[alert])

    @staticmethod
    def queries(text: str) -> list[str]:
        """The page's PromQL blocks, in order."""
        return [block.strip() for block in _PROMQL_BLOCK.findall(text)]
