"""The peer in bench_typing's places scenario: llama-server, asked the way llama.vim asks it.

    python benchmarks/bench_typing.py --scenario places --llama-server PATH/TO/llama-server

llama-server builds from llama-cpp-python's sdist (its vendor/llama.cpp):

    cmake -S vendor/llama.cpp -B build -DLLAMA_BUILD_SERVER=ON -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release
    cmake --build build --target llama-server -j2

It is started as llama.vim's README says (`--cache-reuse 256`, batch 1024, micro-batch 512) on
the same GGUF file, on loopback, with the same threads as fimble. Each keystroke sends the
request llama.vim's `llama#fim` sends to `/infill` — 256 lines before the cursor, the line up to
the cursor as `prompt`, the rest of it and 64 lines after, n_predict 128, top-k 40 / top-p 0.90,
`cache_prompt` — and, as llama.vim stops the job before, closes the previous request's
connection. (Measured with the server built from llama-cpp-python 0.3.36's vendor tree: a
non-streamed task is not dropped when its connection closes, so the last request of a burst
waits for the ones before it; `-np 1`, one slot, as for one user — with the default four slots
each request evaluated the whole prompt in a slot of its own.) llama.vim's ring buffer of extra chunks
(`input_extra`, gathered from buffers the user visited and yanked from) is left empty: the
places scenario opens one file and visits nothing else.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import threading
import time
from typing import Any

N_PREFIX_LINES = 256
N_SUFFIX_LINES = 64


def start(binary: str, model: str, port: int, threads: int) -> subprocess.Popen[bytes]:
    """llama-server on 127.0.0.1:`port`, ready when this returns."""
    server = subprocess.Popen(
        [binary, "-m", model, "--host", "127.0.0.1", "--port", str(port), "--ctx-size", "8192",
         "--batch-size", "1024", "--ubatch-size", "512", "--cache-reuse", "256", "-t", str(threads), "-np", "1",
         "--no-webui"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        with contextlib.suppress(OSError):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return server
        if server.poll() is not None:
            raise SystemExit(f"llama-server exited with status {server.returncode}")
        time.sleep(0.2)
    server.kill()
    raise SystemExit("llama-server did not become ready in 120 s")


def infill_request(lines: list[str], row: int, column: int) -> dict[str, Any]:
    """What llama.vim's `llama#fim` sends for a cursor at (row, column)."""
    line = lines[row]
    prefix = "".join(f"{text}\n" for text in lines[max(0, row - N_PREFIX_LINES) : row])
    suffix = line[column:] + "\n" + "".join(f"{text}\n" for text in lines[row + 1 : row + 1 + N_SUFFIX_LINES])
    return {
        "input_prefix": prefix, "input_suffix": suffix, "input_extra": [], "prompt": line[:column],
        "n_predict": 128, "stop": [], "n_indent": len(line) - len(line.lstrip()), "top_k": 40, "top_p": 0.90,
        "stream": False, "samplers": ["top_k", "top_p", "infill"], "cache_prompt": True,
        "t_max_prompt_ms": 500, "t_max_predict_ms": 1000,
    }


class Request(threading.Thread):
    """One /infill request on its own connection; `cancel` closes the connection."""

    def __init__(self, port: int, body: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        self.port, self.body = port, body
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.result: dict[str, Any] | None = None
        self.sent = time.perf_counter()
        self.done: float | None = None

    def run(self) -> None:
        with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
            self.conn.request("POST", "/infill", json.dumps(self.body), {"Content-Type": "application/json"})
            self.result = json.loads(self.conn.getresponse().read())
        self.done = time.perf_counter()

    def cancel(self) -> None:
        if self.conn.sock is not None:
            with contextlib.suppress(OSError):
                self.conn.sock.shutdown(socket.SHUT_RDWR)


def places(binary: str, model: str, text: str, rows: list[int], typed: int, cps: float, pause: float,
           port: int = 8012) -> list[dict[str, Any]]:
    """bench_typing's places scenario against llama-server: at each row the line is cut at its
    indentation and `typed` characters are typed back, a request per keystroke (the one before
    cancelled); the last request of each burst is measured."""
    server = start(binary, model, port, os.cpu_count() or 1)
    lines = text.split("\n")
    results = []
    try:
        for row in rows:
            original = lines[row]
            indent = len(original) - len(original.lstrip())
            time.sleep(1 / cps)  # the jump and the cut
            last: Request | None = None
            for k in range(typed):
                lines[row] = original[: indent + k + 1]
                if last is not None and last.done is None:
                    last.cancel()
                last = Request(port, infill_request(lines, row, indent + k + 1))
                last.start()
                if k + 1 < typed:
                    time.sleep(1 / cps)
            assert last is not None
            last.join()
            lines[row] = original
            answer = (last.result or {}).get("content", "")
            timings = (last.result or {}).get("timings", {})
            results.append({"row": row, "latency_ms": ((last.done or last.sent) - last.sent) * 1000,
                            "text": answer, "expected": original[indent + typed :],
                            "prompt_tokens_evaluated": timings.get("prompt_n"),
                            "generated_tokens": timings.get("predicted_n")})
            time.sleep(pause)
    finally:
        server.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=10)
    return results
