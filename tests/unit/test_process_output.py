"""Lines for the process's output leave once a turn of the event loop, whole and in order."""

from __future__ import annotations

import asyncio
import io
import os

from apps.kit.observe import output


def test_the_lines_of_one_turn_leave_in_one_write_in_order(tmp_path, monkeypatch):
    target = (tmp_path / "out.log").open("w")
    monkeypatch.setattr("sys.stdout", target)
    writes: list[bytes] = []
    real_write = os.write

    def counted(descriptor: int, data: bytes) -> int:
        writes.append(bytes(data))
        return real_write(descriptor, data)

    monkeypatch.setattr(output.os, "write", counted)

    async def calls() -> None:
        async def one(n: int) -> None:
            output.write_line(f"call {n}".encode())
            await asyncio.sleep(0)
            output.write_line(f"call {n} done".encode())

        await asyncio.gather(*(one(n) for n in range(4)))
        await asyncio.sleep(0)  # the last turn's flush

    asyncio.run(calls())
    target.close()
    lines = (tmp_path / "out.log").read_text().splitlines()
    assert lines == [f"call {n}" for n in range(4)] + [f"call {n} done" for n in range(4)]
    assert len(writes) == 2  # one a turn, not one a line


def test_outside_a_loop_a_line_leaves_at_once_after_what_is_pending(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.stdout", (tmp_path / "out.log").open("w"))
    output._pending.append(b"pending from a turn that never ended")
    output.write_line(b"from a thread")
    assert (tmp_path / "out.log").read_text() == "pending from a turn that never ended\nfrom a thread\n"
    # A capture without a file gets the text.
    captured = io.StringIO()
    monkeypatch.setattr("sys.stdout", captured)
    output.write_line(b"captured")
    assert captured.getvalue() == "captured\n"
