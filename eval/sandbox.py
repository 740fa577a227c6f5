"""Run generated programs in a sandbox, and judge them from outside it.

Each sample runs under eval/jail.py: a referee process runs the task's tests and calls the
sample's functions across a pipe, in fresh mount, IPC, network and PID namespaces, in a root of
its own (the system's programs read-only, the stdlib's interpreter with no site-packages, private
tmpfs for /tmp, /var/tmp and /dev/shm; no home, venv or task data), with rlimits on CPU, address
space, processes, file size and open files. Run as root, the sample gets a uid of its own (claimed
with a lock in a folder only root may write, so two runs at once never share one); run as anyone
else, a user namespace does the same (the sample is uid 1000 of a namespace of its own). The
verdict comes back on a pipe the sample never holds: nothing the sample prints or does can pass
it. When any of that is missing here, the sandbox refuses to run samples and says what.

`run_command` runs a repository's test command the same way, over a throwaway overlay of the
repository (`eval repo --test-cmd`); there the code being judged is inside the test process, and
eval/repo_tests.py screens it before it runs (see jail.py).

This walls in code that misbehaves, by accident or on purpose; it is not a VM: run untrusted code
on a machine you can lose.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import re
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from queue import Queue
from typing import TypeVar

JAIL = Path(__file__).with_name("jail.py")
# Where root's runs claim their uids: folders only root may write (/run/lock is world-writable, and
# a sample that planted a lock file there once broke every later run's slot).
LOCK_FOLDERS = (Path("/run/fimble-sandbox"), Path.home() / ".cache" / "fimble" / "sandbox-locks")
T = TypeVar("T")
R = TypeVar("R")
UID_RANGE = 4096  # uids base_uid … base_uid + UID_RANGE - 1 are the sandbox's


class SandboxUnavailable(RuntimeError):
    """This machine cannot give samples the isolation the sandbox promises."""


@dataclass(frozen=True)
class SandboxConfig:
    timeout_s: float = 10.0
    memory_bytes: int = 1 << 30  # address space per process; a 20 GB allocation fails with MemoryError
    # A sample's processes together: RLIMIT_AS is per process, so the process count is cut to
    # keep nproc × memory_bytes within this.
    sample_memory_bytes: int = 4 << 30
    fsize_bytes: int = 16 << 20
    nproc: int = 32
    nofile: int = 64
    base_uid: int = 61000

    @property
    def processes(self) -> int:
        """The process (and thread) limit: nproc, lowered so that one sample cannot hold more than
        sample_memory_bytes of address space."""
        return max(1, min(self.nproc, self.sample_memory_bytes // self.memory_bytes))


@dataclass(frozen=True)
class ExecResult:
    passed: bool
    result: str  # "passed", "failed: <reason>" or "timed out"
    seconds: float


def rootless() -> bool:
    """Not root: the sandbox makes its isolation with a user namespace."""
    return os.geteuid() != 0


@cache
def sample_python() -> str:
    """The interpreter samples run on: the one this venv was made from (its stdlib, none of the
    venv's packages; the view shows its site-packages empty)."""
    base = getattr(sys, "_base_executable", "") or sys.executable
    return os.path.realpath(base)


def _python_folder(python: str) -> str:
    """The installation an interpreter needs shown: its prefix (…/bin/python → …)."""
    return str(Path(python).parent.parent)


def _site_folders(prefix: str) -> list[str]:
    """Every site-/dist-packages folder of the interpreter and the system's Pythons: shown empty."""
    found: list[str] = []
    for pattern in (f"{prefix}/lib/python3*/site-packages", f"{prefix}/lib/python3*/dist-packages",
                    "/usr/lib/python3*/site-packages", "/usr/lib/python3*/dist-packages",
                    "/usr/local/lib/python3*/site-packages", "/usr/local/lib/python3*/dist-packages"):
        found += [os.path.realpath(folder) for folder in glob.glob(pattern) if os.path.isdir(folder)]
    return sorted(set(found))


@cache
def view_for_samples() -> tuple[str, list[str], list[str]]:
    """(interpreter, folders to show, folders to show empty) for `run`: the stdlib only."""
    python = sample_python()
    prefix = os.path.realpath(_python_folder(python))
    return python, [prefix], _site_folders(prefix)


@cache
def view_for_commands() -> tuple[str, list[str], list[str]]:
    """(interpreter, folders to show, folders to show empty) for `command`: a repository's tests
    need the venv they were installed in (pytest, the package's dependencies, node)."""
    folders = [os.path.realpath(sys.prefix), os.path.realpath(_python_folder(sample_python()))]
    return sys.executable, sorted(set(folders)), []


def user_namespace_switch() -> str:
    """What keeps an unprivileged user from making a user namespace here, as the switch to turn."""
    def read(path: str) -> str:
        try:
            return Path(path).read_text().strip()
        except OSError:
            return ""
    if read("/proc/sys/kernel/unprivileged_userns_clone") == "0":
        return "sysctl kernel.unprivileged_userns_clone=1"
    if read("/proc/sys/user/max_user_namespaces") == "0":
        return "sysctl user.max_user_namespaces (it is 0)"
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1":
        return ("AppArmor restricts unprivileged user namespaces: sysctl "
                "kernel.apparmor_restrict_unprivileged_userns=0, or a profile allowing `userns` for this python")
    return ("the kernel refused one (in a container, its seccomp profile or missing CAP_SYS_ADMIN: run it with "
            "user namespaces allowed, e.g. podman/docker --security-opt seccomp=unconfined)")


_PROBE_TESTS = "def check(candidate):\n    assert candidate(3) == 9\n"


@cache
def _probe() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Try the real thing: a known sample through `run`, `true` through `command`."""
    config = SandboxConfig(timeout_s=20)
    probe_uid = config.base_uid - 1  # root's probes share it: they run no untrusted code
    missing: list[str] = []
    for_commands: list[str] = []
    outcome = _referee("run", {"program": "def f(x):\n    return x * x\n", "tests": _PROBE_TESTS, "entry_point": "f"},
                       probe_uid, config, *view_for_samples())
    if not outcome.passed:
        missing.append(_missing_from(outcome.result))
    else:
        with tempfile.TemporaryDirectory() as tree:
            outcome = _referee("command", {"command": "true", "tree": tree, "files": {}}, probe_uid,
                               COMMAND_CONFIG, *view_for_commands())
        if not outcome.passed:
            for_commands.append(f"a command over a throwaway copy of a repository (overlayfs, the venv shown): "
                                f"{outcome.result}")
    return tuple(missing), tuple(for_commands)


def _missing_from(result: str) -> str:
    if "user namespace" in result:
        return f"user namespaces ({result}): {user_namespace_switch()}"
    if "unshare" in result:
        return f"namespaces: the kernel refused new mount, IPC, network and PID namespaces ({result})"
    return f"the sandbox's isolation ({result})"


def missing_isolation(commands: bool = False) -> tuple[str, ...]:
    """What this machine lacks for the sandbox (empty: everything is there); `commands`: also what
    running a command over a copy of a repository needs. Probed once."""
    missing, for_commands = _probe()
    return missing + for_commands if commands else missing


# A repository's test command: whole test runners (pytest, node: V8 reserves ~4 GiB of address
# space, and its threads count as processes) need more room than one function.
COMMAND_CONFIG = SandboxConfig(timeout_s=120.0, memory_bytes=8 << 30, sample_memory_bytes=128 << 30,
                               fsize_bytes=64 << 20, nproc=64, nofile=1024)


def task_names(prompt: str) -> list[str]:
    """The functions and classes a task's prompt defines at the top level: with the entry point, all
    of a sample that the task's tests may see."""
    return re.findall(r"^(?:async\s+def|def|class)\s+([A-Za-z_]\w*)", prompt, flags=re.MULTILINE)


def _lock_folder() -> Path | None:
    """A folder for root's uid locks that only root can write (made 0700 if missing); None if none is."""
    for folder in LOCK_FOLDERS:
        with contextlib.suppress(OSError):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = folder.lstat()
            if stat.S_ISDIR(info.st_mode) and info.st_uid == 0 and not info.st_mode & 0o022:
                return folder
    return None


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
        return {"namespaces": "user, mount, ipc, net, pid" if rootless() else "mount, ipc, net, pid",
                "tmpfs": "/tmp, /var/tmp, /dev/shm", "python": self.python, "processes": self.config.processes,
                **self.config.__dict__}

    def uid_for(self, slot: int) -> int:
        """The uid the slot's samples run as, outside any namespace. As root: one this run holds alone
        (a lock file per uid), so another run's samples never share it. Rootless: the harness's own
        (each sample has a user namespace of its own, so there is nothing to share)."""
        if rootless():
            return os.geteuid()
        if slot not in self._uids:
            folder = _lock_folder()
            if folder is None:
                raise SandboxUnavailable(f"no folder only root may write for the sandbox's uid locks (tried "
                                         f"{', '.join(map(str, LOCK_FOLDERS))})")
            for uid in range(self.config.base_uid, self.config.base_uid + UID_RANGE):
                try:
                    fd = os.open(folder / f"fimble-sandbox-{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
                except OSError as exc:
                    print(f"fimble: sandbox uid {uid} skipped: its lock cannot be opened ({exc})", file=sys.stderr)
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
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

    def run(self, program: str, tests: str, entry_point: str, slot: int = 0, prompt: str = "") -> ExecResult:
        """Run `program`, then `tests`' check(entry_point) against it; passed only if every test held.
        The tests see of the sample only what the task defines: the entry point and the helpers
        `prompt` defines."""
        job: dict[str, object] = {"program": program, "tests": tests, "entry_point": entry_point,
                                  "expose": task_names(prompt)}
        return _referee("run", job, self.uid_for(slot), self.config, *view_for_samples())

    def run_command(self, command: str, tree: Path, files: dict[str, str], slot: int = 0) -> ExecResult:
        """Run `sh -c command` in a throwaway copy of the folder `tree`, with `files` (relative path →
        text) written over it; passed only if the command exits 0. The folder is never written."""
        job: dict[str, object] = {"command": command, "tree": str(tree.resolve()), "files": files}
        return _referee("command", job, self.uid_for(slot), self.config, *view_for_commands())


def _referee(action: str, job: dict[str, object], uid: int, config: SandboxConfig, python: str,
             binds: list[str], hidden: list[str]) -> ExecResult:
    """jail.py `action` as `uid`; the verdict comes back on a pipe only the referee holds."""
    started = time.perf_counter()
    verdict_read, verdict_write = os.pipe()
    cmd = [
        sys.executable, "-I", str(JAIL), action, "--uid", str(uid), "--cpu", str(int(config.timeout_s) + 1),
        "--memory", str(config.memory_bytes), "--fsize", str(config.fsize_bytes), "--nproc", str(config.processes),
        "--nofile", str(config.nofile), "--timeout", str(config.timeout_s), "--python", python,
        "--verdict-fd", str(verdict_write),
        *[f"--bind={folder}" for folder in binds], *[f"--hide={folder}" for folder in hidden],
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


