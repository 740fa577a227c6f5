"""The sandbox's two processes: a referee that runs the tests, and the sample it calls. Stdlib only.
One file, though long: it runs as `python -I jail.py`, and -I (which implies -P) leaves no path to
import a sibling module from.

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
CLONE_NEWUSER = 0x10000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = (
    1, 2, 4, 8, 32, 0x1000, 0x4000, 1 << 18)
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
MNT_DETACH = 2
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
TMPFS = ("/tmp", "/var/tmp", "/dev/shm")
TMPFS_OPTIONS = b"size=64m,mode=1777"
# The sample's root is built on a tmpfs over /tmp (of this mount namespace only), beside what must
# stay out of the sample's reach (the overlay's layers): after pivot_root only ROOT is left.
STAGE = "/tmp"
ROOT = "/tmp/.root"
LAYERS = "/tmp/.layers"
WORK = "/tmp/work"  # as the sample sees it (under ROOT before the pivot)
SYSTEM = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc")  # read-only, or links as on the host
DEVICES = ("null", "zero", "full", "random", "urandom")
INNER_UID = 1000  # the sample's uid inside its user namespace (rootless)
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
        build_view(args.bind, args.hide)
        work = ROOT + WORK
        os.mkdir(work, 0o700)
        with open(f"{work}/sample.py", "w", encoding="utf-8") as handle:
            handle.write(program)
        with open(f"{work}/.host.py", "w", encoding="utf-8") as handle:
            handle.write(HOST)
        if not args.rootless:  # rootless, they are already the sample's (its uid is this one's)
            for name in (work, f"{work}/sample.py", f"{work}/.host.py"):
                os.chown(name, args.uid, args.uid)
        enter_view()
        os.chdir(WORK)
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.dup2(requests, 3)
        os.dup2(replies, 4)
        os.closerange(5, 65536)  # nothing else of the referee's (the verdict's descriptor was closed first)
        _drop_privileges(args)
        # -S: no site-packages at all (and the view has them empty): the sample gets the stdlib.
        os.execve(args.python, [args.python, "-I", "-S", ".host.py"], {})
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(97)


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _map_user(inside: int, outside: int, gid_inside: int, gid_outside: int) -> None:
    """Map one uid and gid of the user namespace just entered (all an unprivileged process may map)."""
    with contextlib.suppress(OSError):  # already "deny" when inherited from the referee's namespace
        _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{inside} {outside} 1\n")
    _write("/proc/self/gid_map", f"{gid_inside} {gid_outside} 1\n")


def own_user_namespace() -> None:
    """Rootless: a user namespace in which this process is root (mapped to the harness's own uid),
    so that it may make the other namespaces and mounts. Must run while single-threaded."""
    uid, gid = os.geteuid(), os.getegid()
    try:
        unshare(CLONE_NEWUSER)
    except OSError as exc:
        raise OSError(exc.errno, f"user namespace: {exc.strerror}") from None
    _map_user(0, uid, 0, gid)


def _carried_flags(flags: int) -> int:
    """The flags a read-only remount of a bind must keep, from its source's statvfs flags (in a user
    namespace the source mount's nosuid/nodev/noexec/atime flags are locked: leaving one out is refused)."""
    kept = 0
    for st, ms in ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
                   (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME), (os.ST_RELATIME, MS_RELATIME)):
        if flags & st:
            kept |= ms
    return kept


def _bind_read_only(source: int, target: str) -> None:
    """Bind the folder open as `source` (an O_PATH descriptor) at `target`, read-only."""
    path = f"/proc/self/fd/{source}"
    try:
        mount(path, target, None, MS_BIND)
    except OSError:  # a folder with mounts below it, in a user namespace, binds only whole
        mount(path, target, None, MS_BIND | MS_REC)
    flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | _carried_flags(os.fstatvfs(source).f_flag)
    mount(None, target, None, flags)


def _tmpfs(target: str, options: bytes = TMPFS_OPTIONS) -> None:
    mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, options)


