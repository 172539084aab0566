"""The overload probe: while wrk holds 1,024 connections to a server, a few more calls are timed one by one.

wrk reports one latency histogram for every answer; shedding needs two, the refused calls' (a fast 503 with
`Retry-After`) and the admitted calls'. This probe (aiohttp, a few connections, on the load core beside wrk)
times each of its calls and sorts it by its answer, back to back (it measures; wrk is the load). With few
connections its own loop adds nothing; a Python client driving 1,024 connections measured its own queue.
It prints one JSON line: counts per outcome and the latency percentiles of each.

    python -m bench.overload URL --connections 8 --seconds 10   # BENCH_BODY, BENCH_TOKEN as for wrk
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections import Counter

import aiohttp

TIMEOUT_SECONDS = 10.0  # a call slower than this timed out (wrk's --timeout in the other runs)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


async def drive(url: str, connections: int, seconds: float, body: str, headers: dict[str, str]) -> dict[str, object]:
    admitted: list[float] = []
    shed: list[float] = []
    outcomes: Counter[str] = Counter()
    connector = aiohttp.TCPConnector(limit=connections, limit_per_host=connections)
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as session:
        stop = time.monotonic() + seconds

        async def one_connection() -> None:
            while time.monotonic() < stop:
                started = time.monotonic()
                try:
                    async with session.post(url, data=body) as response:
                        answer = await response.read()
                        elapsed = time.monotonic() - started
                        if response.status == 200 and b'"isError":true' not in answer and b'"error":{' not in answer:
                            outcomes["admitted"] += 1
                            admitted.append(elapsed)
                        elif response.status == 503 and response.headers.get("retry-after"):
                            outcomes["shed"] += 1
                            shed.append(elapsed)
                        else:
                            outcomes[f"failed {response.status}"] += 1
                except TimeoutError:
                    outcomes["timed out"] += 1
                except aiohttp.ClientError as error:
                    outcomes[f"socket {type(error).__name__}"] += 1

        await asyncio.gather(*(one_connection() for _ in range(connections)))

    def ms(values: list[float], q: float) -> float:
        return round(percentile(values, q) * 1000, 1)

    return {
        "connections": connections,
        "seconds": seconds,
        "outcomes": dict(outcomes),
        "admitted_per_second": round(len(admitted) / seconds, 1),
        "admitted_p50_ms": ms(admitted, 50),
        "admitted_p99_ms": ms(admitted, 99),
        "shed_p50_ms": ms(shed, 50),
        "shed_p90_ms": ms(shed, 90),
        "shed_p99_ms": ms(shed, 99),
        "shed_max_ms": ms(shed, 100),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.overload")
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": os.environ["BENCH_PROTOCOL_VERSION"],
    }
    if token := os.environ.get("BENCH_TOKEN"):
        headers["Authorization"] = f"Bearer {token}"
    result = asyncio.run(drive(args.url, args.connections, args.seconds, os.environ["BENCH_BODY"], headers))
    print("OVERLOAD " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
