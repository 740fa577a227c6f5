"""A raw JSON-RPC client over a server's stdio: for malformed input no real client would send."""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import subprocess
import sys
import threading
import time
from typing import Any


class RawPeer:
    """JSON-RPC over a pair of byte streams; subclasses say where they come from."""

    def __init__(self, out: Any, write: Any) -> None:
        self._out = out
        self._write = write
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self.ended = threading.Event()  # the other side closed its end
        self._next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        out = self._out
        try:
            while True:
                headers = {}
                while True:
                    line = out.readline()
                    if not line:
                        return
                    if line in (b"\r\n", b"\n"):
                        break
                    key, _, value = line.decode().partition(":")
                    headers[key.strip().lower()] = value.strip()
                body = out.read(int(headers["content-length"]))
                self.messages.put(json.loads(body))
        except (OSError, ValueError):
            return
        finally:
            self.ended.set()

    def send_bytes(self, data: bytes) -> None:
        self._write(data)

    def send(self, message: dict[str, Any] | str) -> None:
        body = (message if isinstance(message, str) else json.dumps(message)).encode("utf-8", "surrogatepass")
        self.send_bytes(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def notify(self, method: str, params: Any) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def request(self, method: str, params: Any, timeout: float = 30) -> dict[str, Any]:
        self._next_id += 1
        msg_id = self._next_id
        self.send({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
        return self.wait_for(lambda m: m.get("id") == msg_id and "method" not in m, timeout)

    def wait_for(self, predicate: Any, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            try:
                message = self.messages.get(timeout=0.1)
            except queue.Empty:
                continue
            seen.append(message)
            if "method" in message and "id" in message:  # a server→client request: answer it
                self.send({"jsonrpc": "2.0", "id": message["id"], "result": None})
            if predicate(message):
                return message
        raise TimeoutError(f"no matching message; saw {seen!r:.2000}")


class RawServer(RawPeer):
    """`python -m lsp_server ARGS` over its stdio."""

    def __init__(self, *args: str, stderr: Any = subprocess.DEVNULL) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "lsp_server", *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=stderr)
        super().__init__(self.proc.stdout, self._write_stdin)

    def _write_stdin(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def close(self) -> int:
        try:
            self.request("shutdown", None, timeout=10)
            self.notify("exit", None)
            return self.proc.wait(timeout=10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


class RawSocket(RawPeer):
    """A client connected over TCP."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=30)
        self.sock.settimeout(None)
        super().__init__(self.sock.makefile("rb"), self.sock.sendall)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # the reader's file keeps the socket open otherwise
            self.sock.close()
