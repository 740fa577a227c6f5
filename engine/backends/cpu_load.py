"""How many CPU threads llama.cpp gets for the next request, from what else keeps the cores busy.

llama.cpp splits each matrix product of a step across its threads and waits for the last of them.
When another process keeps one of two cores busy, the thread sharing that core finishes late at
every step, and two threads decode slower than one (this 2-core machine, one busy process beside
it: 100-128 ms a token with two threads, 64-75 ms with one; idle: 37 ms with two, 63 with one).
A niced process takes little of a core from ours, and there all threads stay faster (beside one
at nice 5: 45 ms with two, 65 with one; nice 19: 36 / 65; nice 3 about even; nice 1-2: one
faster). So with `nThreads` 0 each request counts the threads of other processes that compete
for our cores at nearly our priority, and leaves their cores to them; an explicit `nThreads` is
used as given.

Two readings, the cheap one first:
- `/proc/loadavg` (threads runnable now, machine-wide) less this process's own runnable threads
  (llama.cpp's OpenMP workers spin for a while after a step, and the caller runs): the fewest of
  a few readings half a millisecond apart, so that a compile or a test run counts (it shows in
  all of them) and an editor repainting after a keystroke does not. Zero ends it: all cores.
- Otherwise the threads themselves (`/proc/*/task/*/stat`): runnable, last run on one of our
  cores, at a nice below ours + NICE_COMPETES, not SCHED_IDLE. A scan reads every thread
  (~20 µs each), so its count is kept for SCAN_EVERY_S. In a container, /proc/loadavg is the
  host's while /proc lists the container's own processes: the scan keeps a big host's load from
  counting against a small container's cores.
Where the kernel does not say (not Linux), all cores.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

LOADAVG = Path("/proc/loadavg")
PROC = Path("/proc")
OWN_TASKS = Path("/proc/self/task")
SAMPLES = 4
SAMPLE_GAP_S = 0.0005
SCAN_EVERY_S = 1.0
NICE_COMPETES = 3  # a thread niced this much below ours takes under half of what ours would (CFS weights)
SCHED_IDLE = 5
# Fields of a task's stat line after the command name's ')': state is the first (field 3 of proc(5)).
_STATE, _NICE, _PROCESSOR, _POLICY = 0, 16, 36, 38


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask; a container's cpuset)."""
    return len(_core_set()) or os.cpu_count() or 1


def _core_set() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return set()


def runnable_now() -> int | None:
    """Threads runnable on the machine right now (the 4th field of /proc/loadavg, `R/total`)."""
    try:
        return int(LOADAVG.read_text().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None


def stat_fields(stat: str) -> list[str]:
    """The fields of a /proc/<pid>/task/<tid>/stat line after `pid (comm)`, state first: comm may
    hold spaces and parentheses, so they start after the last ')'; [] when unreadable."""
    end = stat.rfind(")")
    return stat[end + 2 :].split() if end >= 0 else []


def task_state(stat: str) -> str:
    fields = stat_fields(stat)
    return fields[_STATE] if fields else ""


def runnable_own() -> int:
    """This process's threads that are running or waiting for a core (state R)."""
    count = 0
    try:
        tasks = list(OWN_TASKS.iterdir())
    except OSError:
        return 1
    for task in tasks:
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        if task_state(stat) == "R":
            count += 1
    return max(count, 1)  # the caller runs, whatever the reading said


def competes(fields: list[str], own_nice: int, cores: set[int]) -> bool:
    """Whether a task (its stat fields) is runnable on one of `cores` at nearly our priority."""
    try:
        if fields[_STATE] != "R" or int(fields[_POLICY]) == SCHED_IDLE:
            return False
        return int(fields[_NICE]) < own_nice + NICE_COMPETES and (not cores or int(fields[_PROCESSOR]) in cores)
    except (IndexError, ValueError):
        return False


def competing_elsewhere(own_pid: int | None = None, own_nice: int | None = None,
                        cores: set[int] | None = None, proc: Path = PROC) -> int | None:
    """Threads of other processes that compete with ours now (`competes`); None: /proc unreadable."""
    own_pid = os.getpid() if own_pid is None else own_pid
    own_nice = os.getpriority(os.PRIO_PROCESS, 0) if own_nice is None else own_nice
    cores = _core_set() if cores is None else cores
    try:
        pids = [name for name in os.listdir(proc) if name.isdigit() and int(name) != own_pid]
    except OSError:
        return None
    count = 0
    for pid in pids:
        try:
            tids = os.listdir(proc / pid / "task")
        except OSError:  # the process ended meanwhile
            continue
        for tid in tids:
            try:
                with open(proc / pid / "task" / tid / "stat", "rb") as handle:
                    stat = handle.read().decode("ascii", "replace")
            except OSError:
                continue
            if competes(stat_fields(stat), own_nice, cores):
                count += 1
    return count


def runnable_elsewhere(samples: int = SAMPLES, gap_s: float = SAMPLE_GAP_S,
                       read: Callable[[], int | None] = runnable_now,
                       own: Callable[[], int] = runnable_own) -> int | None:
    """Threads of other processes runnable now, the fewest of `samples` readings; None unknown."""
    fewest: int | None = None
    for i in range(samples):
        if i:
            time.sleep(gap_s)
        total = read()
        if total is None:
            return None
        elsewhere = max(total - own(), 0)
        fewest = elsewhere if fewest is None else min(fewest, elsewhere)
        if fewest == 0:
            break  # nothing can be fewer: an idle machine pays one reading
    return fewest


class LoadGauge:
    """Other processes' threads competing for our cores, per request (the module docstring)."""

    def __init__(self, runnable: Callable[[], int | None] = runnable_elsewhere,
                 scan: Callable[[], int | None] = competing_elsewhere,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._runnable, self._scan, self._clock = runnable, scan, clock
        self._competing: int | None = None
        self._scanned_at = float("-inf")
        self.scans = 0

    def elsewhere(self) -> int | None:
        runnable = self._runnable()
        if not runnable:  # None (unknown) or 0 (nothing else runs)
            return runnable
        now = self._clock()
        if now - self._scanned_at >= SCAN_EVERY_S:
            self._competing, self._scanned_at = self._scan(), now
            self.scans += 1
        return runnable if self._competing is None else min(runnable, self._competing)


def threads_for(configured: int, cores: int, elsewhere: int | None) -> int:
    """The thread count for one request: `configured` when set, else the cores others leave free."""
    if configured > 0:
        return configured
    if elsewhere is None:
        return cores
    return max(1, cores - elsewhere)
