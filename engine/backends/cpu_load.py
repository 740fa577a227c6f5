"""How many CPU threads llama.cpp gets for the next request, from what else keeps the cores busy.

llama.cpp splits each matrix product of a step across its threads and waits for the last of them.
When another process keeps one of two cores busy, the thread sharing that core finishes late at
every step, and two threads decode slower than one (this 2-core machine, one busy process beside
it: 100-128 ms a token with two threads, 64-75 ms with one; idle: 37 ms with two, 63 with one).
So with `nThreads` 0 each request counts the threads runnable elsewhere on the machine and leaves
their cores to them; an explicit `nThreads` is used as given.

The count is the kernel's (`/proc/loadavg`: threads runnable now) less this process's own
runnable threads (llama.cpp's OpenMP workers spin for a while after a step, and the caller itself
runs), the fewest of a few readings half a millisecond apart: a compile or a test run shows in
all of them, an editor repainting after a keystroke in one. Where the kernel does not say (not
Linux), all cores.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

LOADAVG = Path("/proc/loadavg")
OWN_TASKS = Path("/proc/self/task")
SAMPLES = 4
SAMPLE_GAP_S = 0.0005


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask; a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def runnable_now() -> int | None:
    """Threads runnable on the machine right now (the 4th field of /proc/loadavg, `R/total`)."""
    try:
        return int(LOADAVG.read_text().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None


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


def task_state(stat: str) -> str:
    """The state letter of a /proc/<pid>/task/<tid>/stat line, `pid (comm) S ...`: comm may hold
    spaces and parentheses, so the state is the field after the last ')'; '' when unreadable."""
    end = stat.rfind(")")
    return stat[end + 2 : end + 3] if end >= 0 else ""


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


def threads_for(configured: int, cores: int, elsewhere: int | None) -> int:
    """The thread count for one request: `configured` when set, else the cores others leave free."""
    if configured > 0:
        return configured
    if elsewhere is None:
        return cores
    return max(1, cores - elsewhere)
