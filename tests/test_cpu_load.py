"""The thread count llama.cpp gets per request (engine/backends/cpu_load.py): read from what the
kernel says is runnable, real processes beside fake readings."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from engine.backends.cpu_load import (
    NICE_COMPETES,
    SCAN_EVERY_S,
    LoadGauge,
    competes,
    competing_elsewhere,
    runnable_elsewhere,
    runnable_own,
    stat_fields,
    task_state,
    threads_for,
    usable_cores,
)

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@contextmanager
def busy_processes(n: int, nice: int = 0) -> Iterator[list[int]]:
    """`n` processes that keep a core each busy, each looping before this yields their pids."""
    loop = f"import os; os.nice({nice}); print(flush=True)\nwhile True: pass"
    procs = [subprocess.Popen([sys.executable, "-c", loop], stdout=subprocess.PIPE) for _ in range(n)]
    try:
        for proc in procs:
            assert proc.stdout is not None
            proc.stdout.readline()
        yield [proc.pid for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def stat_line(pid: int, comm: str, state: str, nice: int, cpu: int, policy: int = 0) -> str:
    """A /proc/<pid>/stat line as proc(5) lays it out (52 fields), with the ones read here set."""
    fields = ["0"] * 49  # fields 3..51
    fields[0], fields[16], fields[36], fields[38] = state, str(nice), str(cpu), str(policy)
    return f"{pid} ({comm}) " + " ".join(fields) + "\n"


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
    assert stat_fields(stat_line(7, "x) R (y", "S", 5, 1))[16] == "5"


def test_only_runnable_threads_near_our_priority_on_our_cores_compete():
    def fields(**kw):
        return stat_fields(stat_line(9, "cc1", **{"state": "R", "nice": 0, "cpu": 1, **kw}))

    assert competes(fields(), 0, {0, 1})
    assert competes(fields(nice=2), 0, {0, 1})  # measured: one thread still faster beside nice 1-2
    assert not competes(fields(nice=3), 0, {0, 1})  # nice 3 and more: all threads faster
    assert not competes(fields(nice=19), 0, {0, 1})
    assert competes(fields(nice=12), 10, {0, 1})  # relative to our own nice
    assert not competes(fields(state="S"), 0, {0, 1})
    assert not competes(fields(cpu=5), 0, {0, 1})  # pinned elsewhere: not our cores
    assert not competes(fields(policy=5), 0, {0, 1})  # SCHED_IDLE
    assert not competes(["R"], 0, {0, 1})  # a short line: not read as competing


def test_the_scan_counts_other_processes_threads(tmp_path: Path):
    def task(pid: int, tid: int, **kw) -> None:
        folder = tmp_path / str(pid) / "task" / str(tid)
        folder.mkdir(parents=True)
        (folder / "stat").write_text(stat_line(tid, "t", **kw))

    task(10, 10, state="R", nice=0, cpu=0)  # our own: never counted
    task(11, 11, state="R", nice=0, cpu=0)
    task(11, 12, state="R", nice=0, cpu=1)
    task(11, 13, state="S", nice=0, cpu=1)
    task(14, 14, state="R", nice=19, cpu=0)  # an indexer, niced
    (tmp_path / "loadavg").write_text("0.5 0.5 0.5 4/90 1234\n")  # not a process
    assert competing_elsewhere(own_pid=10, own_nice=0, cores={0, 1}, proc=tmp_path) == 2
    assert competing_elsewhere(own_pid=10, own_nice=0, cores={0, 1}, proc=tmp_path / "gone") is None


def test_the_gauge_scans_only_when_something_else_runs_and_keeps_the_count_a_while():
    runnable, competing, now = [0], [1], [100.0]
    gauge = LoadGauge(runnable=lambda: runnable[0], scan=lambda: competing[0], clock=lambda: now[0])
    assert gauge.elsewhere() == 0 and gauge.scans == 0  # an idle machine: no scan
    runnable[0] = 2
    assert gauge.elsewhere() == 1 and gauge.scans == 1  # two runnable, one competing (one niced)
    competing[0] = 2
    now[0] += SCAN_EVERY_S / 2
    assert gauge.elsewhere() == 1 and gauge.scans == 1  # the count is kept
    now[0] += SCAN_EVERY_S
    assert gauge.elsewhere() == 2 and gauge.scans == 2
    runnable[0] = 1
    assert gauge.elsewhere() == 1  # never more than the kernel says runs now
    unreadable = LoadGauge(runnable=lambda: 3, scan=lambda: None, clock=lambda: 0.0)
    assert unreadable.elsewhere() == 3  # /proc's threads unreadable: the kernel's count
    assert LoadGauge(runnable=lambda: None, scan=lambda: 0).elsewhere() is None


@linux_only
def test_processes_that_keep_every_core_busy_leave_one_thread():
    assert runnable_own() >= 1  # the caller itself runs
    cores = usable_cores()
    with busy_processes(cores):
        elsewhere = LoadGauge().elsewhere()
        assert elsewhere is not None and elsewhere >= cores
        assert threads_for(0, cores, elsewhere) == 1


@linux_only
def test_a_real_niced_process_does_not_compete_and_one_at_our_priority_does():
    own_nice, cores = os.getpriority(os.PRIO_PROCESS, 0), set(os.sched_getaffinity(0))
    if own_nice > 19 - 2 * NICE_COMPETES:
        pytest.skip(f"this process runs at nice {own_nice}: nothing can be niced far below it")
    with busy_processes(1, nice=19) as niced, busy_processes(1) as plain:
        def fields(pid: int) -> list[str]:
            return stat_fields(Path(f"/proc/{pid}/task/{pid}/stat").read_text())

        for _ in range(100):  # a busy process is runnable at every reading; read until it is seen so
            if fields(plain[0])[0] == "R" and fields(niced[0])[0] == "R":
                break
        assert competes(fields(plain[0]), own_nice, cores)
        assert not competes(fields(niced[0]), own_nice, cores)
