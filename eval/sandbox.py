"""Run generated programs in a sandbox, and judge them from outside it.

Each sample runs under eval/jail.py: a referee process runs the task's tests and calls the
sample's functions across a pipe, in fresh mount, IPC, network and PID namespaces, with private
tmpfs for /tmp, /var/tmp and /dev/shm, as a uid of its own (claimed with a lock, so two runs at
once never share one), with rlimits on CPU, address space, processes, file size and open files.
The verdict comes back on a pipe the sample never holds: nothing the sample prints or does can
pass it. When any of that is missing here, the sandbox refuses to run samples and says what.

`run_command` runs a repository's test command the same way, over a throwaway overlay of the
repository (`eval repo --test-cmd`); there the code being judged is inside the test process, and
eval/repo_tests.py screens it before it runs (see jail.py).

This walls in code that misbehaves, by accident or on purpose; it is not a VM: run untrusted code
on a machine you can lose.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from queue import Queue
from typing import TypeVar

JAIL = Path(__file__).with_name("jail.py")
LOCKS = Path("/run/lock") if Path("/run/lock").is_dir() else Path("/tmp")
T = TypeVar("T")
R = TypeVar("R")
UID_RANGE = 4096  # uids base_uid … base_uid + UID_RANGE - 1 are the sandbox's


class SandboxUnavailable(RuntimeError):
    """This machine cannot give samples the isolation the sandbox promises."""


@dataclass(frozen=True)
class SandboxConfig:
    timeout_s: float = 10.0
    memory_bytes: int = 2 << 30  # address space; a 20 GB allocation fails with MemoryError
    fsize_bytes: int = 16 << 20
    nproc: int = 32
    nofile: int = 64
    base_uid: int = 61000


@dataclass(frozen=True)
class ExecResult:
    passed: bool
    result: str  # "passed", "failed: <reason>" or "timed out"
    seconds: float


def _reachable_by_others(path: Path) -> bool:
    """Can an unprivileged uid run `path`? (every parent searchable, the file executable)."""
    path = path.resolve()
    try:
        if not path.stat().st_mode & stat.S_IXOTH:
            return False
        return all(parent.stat().st_mode & stat.S_IXOTH for parent in path.parents)
    except OSError:
        return False


@cache
def sample_python() -> str:
    """An interpreter the sandbox uid can run: ours if it is reachable, else the system's."""
    for candidate in (Path(sys.executable), Path("/usr/bin/python3"), Path("/usr/local/bin/python3")):
        if candidate.exists() and _reachable_by_others(candidate):
            return str(candidate)
    return ""


@cache
def _probe() -> tuple[tuple[str, ...], tuple[str, ...]]:
    probe = subprocess.run([sys.executable, "-I", str(JAIL), "probe"], capture_output=True, text=True, timeout=60)
    try:
        found = json.loads(probe.stdout)
        missing, for_commands = list(found["missing"]), list(found["missing_for_commands"])
    except (ValueError, KeyError, TypeError):
        missing, for_commands = [f"the isolation probe failed: {probe.stderr.strip()[-300:]}"], []
    if not sample_python():
        missing.append("an interpreter the sandbox uid can run (no python3 whose every parent folder others "
                       "may search)")
    return tuple(missing), tuple(for_commands)


def missing_isolation(commands: bool = False) -> tuple[str, ...]:
    """What this machine lacks for the sandbox (empty: everything is there); `commands`: also what
    running a command over a copy of a repository needs. Probed once."""
    missing, for_commands = _probe()
    return missing + for_commands if commands else missing


# A repository's test command: whole test runners (pytest, node) need more room than one function.
COMMAND_CONFIG = SandboxConfig(timeout_s=120.0, memory_bytes=8 << 30, fsize_bytes=64 << 20, nproc=64, nofile=1024)


