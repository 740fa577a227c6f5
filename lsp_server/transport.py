"""Transports: stdio for the editor that started us, TCP for one that connects.

Both read through `wire.read_loop`. TCP is a network socket, so it is guarded: loopback only
unless `--allow-remote`, a token from `$FIMBLE_HOME/serve.token` (mode 0600) in the first
message's `initializationOptions.token`, and one client at a time with a server of its own —
a client that leaves takes its documents and settings with it, never the listening server.
Before the token, a connection gets one deadline and a few KB, and does not hold the slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from engine import models
from engine.errors import EngineError

from . import wire

log = logging.getLogger("fimble")
TOKEN_FILE = "serve.token"
AUTH_ERROR = -32001  # a server-defined JSON-RPC error code
READ_SIZE = 64 * 1024
HANDOVER_S = 3.0
AUTH_WAIT_S = 10.0  # from the accept to the token, in all
PREAUTH_MAX_BYTES = 64 * 1024  # read before the token is seen (an `initialize` is a few KB)
MAX_UNAUTHENTICATED = 8  # connections proving who they are at once; they never hold the client slot


class TransportError(EngineError):
    """A transport cannot be set up as asked (a non-loopback host, a bad HOST:PORT)."""


def run_stdio(server: Any, stdin: BinaryIO, stdout: BinaryIO) -> None:
    """Serve the editor on the other end of stdin/stdout until it closes them or sends `exit`."""
    protocol = server.protocol
    protocol.set_writer(_StdoutWriter(stdout))
    fd = _fileno(stdin)

    def read_some(size: int) -> bytes:
        # os.read on the descriptor, not the buffered file: a daemon thread blocked inside the
        # buffer's lock makes the interpreter abort at exit.
        return os.read(fd, size) if fd >= 0 else getattr(stdin, "read1", stdin.read)(size)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        if fd >= 0 and _pollable(fd, _fileno(stdout)):
            try:
                await wire.read_loop(_nonblocking_reader(loop, fd), protocol)
            finally:
                with contextlib.suppress(OSError):
                    os.set_blocking(fd, True)  # (as it was given: whoever reads it after us)
            return
        chunks: asyncio.Queue[bytes] = asyncio.Queue(maxsize=4)

        def pump() -> None:
            # A daemon thread, not an executor: a read blocked on stdin must not hold up the exit.
            while True:
                try:
                    data = read_some(READ_SIZE)
                except (OSError, ValueError):
                    data = b""
                asyncio.run_coroutine_threadsafe(chunks.put(data), loop).result()
                if not data:
                    return

        threading.Thread(target=pump, name="fimble-stdin", daemon=True).start()
        await wire.read_loop(chunks.get, protocol)

    try:
        asyncio.run(main())
    except BrokenPipeError:
        log.error("fimble: the client closed the connection")
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.shutdown()


def _pollable(fd: int, out_fd: int = -1) -> bool:
    """A pipe or a socket (what an editor gives its server): the event loop can wait on it. A
    terminal or a file is read on a thread instead (making a terminal non-blocking would reach
    the shell that shares it), and so is one socket that is stdin and stdout both (non-blocking
    reads would make the responses' writes non-blocking too)."""
    import stat

    try:
        given = os.fstat(fd)
        if out_fd >= 0 and os.path.samestat(given, os.fstat(out_fd)):
            return False
    except OSError:
        return False
    return stat.S_ISFIFO(given.st_mode) or stat.S_ISSOCK(given.st_mode)


def _fileno(stream: BinaryIO) -> int:
    """The stream's descriptor, or -1 (a stream in memory, a closed one)."""
    try:
        return stream.fileno()
    except (OSError, ValueError, AttributeError):
        return -1


def _nonblocking_reader(loop: asyncio.AbstractEventLoop, fd: int) -> Callable[[], Awaitable[bytes]]:
    """Reads of `fd` on the event loop itself, each when the loop is ready for more (the client
    waits meanwhile: the pipe is the back pressure). A thread that read and handed each chunk to
    the loop took the GIL three times a message, and while the model worker runs Python each
    taking waits up to the switch interval."""
    os.set_blocking(fd, False)

    async def read() -> bytes:
        while True:
            try:
                return os.read(fd, READ_SIZE)
            except BlockingIOError:
                pass
            except OSError:
                return b""
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_reader(fd, _wake, ready)
            try:
                await ready
            finally:
                loop.remove_reader(fd)
    return read


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


class _StdoutWriter:
    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def write(self, data: bytes) -> None:
        self._stream.write(data)
        self._stream.flush()

    def close(self) -> None:
        self._stream.close()


# -- TCP -------------------------------------------------------------------------------------------

def parse_address(address: str, allow_remote: bool) -> tuple[str, int]:
    host, sep, port_text = address.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) < 65536:
        raise TransportError(f"--tcp takes HOST:PORT (e.g. 127.0.0.1:7777), got {address!r}")
    if not allow_remote and not is_loopback(host):
        raise TransportError(
            f"refusing to serve on {host}: fimble reads the code it is sent and answers anyone who can "
            f"connect, so it listens on loopback only. To use it from another machine, keep it on "
            f"127.0.0.1 and tunnel: `ssh -N -L {port_text}:127.0.0.1:{port_text} THIS_HOST`, then connect "
            f"to 127.0.0.1:{port_text} there. If the network is yours alone, pass --allow-remote (the "
            f"token is still required).")
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def write_token(home: Path) -> tuple[str, Path]:
    """A new random token in `home/serve.token`, readable by this user only (never via a symlink)."""
    path = home / TOKEN_FILE
    token = secrets.token_urlsafe(32)
    temp = home / f".{TOKEN_FILE}.{os.getpid()}"
    try:
        home.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(token + "\n")
        os.replace(temp, path)  # replaces a planted link itself, never what it points to
    except OSError as exc:
        raise TransportError(f"cannot write the TCP token to {path}: {exc.strerror or exc}; set FIMBLE_HOME to a "
                             f"folder you can write") from None
    return token, path


