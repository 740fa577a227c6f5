"""The thread count llama.cpp gets per request (engine/backends/cpu_load.py): read from what the
kernel says is runnable, real processes beside fake readings."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from engine.backends.cpu_load import runnable_elsewhere, runnable_own, task_state, threads_for, usable_cores


@contextmanager
def busy_processes(n: int) -> Iterator[None]:
    """`n` processes that keep a core each busy, each looping before this returns."""
    loop = "import sys; print(flush=True)\nwhile True: pass"
    procs = [subprocess.Popen([sys.executable, "-c", loop], stdout=subprocess.PIPE) for _ in range(n)]
    try:
        for proc in procs:
            assert proc.stdout is not None
            proc.stdout.readline()
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def test_threads_are_the_cores_others_leave_free():
    assert threads_for(0, 8, 0) == 8
    assert threads_for(0, 8, 3) == 5
    assert threads_for(0, 2, 1) == 1
    assert threads_for(0, 2, 9) == 1  # never none
    assert threads_for(0, 4, None) == 4  # the kernel did not say: all cores
    assert threads_for(3, 8, 7) == 3  # nThreads set: as given, whatever the load


def test_the_fewest_of_the_readings_is_what_stays_busy():
    readings = iter([5, 3, 4, 9])
    assert runnable_elsewhere(samples=4, gap_s=0, read=lambda: next(readings), own=lambda: 2) == 1
    # An idle reading ends the sampling: nothing can be fewer.
    calls = []
    assert runnable_elsewhere(samples=4, gap_s=0, read=lambda: calls.append(1) or 1, own=lambda: 1) == 0
    assert len(calls) == 1
    # This process's own runnable threads (llama.cpp's spinning workers) are not others' load.
    assert runnable_elsewhere(samples=2, gap_s=0, read=lambda: 3, own=lambda: 3) == 0
    assert runnable_elsewhere(samples=2, gap_s=0, read=lambda: None, own=lambda: 1) is None


def test_a_thread_state_is_read_after_the_last_parenthesis():
    assert task_state("42 (python3) R 1 42 42 0") == "R"
    assert task_state("42 (a (b) c) S 1 42 42 0") == "S"  # a name with spaces and parentheses
    assert task_state("garbage") == ""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_processes_that_keep_every_core_busy_leave_one_thread():
    assert runnable_own() >= 1  # the caller itself runs
    cores = usable_cores()
    with busy_processes(cores):
        elsewhere = runnable_elsewhere()
        assert elsewhere is not None and elsewhere >= cores
        assert threads_for(0, cores, elsewhere) == 1
