"""The event loop's own time per message (lsp_server/loop_time.py), the foreground's turn that the
model worker's parse waits for (engine.syntax.FOREGROUND), and the loop's non-blocking stdin."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import tempfile
import threading

import pytest

from engine import syntax
from engine.syntax import FOREGROUND, Foreground, SyntaxTree
from lsp_server import loop_time, transport
from lsp_server.loop_time import LoopTime


class Clock:
    """perf_counter for loop_time: moves only when the test says."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(loop_time, "time", fake)
    return fake


def test_a_coroutines_steps_are_counted_and_its_waits_are_not(clock):
    times = LoopTime()

    async def handler(woken: asyncio.Future) -> str:
        clock.now += 0.002  # work before the wait
        value = await woken
        clock.now += 0.003  # work after it
        return f"got {value}"

    async def main() -> str:
        woken = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(times.timed("request steps", handler(woken)))
        await asyncio.sleep(0)
        clock.now += 1.0  # the loop does other things, the handler waits
        woken.set_result(7)
        return await task

    assert asyncio.run(main()) == "got 7"
    assert times.summary()["request steps"] == {"count": 1, "p50Ms": 5.0, "p95Ms": 5.0, "maxMs": 5.0}


def test_a_cancelled_or_failing_coroutine_is_counted_and_its_end_passes_through(clock):
    times = LoopTime()

    async def waits_forever() -> None:
        clock.now += 0.001
        await asyncio.Event().wait()

    async def fails() -> None:
        clock.now += 0.004
        raise ValueError("bad params")

    async def main() -> None:
        task = asyncio.ensure_future(times.timed("a", waits_forever()))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(ValueError, match="bad params"):
            await times.timed("b", fails())

    asyncio.run(main())
    summary = times.summary()
    assert summary["a"]["count"] == 1 and summary["a"]["maxMs"] == 1.0
    assert summary["b"]["count"] == 1 and summary["b"]["maxMs"] == 4.0


def test_kinds_are_bounded_and_recent_times_summarized():
    times = LoopTime()
    for i in range(LoopTime.MAX_KINDS + 10):
        times.add(f"client/method{i}", 0.001)
    assert len(times.summary()) == LoopTime.MAX_KINDS + 1  # the rest are "other"
    assert times.summary()["other"]["count"] == 10
    times = LoopTime()
    for ms in range(1, 101):
        times.add("ramp", ms / 1000)
    ramp = times.summary()["ramp"]
    assert (ramp["count"], ramp["p50Ms"], ramp["p95Ms"], ramp["maxMs"]) == (100, 50.5, 95.0, 100.0)


def test_a_background_thread_waits_for_the_foregrounds_turn(monkeypatch):
    monkeypatch.setattr(Foreground, "MOST_WAIT_S", 30.0)
    gate = Foreground()
    reached, passed = threading.Event(), threading.Event()

    def background() -> None:
        reached.set()
        gate.wait_turn()
        passed.set()

    with gate:
        gate.wait_turn()  # the holder's own thread never waits for itself
        worker = threading.Thread(target=background)
        worker.start()
        assert reached.wait(10)
        assert not passed.wait(0.3)
    assert passed.wait(10)
    worker.join()


def test_a_parse_on_the_worker_goes_on_after_the_foregrounds_turn(monkeypatch):
    monkeypatch.setattr(Foreground, "MOST_WAIT_S", 30.0)
    text = "def f(x):\n    return x\n" * 20_000  # enough parser steps for its progress callback
    tree = SyntaxTree(text, "python")
    done = threading.Event()
    waited = []
    real_wait = FOREGROUND.wait_turn

    def wait_turn() -> None:
        waited.append(FOREGROUND._free.is_set())
        real_wait()

    monkeypatch.setattr(FOREGROUND, "wait_turn", wait_turn)

    def parse() -> None:
        tree.snapshot().tree  # noqa: B018 (the parse)
        done.set()

    with FOREGROUND:
        worker = threading.Thread(target=parse)
        worker.start()
        assert not done.wait(0.5)
    assert done.wait(30)
    worker.join()
    assert waited and not waited[0]  # it reached a callback during the turn, and waited there
    assert syntax.error_count(tree.snapshot().tree) == 0


def test_a_pipe_is_read_on_the_loop_and_its_end_is_an_empty_read():
    read_end, write_end = os.pipe()

    async def main() -> list[bytes]:
        read = transport._nonblocking_reader(asyncio.get_running_loop(), read_end)
        got = []
        os.write(write_end, b"Content-Length: 2\r\n\r\n{}")
        got.append(await read())
        asyncio.get_running_loop().call_later(0.05, os.write, write_end, b"more")
        got.append(await read())  # (waits for the loop to see the pipe readable)
        os.close(write_end)
        got.append(await read())
        return got

    try:
        assert asyncio.run(main()) == [b"Content-Length: 2\r\n\r\n{}", b"more", b""]
    finally:
        os.close(read_end)


def test_pipes_and_sockets_are_polled_and_files_are_read_on_a_thread():
    read_end, write_end = os.pipe()
    try:
        assert transport._pollable(read_end)
    finally:
        os.close(read_end)
        os.close(write_end)
    with tempfile.TemporaryFile() as file:
        assert not transport._pollable(file.fileno())
    ours, theirs = socket.socketpair()
    with ours, theirs:
        assert transport._pollable(ours.fileno())
        # One socket for stdin and stdout: reading it non-blocking would make writes fail.
        same = os.dup(ours.fileno())
        try:
            assert not transport._pollable(ours.fileno(), same)
        finally:
            os.close(same)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_server_keeps_large_blocks_on_the_heap_with_glibc():
    if os.confstr("CS_GNU_LIBC_VERSION") is None:
        pytest.skip("not glibc")
    assert transport.keep_large_blocks()
