"""The outbound policy: what a message may carry before anyone sees it.

Mass mentions (`@channel`, `@here`, `@everyone`, Slack's `<!channel>`) are stripped unless the target
allows them; a message that carries a secret (a private key, a cloud or chat token, a JWT, a password in
a DSN or `password=`) is refused, naming the kind, never echoing it. Every pattern runs in linear time
on text the argument schema already bounds.
"""

from __future__ import annotations

import re

from apps.kit import CallerError

MASS_MENTION = re.compile(
    r"<!(?:channel|here|everyone)(?:\|[^>]{0,64})?>|(?<![\w@])@(?:channel|here|everyone|all)\b", re.I
)
SECRETS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a private key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )?PRIVATE KEY-----")),
    ("an AWS access key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("a GitHub token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,255}\b|\bgithub_pat_[A-Za-z0-9_]{22,255}\b")),
    ("a Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,255}")),
    ("a Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("a Stripe secret key", re.compile(r"\b[rs]k_live_[0-9A-Za-z]{16,255}\b")),
    ("a JSON Web Token", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    ("a password in a URL", re.compile(r"[a-z][a-z0-9+.-]{1,20}://[^\s:/@]{1,128}:[^\s@/]{1,128}@", re.I)),
    (
        "a password or secret assignment",
        re.compile(r"(?i)\b(?:password|passwd|pwd|secret|api[_-]?key|token)\s*[:=]\s*\S{6,}"),
    ),
    ("a bearer token", re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{20,}")),
)


def strip_mass_mentions(text: str) -> tuple[str, int]:
    """Mentions that would notify a whole channel, made harmless; and how many there were."""
    count = 0

    def defuse(match: re.Match[str]) -> str:
        nonlocal count
        count += 1
        word = match[0].strip("<>!@").split("|")[0]
        return word  # the word stays readable; without `@` or `<!…>` it notifies no one

    return MASS_MENTION.sub(defuse, text), count


def refuse_secrets(*texts: str) -> None:
    for text in texts:
        for kind, pattern in SECRETS:
            if pattern.search(text):
                raise CallerError(f"the message looks like it carries {kind}; remove it (it is never sent or logged)")


def slack_escape(text: str) -> str:
    """Slack's control characters: `<...>` would make links and mentions, `&` starts an entity."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
