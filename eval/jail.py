"""Run one command inside the sandbox's walls, then exec it. Standard library only.

    python -I jail.py run --uid U --cpu S --memory BYTES --fsize BYTES --nproc N --nofile N [--netns] -- CMD…
    python -I jail.py sweep --uid U

`run` puts the process in its own session (so the harness can kill the whole group), sets the
rlimits, leaves the network in a fresh empty namespace when asked, drops to an unprivileged uid
when started as root, and execs CMD with an empty environment. `sweep` kills every process of
a uid — the only way to catch a daemon that double-forked out of the process group.

This is a separate program (not a `preexec_fn`) because the harness runs samples from several
threads, and code between fork and exec in a threaded parent can deadlock.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import resource
import signal

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000


def unshare(flags: int) -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.unshare(flags) == 0


def run(args: argparse.Namespace) -> None:
    os.setsid()
    limits = {
        resource.RLIMIT_CPU: args.cpu,
        resource.RLIMIT_AS: args.memory,
        resource.RLIMIT_FSIZE: args.fsize,
        resource.RLIMIT_NOFILE: args.nofile,
        resource.RLIMIT_CORE: 0,
    }
    for which, value in limits.items():
        resource.setrlimit(which, (value, value))
    as_root = os.geteuid() == 0
    # Root can take a network namespace directly; anyone else needs a user namespace too.
    if args.netns and not unshare(CLONE_NEWNET if as_root else CLONE_NEWUSER | CLONE_NEWNET):
        os.write(2, b"fimble-jail: could not unshare the network namespace\n")
        os._exit(97)
    if as_root and args.uid:
        resource.setrlimit(resource.RLIMIT_NPROC, (args.nproc, args.nproc))
        os.setgroups([])
        os.setgid(args.uid)
        os.setuid(args.uid)
    else:
        # Without a uid of its own RLIMIT_NPROC would count the user's other processes too.
        resource.setrlimit(resource.RLIMIT_NPROC, (max(args.nproc, 256), max(args.nproc, 256)))
    os.execve(args.cmd[0], args.cmd, {})


def sweep(args: argparse.Namespace) -> None:
    if os.geteuid() != 0 or not args.uid:
        return
    os.setgroups([])
    os.setgid(args.uid)
    os.setuid(args.uid)
    # kill(-1) as an unprivileged uid reaches exactly that uid's processes (and not this one).
    for _ in range(3):
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            return


def main() -> None:
    parser = argparse.ArgumentParser(prog="fimble-jail")
    sub = parser.add_subparsers(dest="action", required=True)
    run_parser = sub.add_parser("run")
    for name in ("uid", "cpu", "memory", "fsize", "nproc", "nofile"):
        run_parser.add_argument(f"--{name}", type=int, required=True)
    run_parser.add_argument("--netns", action="store_true")
    run_parser.add_argument("cmd", nargs=argparse.REMAINDER)
    sweep_parser = sub.add_parser("sweep")
    sweep_parser.add_argument("--uid", type=int, required=True)
    args = parser.parse_args()
    if args.action == "run":
        if args.cmd and args.cmd[0] == "--":
            args.cmd = args.cmd[1:]
        run(args)
    else:
        sweep(args)


if __name__ == "__main__":
    main()
