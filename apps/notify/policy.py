"""The outbound policy: what a message may carry before anyone sees it.

Mass mentions (`@channel`, `@here`, `@everyone`, Slack's `<!channel>`, `<!here>`, `<!everyone>`,
`<!group>` and `<!subteam^...>` user groups) are stripped unless the target allows them. A message that
carries a secret is refused, naming the kind and never echoing it. The detectors are detect-secrets'
own (its regex plugins and its keyword detector with the config-file patterns, which catch
`DB_PASSWORD=...`, `client_secret: ...`, `AWS_SECRET_ACCESS_KEY=...`); its entropy and public-IP
plugins are left out (ordinary text trips them), and so is its verification (it would call the
issuer's API with what it found). A few forms it does not name are added here. Every pattern runs
line by line, in time linear in the line (`python -m bench.redact` checks the growth), on text the
argument schema already bounds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.plugins.base import RegexBasedDetector
from detect_secrets.plugins.keyword import (
    CONFIG_DENYLIST_REGEX_TO_GROUP,
    QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP,
    KeywordDetector,
)

from apps.kit import CallerError

MASS_MENTION = re.compile(
    r"<!(?:channel|here|everyone|group|subteam\^[^>|]{0,64})(?:\|[^>]*)?>"
    r"|(?<![\w@])@(?:channel|here|everyone|all|group)\b",
    re.I,
)
# Forms detect-secrets 1.5 has no plugin for.
EXTRA_SECRETS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("Slack app-level token", re.compile(r"\bxapp-\d-[A-Za-z0-9-]{10,255}")),
    ("Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("npm access token", re.compile(r"\bnpm_[A-Za-z0-9]{36}\b")),
    ("npm registry token", re.compile(r"_authToken\s*=\s*\S{8,}")),
    ("GitHub fine-grained token", re.compile(r"\bgithub_pat_[A-Za-z0-9_]{22,255}\b")),
    ("password in a URL", re.compile(r"(?i)[a-z][a-z0-9+.-]{1,20}://[^\s:/@]{0,128}:[^\s@/]{1,128}@")),
    ("bearer token", re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{20,}")),
)
# Entropy and public-IP detectors trip on ordinary text; NpmDetector's pattern is quadratic in a line's
# length (1 s on 64 KiB of "a://b:"), and `npm_` tokens and `_authToken=` assignments are found anyway.
LEFT_OUT = {"Base64HighEntropyString", "HexHighEntropyString", "IPPublicDetector", "NpmDetector", "KeywordDetector"}


Finder = Callable[[str], Iterator[str]]


def _matches(pattern: re.Pattern[str], line: str) -> Iterator[str]:
    return (match[0] for match in pattern.finditer(line))


def _detectors() -> list[tuple[str, Finder]]:
    """(kind, finder) for every detector used: detect-secrets' regex plugins, its keyword detector, ours."""
    found: list[tuple[str, Finder]] = []
    plugin_classes: list[Any] = list(get_mapping_from_secret_type_to_class().values())
    for plugin_class in plugin_classes:
        if issubclass(plugin_class, RegexBasedDetector) and plugin_class.__name__ not in LEFT_OUT:
            found.append((str(plugin_class.secret_type), plugin_class().analyze_string))
    keyword = KeywordDetector()
    for patterns in (CONFIG_DENYLIST_REGEX_TO_GROUP, QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP):
        found.append(
            ("password or secret assignment", partial(keyword.analyze_string, denylist_regex_to_group=patterns))
        )
    found += [(kind, partial(_matches, pattern)) for kind, pattern in EXTRA_SECRETS]
    return found


DETECTORS = _detectors()


def strip_mass_mentions(text: str) -> tuple[str, int]:
    """Mentions that would notify a whole channel, made harmless; and how many there were."""
    count = 0

    def defuse(match: re.Match[str]) -> str:
        nonlocal count
        count += 1
        word = match[0].strip("<>!@").split("|")[0]
        return word  # the word stays readable; without `@` or `<!…>` it notifies no one

    return MASS_MENTION.sub(defuse, text), count


def secret_kind(text: str) -> str | None:
    """The kind of the first secret found in `text`, or None."""
    for line in text.splitlines() or [text]:
        for kind, finder in DETECTORS:
            if next(iter(finder(line)), None) is not None:
                return kind
    return None


def refuse_secrets(*texts: str) -> None:
    for text in texts:
        if kind := secret_kind(text):
            raise CallerError(
                f"the message looks like it carries a secret ({kind}); remove it (it is never sent or logged)"
            )


def slack_escape(text: str) -> str:
    """Slack's control characters: `<...>` would make links and mentions, `&` starts an entity."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
