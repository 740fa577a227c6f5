"""The sandbox's two processes: a referee that runs the tests, and the sample it calls. Stdlib only.

    python -I jail.py probe                      what isolation this machine gives (JSON on stdout)
    python -I jail.py run --uid U --cpu S --memory B --fsize B --nproc N --nofile N --timeout S --python PY
                          --verdict-fd FD
        stdin: {"program", "tests", "entry_point"} as JSON; the verdict is written to FD

The referee (this process, root) takes fresh mount, IPC, network and PID namespaces, then forks
the sample's process. That one becomes PID 1 of the new PID namespace (when it ends, every
process it left behind ends with it), mounts its own /proc and small tmpfs on /tmp, /var/tmp and
/dev/shm (nothing it writes there outlives it, and /dev/shm cannot grow past the limit), drops to
uid U with rlimits, and execs Python on the program.

The verdict cannot come from the sample: the tests run here, in the referee, calling the sample's
functions through a pipe (arguments and results cross as plain data, never code or pickles), and
the verdict goes out on a descriptor the sample's process never has. A sample that prints, exits 0,
or reads any file it can reach finds no marker to forge; one that dies or answers wrongly fails.

A separate program (not a `preexec_fn`) because the harness runs samples from several threads,
and code between fork and exec in a threaded parent can deadlock.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import json
import os
import resource
import secrets
import signal
import sys
import threading
import traceback
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 0x4000, 1 << 18
PR_SET_PDEATHSIG = 1
TMPFS = ("/tmp", "/var/tmp", "/dev/shm")
TMPFS_OPTIONS = b"size=64m,mode=1777"
WORK = "/tmp/work"
MAX_MESSAGE = 16 << 20
OUTPUT_TAIL = 4096

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: bytes | None = None) -> None:
    def raw(text: str | None) -> bytes | None:
        return text.encode() if text is not None else None

    _check(_libc.mount(raw(source), raw(target), raw(fstype), ctypes.c_ulong(flags), data), f"mount {target}")


# How values cross the pipe, both ways: tagged JSON of plain data (never code or pickles). One
# source, run by the sample's host below and by the referee (`_CODEC`), so the two cannot drift.
CODEC = r'''
def enc(v):
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return {"f": repr(v)}
    for kind, tag in ((list, "l"), (tuple, "t"), (frozenset, "z"), (set, "s")):
        if isinstance(v, kind):
            return {tag: [enc(x) for x in v]}
    if isinstance(v, dict):
        return {"d": [[enc(k), enc(x)] for k, x in v.items()]}
    if isinstance(v, bytes):
        return {"b": v.hex()}
    if isinstance(v, complex):
        return {"c": [repr(v.real), repr(v.imag)]}
    raise TypeError(f"a {type(v).__name__} cannot cross the sandbox")
def dec(v):
    if not isinstance(v, dict):
        return v
    (tag, x), = v.items()
    return {"f": float, "l": lambda x: [dec(i) for i in x], "t": lambda x: tuple(dec(i) for i in x),
            "s": lambda x: {dec(i) for i in x}, "z": lambda x: frozenset(dec(i) for i in x),
            "d": lambda x: {dec(k): dec(i) for k, i in x}, "b": bytes.fromhex,
            "c": lambda x: complex(float(x[0]), float(x[1]))}[tag](x)
'''

# The sample's side: runs as the sample's uid, executes the program, answers calls.
HOST = CODEC + r'''
import json
requests, replies = open(3, "rb", buffering=0), open(4, "w", buffering=1)
source = open("sample.py", encoding="utf-8").read()
namespace = {"__name__": "__main__", "__builtins__": __builtins__}
exec(compile(source, "sample.py", "exec"), namespace)
replies.write(json.dumps({"ready": sorted(k for k, v in namespace.items() if callable(v))}) + "\n")
for line in requests:
    call = json.loads(line)
    try:
        value = namespace[call["call"]](*dec(call["args"]), **dec(call["kwargs"]))
        reply = {"ok": enc(value)}
    except BaseException as exc:
        if isinstance(exc, (SystemExit, KeyboardInterrupt)):
            raise
        reply = {"raised": type(exc).__name__, "message": str(exc)[:300]}
    reply["id"] = call["id"]
    replies.write(json.dumps(reply) + "\n")
'''

_CODEC: dict[str, Any] = {}
exec(CODEC, _CODEC)  # our own constant source: enc and dec for the referee
encode = _CODEC["enc"]


def decode(value: object) -> object:
    """A value the sample sent; anything that is not one is the sample's failure."""
    try:
        return _CODEC["dec"](value)
    except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:
        raise SampleFailed("ValueError", f"malformed value from the sample: {exc}") from None


