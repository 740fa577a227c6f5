"""The sandbox's two processes: a referee that runs the tests, and the sample it calls. Stdlib only.

    python -I jail.py probe                      what isolation this machine gives (JSON on stdout)
    python -I jail.py run --uid U --cpu S --memory B --fsize B --nproc N --nofile N --timeout S --python PY
                          --verdict-fd FD
        stdin: {"program", "tests", "entry_point"} as JSON; the verdict is written to FD
    python -I jail.py command (the same options)
        stdin: {"command", "tree", "files"}: runs `sh -c command` as uid U in a throwaway copy of the
        folder `tree` with `files` ({relative path: text}) written over it; the verdict is the
        command's exit status, as this process sees it

The referee (this process, root) takes fresh mount, IPC, network and PID namespaces, then forks
the sample's process. That one becomes PID 1 of the new PID namespace (when it ends, every
process it left behind ends with it), mounts its own /proc and small tmpfs on /tmp, /var/tmp and
/dev/shm (nothing it writes there outlives it, and /dev/shm cannot grow past the limit), drops to
uid U with rlimits, and execs Python on the program.

The verdict cannot come from the sample: the tests run here, in the referee, calling the sample's
functions through a pipe (arguments and results cross as plain data, never code or pickles), and
the verdict goes out on a descriptor the sample's process never has. A sample that prints, exits 0,
or reads any file it can reach finds no marker to forge; one that dies or answers wrongly fails.

The command mode (a repository's own tests judging a filled hole) cannot keep the sample out of
the test process: the filled code is imported by the tests it is judged by. Its exit status is
still read here, by waitpid, never from anything the command prints; what the filled code could do
to end its own test run early is screened before it gets here (eval/repo_tests.py). The copy is an
overlay on the folder, its upper layer in the namespace's private /tmp: what the run writes is
gone when it ends, and the folder itself is never written; the copy is read-only to the command
(it writes under /tmp and HOME), so the code being judged cannot rewrite or remove its tests.

A separate program (not a `preexec_fn`) because the harness runs samples from several threads,
and code between fork and exec in a threaded parent can deadlock.
"""

from __future__ import annotations

import argparse
import contextlib
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
from typing import Any, NamedTuple

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = (
    1, 2, 4, 8, 32, 0x1000, 0x4000, 1 << 18)
PR_SET_PDEATHSIG = 1
TMPFS = ("/tmp", "/var/tmp", "/dev/shm")
TMPFS_OPTIONS = b"size=64m,mode=1777"
WORK = "/tmp/work"
LAYERS = "/tmp/.layers"  # root's alone (0700): the folder's read-only view, the overlay's upper layer
COMMAND_PATH = "/usr/local/bin:/usr/bin:/bin"
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
        _private_mounts()
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
        _drop_privileges(args)
        os.execve(args.python, [args.python, "-I", ".host.py"], {})
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(97)


def _private_mounts() -> None:
    """In the new namespaces: a /proc of our own, and empty tmpfs where programs write."""
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for target in TMPFS:
        if os.path.isdir(target):
            mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, TMPFS_OPTIONS)


def _drop_privileges(args: argparse.Namespace) -> None:
    limits = {resource.RLIMIT_CPU: args.cpu, resource.RLIMIT_AS: args.memory,
              resource.RLIMIT_FSIZE: args.fsize, resource.RLIMIT_NOFILE: args.nofile,
              resource.RLIMIT_CORE: 0, resource.RLIMIT_NPROC: args.nproc}
    for which, value in limits.items():
        resource.setrlimit(which, (value, value))
    os.setgroups([])
    os.setgid(args.uid)
    os.setuid(args.uid)
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the referee gone (timeout), the sample goes too


def _inside(relative: str) -> str:
    """`relative` under WORK; a path that would leave it (absolute, `..`) is refused."""
    parts = relative.replace("\\", "/").split("/")
    if not relative or relative.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"not a path inside the tree: {relative!r}")
    return os.path.join(WORK, *parts)