def token_ok(body: bytes, token: str) -> tuple[bool, Any]:
    """Is this the `initialize` request carrying the token? Also returns its id, to answer it."""
    message, _ = wire.parse_body(body)
    if message is None:
        return False, None
    msg_id = message.get("id")
    params = message.get("params")
    options = params.get("initializationOptions") if isinstance(params, dict) else None
    given = options.get("token") if isinstance(options, dict) else None
    # (surrogatepass: a token that is not valid Unicode, "\udc80", is a wrong token, not a crash)
    ok = message.get("method") == "initialize" and isinstance(given, str) and hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), token.encode())
    return ok, msg_id


class Authenticated(NamedTuple):
    initialize: bytes  # the `initialize` request that carried the token
    msg_id: Any  # its id, to answer it
    frames: wire.FrameReader  # the stream's reader, holding whatever came after it
    after: list[wire.Frame | wire.FramingError]  # messages that came in the same read, after it


async def authenticate(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       token: str) -> Authenticated | None:
    """The first message, which must be `initialize` with the token, within one deadline from the
    accept and PREAUTH_MAX_BYTES: a client that trickles bytes or sends a huge body is turned away
    before anything is parsed beyond that (None; it has been told why where it can be)."""
    frames = wire.FrameReader(max_body=PREAUTH_MAX_BYTES)
    received = 0
    why = "the first message must be `initialize`"
    msg_id = None
    try:
        async with asyncio.timeout(AUTH_WAIT_S):
            while received <= PREAUTH_MAX_BYTES:
                data = await reader.read(READ_SIZE)
                if not data:
                    return None
                received += len(data)
                events = frames.feed(data)
                if not events:
                    continue  # the first message is still arriving
                first = events[0]  # the only one that counts: it carries the token or it does not
                if isinstance(first, wire.FramingError):
                    why = f"the first message could not be read ({first.message})"
                    break
                ok, msg_id = token_ok(first.body, token)
                if ok:
                    frames.max_body = wire.MAX_BODY
                    return Authenticated(first.body, msg_id, frames, events[1:])
                break
            else:
                why = f"the first message is over {PREAUTH_MAX_BYTES >> 10} KiB"
    except TimeoutError:
        return None  # (nothing to answer: it said nothing whole)
    log.warning("fimble: a TCP client without the right token was refused")
    _send(writer, wire.error_response(msg_id, AUTH_ERROR, (
        f"fimble: {why}; it must be `initialize` with the token of $FIMBLE_HOME/{TOKEN_FILE} as "
        "initializationOptions.token")))
    return None


