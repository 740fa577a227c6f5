"""Hostile samples: programs that misbehave the ways generated code does, for the sandbox tests.

Each must end as a failed task while the run goes on and nothing outside its temp dir changes.
`python -m eval.hostile` runs them all and prints what happened to each.
"""

from __future__ import annotations

import socket
import sys
import tempfile
import time
from pathlib import Path

from .sandbox import Sandbox, SandboxConfig


def hostile_samples(home: Path, repo: Path, victim: Path, port: int, marker: Path) -> dict[str, str]:
    """name → program. `victim` is a file the harness owns; `marker` must never appear."""
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
        "sys.exit(0) before the tests": "import sys\nsys.exit(0)\n",
        "1 GB to stdout": "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(chunk)\n",
        "deep recursion": "import sys\nsys.setrecursionlimit(10 ** 6)\ndef f(n):\n    return f(n + 1)\nf(0)\n",
        "detached daemon": (
            "import os, time\n"
            "if os.fork() == 0:\n"
            "    os.setsid()\n"
            "    if os.fork() == 0:\n"
            "        time.sleep(3)\n"
            f"        open({str(marker)!r}, 'w').write('daemon outlived its sample')\n"
            "    os._exit(0)\n"
            "time.sleep(0.2)\n"
            "raise SystemExit(0)\n"
        ),
    }


def main() -> None:
    repo = Path(__file__).resolve().parent.parent
    sandbox = Sandbox(SandboxConfig(timeout_s=5))
    print("sandbox:", sandbox.describe())
    with tempfile.TemporaryDirectory() as tmp, socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.1)
        victim = Path(tmp) / "victim.txt"
        victim.write_text("keep me")
        marker = Path(tmp) / "daemon-marker"
        samples = hostile_samples(Path.home(), repo, victim, server.getsockname()[1], marker)
        for name, program in samples.items():
            result = sandbox.run(program, slot=0)
            print(f"{name:32} passed={result.passed!s:5} {result.result[:70]:72} {result.seconds:.2f}s")
        time.sleep(4)
        print("victim intact:", victim.read_text() == "keep me", "| daemon marker absent:", not marker.exists())
        ok = sandbox.run("assert sum([1, 2]) == 3\n", slot=0)
        print("a good sample after all that:", ok.result)
    sys.exit(0)


if __name__ == "__main__":
    main()
