"""JSON out, fast: orjson for everything the server writes (responses, tool text, log lines, digests).

orjson refuses integers beyond 64 bits and unpaired surrogates; for those rare values the standard
library writes the same JSON (ASCII-escaped), so no caller-supplied value can turn an answer into a crash.
Parsing stays with the standard library (`gate.parse_json`), which can refuse duplicate keys.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson


def dumps(value: Any, *, sort_keys: bool = False, default: Callable[[Any], Any] | None = None) -> bytes:
    try:
        return orjson.dumps(value, default=default, option=orjson.OPT_SORT_KEYS if sort_keys else 0)
    except TypeError:
        text = json.dumps(value, separators=(",", ":"), sort_keys=sort_keys, default=default)
        return text.encode()
