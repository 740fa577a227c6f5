"""What the jail asks of the kernel (eval/jail.py's other half): namespaces, mounts and the root
the sample is given, its limits and uid, and how its processes ended. Stdlib only: jail.py runs as
`python -I jail.py` and imports this file from its own folder.

`build_view` makes a root of the sample's own under ROOT (the system's programs read-only, the
interpreter's folder with its site-packages shown empty, a few devices, a fresh /proc, private
tmpfs), `overlay` shows a folder there as a throwaway copy whose layers stay outside the view, and
`enter_view` makes ROOT the root with the host's tree gone from the mount namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
CLONE_NEWUSER = 0x10000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = (
    1, 2, 4, 8, 32, 0x1000, 0x4000, 1 << 18)
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
MNT_DETACH = 2
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
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
OUTPUT_TAIL = 4096  # bytes of what a process printed kept for the reason it failed

libc = ctypes.CDLL(None, use_errno=True)


def check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def unshare(flags: int) -> None:
    check(libc.unshare(flags), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: bytes | None = None) -> None:
    def raw(text: str | None) -> bytes | None:
        return text.encode() if text is not None else None

    check(libc.mount(raw(source), raw(target), raw(fstype), ctypes.c_ulong(flags), data), f"mount {target}")


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def map_user(inside: int, outside: int, gid_inside: int, gid_outside: int) -> None:
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
    map_user(0, uid, 0, gid)


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
    check(libc.syscall(number, b".", b"."), "pivot_root")
    check(libc.umount2(b".", MNT_DETACH), "umount the host's root")
    os.chdir("/")


def overlay(tree: int) -> str:
    """The folder open as `tree` (an O_PATH descriptor, closed here) shown at ROOT + WORK as an
    overlay: what the run writes goes to a private tmpfs layer, the folder itself is never written.
    Returns the copy's path before the pivot."""
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
    return work


def freeze(work: str) -> None:
    """The copy at `work` made read-only to the command (it writes only under /tmp and HOME), so the
    code being judged cannot rewrite, add or remove the tests that judge it; rootless, where the
    files are the sample's own uid's, the mount says so, not the owner."""
    mount(work, work, None, MS_BIND)
    mount(None, work, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def drop_privileges(args: Any) -> None:
    """Limits, then the sample's uid: as root, the run's own uid; rootless, uid INNER_UID of a user
    namespace of its own (the harness's uid outside), whose capabilities end at the exec."""
    if args.rootless:
        # Before the limits: a user namespace made under RLIMIT_NPROC holds the processes of its
        # parent's uid (the referee's two threads among them) to that limit too.
        unshare(CLONE_NEWUSER)
        map_user(INNER_UID, 0, INNER_UID, 0)
    limits = {resource.RLIMIT_CPU: args.cpu, resource.RLIMIT_AS: args.memory,
              resource.RLIMIT_FSIZE: args.fsize, resource.RLIMIT_NOFILE: args.nofile,
              resource.RLIMIT_CORE: 0, resource.RLIMIT_NPROC: args.nproc}
    for which, value in limits.items():
        resource.setrlimit(which, (value, value))
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")  # setuid programs gain nothing
    if args.rootless:
        os.setgid(INNER_UID)
        os.setuid(INNER_UID)
    else:
        os.setgroups([])
        os.setgid(args.uid)
        os.setuid(args.uid)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the referee gone (timeout), the sample goes too


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)  # PID 1 of its namespace: everything it started ends too
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def killed_by(status: int) -> str:
    """How a process that a signal ended ended: "killed by SIGKILL"."""
    try:
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    except ValueError:
        return f"killed by signal {os.WTERMSIG(status)}"


def how_it_ended(status: int, tail: bytearray) -> str:
    """Exit status or signal, and the last line the command printed."""
    how = killed_by(status) if os.WIFSIGNALED(status) else f"exit status {os.WEXITSTATUS(status)}"
    lines = [line.strip() for line in bytes(tail).decode("utf-8", "replace").split("\n") if line.strip()]
    return f"{how}: {lines[-1][:200]}" if lines else how


def unfinished(fd: int) -> list[int]:
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


def drain(fd: int, tail: bytearray) -> None:
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
