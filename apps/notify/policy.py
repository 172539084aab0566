"""The outbound policy: what a message may carry before anyone sees it.

Mass mentions (`@channel`, `@here`, `@everyone`, Matrix's `@room`, Slack's `<!channel>`, `<!here>`,
`<!everyone>`, `<!group>` and `<!subteam^...>` user groups, Discord's role mentions `<@&id>`) are
stripped unless the target allows them. A message that carries a secret is refused, naming the kind and
never echoing it. The detectors are detect-secrets' own (its regex plugins and its keyword detector with
the config-file patterns, which catch `DB_PASSWORD=...`, `client_secret: ...`,
`AWS_SECRET_ACCESS_KEY=...`); its entropy and public-IP plugins are left out (ordinary text trips them),
and so is its verification (it would call the issuer's API with what it found). A few forms it does not
name are added here. Every pattern runs line by line, in time linear in the line (`python -m bench.redact`
checks the growth), on text the argument schema already bounds.

Text is normalised before it is matched, since a secret dressed up still works once pasted: NFKC (a full-width
equals sign is `=`), format characters (zero-width spaces, soft hyphens, bidi marks) removed, Cyrillic and Greek letters
that look like Latin ones read as those, `%`-escapes decoded; and the shaped tokens are looked for again with
white space removed and with lines joined, so a JWT, a key id or a PEM header split over lines is still found.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any
from urllib.parse import unquote

from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.plugins.base import RegexBasedDetector
from detect_secrets.plugins.keyword import (
    CONFIG_DENYLIST_REGEX_TO_GROUP,
    QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP,
    KeywordDetector,
)

from apps.kit import CallerError

MASS_MENTION = re.compile(
    r"<!(?:channel|here|everyone|group|subteam\^[^>|]{0,64})(?:\|[^>]*)?>"  # Slack
    r"|<@&\d{1,32}>"  # a Discord role
    r"|(?<![\w@])@(?:channel|here|everyone|all|group|room)\b",  # and Matrix's @room
    re.I,
)
# Forms detect-secrets 1.5 has no plugin for.
_SENSITIVE_NAMES = (
    r"(?:access[_.-]?token|refresh[_.-]?token|id[_.-]?token|auth[_.-]?token|api[_.-]?token|session[_.-]?token"
    r"|token|api[_.-]?key|apikey|secret|passw(?:or)?d|passwort|kennwort|contrase(?:n|ñ)a|senha|mot[ _]de[ _]passe"
    r"|wachtwoord|pwd|credentials?)"
)
EXTRA_SECRETS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("Slack app-level token", re.compile(r"\bxapp-\d-[A-Za-z0-9-]{10,255}")),
    ("Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("npm access token", re.compile(r"\bnpm_[A-Za-z0-9]{36}\b")),
    ("npm registry token", re.compile(r"_authToken\s*=\s*\S{8,}")),
    ("GitHub fine-grained token", re.compile(r"\bgithub_pat_[A-Za-z0-9_]{22,255}\b")),
    ("Stripe webhook secret", re.compile(r"\bwhsec_[A-Za-z0-9]{24,}")),
    ("Anthropic API key", re.compile(r"\bsk-ant-[A-Za-z0-9_-]{20,}")),
    ("HashiCorp Vault token", re.compile(r"\bhv[sbr]\.[A-Za-z0-9_-]{20,}")),
    ("private key", re.compile(r"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY")),
    # user:password@ in a URL; the password may hold `/`, but `host:8080/path@x` is a port and a path
    ("password in a URL", re.compile(r"(?i)[a-z][a-z0-9+.-]{1,20}://[^\s:/@]{0,128}:(?!\d{1,5}/)[^\s@]{1,128}@")),
    ("bearer token", re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{20,}")),
    # `access_token=`, `refresh_token: `, `Passwort:` and the like with a value of 8 characters or more
    (
        "token or password assignment",
        re.compile(rf"(?i)(?<![a-z0-9]){_SENSITIVE_NAMES}['\"]?\s*[:=]\s*['\"]?[^\s'\"&,;]{{8,}}"),
    ),
    ("token in a URL", re.compile(rf"(?i)[?&#]{_SENSITIVE_NAMES}=[^\s&#]{{8,}}")),
)
_BASIC = re.compile(r"(?i)\bbasic\s+([A-Za-z0-9+/]{6,}={0,2})")
# Cyrillic and Greek letters drawn like Latin ones (Unicode's confusables for these scripts, the common ones).
_LOOKALIKES = str.maketrans(
    "аеорсухіјѕԁһӏԛԝАВЕКМНОРСТХІЈЅУαοτνκιρεΑΒΕΖΗΙΚΜΝΟΡΤΥΧ",
    "aeopcyxijsdhlqwABEKMHOPCTXIJSYaotvkipeABEZHIKMNOPTYX",
)
_WHITE = re.compile(r"\s+")
# Entropy and public-IP detectors trip on ordinary text; NpmDetector's pattern is quadratic in a line's
# length (1 s on 64 KiB of "a://b:"), and `npm_` tokens and `_authToken=` assignments are found anyway.
LEFT_OUT = {"Base64HighEntropyString", "HexHighEntropyString", "IPPublicDetector", "NpmDetector", "KeywordDetector"}


Finder = Callable[[str], Iterator[str]]


def _matches(pattern: re.Pattern[str], line: str) -> Iterator[str]:
    return (match[0] for match in pattern.finditer(line))


def _basic_credentials(line: str) -> Iterator[str]:
    """`Basic <base64 of user:password>`, as in an Authorization header."""
    for match in _BASIC.finditer(line):
        try:
            decoded = base64.b64decode(match[1] + "=" * (-len(match[1]) % 4), validate=True)
        except (binascii.Error, ValueError):
            continue
        if b":" in decoded:
            yield match[0]


def _detectors() -> list[tuple[str, Finder, bool]]:
    """(kind, finder, shaped) for every detector used: detect-secrets' regex plugins, its keyword detector, ours.
    A shaped one looks for a token of a known form, which is looked for again with white space removed."""
    found: list[tuple[str, Finder, bool]] = []
    plugin_classes: list[Any] = list(get_mapping_from_secret_type_to_class().values())
    for plugin_class in plugin_classes:
        if issubclass(plugin_class, RegexBasedDetector) and plugin_class.__name__ not in LEFT_OUT:
            found.append((str(plugin_class.secret_type), plugin_class().analyze_string, True))
    keyword = KeywordDetector()
    for patterns in (CONFIG_DENYLIST_REGEX_TO_GROUP, QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP):
        found.append(
            ("password or secret assignment", partial(keyword.analyze_string, denylist_regex_to_group=patterns), False)
        )
    unshaped = {"password in a URL", "token or password assignment", "token in a URL", "bearer token"}
    found += [(kind, partial(_matches, pattern), kind not in unshaped) for kind, pattern in EXTRA_SECRETS]
    found.append(("basic credentials", _basic_credentials, False))
    return found


DETECTORS = _detectors()


def strip_mass_mentions(text: str) -> tuple[str, int]:
    """Mentions that would notify a whole channel, made harmless; and how many there were."""
    count = 0

    def defuse(match: re.Match[str]) -> str:
        nonlocal count
        count += 1
        word = match[0].strip("<>!@&").split("|")[0]
        return word  # the word stays readable; without `@` or `<!…>` it notifies no one

    return MASS_MENTION.sub(defuse, text), count


def normalised(text: str) -> str:
    """The text as it reads: NFKC, no format characters, look-alike letters as the Latin ones they imitate."""
    text = unicodedata.normalize("NFKC", text)
    if text.isascii():
        return text
    text = "".join(char for char in text if unicodedata.category(char) != "Cf")
    return text.translate(_LOOKALIKES)


def secret_kind(text: str) -> str | None:
    """The kind of the first secret found in `text` (normalised, and `%`-decoded), or None."""
    plain = normalised(text)
    views = [plain] if "%" not in plain else [plain, normalised(unquote(plain))]
    for view in views:
        lines = view.splitlines() or [view]
        for line in lines:
            for kind, finder, _ in DETECTORS:
                if next(iter(finder(line)), None) is not None:
                    return kind
        # Shaped tokens split by white space or over lines: a JWT, a key id, a PEM header.
        joined, compact = _WHITE.sub(" ", view), _WHITE.sub("", view)
        for kind, finder, shaped in DETECTORS:
            if len(lines) > 1 and next(iter(finder(joined)), None) is not None:
                return kind
            if shaped and compact != view and next(iter(finder(compact)), None) is not None:
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