def _folders(path: str, mode: int = 0o755) -> None:
    """mkdir -p, each new folder `mode` (the host's folders above a bound one are not copied: a
    sample sees no more of /root or /home than the path to what it needs)."""
    current = ""
    for part in path.strip("/").split("/"):
        current += "/" + part
        with contextlib.suppress(FileExistsError):
            os.mkdir(current, mode)
            os.chmod(current, mode)


def build_view(binds: list[str], hidden: list[str]) -> None:
    """A root of the sample's own under ROOT: the system's programs, libraries and /etc read-only,
    the folders in `binds` (the interpreter) read-only at their own paths, an empty read-only
    folder over each of `hidden` (site-packages: the harness's installs, the answer key among
    them), a few devices, a fresh /proc, and private tmpfs on /tmp, /var/tmp and /dev/shm. Nothing
    else of the host: no home, no venv, no data, no world-writable folder of the host's."""
    # Opened before /tmp is covered: a venv or an interpreter may live there.
    sources = {folder: os.open(folder, os.O_PATH | os.O_DIRECTORY)
               for folder in [f"/{name}" for name in SYSTEM if os.path.isdir(f"/{name}")
                              and not os.path.islink(f"/{name}")] + binds}
    _tmpfs(STAGE, b"size=64m,mode=700")
    os.mkdir(ROOT, 0o755)
    _tmpfs(ROOT, b"size=1m,mode=755")
    for name in SYSTEM:
        host, inside = f"/{name}", f"{ROOT}/{name}"
        if os.path.islink(host):
            os.symlink(os.readlink(host), inside)
        elif host in sources:
            os.mkdir(inside, 0o755)
            _bind_read_only(sources[host], inside)
    for name in ("proc", "tmp", "var", "var/tmp", "dev", "dev/shm"):
        os.mkdir(f"{ROOT}/{name}", 0o755)
    mount("proc", f"{ROOT}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for target in TMPFS:
        _tmpfs(ROOT + target)
    for folder in binds:  # (after the tmpfs: a folder under /tmp is shown on top of it)
        inside = ROOT + folder
        if not os.path.isdir(inside) or not os.listdir(inside):  # not already shown as part of /usr
            _folders(inside)
            _bind_read_only(sources[folder], inside)
    for fd in sources.values():
        os.close(fd)
    for folder in hidden:
        if os.path.isdir(ROOT + folder):
            mount("tmpfs", ROOT + folder, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, b"size=4k,mode=555")
    for name in DEVICES:
        os.close(os.open(f"{ROOT}/dev/{name}", os.O_CREAT | os.O_WRONLY, 0o666))
        mount(f"/dev/{name}", f"{ROOT}/dev/{name}", None, MS_BIND)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{ROOT}/dev/{name}")


def enter_view() -> None:
    """Make ROOT the root, the host's tree gone from this mount namespace (pivot_root, not chroot:
    a sample that makes a user namespace of its own may chroot, and must find nothing to climb to)."""
    mount(None, ROOT, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chdir(ROOT)
    number = SYS_PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        raise OSError(0, f"pivot_root: unknown on {os.uname().machine}")
    _check(_libc.syscall(number, b".", b"."), "pivot_root")
    _check(_libc.umount2(b".", MNT_DETACH), "umount the host's root")
    os.chdir("/")


def _drop_privileges(args: argparse.Namespace) -> None:
    """Limits, then the sample's uid: as root, the run's own uid; rootless, uid INNER_UID of a user
    namespace of its own (the harness's uid outside), whose capabilities end at the exec."""
    if args.rootless:
        # Before the limits: a user namespace made under RLIMIT_NPROC holds the processes of its
        # parent's uid (the referee's two threads among them) to that limit too.
        unshare(CLONE_NEWUSER)
        _map_user(INNER_UID, 0, INNER_UID, 0)
    limits = {resource.RLIMIT_CPU: args.cpu, resource.RLIMIT_AS: args.memory,
              resource.RLIMIT_FSIZE: args.fsize, resource.RLIMIT_NOFILE: args.nofile,
              resource.RLIMIT_CORE: 0, resource.RLIMIT_NPROC: args.nproc}
    for which, value in limits.items():
        resource.setrlimit(which, (value, value))
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")  # setuid programs gain nothing
    if args.rootless:
        os.setgid(INNER_UID)
        os.setuid(INNER_UID)
    else:
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
        build_view(args.bind, args.hide)
        # The layers sit beside the view, not in it: after the pivot nothing reaches the
        # folder's own files (the hole's original text among them) but through the copy.
        os.mkdir(LAYERS, 0o700)
        for name in ("lower", "upper", "scratch"):
            os.mkdir(f"{LAYERS}/{name}", 0o700)
        top = os.fstat(tree)  # the copy's top folder shows the upper layer's owner and mode: the folder's
        with contextlib.suppress(OSError):  # rootless, an owner this namespace does not map stays ours
            os.chown(f"{LAYERS}/upper", top.st_uid, top.st_gid)
        os.chmod(f"{LAYERS}/upper", top.st_mode & 0o7777)
        _bind_read_only(tree, f"{LAYERS}/lower")
        os.close(tree)
        work = ROOT + WORK
        os.mkdir(work, 0o755)
        mount("overlay", work, "overlay", MS_NOSUID | MS_NODEV,
              f"lowerdir={LAYERS}/lower,upperdir={LAYERS}/upper,workdir={LAYERS}/scratch".encode())
        for relative, text in job["files"].items():
            # Written here: through no symlink that leads out of the copy (to a host file).
            path = os.path.realpath(work + _inside(relative)[len(WORK):])
            if not path.startswith(work + "/"):
                raise ValueError(f"{relative!r} leads out of the tree")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
            with open(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
        # The copy is read-only to the command (it writes only under /tmp and HOME), so the code
        # being judged cannot rewrite, add or remove the tests that judge it; rootless, where the
        # files are the sample's own uid's, the mount says so, not the owner.
        mount(work, work, None, MS_BIND)
        mount(None, work, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
        os.mkdir(ROOT + "/tmp/home", 0o700)
        if not args.rootless:
            os.chown(ROOT + "/tmp/home", args.uid, args.uid)
        os.mkdir(ROOT + REPORT_FOLDER, 0o755)
        with open(ROOT + REPORT_FOLDER + "/sitecustomize.py", "w", encoding="utf-8") as handle:
            handle.write(SITECUSTOMIZE)
        enter_view()
        os.chdir(WORK)
        home = "/tmp/home"
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.dup2(report, 3)
        os.closerange(4, 65536)
        _drop_privileges(args)
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
            own_user_namespace()  # before the thread: a threaded process may not enter one
        except OSError as exc:
            _verdict(verdict_fd, False, f"error: the sandbox could not be set up ({exc})")
            return None
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
        _kill(pid)
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
        unfinished = _unfinished(report_read)
        passed = exited_0 and not unfinished
        if passed:
            result = "passed"
        elif exited_0:
            result = (f"failed: exit status 0, but {len(unfinished)} Python process(es) under test never reached "
                      "their end (exec, _exit, abort or a signal ended them)")
        else:
            result = f"failed: {_how_it_ended(status, tail)}"
    except TimedOut:
        result = "timed out"
    finally:
        signal.alarm(0)
        _kill(pid)
    _verdict(verdict_fd, passed, result)


def _unfinished(fd: int) -> list[int]:
    """The pids that said `started` more often than `ended` on the report pipe (read to its end:
    the command's namespace is gone, so no one holds it open for long)."""
    balance: dict[int, int] = {}
    data = bytearray()
    os.set_blocking(fd, False)
    with contextlib.suppress(OSError):
        while len(data) < 16 << 20 and (chunk := os.read(fd, 65536)):
            data += chunk
    os.close(fd)
    for line in bytes(data).split(b"\n"):
        word, _, pid = line.partition(b" ")
        if pid.isdigit() and word in (b"started", b"ended"):
            balance[int(pid)] = balance.get(int(pid), 0) + (1 if word == b"started" else -1)
    return sorted(pid for pid, count in balance.items() if count > 0)


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