class Sandbox:
    def __init__(self, config: SandboxConfig | None = None, commands: bool = False) -> None:
        self.config = config or SandboxConfig()
        missing = missing_isolation(commands)
        if missing:
            raise SandboxUnavailable("fimble will not run generated code without its sandbox; missing here: "
                                     + "; ".join(missing))
        self.python = sample_python()
        self._uids: dict[int, tuple[int, int]] = {}  # slot → (uid, lock fd)

    def describe(self) -> dict[str, object]:
        return {"namespaces": "mount, ipc, net, pid", "tmpfs": "/tmp, /var/tmp, /dev/shm", "python": self.python,
                **self.config.__dict__}

    def uid_for(self, slot: int) -> int:
        """A uid this run holds alone (a lock file per uid): another run's samples never share it."""
        if slot not in self._uids:
            for uid in range(self.config.base_uid, self.config.base_uid + UID_RANGE):
                fd = os.open(LOCKS / f"fimble-sandbox-{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                self._uids[slot] = (uid, fd)
                break
            else:
                raise SandboxUnavailable(f"all {UID_RANGE} sandbox uids are in use")
        return self._uids[slot][0]

    def close(self) -> None:
        for _, fd in self._uids.values():
            os.close(fd)
        self._uids.clear()

    def run(self, program: str, tests: str, entry_point: str, slot: int = 0) -> ExecResult:
        """Run `program`, then `tests`' check(entry_point) against it; passed only if every test held."""
        return self._referee("run", {"program": program, "tests": tests, "entry_point": entry_point}, slot)

    def run_command(self, command: str, tree: Path, files: dict[str, str], slot: int = 0) -> ExecResult:
        """Run `sh -c command` in a throwaway copy of the folder `tree`, with `files` (relative path →
        text) written over it; passed only if the command exits 0. The folder is never written."""
        return self._referee("command", {"command": command, "tree": str(tree.resolve()), "files": files}, slot)

    def _referee(self, action: str, job: dict[str, object], slot: int) -> ExecResult:
        """jail.py `action` as the slot's uid; the verdict comes back on a pipe only the referee holds."""
        config = self.config
        uid = self.uid_for(slot)
        started = time.perf_counter()
        verdict_read, verdict_write = os.pipe()
        cmd = [
            sys.executable, "-I", str(JAIL), action, "--uid", str(uid), "--cpu", str(int(config.timeout_s) + 1),
            "--memory", str(config.memory_bytes), "--fsize", str(config.fsize_bytes), "--nproc", str(config.nproc),
            "--nofile", str(config.nofile), "--timeout", str(config.timeout_s), "--python", self.python,
            "--verdict-fd", str(verdict_write),
        ]
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    pass_fds=(verdict_write,), env={}, cwd="/")
        finally:
            os.close(verdict_write)
        try:
            try:
                _, stderr = proc.communicate(json.dumps(job).encode(), timeout=config.timeout_s + 10)
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid)
                proc.wait()
                return ExecResult(False, "timed out", time.perf_counter() - started)
            with os.fdopen(verdict_read, "rb") as handle:
                verdict_read = -1
                raw = handle.read(1 << 16)
        finally:
            if verdict_read >= 0:
                os.close(verdict_read)
            _kill_group(proc.pid)
        seconds = time.perf_counter() - started
        try:
            verdict = json.loads(raw)
            return ExecResult(verdict["passed"] is True, str(verdict["result"]), seconds)
        except (ValueError, KeyError, TypeError):
            why = stderr.decode("utf-8", "replace").strip().split("\n")[-1:] or [f"exit status {proc.returncode}"]
            return ExecResult(False, f"failed: the referee gave no verdict ({why[0][:200]})", seconds)


def in_slots(run: Callable[[T, int], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """run(item, slot) for each item, in order, `workers` at a time; a slot (one sandbox uid) is
    never used by two runs at once."""
    slots: Queue[int] = Queue()
    for slot in range(max(1, workers)):
        slots.put(slot)

    def one(item: T) -> R:
        slot = slots.get()
        try:
            return run(item, slot)
        finally:
            slots.put(slot)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        yield from pool.map(one, items)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


