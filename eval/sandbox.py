"""Run generated programs in a sandbox: one process each, walled in, killed whole at the timeout.

Each sample gets a fresh temp dir as its cwd, `python -I`, an empty environment, rlimits on CPU,
address space, processes, file size and open files, its own session, and no network (an empty
network namespace where the kernel allows it — detected at run time, with a warning where it
does not). Run as root, it also drops to a uid of its own per worker, which keeps it out of the
user's files and lets us kill a daemon that escaped its process group.

This is a sandbox for code that misbehaves by accident, not a security boundary against code
written to escape: run untrusted code on a machine you can lose.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path

JAIL = Path(__file__).with_name("jail.py")
PASS_MARK = "__fimble_sample_passed__"


@dataclass(frozen=True)
class SandboxConfig:
    timeout_s: float = 10.0
    memory_bytes: int = 2 << 30  # address space; a 20 GB allocation fails with MemoryError
    fsize_bytes: int = 16 << 20  # stdout and stderr are files too: 1 GB of print is stopped here
    nproc: int = 32
    nofile: int = 64
    base_uid: int = 61000  # worker k runs as base_uid + k when the harness runs as root


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
    candidates = [Path(sys.executable), Path("/usr/bin/python3"), Path("/usr/local/bin/python3")]
    if os.geteuid() != 0:
        return sys.executable
    for candidate in candidates:
        if candidate.exists() and _reachable_by_others(candidate):
            return str(candidate)
    return ""


@cache
def network_isolation() -> bool:
    """Whether an empty network namespace can be had here (probed once)."""
    probe = subprocess.run(
        [sys.executable, "-I", str(JAIL), "run", "--uid", "0", "--cpu", "5", "--memory", str(1 << 30),
         "--fsize", str(1 << 20), "--nproc", "64", "--nofile", "64", "--netns", "--", "/bin/true"],
        capture_output=True, timeout=30,
    )
    return probe.returncode == 0


class Sandbox:
    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.netns = network_isolation()
        if not self.netns:
            warnings.warn("fimble eval: no network namespace on this kernel: samples can reach the network",
                          stacklevel=2)
        self.drop_uid = os.geteuid() == 0 and bool(sample_python())
        self.python = sample_python() if self.drop_uid else sys.executable
        if os.geteuid() == 0 and not self.drop_uid:
            warnings.warn("fimble eval: no interpreter an unprivileged uid can run; samples run as root",
                          stacklevel=2)

    def describe(self) -> dict[str, object]:
        return {"network_namespace": self.netns, "own_uid": self.drop_uid, "python": self.python,
                **self.config.__dict__}

    def run(self, program: str, slot: int = 0) -> ExecResult:
        """Run `program`; it passed only if it reached its last line and exited with status 0."""
        config = self.config
        uid = config.base_uid + slot if self.drop_uid else 0
        mark = f"{PASS_MARK}{secrets.token_hex(8)}"
        workdir = Path(tempfile.mkdtemp(prefix="fimble-sample-"))
        started = time.perf_counter()
        try:
            (workdir / "sample.py").write_text(f"{program}\n\nprint({mark!r}, flush=True)\n")
            if uid:
                os.chown(workdir, uid, uid)
                os.chown(workdir / "sample.py", uid, uid)
            cmd = [
                sys.executable, "-I", str(JAIL), "run", "--uid", str(uid), "--cpu", str(int(config.timeout_s) + 1),
                "--memory", str(config.memory_bytes), "--fsize", str(config.fsize_bytes),
                "--nproc", str(config.nproc), "--nofile", str(config.nofile),
                *(["--netns"] if self.netns else []), "--", self.python, "-I", "sample.py",
            ]
            with (workdir / ".stdout").open("w+b") as out, (workdir / ".stderr").open("w+b") as err:
                proc = subprocess.Popen(cmd, cwd=workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                        env={}, start_new_session=False)
                try:
                    code = proc.wait(timeout=config.timeout_s)
                except subprocess.TimeoutExpired:
                    _kill_group(proc.pid)
                    proc.wait()
                    return ExecResult(False, "timed out", time.perf_counter() - started)
                finally:
                    _kill_group(proc.pid)  # children left behind in the sample's group
                    if uid:
                        subprocess.run([sys.executable, "-I", str(JAIL), "sweep", "--uid", str(uid)], timeout=30,
                                       check=False)
                out.seek(0)
                stdout = _tail(out)
                err.seek(0)
                stderr = _tail(err)
            seconds = time.perf_counter() - started
            if code == 0 and stdout.rstrip().endswith(mark):
                return ExecResult(True, "passed", seconds)
            return ExecResult(False, f"failed: {_reason(code, stderr)}", seconds)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _tail(handle: object, size: int = 4096) -> str:
    stream = handle  # a binary file positioned at 0
    stream.seek(0, os.SEEK_END)  # type: ignore[attr-defined]
    end = stream.tell()  # type: ignore[attr-defined]
    stream.seek(max(0, end - size))  # type: ignore[attr-defined]
    return stream.read().decode("utf-8", errors="replace")  # type: ignore[attr-defined]


_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning)\b.*)$", re.M)


def _reason(code: int, stderr: str) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    found = _EXCEPTION_LINE.findall(stderr)
    if found:
        return found[-1][0][:200]
    if code == 0:
        return "exited before its tests finished"
    return f"exit status {code}"