class SampleFailed(Exception):
    """The sample raised, died, or answered something that is not a value."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}" if message else kind)
        self.kind = kind


class Sample:
    """The sample's functions, called over the pipe from the tests."""

    def __init__(self, requests: int, replies: int, pid: int) -> None:
        self.requests = os.fdopen(requests, "w", buffering=1)
        self.replies = os.fdopen(replies, "rb")
        self.pid = pid

    def read(self) -> dict[str, object]:
        line = self.replies.readline(MAX_MESSAGE + 1)
        if not line.endswith(b"\n"):
            raise SampleFailed("Died", "")
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):
            raise SampleFailed("ValueError", "the sample's reply is not JSON") from None
        if not isinstance(message, dict):
            raise SampleFailed("ValueError", "the sample's reply is not an object")
        return message

    def function(self, name: str) -> object:
        def call(*args: object, **kwargs: object) -> object:
            # A fresh id per call, echoed in the reply: a reply written before the call was made
            # (a sample answering blindly) does not count.
            call_id = secrets.token_hex(8)
            try:
                self.requests.write(json.dumps({"call": name, "id": call_id, "args": encode(list(args)),
                                                "kwargs": encode(kwargs)}) + "\n")
            except OSError:
                raise SampleFailed("Died", "") from None
            reply = self.read()
            if reply.get("id") != call_id:
                raise SampleFailed("ValueError", "the sample sent a reply to a call it was not asked")
            if "ok" in reply:
                return decode(reply["ok"])
            raise SampleFailed(str(reply.get("raised", "Error"))[:80], str(reply.get("message", ""))[:300])
        call.__name__ = name
        return call


def _sample_process(args: argparse.Namespace, program: str, fds: tuple[int, int, int]) -> None:
    """In the child: PID 1 of the new namespace. Never returns."""
    try:
        # Out of the way first, so that moving them to 1-4 cannot overwrite one another.
        requests, replies, output = (fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds)
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        for target in TMPFS:
            if os.path.isdir(target):
                mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, TMPFS_OPTIONS)
        os.mkdir(WORK, 0o700)
        with open(f"{WORK}/sample.py", "w", encoding="utf-8") as handle:
            handle.write(program)
        with open(f"{WORK}/.host.py", "w", encoding="utf-8") as handle:
            handle.write(HOST)
        for name in (WORK, f"{WORK}/sample.py", f"{WORK}/.host.py"):
            os.chown(name, args.uid, args.uid)
        os.chdir(WORK)
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.dup2(requests, 3)
        os.dup2(replies, 4)
        os.closerange(5, 65536)  # nothing else of the referee's (the verdict's descriptor was closed first)
        limits = {resource.RLIMIT_CPU: args.cpu, resource.RLIMIT_AS: args.memory,
                  resource.RLIMIT_FSIZE: args.fsize, resource.RLIMIT_NOFILE: args.nofile,
                  resource.RLIMIT_CORE: 0, resource.RLIMIT_NPROC: args.nproc}
        for which, value in limits.items():
            resource.setrlimit(which, (value, value))
        os.setgroups([])
        os.setgid(args.uid)
        os.setuid(args.uid)
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the referee gone (timeout), the sample goes too
        os.execve(args.python, [args.python, "-I", ".host.py"], {})
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(97)


def run(args: argparse.Namespace) -> None:
    verdict_fd = args.verdict_fd
    job = json.loads(sys.stdin.buffer.read(4 * MAX_MESSAGE))
    os.setsid()
    to_sample, requests_write = os.pipe()
    replies_read, from_sample = os.pipe()
    output_read, output_write = os.pipe()
    tail = bytearray()
    # Threads first: after unshare(CLONE_NEWPID) this process may not start one.
    threading.Thread(target=_drain, args=(output_read, tail), daemon=True).start()
    try:
        unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWPID)
        mount(None, "/", None, MS_REC | MS_PRIVATE)
    except OSError as exc:
        _verdict(verdict_fd, False, f"error: the sandbox could not be set up ({exc})")
        return
    pid = os.fork()
    if pid == 0:
        os.close(verdict_fd)
        for fd in (requests_write, replies_read, output_read):
            os.close(fd)
        _sample_process(args, job["program"], (to_sample, from_sample, output_write))
    for fd in (to_sample, from_sample, output_write):
        os.close(fd)
    signal.signal(signal.SIGALRM, _out_of_time)
    signal.alarm(max(1, int(args.timeout)))
    sample = Sample(requests_write, replies_read, pid)
    passed, result = False, ""
    try:
        ready = sample.read()
        if "ready" not in ready or not isinstance(ready["ready"], list):
            raise SampleFailed("ValueError", "the sample did not start properly")
        namespace: dict[str, object] = {str(name): sample.function(str(name)) for name in ready["ready"]}
        namespace["__name__"] = "__tests__"
        exec(compile(job["tests"], "<tests>", "exec"), namespace)  # trusted: the task's own tests
        check = namespace.get("check")
        candidate = namespace.get(job["entry_point"])
        if not callable(check) or candidate is None:
            raise SampleFailed("NameError", f"the sample defines no {job['entry_point']}")
        check(candidate)
        passed, result = True, "passed"
    except TimedOut:
        result = "timed out"
    except SampleFailed as exc:
        result = f"failed: {_why(exc, pid, tail)}"
    except RecursionError:
        result = "failed: RecursionError"
    except Exception as exc:  # the tests' own assertions, with the sample's values
        message = str(exc)
        result = f"failed: {type(exc).__name__}{': ' + message[:200] if message else ''}"
    finally:
        signal.alarm(0)
        _kill(pid)
    _verdict(verdict_fd, passed, result)


