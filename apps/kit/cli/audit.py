"""Check an audit trail: every chain of events unbroken, none removed or altered (`apps.kit.observe.audit`).

    python -m apps.kit.cli.audit verify FILE [FILE ...]     (or - for standard input)

Other lines in the files (operational logs) are skipped. Prints each problem and exits 1, or prints how many events
of how many chains were checked and exits 0.
"""

from __future__ import annotations

import argparse
import sys

from apps.kit.observe.audit import verify


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m apps.kit.cli.audit", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    checking = commands.add_parser("verify", help="check every chain in the files")
    checking.add_argument("files", nargs="+")
    args = parser.parse_args(argv)
    lines: list[str] = []
    for name in args.files:
        with open(sys.stdin.fileno(), closefd=False) if name == "-" else open(name) as source:
            lines += source.read().splitlines()
    problems = verify(lines)
    for problem in problems:
        print(problem)
    if problems:
        return 1
    events = sum(1 for line in lines if '"class_uid":6003' in line)
    print(f"{events} audit events checked; every chain holds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