def serve_tcp(make_server: Callable[[], Any], host: str, port: int, home: Path,
              announce: Callable[[str, int, Path], None]) -> None:
    """Accept clients one at a time, each with a server of its own, until interrupted. The token
    is written once the port is bound (a second server that cannot bind leaves the first's alone)."""
    busy = asyncio.Lock()
    unauthenticated: list[asyncio.StreamWriter] = []  # oldest first
    token = ""

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(unauthenticated) >= MAX_UNAUTHENTICATED:
            # The oldest makes room: a flood of silent connections cannot keep the token holder out.
            log.warning("fimble: %d TCP clients are proving who they are; the oldest was closed",
                        len(unauthenticated))
            unauthenticated.pop(0).close()
        unauthenticated.append(writer)
        try:
            entry = await authenticate(reader, writer, token)
        finally:
            if writer in unauthenticated:
                unauthenticated.remove(writer)
        if entry is None:
            await _close(writer)
            return
        try:
            # A client that just left may still be tearing down: wait for it a moment.
            await asyncio.wait_for(busy.acquire(), HANDOVER_S)
        except TimeoutError:
            _send(writer, wire.error_response(entry.msg_id, AUTH_ERROR, "fimble serves one client at a time and "
                                                                  "another one is connected"))
            await _close(writer)
            return
        try:
            server = make_server()
            server.remote = True
            protocol = server.protocol
            protocol.set_writer(writer)
            protocol.on_exit = writer.close  # `exit` ends this connection, not the process

            def on_frame(body: bytes) -> bool:
                wire.dispatch(protocol, body)
                return not writer.is_closing()

            async def read() -> bytes:
                return await reader.read(READ_SIZE)

            try:
                if on_frame(entry.initialize) and wire.handle_events(entry.after, protocol, on_frame):
                    await wire.read_loop(read, protocol, on_frame, entry.frames)
            except (ConnectionError, OSError) as exc:
                log.info("fimble: client connection ended: %s", exc)
            finally:
                await asyncio.get_running_loop().run_in_executor(None, server.end_session)
                await _close(writer)
        finally:
            busy.release()

    async def main() -> None:
        nonlocal token
        try:
            listener = await asyncio.start_server(connection, host, port)
        except OSError as exc:
            raise TransportError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        token, token_path = write_token(home)
        bound = listener.sockets[0].getsockname()
        announce(bound[0], bound[1], token_path)
        async with listener:
            await listener.serve_forever()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


def _send(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    body = json.dumps(message).encode()
    with contextlib.suppress(Exception):
        writer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)


async def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()
        await writer.wait_closed()


def announce_on_stderr(host: str, port: int, token_path: Path) -> None:
    print(f"fimble: serving on {host}:{port}; a client sends the token in {token_path} as "
          f"initializationOptions.token", file=sys.stderr, flush=True)


# (bench_edit.py, 2 MB of lines, status round trip p50 / p95, three runs: 1 ms 4.0 / 10.8 ms, 0.2 ms
# 3.1 / 9.9 ms; below 0.2 ms no better: the worker then gives the GIL up at its own next check.)
SWITCH_INTERVAL_S = 0.0002

# glibc's malloc (values for mallopt): large blocks below this come from the heap, not from a fresh
# mmap; free memory above the heap's top is returned to the system only past the trim threshold.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
HEAP_BLOCKS_UP_TO = 32 << 20
HEAP_KEEPS_FREE = 64 << 20


def keep_large_blocks() -> bool:
    """Let glibc recycle the document's text blocks instead of mapping fresh pages for each.

    Every keystroke builds a document's new text (one `str`, 2 MB for a 2 MB file) and frees the
    old one. By default glibc maps such a block afresh and unmaps it when freed, so each edit
    paid ~360 page faults on the event loop (DocumentStore.change on 2 MB: p50 0.8 / p95 3.7 ms);
    kept on the heap, a freed block is the next one's, its pages already there (9 faults,
    0.29 / 0.36 ms). What stays free on the heap is bounded by HEAP_KEEPS_FREE. False where the
    C library is not glibc."""
    import ctypes
    import ctypes.util

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # (musl has no mallopt)
    return bool(mallopt(M_MMAP_THRESHOLD, HEAP_BLOCKS_UP_TO)) and bool(mallopt(M_TRIM_THRESHOLD, HEAP_KEEPS_FREE))


def serve(create_server: Callable[[], Any], tcp: str | None = None, allow_remote: bool = False) -> int:
    """`fimble serve`: the language server over stdio, or over TCP with a token."""
    logging.basicConfig(level=logging.INFO, format="fimble %(levelname)s %(message)s")
    logging.getLogger("pygls").setLevel(logging.WARNING)  # it logs every message it sends at INFO
    # The event loop waits at most this long for the GIL when the model worker runs Python (prompt
    # building, a parse: engine.syntax.parse_yielding) before asking for it: 5 ms by default,
    # which was the loop's whole budget per keystroke (llama.cpp itself runs without the GIL).
    # Each keystroke takes it back several times (a read, a write, each a system call).
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    keep_large_blocks()
    if tcp:
        host, port = parse_address(tcp, allow_remote)
        serve_tcp(create_server, host, port, models.fimble_home(), announce_on_stderr)
        return 0
    server = create_server()
    # The protocol gets its own copy of stdout, and fd 1 becomes stderr. Native code writes to fd 1
    # (llama.cpp's logs), and llama-cpp-python silences it by pointing fd 1 at /dev/null while a
    # model loads: a response written then would be lost, and a stray print would corrupt the stream.
    protocol_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    run_stdio(server, sys.stdin.buffer, protocol_out)
    return 0
