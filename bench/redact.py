"""Log redaction and the notification server's secret filter on hostile input: worst-case strings, and
growth between two sizes.

    uv run python -m bench.redact

Before the fix the URL-password pattern was quadratic: one 60,000-character tool name blocked the
event loop for ~35 s. Target: every 4 MiB shape under 100 ms; 4x the input costs about 4x.
"""

from __future__ import annotations

import time

from apps.kit import MAX_LINE_CHARS, redact
from apps.notify.policy import secret_kind

MIB = 1024 * 1024
SHAPES = {
    "scheme runs (a://b:)": "a://b:",
    "letters": "a",
    "jwt prefixes (eyJ)": "eyJ",
    "jwt-like parts": "eyJaaaaa.",
    "userinfo without @": "x://y:z!",
    "bearer words": "bearer ",
    "at signs": "@",
    "key=value": "password=",
    "realistic line": '{"event":"tool_call","tool":"query","dsn":"postgresql://u:pw@db/x"} ',
}


# A notification's body is at most 4,000 characters (its schema); the filter must stay linear past that.
SECRET_SHAPES = {
    "letters": "a",
    "assignments (password=)": "password=",
    "quotes": '"',
    "key headers (-----BEGIN )": "-----BEGIN ",
    "url userinfo (a://b:)": "a://b:",
    "slack prefixes (xox)": "xox",
    "colons": "a:",
}


def best_of(text: str, runs: int = 5, check: object = redact) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        check(text)  # type: ignore[operator]
        best = min(best, time.perf_counter() - started)
    return best


def secret_filter() -> float:
    print("\nsecret filter (apps.notify.policy) on hostile one-line bodies (best of 5)")
    print(f"{'shape':28s} {'4,000 chars':>11s} {'growth 16k->64k':>16s}")
    worst = 0.0
    for name, unit in SECRET_SHAPES.items():
        body = (unit * (4000 // len(unit) + 1))[:4000]
        seconds = best_of(body, check=secret_kind)
        small, large = unit * (16_000 // len(unit)), unit * (64_000 // len(unit))
        growth = best_of(large, 3, secret_kind) / max(best_of(small, 3, secret_kind), 1e-9)
        worst = max(worst, seconds)
        print(f"{name:28s} {seconds * 1000:9.2f}ms {growth:15.1f}x")
    print(f"worst 4,000-char body: {worst * 1000:.2f} ms (target < 20 ms; the server scans on a worker thread)")
    return worst


def main() -> int:
    print(f"redact() on hostile input (best of 5; input bounded at {MAX_LINE_CHARS} chars)")
    print(f"{'shape':28s} {'4 MiB':>9s} {'growth 16k->64k':>16s}")
    worst = 0.0
    for name, unit in SHAPES.items():
        four_mib = unit * (4 * MIB // len(unit))
        seconds = best_of(four_mib)
        small, large = unit * (16_000 // len(unit)), unit * (64_000 // len(unit))
        growth = best_of(large) / max(best_of(small), 1e-9)
        worst = max(worst, seconds)
        print(f"{name:28s} {seconds * 1000:7.1f}ms {growth:15.1f}x")
    verdict = "PASS" if worst < 0.1 else "FAIL"
    print(f"worst 4 MiB case: {worst * 1000:.1f} ms (target < 100 ms): {verdict}; linear growth is ~4x, quadratic 16x")
    filter_worst = secret_filter()
    return 0 if worst < 0.1 and filter_worst < 0.02 else 1


if __name__ == "__main__":
    raise SystemExit(main())
