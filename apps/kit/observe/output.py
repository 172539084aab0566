"""The process's output for lines that must all leave, fast: what one turn of the event loop writes leaves in one
write at the end of that turn.

Under concurrency many calls record in the same turn; one `write` for all of them instead of one each is most of
what an audit event cost (a system call is about a third of it in a loaded server). Lines keep their order, a
thread without a running loop writes at once (after what is pending), and what is pending at exit is written; a
process killed outright loses at most the lines of the turn it was in, which never got an answer out either.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import sys
import threading

_pending: list[bytes] = []
_lock = threading.Lock()


def write_line(line: bytes) -> None:
    """Write one line (UTF-8, no newline) to the process's output, at the end of this turn of the loop."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        with _lock:
            _pending.append(line)
            _write_pending()
        return
    with _lock:
        if not _pending:
            loop.call_soon(flush)
        _pending.append(line)


def flush() -> None:
    """Write what is pending now."""
    with _lock:
        _write_pending()


def _write_pending() -> None:
    if not _pending:
        return
    data = b"\n".join(_pending) + b"\n"
    _pending.clear()
    out = sys.stdout  # whatever it is when it writes: a worker's redirection, a test's file or capture
    try:
        descriptor = out.fileno()
    except (AttributeError, OSError, ValueError):  # a capture without a file (io.UnsupportedOperation is both)
        out.write(data.decode("utf-8", "surrogatepass"))
        out.flush()
        return
    out.flush()  # the text the output still holds goes first (the log handler flushes each line: rarely a write)
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view) :]


atexit.register(flush)
