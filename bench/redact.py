"""Log redaction on hostile input: worst-case 4 MiB strings, and growth between two sizes.

    uv run python -m bench.redact

Before the fix the URL-password pattern was quadratic: one 60,000-character tool name blocked the
event loop for ~35 s. Target: every 4 MiB shape under 100 ms; 4x the input costs about 4x.
"""

from __future__ import annotations

import time

from apps.kit.logs import MAX_LINE_CHARS, redact

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


def best_of(text: str, runs: int = 5) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        redact(text)
        best = min(best, time.perf_counter() - started)
    return best


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
    return 0 if worst < 0.1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
