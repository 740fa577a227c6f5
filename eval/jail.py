"""The sandbox's two processes: a referee that runs the tests, and the sample it calls. Stdlib only.
Its kernel side (namespaces, mounts, the sample's root, limits, how a process ended) is
eval/jail_kernel.py. It runs as `python -I jail.py`, and -I (which implies -P) leaves no path to a
sibling module: that one is imported from this file's own folder, and the path taken back at once.

    python -I jail.py run --uid U --cpu S --memory B --fsize B --nproc N --nofile N --timeout S --python PY
                          --verdict-fd FD [--bind DIR ...] [--hide DIR ...]
        stdin: {"program", "tests", "entry_point", "expose"} as JSON; the verdict is written to FD
    python -I jail.py command (the same options)
        stdin: {"command", "tree", "files"}: runs `sh -c command` in a throwaway copy of the folder
        `tree` with `files` ({relative path: text}) written over it; the verdict is the command's
        exit status, as this process sees it

The referee (this process) takes fresh mount, IPC, network and PID namespaces, then forks the
sample's process. Run by root, it has them as it is; run by anyone else, it first makes a user
namespace in which it is root (mapped to its own uid: all the kernel lets an unprivileged process
map), which is what bubblewrap and rootless Podman build on. The sample's process becomes PID 1 of
the new PID namespace (when it ends, every process it left behind ends with it) and is given a
root of its own (`build_view`): the system's /usr and /etc read-only, the interpreter's folder with
its site-packages shown empty, a few devices, a fresh /proc, private tmpfs on /tmp, /var/tmp and
/dev/shm; no home, no venv, no task data, no world-writable folder of the host. It then takes
rlimits and the sample's uid — as root, uid U, held by this run alone; rootless, uid INNER_UID of
a user namespace of its own (the same uid as the harness outside, so it is the view, not the uid,
that keeps the harness's files out of reach) — and execs Python on the program.

The verdict cannot come from the sample: the tests run here, in the referee, calling the sample's
functions through a pipe (arguments and results cross as plain data, never code or pickles), and
the verdict goes out on a descriptor the sample's process never has. A sample that prints, exits 0,
or reads any file it can reach finds no marker to forge; one that dies or answers wrongly fails.

The command mode (a repository's own tests judging a filled hole) cannot keep the sample out of
the test process: the filled code is imported by the tests it is judged by. Its exit status is
still read here, by waitpid, never from anything the command prints, and it passes only if every
Python process of the command that said it started (on fd 3, from the `sitecustomize` put first on
its path) also said it ended as a program ends: a test runner replaced by `exec` or cut short by
`_exit` fails though the status is 0. What the filled code could do to end its own test run early
is also screened before it gets here (eval/repo_tests.py). The copy is an
overlay on the folder, its layers outside the sample's view: what the run writes is gone when it
ends, and the folder itself is never written; the copy is mounted read-only (the command writes
under /tmp and HOME), so the code being judged cannot rewrite or remove its tests, and the folder's
own files (the hole's original among them) are not in the view at all.

A separate program (not a `preexec_fn`) because the harness runs samples from several threads,
and code between fork and exec in a threaded parent can deadlock.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import secrets
import signal
import sys
import threading
import traceback
from typing import Any, NamedTuple

if __package__:  # imported as eval.jail (the tests, type checks)
    from . import jail_kernel as kernel
else:  # run as `python -I jail.py`: its own folder, for this one import only
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import jail_kernel as kernel  # type: ignore[no-redef]

    del sys.path[0]

COMMAND_PATH = "/usr/local/bin:/usr/bin:/bin"
MAX_MESSAGE = 16 << 20


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


class SampleProcess:
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
        # A session of its own: kill(0) or killpg from the sample (whose uid may be the referee's,
        # rootless) must not reach the referee through the process group it was forked into.
        os.setsid()
        requests, replies, output = (fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds)
        kernel.build_view(args.bind, args.hide)
        work = kernel.ROOT + kernel.WORK
        os.mkdir(work, 0o700)
        with open(f"{work}/sample.py", "w", encoding="utf-8") as handle:
            handle.write(program)
        with open(f"{work}/.host.py", "w", encoding="utf-8") as handle:
            handle.write(HOST)
        if not args.rootless:  # rootless, they are already the sample's (its uid is this one's)
            for name in (work, f"{work}/sample.py", f"{work}/.host.py"):
                os.chown(name, args.uid, args.uid)
        kernel.enter_view()
        os.chdir(kernel.WORK)
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.dup2(requests, 3)
        os.dup2(replies, 4)
        os.closerange(5, 65536)  # nothing else of the referee's (the verdict's descriptor was closed first)
        kernel.drop_privileges(args)
        # -S: no site-packages at all (and the view has them empty): the sample gets the stdlib.
        os.execve(args.python, [args.python, "-I", "-S", ".host.py"], {})
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(97)


def _inside(relative: str) -> str:
    """`relative` under WORK; a path that would leave it (absolute, `..`) is refused."""
    parts = relative.replace("\\", "/").split("/")
    if not relative or relative.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"not a path inside the tree: {relative!r}")
    return os.path.join(kernel.WORK, *parts)


# Every Python process of a command says when it starts and when it ends as a program ends
# (its exit handlers run), on fd 3 to the referee. One that started and never ended was ended by
# exec, _exit, abort or a signal: the test runner never reached its end, whatever the exit status.
REPORT_FOLDER = "/tmp/.fimble"
SITECUSTOMIZE = r'''
import atexit, os
def _fimble_say(word):
    try:
        os.write(3, ("%s %d\n" % (word, os.getpid())).encode())
    except OSError:
        pass
_fimble_say("started")
atexit.register(_fimble_say, "ended")
'''
F_SETPIPE_SZ = 1031


def _command_process(args: argparse.Namespace, job: dict[str, Any], output: int, report: int) -> None:
    """In the child: PID 1 of the new namespace, runs the command over the tree's copy. Never returns."""
    try:
        os.setsid()  # (as the sample's process: its signals stay in its own group)
        output = fcntl.fcntl(output, fcntl.F_DUPFD, 100)
        report = fcntl.fcntl(report, fcntl.F_DUPFD, 100)
        # The folder is opened before /tmp is covered (it may live there), then shown read-only
        # below a root-only folder, and overlaid: the run writes only into the private tmpfs.
        tree = os.open(job["tree"], os.O_PATH | os.O_DIRECTORY)
        kernel.build_view(args.bind, args.hide)
        work = kernel.overlay(tree)
        for relative, text in job["files"].items():
            # Written here: through no symlink that leads out of the copy (to a host file).
            path = os.path.realpath(work + _inside(relative)[len(kernel.WORK):])
            if not path.startswith(work + "/"):
                raise ValueError(f"{relative!r} leads out of the tree")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
            with open(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
        kernel.freeze(work)  # the code being judged cannot rewrite the tests that judge it
        os.mkdir(kernel.ROOT + "/tmp/home", 0o700)
        if not args.rootless:
            os.chown(kernel.ROOT + "/tmp/home", args.uid, args.uid)
        os.mkdir(kernel.ROOT + REPORT_FOLDER, 0o755)
        with open(kernel.ROOT + REPORT_FOLDER + "/sitecustomize.py", "w", encoding="utf-8") as handle:
            handle.write(SITECUSTOMIZE)
        kernel.enter_view()
        os.chdir(kernel.WORK)
        home = "/tmp/home"
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.dup2(report, 3)
        os.closerange(4, 65536)
        kernel.drop_privileges(args)
        env = {"PATH": f"{os.path.dirname(args.python)}:{COMMAND_PATH}", "HOME": home, "TMPDIR": "/tmp",
               "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": REPORT_FOLDER}
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


def _enter_namespaces(args: argparse.Namespace) -> Entered | None:
    """The referee's setup: the job from stdin, its own session, a pipe for the child's output (the
    last few KB kept by a thread), fresh namespaces. None (and the verdict written) when refused."""
    verdict_fd = args.verdict_fd
    job = json.loads(sys.stdin.buffer.read(4 * MAX_MESSAGE))
    os.setsid()
    if args.rootless:
        try:
            kernel.own_user_namespace()  # before the thread: a threaded process may not enter one
        except OSError as exc:
            _verdict(verdict_fd, False, f"error: the sandbox could not be set up ({exc})")
            return None
    output_read, output_write = os.pipe()
    tail = bytearray()
    # Threads first: after unshare(CLONE_NEWPID) this process may not start one.
    drain = threading.Thread(target=kernel.drain, args=(output_read, tail), daemon=True)
    drain.start()
    try:
        kernel.unshare(kernel.CLONE_NEWNS | kernel.CLONE_NEWIPC | kernel.CLONE_NEWNET | kernel.CLONE_NEWPID)
        kernel.mount(None, "/", None, kernel.MS_REC | kernel.MS_PRIVATE)
    except OSError as exc:
        _verdict(verdict_fd, False, f"error: the sandbox could not be set up ({exc})")
        return None
    return Entered(job, output_read, output_write, tail, drain)


def tests_namespace(defined: set[str], task_names: list[str], function: Any) -> dict[str, object]:
    """What the task's tests see of the sample: the names the task itself defines (its entry point,
    the helpers its prompt defines), never one that would shadow a builtin or a dunder (a sample's
    own `abs` or `range` must not change what the tests compute)."""
    import builtins

    shadowing = set(dir(builtins))
    namespace: dict[str, object] = {name: function(name) for name in task_names
                                    if name in defined and name.isidentifier() and not name.startswith("__")
                                    and name not in shadowing}
    namespace["__name__"] = "__tests__"
    return namespace


def run(args: argparse.Namespace) -> None:
    verdict_fd = args.verdict_fd
    entered = _enter_namespaces(args)
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
    sample = SampleProcess(requests_write, replies_read, pid)
    passed, result = False, ""
    try:
        ready = sample.read()
        if "ready" not in ready or not isinstance(ready["ready"], list):
            raise SampleFailed("ValueError", "the sample did not start properly")
        defined = {str(name) for name in ready["ready"]}
        entry_point = str(job["entry_point"])
        if entry_point not in defined:
            raise SampleFailed("NameError", f"the sample defines no {entry_point}")
        namespace = tests_namespace(defined, [entry_point, *job.get("expose", [])], sample.function)
        exec(compile(job["tests"], "<tests>", "exec"), namespace)  # trusted: the task's own tests
        check = namespace.get("check")
        if not callable(check):
            raise SampleFailed("NameError", "the tests define no check")
        check(sample.function(entry_point))
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
        kernel.kill(pid)
    _verdict(verdict_fd, passed, result)


def command(args: argparse.Namespace) -> None:
    """Run a command over a throwaway copy of a folder; passed only if it exits 0."""
    verdict_fd = args.verdict_fd
    entered = _enter_namespaces(args)
    if entered is None:
        return
    job, output_read, output_write, tail, drain = entered
    report_read, report_write = os.pipe()
    with contextlib.suppress(OSError):  # room for many processes' lines: a full pipe would stall them
        fcntl.fcntl(report_write, F_SETPIPE_SZ, 1 << 20)
    pid = os.fork()
    if pid == 0:
        os.close(verdict_fd)
        os.close(output_read)
        os.close(report_read)
        _command_process(args, job, output_write, report_write)
    os.close(output_write)
    os.close(report_write)
    signal.signal(signal.SIGALRM, _out_of_time)
    signal.alarm(max(1, int(args.timeout)))
    passed, result = False, ""
    try:
        _, status = os.waitpid(pid, 0)
        drain.join(timeout=1)  # the last words, for the reason
        exited_0 = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        unfinished = kernel.unfinished(report_read)
        passed = exited_0 and not unfinished
        if passed:
            result = "passed"
        elif exited_0:
            result = (f"failed: exit status 0, but {len(unfinished)} Python process(es) under test never reached "
                      "their end (exec, _exit, abort or a signal ended them)")
        else:
            result = f"failed: {kernel.how_it_ended(status, tail)}"
    except TimedOut:
        result = "timed out"
    finally:
        signal.alarm(0)
        kernel.kill(pid)
    _verdict(verdict_fd, passed, result)


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
        return kernel.killed_by(status)
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


def _verdict(fd: int, passed: bool, result: str) -> None:
    os.write(fd, json.dumps({"passed": passed, "result": result}).encode())
    os.close(fd)


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
        run_parser.add_argument("--bind", action="append", default=[], help="a folder the sample sees (read-only)")
        run_parser.add_argument("--hide", action="append", default=[], help="a folder shown empty")
    args = parser.parse_args()
    args.rootless = os.geteuid() != 0  # (decided before any namespace: in its own, this process is uid 0)
    {"run": run, "command": command}[args.action](args)


if __name__ == "__main__":
    main()