class TimedOut(BaseException):
    pass


def _out_of_time(signum: int, frame: object) -> None:
    raise TimedOut


def _why(exc: SampleFailed, pid: int, tail: bytearray) -> str:
    """Why the sample failed: what it raised, or how its process ended and its last words."""
    if exc.kind != "Died":
        return str(exc)[:300]
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        status = 0
    if os.WIFSIGNALED(status):
        try:
            return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
        except ValueError:
            return f"killed by signal {os.WTERMSIG(status)}"
    text = bytes(tail).decode("utf-8", "replace")
    # (as engine.text.split_lines; this file imports nothing of fimble: it runs in the sandbox)
    lines = [line for line in text.split("\n") if line and not line.startswith(" ")]
    for line in reversed(lines):
        head = line.split(":", 1)[0]
        if head.replace(".", "").replace("_", "").isalnum() and head.endswith(
                ("Error", "Exception", "Exit", "Interrupt", "Warning")):
            return line[:200]
    code = os.WEXITSTATUS(status)
    return "exited before its tests finished" if code == 0 else f"exit status {code}"


def _drain(fd: int, tail: bytearray) -> None:
    """Keep the last few KB of what the sample printed (for the failure reason); discard the rest."""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return
        if not chunk:
            return
        tail += chunk
        del tail[:-OUTPUT_TAIL]


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)  # PID 1 of its namespace: everything it started ends too
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _verdict(fd: int, passed: bool, result: str) -> None:
    os.write(fd, json.dumps({"passed": passed, "result": result}).encode())
    os.close(fd)


def probe() -> None:
    """What the sandbox needs, and whether this machine gives it: {"missing": [...]}."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root: samples run as a uid of their own, set up by a root harness (run `fimble eval "
                       "--execute` as root, e.g. in a container or VM you can lose)")
    else:
        pid = os.fork()
        if pid == 0:
            try:
                unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWPID)
                mount(None, "/", None, MS_REC | MS_PRIVATE)
                child = os.fork()
                if child == 0:
                    try:
                        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
                        mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, TMPFS_OPTIONS)
                    except OSError as exc:
                        os.write(2, f"{exc}\n".encode())
                        os._exit(3)
                    os._exit(0)
                _, status = os.waitpid(child, 0)
                os._exit(0 if os.waitstatus_to_exitcode(status) == 0 else 3)
            except OSError as exc:
                os.write(2, f"{exc}\n".encode())
                os._exit(2)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code == 2:
            missing.append("namespaces: the kernel refused new mount, IPC, network and PID namespaces")
        elif code != 0:
            missing.append("mounts: a private /proc and tmpfs could not be mounted in the new namespaces")
    print(json.dumps({"missing": missing}))


def main() -> None:
    parser = argparse.ArgumentParser(prog="fimble-jail")
    sub = parser.add_subparsers(dest="action", required=True)
    run_parser = sub.add_parser("run")
    for name in ("uid", "cpu", "memory", "fsize", "nproc", "nofile"):
        run_parser.add_argument(f"--{name}", type=int, required=True)
    run_parser.add_argument("--timeout", type=float, required=True)
    run_parser.add_argument("--python", required=True)
    run_parser.add_argument("--verdict-fd", type=int, required=True)
    sub.add_parser("probe")
    args = parser.parse_args()
    if args.action == "run":
        run(args)
    else:
        probe()


if __name__ == "__main__":
    main()