def _command_process(args: argparse.Namespace, job: dict[str, Any], output: int) -> None:
    """In the child: PID 1 of the new namespace, runs the command over the tree's copy. Never returns."""
    try:
        output = fcntl.fcntl(output, fcntl.F_DUPFD, 100)
        # The folder is opened before /tmp is covered (it may live there), then shown read-only
        # below a root-only folder, and overlaid: the run writes only into the private tmpfs.
        tree = os.open(job["tree"], os.O_PATH | os.O_DIRECTORY)
        _private_mounts()
        os.mkdir(LAYERS, 0o700)
        for name in ("lower", "upper", "scratch"):
            os.mkdir(f"{LAYERS}/{name}", 0o700)
        top = os.fstat(tree)  # the copy's top folder shows the upper layer's owner and mode: the folder's
        os.chown(f"{LAYERS}/upper", top.st_uid, top.st_gid)
        os.chmod(f"{LAYERS}/upper", top.st_mode & 0o7777)
        mount(f"/proc/self/fd/{tree}", f"{LAYERS}/lower", None, MS_BIND | MS_REC)
        mount(None, f"{LAYERS}/lower", None, MS_BIND | MS_REMOUNT | MS_RDONLY)
        os.close(tree)
        os.mkdir(WORK, 0o755)
        mount("overlay", WORK, "overlay", MS_NOSUID | MS_NODEV,
              f"lowerdir={LAYERS}/lower,upperdir={LAYERS}/upper,workdir={LAYERS}/scratch".encode())
        for relative, text in job["files"].items():
            # Written as root: through no symlink that leads out of the copy (to a host file).
            path = os.path.realpath(_inside(relative))
            if not path.startswith(WORK + "/"):
                raise ValueError(f"{relative!r} leads out of the tree")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
            with open(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
        # The copy stays root's: the command reads it and writes only under /tmp and HOME, so
        # the code being judged cannot rewrite, add or remove the tests that judge it.
        home = "/tmp/home"
        os.mkdir(home, 0o700)
        os.chown(home, args.uid, args.uid)
        os.chdir(WORK)
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.closerange(3, 65536)
        _drop_privileges(args)
        env = {"PATH": f"{os.path.dirname(args.python)}:{COMMAND_PATH}", "HOME": home, "TMPDIR": "/tmp",
               "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
        os.execve("/bin/sh", ["/bin/sh", "-c", job["command"]], env)
    except BaseException:
        # Into the output the referee keeps (fd 2 once it has been moved there), so that the
        # reason ends the verdict's text.
        why = traceback.format_exc().encode()
        try:
            os.write(output, why)
        except OSError:
            with contextlib.suppress(OSError):
                os.write(2, why)
    finally:
        os._exit(97)


class Entered(NamedTuple):
    job: dict[str, Any]
    output_read: int
    output_write: int
    tail: bytearray  # the last few KB the child printed
    drain: threading.Thread


def _enter_namespaces(verdict_fd: int) -> Entered | None:
    """The referee's setup: the job from stdin, its own session, a pipe for the child's output (the
    last few KB kept by a thread), fresh namespaces. None (and the verdict written) when refused."""
    job = json.loads(sys.stdin.buffer.read(4 * MAX_MESSAGE))
    os.setsid()
    output_read, output_write = os.pipe()
    tail = bytearray()
    # Threads first: after unshare(CLONE_NEWPID) this process may not start one.
    drain = threading.Thread(target=_drain, args=(output_read, tail), daemon=True)
    drain.start()
    try:
        unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWPID)
        mount(None, "/", None, MS_REC | MS_PRIVATE)
    except OSError as exc:
        _verdict(verdict_fd, False, f"error: the sandbox could not be set up ({exc})")
        return None
    return Entered(job, output_read, output_write, tail, drain)


def run(args: argparse.Namespace) -> None:
    verdict_fd = args.verdict_fd
    entered = _enter_namespaces(verdict_fd)
    if entered is None:
        return
    job, output_read, output_write, tail, drain = entered
    to_sample, requests_write = os.pipe()
    replies_read, from_sample = os.pipe()
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
        result = f"failed: {_why(exc, pid, tail, drain)}"
    except RecursionError:
        result = "failed: RecursionError"
    except Exception as exc:  # the tests' own assertions, with the sample's values
        message = str(exc)
        result = f"failed: {type(exc).__name__}{': ' + message[:200] if message else ''}"
    finally:
        signal.alarm(0)
        _kill(pid)
    _verdict(verdict_fd, passed, result)


def command(args: argparse.Namespace) -> None:
    """Run a command over a throwaway copy of a folder; passed only if it exits 0."""
    verdict_fd = args.verdict_fd
    entered = _enter_namespaces(verdict_fd)
    if entered is None:
        return
    job, output_read, output_write, tail, drain = entered
    pid = os.fork()
    if pid == 0:
        os.close(verdict_fd)
        os.close(output_read)
        _command_process(args, job, output_write)
    os.close(output_write)
    signal.signal(signal.SIGALRM, _out_of_time)
    signal.alarm(max(1, int(args.timeout)))
    passed, result = False, ""
    try:
        _, status = os.waitpid(pid, 0)
        drain.join(timeout=1)  # the last words, for the reason
        passed = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        result = "passed" if passed else f"failed: {_how_it_ended(status, tail)}"
    except TimedOut:
        result = "timed out"
    finally:
        signal.alarm(0)
        _kill(pid)
    _verdict(verdict_fd, passed, result)


def _killed_by(status: int) -> str:
    """How a process that a signal ended ended: "killed by SIGKILL"."""
    try:
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    except ValueError:
        return f"killed by signal {os.WTERMSIG(status)}"


def _how_it_ended(status: int, tail: bytearray) -> str:
    """Exit status or signal, and the last line the command printed."""
    how = _killed_by(status) if os.WIFSIGNALED(status) else f"exit status {os.WEXITSTATUS(status)}"
    lines = [line.strip() for line in bytes(tail).decode("utf-8", "replace").split("\n") if line.strip()]
    return f"{how}: {lines[-1][:200]}" if lines else how


class TimedOut(BaseException):
    pass


def _out_of_time(signum: int, frame: object) -> None:
    raise TimedOut


def _why(exc: SampleFailed, pid: int, tail: bytearray, drain: threading.Thread) -> str:
    """Why the sample failed: what it raised, or how its process ended and its last words."""
    if exc.kind != "Died":
        return str(exc)[:300]
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        status = 0
    if os.WIFSIGNALED(status):
        return _killed_by(status)
    # Its last words may still be in the pipe when it has ended (CI once read "exit status 1"
    # for a MemoryError whose traceback the drain had not reached yet).
    drain.join(timeout=1)
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
    """What the sandbox needs, and whether this machine gives it: {"missing": [...],
    "missing_for_commands": [...]} (the second: what only the command mode needs)."""
    missing: list[str] = []
    for_commands: list[str] = []
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
                    try:  # what the command mode adds: an overlay with its upper layer on tmpfs
                        for name in ("lower", "upper", "scratch", "merged"):
                            os.mkdir(f"/tmp/{name}")
                        mount("overlay", "/tmp/merged", "overlay", MS_NOSUID | MS_NODEV,
                              b"lowerdir=/tmp/lower,upperdir=/tmp/upper,workdir=/tmp/scratch")
                    except OSError as exc:
                        os.write(2, f"{exc}\n".encode())
                        os._exit(4)
                    os._exit(0)
                _, status = os.waitpid(child, 0)
                os._exit(os.waitstatus_to_exitcode(status))
            except OSError as exc:
                os.write(2, f"{exc}\n".encode())
                os._exit(2)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code == 2:
            missing.append("namespaces: the kernel refused new mount, IPC, network and PID namespaces")
        elif code == 4:
            for_commands.append("overlayfs: a throwaway copy of the repository could not be mounted")
        elif code != 0:
            missing.append("mounts: a private /proc and tmpfs could not be mounted in the new namespaces")
    print(json.dumps({"missing": missing, "missing_for_commands": for_commands}))


def main() -> None:
    parser = argparse.ArgumentParser(prog="fimble-jail")
    sub = parser.add_subparsers(dest="action", required=True)
    for action in ("run", "command"):
        run_parser = sub.add_parser(action)
        for name in ("uid", "cpu", "memory", "fsize", "nproc", "nofile"):
            run_parser.add_argument(f"--{name}", type=int, required=True)
        run_parser.add_argument("--timeout", type=float, required=True)
        run_parser.add_argument("--python", required=True)
        run_parser.add_argument("--verdict-fd", type=int, required=True)
    sub.add_parser("probe")
    args = parser.parse_args()
    {"run": run, "command": command, "probe": lambda _: probe()}[args.action](args)


if __name__ == "__main__":
    main()
